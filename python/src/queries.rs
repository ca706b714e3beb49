//! Query arrays from Python, and their lookup.
//!
//! `uint32`, `int64` and `uint64` queries (numpy's default integer among
//! them) go to the library as they are: its kernels read them in place and
//! range-check them there, so a negative or too-large query is an
//! `IndexOutOfRange` naming the first bad position. The narrower integer
//! dtypes are rare; numpy widens them first (`uint8`, `uint16` to `uint32`,
//! the signed ones to `int64`).

use initret::arch::CountWord;
use initret::{Dispatcher, QueryIndex};
use numpy::{
    PyArray1, PyArrayDescrMethods, PyArrayDyn, PyArrayMethods, PyUntypedArray,
    PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{IntoPyDict, PyDict};

use crate::errors::{library_exception, to_pyerr};
use crate::numpy;

/// Batches of at least this many queries release the GIL while they run.
/// Smaller ones finish in a few microseconds; dropping and re-taking the GIL
/// for them would only add latency when other threads compete for it.
const DETACH_MIN_QUERIES: usize = 2048;

/// `initret.IndexOutOfRange` for a query of any size (a Python int past
/// `i128` included), as the library reports it.
fn out_of_range<'py, I: IntoPyObject<'py>>(
    py: Python<'py>,
    position: usize,
    index: I,
    rows: usize,
) -> PyErr {
    let fields = PyDict::new(py);
    let filled = fields
        .set_item("position", position)
        .and_then(|()| fields.set_item("index", index))
        .and_then(|()| fields.set_item("rows", rows));
    match filled {
        // The Python class writes the message from the fields.
        Ok(()) => library_exception(py, "IndexOutOfRange", "", fields),
        Err(err) => err,
    }
}

/// Looks up queries for one dispatcher.
pub(crate) struct Lookup<'a> {
    pub(crate) dispatcher: &'a Dispatcher,
}

impl Lookup<'_> {
    /// Runs the lookup of `queries` into `out`, releasing the GIL for large
    /// batches, and turns a failure into the Python exception.
    fn detached<Q: QueryIndex, R: CountWord>(
        &self,
        py: Python<'_>,
        queries: &[Q],
        out: &mut [R],
    ) -> PyResult<()> {
        let dispatcher = self.dispatcher;
        let result = if queries.len() >= DETACH_MIN_QUERIES {
            py.detach(|| dispatcher.popcount_indices_into(queries, out))
        } else {
            dispatcher.popcount_indices_into(queries, out)
        };
        result.map_err(|e| to_pyerr(py, e))
    }

    /// Looks up a C-contiguous, native-order integer array into `out`, as
    /// results of type `R` (`u8`, `u16` or `u32`).
    pub(crate) fn run<R: CountWord>(
        &self,
        py: Python<'_>,
        queries: &Bound<'_, PyUntypedArray>,
        out: &mut [R],
    ) -> PyResult<()> {
        self.run_typed(py, queries, out, false)
    }

    fn run_typed<R: CountWord>(
        &self,
        py: Python<'_>,
        queries: &Bound<'_, PyUntypedArray>,
        out: &mut [R],
        widened: bool,
    ) -> PyResult<()> {
        macro_rules! read_in_place {
            ($t:ty) => {
                if let Ok(array) = queries.cast::<PyArrayDyn<$t>>() {
                    return match array.try_readonly() {
                        Ok(readonly) => {
                            let slice = readonly.as_slice().map_err(|e| {
                                PyRuntimeError::new_err(format!("queries are not contiguous: {e}"))
                            })?;
                            self.detached(py, slice, out)
                        }
                        // `out` overlaps the queries: look up a copy of them.
                        Err(_) => {
                            let copy = queries
                                .call_method0("copy")?
                                .cast_into::<PyUntypedArray>()?;
                            self.run_typed(py, &copy, out, widened)
                        }
                    };
                }
            };
        }
        // Read in place, 64-bit ones too: the kernels range check each
        // vector of them in registers, with no narrowed copy.
        read_in_place!(u32);
        read_in_place!(i64);
        read_in_place!(u64);
        // The narrower integers: every value of theirs fits the wider type
        // exactly, so widening changes no query and no error.
        let wider = match queries.dtype().kind() {
            b'u' if !widened => "uint32",
            b'i' if !widened => "int64",
            _ => {
                return Err(PyTypeError::new_err(format!(
                    "queries must be integers; got an array of dtype {}",
                    queries.dtype()
                )));
            }
        };
        let widened = queries
            .call_method1("astype", (wider,))?
            .cast_into::<PyUntypedArray>()?;
        self.run_typed(py, &widened, out, true)
    }
}

