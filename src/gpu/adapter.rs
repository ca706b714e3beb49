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
    #[cfg(target_os = "linux")]
    if let Some(instance) = vulkan_without_window_system() {
        return Ok(instance);
    }
    Ok(wgpu::Instance::new(
        wgpu::InstanceDescriptor::new_without_display_handle(),
    ))
}

/// The instance extensions through which Vulkan presents to a window system.
/// initret never presents, so it does not enable them.
#[cfg(target_os = "linux")]
const WINDOW_SYSTEM_EXTENSIONS: [&std::ffi::CStr; 3] = [
    c"VK_KHR_wayland_surface",
    c"VK_KHR_xcb_surface",
    c"VK_KHR_xlib_surface",
];

/// A Vulkan-only instance that does not enable the window-system extensions,
/// or `None` where Vulkan cannot start (the caller then takes wgpu's own
/// path, which reports the same failure as before).
///
/// Why: Mesa's device-select layer (installed with every Mesa Vulkan driver,
/// lavapipe included) connects to the Wayland compositor when an instance
/// enables `VK_KHR_wayland_surface`, and libwayland prints
/// `error: XDG_RUNTIME_DIR is invalid or not set in the environment.` on a
/// headless machine, once per adapter enumeration, although nothing failed.
/// Without the extension the layer does not look for a display, so
/// successful runs stay quiet, and real errors still surface as [`Error`]s.
///
/// On Linux, wgpu's own instance has only the Vulkan backend (the crate
/// enables no GL backend), so the instance built here enumerates the same
/// adapters.
#[cfg(target_os = "linux")]
fn vulkan_without_window_system() -> Option<wgpu::Instance> {
    use wgpu::hal;
    let desc = wgpu::InstanceDescriptor::new_without_display_handle();
    let hal_desc = hal::InstanceDescriptor {
        name: "initret",
        flags: desc.flags,
        memory_budget_thresholds: desc.memory_budget_thresholds,
        backend_options: desc.backend_options.clone(),
        telemetry: None,
        display: None,
    };
    let drop_window_system: Box<hal::vulkan::CreateInstanceCallback<'_>> = Box::new(|args| {
        args.extensions
            .retain(|ext| !WINDOW_SYSTEM_EXTENSIONS.contains(ext));
    });
    // SAFETY: `hal_desc` is the descriptor wgpu-core itself passes for a
    // default instance (without display handle or telemetry). The callback
    // only removes extensions, which `init_with_callback` documents as not
    // allowed, because wgpu may assume every *available* extension it asked
    // for is enabled. For these three that assumption is not made: wgpu-hal
    // 30 drops any desired extension the driver lacks before this callback
    // runs, so running without them is the path of every driver without a
    // window system, and it consults them only in
    // `Instance::create_surface_from_{wayland,xcb,xlib}`, which check the
    // enabled list and return an error. initret creates no surface. The
    // GPU tests (CI runs them on lavapipe with `INITRET_REQUIRE_GPU=1`)
    // exercise this instance.
    let hal_instance =
        unsafe { hal::vulkan::Instance::init_with_callback(&hal_desc, Some(drop_window_system)) }
            .ok()?;
    // SAFETY: `hal_instance` was just created by wgpu-hal's own Vulkan
    // backend and is handed over whole; wgpu owns and destroys it.
    Some(unsafe { wgpu::Instance::from_hal::<hal::api::Vulkan>(hal_instance) })
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
