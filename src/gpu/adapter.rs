//! Adapter enumeration and choice: [`adapters`] and the `INITRET_ADAPTER`
//! override.

use super::summary::{ADAPTER_ENV, AdapterSummary};
use crate::Error;

/// What the crate reports about `adapter`.
pub(super) fn summarize(adapter: &wgpu::Adapter) -> AdapterSummary {
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

/// Lists every adapter the wgpu instance enumerates, on every backend this
/// build supports, in enumeration order. Empty when there is none.
///
/// ```
/// let all = initret::gpu::adapters();
/// // Each is listed once, with the limits that bound table and batch sizes.
/// assert!(all.iter().all(|a| a.max_buffer_size > 0 && !a.name.is_empty()));
/// ```
pub fn adapters() -> Vec<AdapterSummary> {
    match new_instance() {
        Ok(instance) => enumerate(&instance).iter().map(summarize).collect(),
        Err(_) => Vec::new(),
    }
}

pub(super) fn new_instance() -> Result<wgpu::Instance, Error> {
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
pub(super) fn select_adapter(instance: &wgpu::Instance) -> Result<wgpu::Adapter, Error> {
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
                let names: Vec<String> = all.iter().map(|a| summarize(a).to_string()).collect();
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