/// The query array to look up: C-contiguous, native byte order, an integer
/// dtype. Lists and other array-likes go through `numpy.asarray`; an empty
/// list becomes an empty `uint32` array; object arrays (Python ints too big
/// for int64) are converted element by element.
pub(crate) fn query_array<'py>(
    py: Python<'py>,
    queries: &Bound<'py, PyAny>,
    rows: usize,
) -> PyResult<Bound<'py, PyUntypedArray>> {
    let given_array = queries.is_instance_of::<PyUntypedArray>();
    let mut array = if given_array {
        queries.cast::<PyUntypedArray>()?.clone()
    } else {
        numpy(py)?
            .call_method1("asarray", (queries,))?
            .cast_into::<PyUntypedArray>()?
    };
    match array.dtype().kind() {
        b'i' | b'u' => {}
        b'O' => return object_queries(py, &array, rows),
        // A list that numpy made float or complex (Python ints mixed with
        // numpy uint64 scalars, ints past 2**63, ...): its items, converted
        // one by one as Python ints, exactly; true floats are still refused.
        b'f' | b'c' if !given_array && !array.is_empty() => {
            let objects = numpy(py)?
                .call_method(
                    "asarray",
                    (queries,),
                    Some(&[("dtype", "object")].into_py_dict(py)?),
                )?
                .cast_into::<PyUntypedArray>()?;
            return object_queries(py, &objects, rows);
        }
        _ if !given_array && array.is_empty() => {
            return numpy(py)?
                .call_method1("zeros", (array.shape().to_vec(), "uint32"))?
                .cast_into::<PyUntypedArray>()
                .map_err(PyErr::from);
        }
        _ => {
            return Err(PyTypeError::new_err(format!(
                "queries must be integers; got {} of dtype {}",
                if given_array { "an array" } else { "values" },
                array.dtype()
            )));
        }
    }
    if array.dtype().is_native_byteorder() == Some(false) {
        let native = array.dtype().call_method1("newbyteorder", ("=",))?;
        array = array
            .call_method1("astype", (native,))?
            .cast_into::<PyUntypedArray>()?;
    }
    if !array.is_c_contiguous() || !array.is_aligned() {
        // A strided view, or a buffer at an odd address (arrays rebuilt
        // from network buffers, e.g. by Dask, can be): an aligned C copy.
        array = array
            .call_method1("copy", ("C",))?
            .cast_into::<PyUntypedArray>()?;
    }
    Ok(array)
}

/// An object array of queries (Python ints of any size, numpy integer
/// scalars) as a `uint32` array; floats and other objects are a `TypeError`,
/// an int outside `0..rows` is `IndexOutOfRange` naming the original value.
fn object_queries<'py>(
    py: Python<'py>,
    array: &Bound<'py, PyUntypedArray>,
    rows: usize,
) -> PyResult<Bound<'py, PyUntypedArray>> {
    let operator = py.import("operator")?;
    let flat = array.call_method0("ravel")?;
    let mut converted = Vec::with_capacity(array.len());
    for (position, item) in flat.try_iter()?.enumerate() {
        let item = item?;
        if item.is_instance_of::<pyo3::types::PyBool>() {
            return Err(PyTypeError::new_err(
                "queries must be integers; got a bool (boolean masks are not queries)",
            ));
        }
        let index = operator.call_method1("index", (&item,)).map_err(|_| {
            PyTypeError::new_err(format!(
                "queries must be integers; got {} at position {position}",
                item.get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default()
            ))
        })?;
        match index.extract::<i128>() {
            Ok(i) if i >= 0 && (i as u128) < rows as u128 => converted.push(i as u32),
            _ => return Err(out_of_range(py, position, index, rows)),
        }
    }
    let shape = array.shape().to_vec();
    PyArray1::<u32>::from_vec(py, converted)
        .reshape(shape)
        .map(|a| a.as_untyped().clone())
}
