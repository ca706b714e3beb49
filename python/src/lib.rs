//! `initret._initret`: the compiled half of the `initret` Python package.
//!
//! It wraps [`initret::Dispatcher`] for numpy callers. The table is copied
//! into a [`initret::BitTable`] once, when the dispatcher is built (the
//! initializer); every `popcount` call then borrows the caller's query
//! array, releases the GIL for the lookups (large batches) and writes into
//! a fresh or caller-given `uint32` array.
//!
//! One module per concern:
//! - `dispatcher`: the `initret.Dispatcher` class;
//! - `queries`: query arrays from Python and their lookup;
//! - `output`: result arrays (fresh, recycled, or the caller's `out`);
//! - `arguments`: the constructor's arguments (table, threads, backend,
//!   kernel);
//! - `errors`: library errors as the Python exceptions of
//!   `initret/_errors.py`, never panics;
//! - `info`: `initret.info()`;
//! - `sharing`: pickling a `Dispatcher` to its counts in shared memory;
//! - `frozen`: `SharedDict`, `SharedList` and `freeze` over
//!   [`initret::frozen`] buffers.

#![deny(clippy::undocumented_unsafe_blocks)]

mod arguments;
mod dispatcher;
mod errors;
mod frozen;
mod info;
mod output;
mod queries;
mod sharing;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

/// The `numpy` module, imported once.
pub(crate) fn numpy(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    static NUMPY: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    NUMPY
        .get_or_try_init(py, || py.import("numpy").map(Bound::unbind))
        .map(|m| m.bind(py))
}

/// The compiled half of the ``initret`` package; import ``initret`` instead.
#[pymodule]
fn _initret(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<dispatcher::PyDispatcher>()?;
    m.add_function(wrap_pyfunction!(info::info, m)?)?;
    frozen::register(m)?;
    m.add_function(wrap_pyfunction!(errors::_set_exception_factory, m)?)?;
    m.add("SEED_ROWS", initret::SEED_ROWS)?;
    m.add("SEED_CHECKSUM", initret::SEED_CHECKSUM)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
