//! The constructor's arguments: the table, `threads=`, `backend=`, and
//! `kernel=` / `isa=`.

use initret::arch::{Isa, Kernel, KernelRequest};
use initret::{Backend, BitTable, Error};
use numpy::{
    PyArrayDescrMethods, PyArrayDyn, PyArrayMethods, PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;

use crate::errors::to_pyerr;
use crate::numpy;

/// The most worker threads a `Dispatcher` may ask for (the library's
/// limit, checked here so that the error names the Python argument).
const MAX_THREADS: usize = initret::MAX_THREADS;

/// The most rows a table may have: indices are `u32`.
const MAX_TABLE_ROWS: u64 = 1 << 32;

/// `initret.InvalidTable` with `reason`.
fn invalid_table(py: Python<'_>, reason: String) -> PyErr {
    to_pyerr(py, Error::InvalidTable(reason))
}

/// The `backend=` argument, parsed as the library parses it.
pub(crate) fn backend_from_py(py: Python<'_>, backend: &str) -> PyResult<Backend> {
    backend.parse::<Backend>().map_err(|e| to_pyerr(py, e))
}

/// The `kernel=` and `isa=` arguments: a fixed kernel, the kernels of one
/// ISA to measure, or `None` for the default (`INITRET_FORCE_ISA`, else
/// every kernel).
pub(crate) fn kernel_request_from_py(
    py: Python<'_>,
    kernel: Option<&str>,
    isa: Option<&str>,
) -> PyResult<Option<KernelRequest>> {
    Ok(match (kernel, isa) {
        (Some(_), Some(_)) => {
            return Err(PyValueError::new_err(
                "give kernel= (fixes the kernel) or isa= (measures that ISA's kernels), not both",
            ));
        }
        (Some(name), None) => Some(KernelRequest::Fixed(
            name.parse::<Kernel>().map_err(|e| to_pyerr(py, e))?,
        )),
        (None, Some(name)) => Some(KernelRequest::Measure {
            isa: Some(name.parse::<Isa>().map_err(|e| to_pyerr(py, e))?),
        }),
        (None, None) => None,
    })
}

/// The `threads=` argument: an int from 0 (one per CPU) to [`MAX_THREADS`];
/// a bool or a non-int is a `TypeError`, any other int a `ValueError`.
pub(crate) fn threads_from_py(threads: &Bound<'_, PyAny>) -> PyResult<usize> {
    if threads.is_instance_of::<pyo3::types::PyBool>()
        || !threads.is_instance_of::<pyo3::types::PyInt>()
    {
        return Err(PyTypeError::new_err(format!(
            "threads must be an int, 0 (one per CPU) to {MAX_THREADS}; got {}",
            threads
                .get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default()
        )));
    }
    threads
        .extract::<i128>()
        .ok()
        .and_then(|t| usize::try_from(t).ok())
        .filter(|&t| t <= MAX_THREADS)
        .ok_or_else(|| {
            PyValueError::new_err(format!(
                "threads must be 0 (one per CPU) to {MAX_THREADS}; got {threads}"
            ))
        })
}

/// The table as a [`BitTable`]: 1-D (one word per row) or 2-D (rows x
/// words), integer values that fit in 32 unsigned bits, copied.
pub(crate) fn table_from_py(py: Python<'_>, table: &Bound<'_, PyAny>) -> PyResult<BitTable> {
    let numpy = numpy(py)?;
    let array = numpy
        .call_method1("asarray", (table,))?
        .cast_into::<PyUntypedArray>()?;
    let shape = array.shape().to_vec();
    let (rows, words) = match shape[..] {
        [rows] => (rows, 1),
        [rows, words] => (rows, words),
        _ => {
            return Err(invalid_table(
                py,
                format!(
                    "the table must be 1-D (one word per row) or 2-D (rows x words); got {} dimensions",
                    shape.len()
                ),
            ));
        }
    };
    if rows == 0 || words == 0 {
        return Err(invalid_table(
            py,
            format!(
                "the table has {rows} rows of {words} words; it needs at least one row of at least one word"
            ),
        ));
    }
    // The shape limits, before the table is scanned or converted: a 4-byte
    // broadcast view can claim billions of rows.
    if rows as u64 > MAX_TABLE_ROWS {
        return Err(invalid_table(
            py,
            format!("the table has {rows} rows; at most 2**32 are allowed (indices are 32-bit)"),
        ));
    }
    if words > initret::MAX_WORDS_PER_ROW {
        return Err(invalid_table(
            py,
            format!(
                "rows of {words} words are too wide; at most {} words (2**27 - 1)",
                initret::MAX_WORDS_PER_ROW
            ),
        ));
    }
    match array.dtype().kind() {
        b'u' | b'i' => {}
        _ => {
            return Err(PyTypeError::new_err(format!(
                "the table must hold 32-bit words (numpy uint32); got dtype {}",
                array.dtype()
            )));
        }
    }
    let is_u32 = array.dtype().is_equiv_to(&numpy::dtype::<u32>(py));
    if !is_u32 {
        let low = array.call_method0("min")?;
        let high = array.call_method0("max")?;
        let low_ok = low.extract::<i128>()? >= 0;
        let high_ok = high.extract::<i128>()? <= i128::from(u32::MAX);
        if !low_ok || !high_ok {
            return Err(invalid_table(
                py,
                format!(
                    "table values must fit in 32 unsigned bits; they range from {low} to {high}"
                ),
            ));
        }
    }
    let mut contiguous = numpy
        .call_method1("ascontiguousarray", (array, "uint32"))?
        .cast_into::<PyArrayDyn<u32>>()?;
    if !contiguous.is_aligned() {
        contiguous = contiguous
            .call_method1("copy", ("C",))?
            .cast_into::<PyArrayDyn<u32>>()?;
    }
    let readonly = contiguous
        .try_readonly()
        .map_err(|e| PyRuntimeError::new_err(format!("the table could not be read: {e}")))?;
    let data = readonly
        .as_slice()
        .map_err(|e| PyRuntimeError::new_err(format!("the table is not contiguous: {e}")))?
        .to_vec();
    BitTable::from_rows(words, data).map_err(|e| to_pyerr(py, e))
}
