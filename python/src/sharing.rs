//! A `Dispatcher` that pickles to its count table in shared memory.
//!
//! Pickling places the dispatcher's derived counts in a shared memory
//! segment once (`initret.share`, on first use, kept while the dispatcher
//! lives) and sends a small handle. Unpickling on the same host maps the
//! segment read-only and builds a dispatcher over those counts with
//! [`initret::Dispatcher::counts_builder`]: no table, no derivation, no
//! copy for the CPU backend's first cache domain.

use std::sync::Arc;

use initret::arch::{CountMemory, CountTable};
use initret::cpu::CpuBackend;
use initret::{Dispatcher, DispatcherBuilder};
use numpy::ndarray::ArrayView1;
use numpy::{PyArray1, PyArrayDescrMethods, PyArrayMethods, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{IntoPyDict, PyBytes, PyMemoryView};

use crate::dispatcher::PyDispatcher;
use crate::numpy;

use crate::errors::to_pyerr;

/// Count bytes borrowed from a read-only numpy array (in practice a view
/// of a read-only shared-memory mapping), which it keeps alive.
struct NumpyCountMemory {
    /// Holds the array, and through it the mapping, for as long as the
    /// counts are read.
    _owner: Py<PyAny>,
    ptr: *const u8,
    len: usize,
}

// SAFETY: the pointer is only read, and the memory it points to lives as
// long as `_owner`, which may be held and released from any thread (pyo3
// defers a release without the GIL).
unsafe impl Send for NumpyCountMemory {}
// SAFETY: as above: shared access only ever reads.
unsafe impl Sync for NumpyCountMemory {}

// SAFETY: `bytes` returns the same slice on every call. The array was
// checked to be read-only, C-contiguous and of `len` bytes, and `_owner`
// keeps its buffer mapped until this value is dropped. The memory is the
// shared segment `initret.share` wrote once and every process maps
// read-only; nothing writes to it afterwards.
unsafe impl CountMemory for NumpyCountMemory {
    fn bytes(&self) -> &[u8] {
        // SAFETY: see the impl's comment: valid, unchanging, `len` bytes.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

/// The CPU backend whose counts a pickled `dispatcher` sends.
pub(crate) fn pickled_cpu(dispatcher: &Dispatcher) -> PyResult<&CpuBackend> {
    dispatcher.cpu().ok_or_else(|| {
        PyTypeError::new_err(
            "a Dispatcher with backend='gpu' cannot be pickled: its counts live on the device \
             only; pickle a 'cpu' or 'auto' Dispatcher (whose counts are on the host)",
        )
    })
}

/// The counts of `cpu` as a read-only `uint8` view that keeps `owner` (the
/// Python dispatcher holding `cpu`) alive.
pub(crate) fn counts_view<'py>(
    py: Python<'py>,
    cpu: &CpuBackend,
    owner: Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyArray1<u8>>> {
    let counts = cpu.counts();
    let bytes = counts.as_bytes();
    // SAFETY: `bytes` lives as long as the dispatcher's CPU backend, which
    // `owner` (the Python object holding the dispatcher) keeps alive for as
    // long as the view exists; the view is made read-only below, and the
    // counts are never written after they are derived.
    let view = unsafe { PyArray1::borrow_from_array(&ArrayView1::from(bytes), owner) };
    view.call_method("setflags", (), Some(&[("write", false)].into_py_dict(py)?))?;
    Ok(view)
}

/// The shape of the counts a pickled dispatcher sends.
pub(crate) struct CountsLayout {
    pub(crate) rows: usize,
    pub(crate) bytes_per_count: usize,
    pub(crate) words_per_row: usize,
}

/// Whether the memory behind `array` can never be written: the object at
/// the end of its chain of bases (numpy arrays, and the objects memoryviews
/// were taken of) is `bytes`, an `mmap` mapped read-only, or a `Dispatcher`
/// (whose counts never change). Anything else is refused: an array that owns
/// its memory (its read-only flag can be set back), a `bytearray`, a
/// writable mapping, and read-only views of any of those.
fn memory_is_immutable(array: &Bound<'_, PyAny>) -> PyResult<bool> {
    let py = array.py();
    let ndarray = numpy(py)?.getattr("ndarray")?;
    let mut root = array.clone();
    loop {
        if root.is_instance(&ndarray)? {
            let base = root.getattr("base")?;
            if base.is_none() {
                return Ok(false);
            }
            root = base;
        } else if let Ok(view) = root.cast::<PyMemoryView>() {
            let obj = view.getattr("obj")?;
            if obj.is_none() {
                return Ok(false);
            }
            root = obj;
        } else {
            break;
        }
    }
    if root.is_instance_of::<PyDispatcher>() || root.is_exact_instance_of::<PyBytes>() {
        return Ok(true);
    }
    let mmap_type = py.import("mmap")?.getattr("mmap")?;
    if root.is_instance(&mmap_type)? {
        return PyMemoryView::from(&root)?.getattr("readonly")?.is_truthy();
    }
    Ok(false)
}

/// A dispatcher over the counts in `counts` (a read-only `uint8` array of
/// the bytes [`counts_view`] gave), read in place, built by `configure`d
/// [`Dispatcher::counts_builder`].
pub(crate) fn dispatcher_over(
    py: Python<'_>,
    counts: &Bound<'_, PyUntypedArray>,
    layout: CountsLayout,
    configure: impl FnOnce(DispatcherBuilder) -> DispatcherBuilder + Send,
) -> PyResult<Dispatcher> {
    if !counts.dtype().is_equiv_to(&numpy::dtype::<u8>(py))
        || !counts.is_c_contiguous()
        || counts.ndim() != 1
    {
        return Err(PyValueError::new_err(
            "counts must be a 1-D, C-contiguous uint8 array (as Dispatcher pickles them)",
        ));
    }
    if counts.getattr("flags")?.getattr("writeable")?.is_truthy()?
        || !memory_is_immutable(counts.as_any())?
    {
        return Err(PyValueError::new_err(
            "counts must be read-only memory (a read-only mapping of shared memory, or bytes): they \
             are read in place, without a copy, and must never change; a read-only view of \
             writable memory is refused",
        ));
    }
    let array = counts.cast::<PyArray1<u8>>()?;
    let len = array.len();
    let ptr = if len == 0 {
        std::ptr::NonNull::<u8>::dangling().as_ptr().cast_const()
    } else {
        array.data().cast_const()
    };
    let memory = Arc::new(NumpyCountMemory {
        _owner: counts.clone().into_any().unbind(),
        ptr,
        len,
    });
    let table = CountTable::from_memory(memory, layout.rows, layout.bytes_per_count)
        .map_err(|e| to_pyerr(py, e))?;
    py.detach(|| configure(Dispatcher::counts_builder(table, layout.words_per_row)).build())
        .map_err(|e| to_pyerr(py, e))
}
