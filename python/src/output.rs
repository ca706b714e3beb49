//! Result arrays: a fresh one, a recycled one, or the caller's `out`.

use std::sync::{Mutex, PoisonError};

use numpy::{PyArrayDescrMethods, PyArrayDyn, PyArrayMethods, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// Results of at least this many counts are kept for reuse (4 MiB).
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
    kept: Mutex<Vec<Py<PyArrayDyn<u32>>>>,
}

impl RecycledResults {
    /// A result array of `shape` for a call without `out`: a kept one that
    /// nothing outside this dispatcher references any more, or a new one.
    pub(crate) fn fresh<'py>(
        &self,
        py: Python<'py>,
        shape: &[usize],
    ) -> Bound<'py, PyArrayDyn<u32>> {
        if shape.iter().product::<usize>() >= RECYCLE_MIN_LEN {
            let mut recycled = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
            // A reference count of 1 is the pool's own reference: no
            // variable, view, memoryview or container holds the array. The
            // GIL is held, so none can appear while it is taken out.
            let uint32 = numpy::dtype::<u32>(py);
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
                    && kept.dtype().is_equiv_to(&uint32)
                    && kept.dtype().is_native_byteorder() != Some(false)
                    && kept.shape() == shape
                    && kept.is_c_contiguous()
                    && kept.is_aligned()
                    && kept.try_readwrite().is_ok()
            });
            if let Some(k) = free {
                return recycled.swap_remove(k).into_bound(py);
            }
        }
        // SAFETY: every element is written by the lookup before the array
        // is returned; on error the array is dropped unread.
        unsafe { PyArrayDyn::<u32>::new(py, shape, false) }
    }

    /// Keeps a large result, so that once Python drops it the next call of
    /// its shape can fill it again.
    pub(crate) fn keep(&self, result: &Bound<'_, PyArrayDyn<u32>>) {
        if result.len() < RECYCLE_MIN_LEN {
            return;
        }
        let mut recycled = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        if recycled.len() >= RECYCLE_MAX {
            recycled.remove(0);
        }
        recycled.push(result.clone().unbind());
    }
}

/// The error for an `out` array that cannot be borrowed for writing: it is
/// read-only, or another call (on another thread) is using it right now.
pub(crate) fn unwritable_out(target: &Bound<'_, PyArrayDyn<u32>>) -> PyErr {
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
