//! Library errors as Python exceptions.
//!
//! The exception classes are defined once, in `initret/_errors.py`, which
//! hands its factory (`from_library`) to this module when the package is
//! imported ([`set_exception_factory`]): Python imports the extension, never
//! the other way round. This module names no Python class: it gives the
//! factory the Rust variant's name, its `Display` message and its fields,
//! and the Python side picks the class. Errors the binding finds itself (a
//! bad table shape, a query past `i128`) are `initret::Error` values too
//! where the library has the variant, so they take the same path.

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyDict;

/// The factory `initret/_errors.py` registered.
static EXCEPTION_FACTORY: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// `_set_exception_factory(factory)`: called once by the ``initret``
/// package when it is imported, with ``initret._errors.from_library``
/// (``factory(variant, message, **fields) -> Exception``). Not API.
#[pyfunction]
pub(crate) fn _set_exception_factory(py: Python<'_>, factory: Py<PyAny>) -> PyResult<()> {
    // The first registration stays (a reloaded package keeps the first).
    EXCEPTION_FACTORY.get_or_init(py, || factory);
    Ok(())
}

/// The registered factory.
fn from_library(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    EXCEPTION_FACTORY
        .get(py)
        .map(|f| f.bind(py))
        .ok_or_else(|| {
            PyRuntimeError::new_err(
                "initret's exception classes are not registered: import the initret package, \
             not initret._initret alone",
            )
        })
}

/// The exception `_errors.from_library` builds for the library variant
/// `variant` with `message` and the keyword fields `fields`.
pub(crate) fn library_exception(
    py: Python<'_>,
    variant: &str,
    message: &str,
    fields: Bound<'_, PyDict>,
) -> PyErr {
    match from_library(py).and_then(|f| f.call((variant, message), Some(&fields))) {
        Ok(exception) => PyErr::from_value(exception),
        Err(err) => err,
    }
}

/// Maps a library error to its Python exception, by variant and field.
pub(crate) fn to_pyerr(py: Python<'_>, error: initret::Error) -> PyErr {
    match variant_and_fields(py, &error) {
        Ok((variant, fields)) => library_exception(py, variant, &error.to_string(), fields),
        Err(err) => err,
    }
}

/// The variant's name and the fields a Python caller can use.
fn variant_and_fields<'py>(
    py: Python<'py>,
    error: &initret::Error,
) -> PyResult<(&'static str, Bound<'py, PyDict>)> {
    use initret::Error;
    let fields = PyDict::new(py);
    let variant = match error {
        Error::IndexOutOfRange {
            position,
            index,
            rows,
        } => {
            fields.set_item("position", position)?;
            fields.set_item("index", index)?;
            fields.set_item("rows", rows)?;
            "IndexOutOfRange"
        }
        Error::OutputTooNarrow {
            output_bytes,
            count_bytes,
        } => {
            fields.set_item("output_bytes", output_bytes)?;
            fields.set_item("count_bytes", count_bytes)?;
            "OutputTooNarrow"
        }
        Error::InvalidTable(reason) => {
            fields.set_item("reason", reason)?;
            "InvalidTable"
        }
        Error::OutputLength { queries, output } => {
            fields.set_item("queries", queries)?;
            fields.set_item("output", output)?;
            "OutputLength"
        }
        Error::GpuUnavailable(reason) => {
            fields.set_item("reason", reason)?;
            // The hint to install lavapipe belongs only where wgpu found no
            // adapter at all, not to an INITRET_ADAPTER mismatch or a table
            // too large for the adapter there is.
            let no_adapter = initret::gpu::ENABLED && py.detach(initret::gpu::adapters).is_empty();
            fields.set_item("no_adapter", no_adapter)?;
            "GpuUnavailable"
        }
        Error::DeviceLost(reason) => {
            fields.set_item("reason", reason)?;
            "DeviceLost"
        }
        Error::GpuTimeout { what, seconds } => {
            fields.set_item("what", what)?;
            fields.set_item("seconds", seconds)?;
            "GpuTimeout"
        }
        Error::Gpu(..) => "Gpu",
        Error::IsaUnavailable { requested, reason } => {
            fields.set_item("requested", requested)?;
            fields.set_item("reason", reason)?;
            "IsaUnavailable"
        }
        Error::Initializer { worker, .. } => {
            fields.set_item("worker", worker)?;
            "Initializer"
        }
        Error::InitializerPanicked { worker, .. } => {
            fields.set_item("worker", worker)?;
            "InitializerPanicked"
        }
        Error::TaskPanicked { worker, .. } => {
            fields.set_item("worker", worker)?;
            "TaskPanicked"
        }
        Error::ThreadSpawn(..) => "ThreadSpawn",
        Error::Topology(..) => "Topology",
        Error::InvalidConfig(..) => "InvalidConfig",
        Error::ForeignGpuValue { what } => {
            fields.set_item("what", what)?;
            "ForeignGpuValue"
        }
        Error::CountsIncomplete => "CountsIncomplete",
        Error::ConcurrentModification {
            position,
            now,
            rows,
        } => {
            fields.set_item("position", position)?;
            fields.set_item("now", now)?;
            fields.set_item("rows", rows)?;
            "ConcurrentModification"
        }
        Error::Internal(..) => "Internal",
        // `initret::Error` is non-exhaustive: a variant added later still
        // reaches Python, as the base class.
        _ => "Other",
    };
    Ok((variant, fields))
}
