//! Library errors as Python exceptions.
//!
//! The exception classes are defined once, in `initret/_errors.py`. This
//! module names no Python class: it hands `_errors.from_library` the Rust
//! variant's name, its `Display` message and its fields, and the Python
//! side picks the class. Errors the binding finds itself (a bad table
//! shape, a query past `i128`) are `initret::Error` values too where the
//! library has the variant, so they take the same path.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyDict;

/// `initret._errors.from_library`, looked up once.
fn from_library(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    static FROM_LIBRARY: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    FROM_LIBRARY
        .get_or_try_init(py, || {
            Ok::<_, PyErr>(
                py.import("initret._errors")?
                    .getattr("from_library")?
                    .unbind(),
            )
        })
        .map(|f| f.bind(py))
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
