//! Plain data about time, present with or without wgpu: what
//! [`DeviceLookup::popcount_timed`](super::DeviceLookup::popcount_timed)
//! reports, and the longest wait a backend accepts.

use std::time::Duration;

/// The longest wait [`GpuBackend::set_timeout`](super::GpuBackend::set_timeout)
/// accepts (one day): a bound that still fits any deadline arithmetic.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);

/// Wall-clock time of each phase of one
/// [`DeviceLookup::popcount_timed`](super::DeviceLookup::popcount_timed) call.
///
/// Each phase ends with a wait for the GPU, so the phases do not overlap
/// (unlike [`PopcountBackend::popcount`](crate::PopcountBackend::popcount),
/// which overlaps them on large batches).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GpuTimings {
    /// Writing the queries (and the small per-dispatch parameters) into the
    /// device's query buffer, until the device has them.
    pub upload: Duration,
    /// Running the lookup shader, from submit until the GPU has finished.
    pub dispatch: Duration,
    /// Copying the counts to a mappable buffer, mapping it and copying them
    /// into the caller's slice.
    pub readback: Duration,
}

impl GpuTimings {
    /// Sum of the three phases.
    pub fn total(&self) -> Duration {
        self.upload + self.dispatch + self.readback
    }
}
