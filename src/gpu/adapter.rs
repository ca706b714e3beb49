//! Adapter enumeration and choice: [`adapters`], [`AdapterSummary`] and the
//! `INITRET_ADAPTER` override.

use std::fmt;

use crate::Error;

/// Environment variable naming (by case-insensitive substring of its name)
/// the adapter [`GpuBackend::new`](super::GpuBackend::new) must use.
pub const ADAPTER_ENV: &str = "INITRET_ADAPTER";

/// What the crate reports about one GPU adapter: its identity and the limits
/// that bound table and batch sizes.
///
/// ```
/// for adapter in initret::gpu::adapters() {
///     println!("{adapter}");
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
    /// Largest storage buffer one binding may cover, in bytes: the table must fit in it.
    pub max_storage_buffer_binding_size: u64,
    /// Largest buffer the device can create, in bytes.
    pub max_buffer_size: u64,
    /// Largest workgroup count in one dispatch dimension.
    pub max_compute_workgroups_per_dimension: u32,
    /// Largest number of invocations in one workgroup.
    pub max_compute_invocations_per_workgroup: u32,
}

impl AdapterSummary {
    pub(crate) fn from_adapter(adapter: &wgpu::Adapter) -> AdapterSummary {
        let info = adapter.get_info();
        let limits = adapter.limits();
        AdapterSummary {
            name: info.name,
            backend: format!("{:?}", info.backend),
            device_type: format!("{:?}", info.device_type),
            driver: info.driver,
            driver_info: info.driver_info,
            max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size,
            max_buffer_size: limits.max_buffer_size,
            max_compute_workgroups_per_dimension: limits.max_compute_workgroups_per_dimension,
            max_compute_invocations_per_workgroup: limits.max_compute_invocations_per_workgroup,
        }
    }
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

/// Lists every adapter the wgpu instance enumerates, on every backend this
/// build supports, in enumeration order. Empty when there is none.
///
/// ```
/// let all = initret::gpu::adapters();
/// println!("{} adapter(s)", all.len());
/// ```
pub fn adapters() -> Vec<AdapterSummary> {
    match new_instance() {
        Ok(instance) => enumerate(&instance)
            .iter()
            .map(AdapterSummary::from_adapter)
            .collect(),
        Err(_) => Vec::new(),
    }
}

pub(crate) fn new_instance() -> Result<wgpu::Instance, Error> {
    // `Instance::new` panics when no backend was compiled in; refuse instead.
    if wgpu::Instance::enabled_backend_features().is_empty() {
        return Err(Error::GpuUnavailable(
            "this build of wgpu has no graphics backend for this platform".into(),
        ));
    }
    Ok(wgpu::Instance::new(
        wgpu::InstanceDescriptor::new_without_display_handle(),
    ))
}

fn enumerate(instance: &wgpu::Instance) -> Vec<wgpu::Adapter> {
    pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()))
}

/// Lower is preferred: real GPUs before software rasterizers.
fn preference_rank(device_type: wgpu::DeviceType) -> u8 {
    match device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

/// Picks the adapter named by `INITRET_ADAPTER`, else the most GPU-like one.
pub(crate) fn select_adapter(instance: &wgpu::Instance) -> Result<wgpu::Adapter, Error> {
    let mut all = enumerate(instance);
    if all.is_empty() {
        return Err(Error::GpuUnavailable(
            "wgpu found no adapter on any backend (Vulkan/Metal/DX12). \
             For a software Vulkan adapter (lavapipe) on Debian/Ubuntu, install the \
             `mesa-vulkan-drivers` package"
                .into(),
        ));
    }
    let wanted = std::env::var(ADAPTER_ENV)
        .ok()
        .filter(|w| !w.trim().is_empty());
    if let Some(wanted) = wanted {
        let needle = wanted.trim().to_lowercase();
        let position = all
            .iter()
            .position(|a| a.get_info().name.to_lowercase().contains(&needle));
        return match position {
            Some(i) => Ok(all.swap_remove(i)),
            None => {
                let names: Vec<String> = all
                    .iter()
                    .map(|a| AdapterSummary::from_adapter(a).to_string())
                    .collect();
                Err(Error::GpuUnavailable(format!(
                    "{ADAPTER_ENV}={wanted:?} matches no adapter name; available: {}",
                    names.join("; ")
                )))
            }
        };
    }
    let best = all
        .iter()
        .enumerate()
        .min_by_key(|(i, a)| (preference_rank(a.get_info().device_type), *i))
        .map(|(i, _)| i)
        .unwrap_or(0);
    Ok(all.swap_remove(best))
}
