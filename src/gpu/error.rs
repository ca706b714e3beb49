//! [`GpuError`]: what wgpu reported, kept as a typed source so that callers
//! can inspect it (`Error::source()`) instead of parsing a message.

/// A failure reported by wgpu, surfaced as [`Error::Gpu`](crate::Error::Gpu).
///
/// Each variant wraps wgpu's own error, which is its
/// [`source`](std::error::Error::source). Device loss and timeouts are not
/// here: they are [`Error::DeviceLost`](crate::Error::DeviceLost) and
/// [`Error::GpuTimeout`](crate::Error::GpuTimeout), because callers react to
/// them differently (give up on the device, or retry).
///
/// Without the `gpu` feature there is no wgpu, and this type has no values.
///
/// The chain from [`Error`](crate::Error) down to wgpu:
///
#[cfg_attr(feature = "gpu", doc = "```")]
#[cfg_attr(not(feature = "gpu"), doc = "```ignore")]
/// use std::error::Error as _;
///
/// let error = initret::Error::from(initret::gpu::GpuError::from(wgpu::BufferAsyncError));
/// let gpu = error.source().unwrap();
/// assert!(gpu.is::<initret::gpu::GpuError>());
/// assert!(gpu.source().unwrap().is::<wgpu::BufferAsyncError>());
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GpuError {
    /// The adapter refused a device with its own limits.
    #[cfg(feature = "gpu")]
    #[error("the adapter refused a device: {0}")]
    RequestDevice(#[from] wgpu::RequestDeviceError),

    /// An error scope caught a validation, out-of-memory or internal error
    /// (or wgpu reported one outside any scope).
    #[cfg(feature = "gpu")]
    #[error("{0}")]
    Wgpu(#[from] wgpu::Error),

    /// Mapping a staging buffer for reading failed.
    #[cfg(feature = "gpu")]
    #[error("mapping a staging buffer failed: {0}")]
    Map(#[from] wgpu::BufferAsyncError),

    /// The mapped range could not be viewed.
    #[cfg(feature = "gpu")]
    #[error("reading a mapped buffer failed: {0}")]
    MapRange(#[from] wgpu::MapRangeError),

    /// Waiting for submitted work failed for a reason other than the time
    /// limit (which is [`Error::GpuTimeout`](crate::Error::GpuTimeout)).
    #[cfg(feature = "gpu")]
    #[error("waiting for the GPU failed: {0}")]
    Poll(#[from] wgpu::PollError),
}
