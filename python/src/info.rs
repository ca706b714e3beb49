//! `initret.info()`.

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

/// info() -> dict
///
/// What this machine offers initret: CPU features, the CPU kernels
/// available and the one that would be chosen, and the GPU adapters.
#[pyfunction]
pub(crate) fn info(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item("version", env!("CARGO_PKG_VERSION"))?;
    let features = PyDict::new(py);
    for (name, present) in initret::arch::cpu_features() {
        features.set_item(name, present)?;
    }
    dict.set_item("cpu_features", features)?;
    let kernels: Vec<String> = initret::arch::Kernel::available()
        .into_iter()
        .map(|kernel| kernel.name())
        .collect();
    dict.set_item("kernels", kernels)?;
    // Which kernel runs is measured per table when a dispatcher is built
    // (`Dispatcher.kernel`); what can be said here is the ISA they come from.
    match initret::arch::Isa::selected() {
        Ok(isa) => dict.set_item("isa", isa.name())?,
        Err(e) => dict.set_item("isa", format!("error: {e}"))?,
    }
    dict.set_item(
        "cpus",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
    )?;
    let adapters = PyList::empty(py);
    for adapter in py.detach(initret::gpu::adapters) {
        let a = PyDict::new(py);
        a.set_item("name", &adapter.name)?;
        a.set_item("backend", &adapter.backend)?;
        a.set_item("device_type", &adapter.device_type)?;
        a.set_item("driver", &adapter.driver)?;
        a.set_item("driver_info", &adapter.driver_info)?;
        a.set_item(
            "max_storage_buffer_binding_size",
            adapter.max_storage_buffer_binding_size,
        )?;
        a.set_item("max_buffer_size", adapter.max_buffer_size)?;
        a.set_item("summary", adapter.to_string())?;
        adapters.append(a)?;
    }
    dict.set_item("gpu_adapters", adapters)?;
    Ok(dict)
}
