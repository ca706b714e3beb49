//! Result arrays: a fresh one, a recycled one, or the caller's `out`.

use std::sync::{Mutex, PoisonError};

use numpy::{
    Element, PyArrayDescr, PyArrayDescrMethods, PyArrayDyn, PyArrayMethods, PyUntypedArray,
    PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

/// The dtypes results come in: numpy's names for the library's
/// `CountWord` types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ResultType {
    U8,
    U16,
    U32,
}

impl ResultType {
    /// The type of `bytes` bytes (a dispatcher's `result_bytes`).
    pub(crate) fn of_bytes(bytes: usize) -> ResultType {
        match bytes {
            1 => ResultType::U8,
            2 => ResultType::U16,
            _ => ResultType::U32,
        }
    }

    pub(crate) fn bytes(self) -> usize {
        match self {
            ResultType::U8 => 1,
            ResultType::U16 => 2,
            ResultType::U32 => 4,
        }
    }

    /// The numpy dtype.
    pub(crate) fn dtype(self, py: Python<'_>) -> Bound<'_, PyArrayDescr> {
        match self {
            ResultType::U8 => numpy::dtype::<u8>(py),
            ResultType::U16 => numpy::dtype::<u16>(py),
            ResultType::U32 => numpy::dtype::<u32>(py),
        }
    }

    /// The result type a native-order numpy dtype names, if any.
    fn of_descr(descr: &Bound<'_, PyArrayDescr>) -> Option<ResultType> {
        let py = descr.py();
        if descr.is_native_byteorder() == Some(false) {
            return None;
        }
        [ResultType::U8, ResultType::U16, ResultType::U32]
            .into_iter()
            .find(|t| descr.is_equiv_to(&t.dtype(py)))
    }

    /// The result type `dtype=` asks for (anything `numpy.dtype` takes),
    /// or a `TypeError` naming the three there are.
    pub(crate) fn of_dtype_arg(dtype: &Bound<'_, PyAny>) -> PyResult<ResultType> {
        let py = dtype.py();
        let descr = crate::numpy(py)?
            .call_method1("dtype", (dtype,))?
            .cast_into::<PyArrayDescr>()?;
        ResultType::of_descr(&descr).ok_or_else(|| {
            PyTypeError::new_err(format!(
                "dtype must be uint8, uint16 or uint32 (native byte order); got {descr}"
            ))
        })
    }

    /// The result type of an `out=` array, or a `TypeError`.
    pub(crate) fn of_out(out: &Bound<'_, PyAny>) -> PyResult<ResultType> {
        let wrong = || {
            PyTypeError::new_err(
                "out must be a numpy.ndarray of dtype uint8, uint16 or uint32 (native byte order), \
                 at least as wide as the dispatcher's result_dtype",
            )
        };
        let array = out.cast::<PyUntypedArray>().map_err(|_| wrong())?;
        ResultType::of_descr(&array.dtype()).ok_or_else(wrong)
    }
}

/// Runs `$body` with `$r` the Rust type of the result type `$ty`.
macro_rules! with_result_type {
    ($ty:expr, $r:ident => $body:expr) => {
        match $ty {
            $crate::output::ResultType::U8 => {
                type $r = u8;
                $body
            }
            $crate::output::ResultType::U16 => {
                type $r = u16;
                $body
            }
            $crate::output::ResultType::U32 => {
                type $r = u32;
                $body
            }
        }
    };
}
pub(crate) use with_result_type;

/// Results of at least this many counts are kept for reuse.
const RECYCLE_MIN_LEN: usize = 1 << 20;

/// How many results a dispatcher keeps for reuse.
const RECYCLE_MAX: usize = 2;

/// The last few large result arrays a dispatcher returned. One that Python
/// no longer references anywhere else (its reference count is the one held
/// here) is filled again by the next call of the same shape instead of a
/// new array, whose first touch costs a page fault per page (measured:
/// 2.4–12 ms for a 64 MiB result, against 2.3–2.5 ms for the 2^24 lookups
/// themselves).
#[derive(Default)]
pub(crate) struct RecycledResults {
    kept: Mutex<Vec<Py<PyUntypedArray>>>,
}

impl RecycledResults {
    /// A result array of `shape` and type `R` for a call without `out`: a
    /// kept one that nothing outside this dispatcher references any more,
    /// or a new one.
    pub(crate) fn fresh<'py, R: Element>(
        &self,
        py: Python<'py>,
        shape: &[usize],
    ) -> Bound<'py, PyArrayDyn<R>> {
        if shape.iter().product::<usize>() >= RECYCLE_MIN_LEN {
            let mut recycled = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
            // A reference count of 1 is the pool's own reference: no
            // variable, view, memoryview or container holds the array. The
            // GIL is held, so none can appear while it is taken out.
            let wanted = numpy::dtype::<R>(py);
            let weakref = py.import("weakref").ok();
            let free = recycled.iter().position(|kept| {
                let kept = kept.bind(py);
                // SAFETY: `kept` is a live object and the GIL is held.
                let references = unsafe { pyo3::ffi::Py_REFCNT(kept.as_ptr()) };
                // Python may still reach an array through a weak reference
                // (a WeakValueDictionary, say), and may have relabelled its
                // dtype in place (`r.dtype = np.float32`): either makes it
                // someone else's, not a free result.
                let weakly_referenced = weakref
                    .as_ref()
                    .and_then(|w| w.call_method1("getweakrefcount", (kept,)).ok())
                    .and_then(|n| n.extract::<usize>().ok())
                    != Some(0);
                references == 1
                    && !weakly_referenced
                    && kept.dtype().is_equiv_to(&wanted)
                    && kept.dtype().is_native_byteorder() != Some(false)
                    && kept.shape() == shape
                    && kept.is_c_contiguous()
                    && kept.is_aligned()
                    && kept
                        .cast::<PyArrayDyn<R>>()
                        .is_ok_and(|kept| kept.try_readwrite().is_ok())
            });
            if let Some(k) = free
                && let Ok(array) = recycled
                    .swap_remove(k)
                    .into_bound(py)
                    .cast_into::<PyArrayDyn<R>>()
            {
                return array;
            }
        }
        // SAFETY: every element is written by the lookup before the array
        // is returned; on error the array is dropped unread.
        unsafe { PyArrayDyn::<R>::new(py, shape, false) }
    }

    /// Keeps a large result, so that once Python drops it the next call of
    /// its shape can fill it again.
    pub(crate) fn keep<R: Element>(&self, result: &Bound<'_, PyArrayDyn<R>>) {
        if result.len() < RECYCLE_MIN_LEN {
            return;
        }
        let mut recycled = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        if recycled.len() >= RECYCLE_MAX {
            recycled.remove(0);
        }
        recycled.push(result.as_untyped().clone().unbind());
    }
}

/// The error for an `out` array that cannot be borrowed for writing: it is
/// read-only, or another call (on another thread) is using it right now.
pub(crate) fn unwritable_out(target: &Bound<'_, PyAny>) -> PyErr {
    let writeable = target
        .getattr("flags")
        .and_then(|flags| flags.getattr("writeable"))
        .and_then(|w| w.is_truthy())
        .unwrap_or(true);
    if writeable {
        PyValueError::new_err(
            "out cannot be written now: another call is using it (a Dispatcher call on \
             another thread writes to it, or reads it as queries); give each concurrent \
             call its own out array",
        )
    } else {
        PyValueError::new_err("out cannot be written: it is read-only")
    }
}
