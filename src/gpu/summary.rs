//! What the crate reports about an adapter ([`AdapterSummary`]) and the
//! variable that picks one; plain data, present with or without wgpu.

use std::fmt;

/// Environment variable naming (by case-insensitive substring of its name)
/// the adapter [`GpuBackend::new`](super::GpuBackend::new) must use.
pub const ADAPTER_ENV: &str = "INITRET_ADAPTER";

/// What the crate reports about one GPU adapter: its identity and the limits
/// that bound table and batch sizes.
///
/// ```
/// for adapter in initret::gpu::adapters() {
///     let line = adapter.to_string();
///     assert!(line.starts_with(&adapter.name) && !line.contains('\n'));
/// }
/// ```
#[derive(Clone, Debug)]
pub struct AdapterSummary {
    /// Adapter name as the driver reports it (e.g. `llvmpipe (LLVM 15.0.6, 256 bits)`).
    pub name: String,
    /// Graphics API backend (`Vulkan`, `Metal`, `Dx12`, ...).
    pub backend: String,
    /// Kind of device: `DiscreteGpu`, `IntegratedGpu`, `VirtualGpu`, `Cpu` or `Other`.
    pub device_type: String,
    /// Driver name (may be empty).
    pub driver: String,
    /// Driver version details (may be empty).
    pub driver_info: String,
    /// Largest storage buffer one binding may cover, in bytes: the per-row
    /// counts must fit in it (the table streams through in pieces).
    pub max_storage_buffer_binding_size: u64,
    /// Largest buffer the device can create, in bytes.
    pub max_buffer_size: u64,
    /// Largest workgroup count in one dispatch dimension.
    pub max_compute_workgroups_per_dimension: u32,
    /// Largest number of invocations in one workgroup.
    pub max_compute_invocations_per_workgroup: u32,
}

impl fmt::Display for AdapterSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}, {}", self.name, self.device_type, self.backend)?;
        let driver = format!("{} {}", self.driver, self.driver_info);
        if !driver.trim().is_empty() {
            write!(f, ", driver {}", driver.trim())?;
        }
        write!(
            f,
            "; storage binding <= {}, buffer <= {}, workgroups/dim <= {})",
            human_bytes(self.max_storage_buffer_binding_size),
            human_bytes(self.max_buffer_size),
            self.max_compute_workgroups_per_dimension
        )
    }
}

/// `1073741824` -> `1 GiB (1073741824 B)`; small values stay in bytes.
pub(crate) fn human_bytes(bytes: u64) -> String {
    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;
    if bytes >= GIB {
        format!("{:.1} GiB ({bytes} B)", bytes as f64 / GIB as f64)
    } else if bytes >= MIB {
        format!("{:.1} MiB ({bytes} B)", bytes as f64 / MIB as f64)
    } else {
        format!("{bytes} B")
    }
}
