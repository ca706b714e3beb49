//! Fault handling: error scopes around every call, device loss, and waits
//! bounded by the backend's timeout. wgpu's defaults (a panic on an
//! uncaptured error, a wait that can block forever) must not reach the
//! caller; each becomes an [`Error`].
//!
//! The bottom of the backend: it knows the wgpu device and nothing else of
//! the crate's GPU code.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::error::GpuError;
use crate::Error;
use crate::error::panic_message;

/// How long one wait for the GPU may block before [`Error::GpuTimeout`].
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The device's fault watch: what its callbacks noted, and the time limit
/// of every wait.
///
/// The callbacks run inside whichever wgpu call notices the event, where
/// they can only leave a note; the next call reads it.
pub(super) struct Faults {
    device: wgpu::Device,
    lost: Arc<Mutex<Option<String>>>,
    uncaptured: Arc<Mutex<Option<wgpu::Error>>>,
    timeout: Duration,
}

impl Faults {
    /// Installs the device-lost and uncaptured-error callbacks on `device`.
    pub(super) fn install(device: &wgpu::Device) -> Faults {
        let lost = Arc::new(Mutex::new(None));
        let lost_note = Arc::clone(&lost);
        device.set_device_lost_callback(move |reason, message| {
            if let Ok(mut note) = lost_note.lock() {
                *note = Some(format!("{reason:?}: {message}"));
            }
        });
        // wgpu's default handler panics; keep the first error for the next call.
        let uncaptured = Arc::new(Mutex::new(None));
        let uncaptured_note = Arc::clone(&uncaptured);
        device.on_uncaptured_error(Arc::new(move |error: wgpu::Error| {
            if let Ok(mut note) = uncaptured_note.lock() {
                note.get_or_insert(error);
            }
        }));
        Faults {
            device: device.clone(),
            lost,
            uncaptured,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The longest one wait may block.
    pub(super) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sets [`Faults::timeout`]; the caller bounds it (see `MAX_TIMEOUT`).
    pub(super) fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Runs `work` inside validation / out-of-memory / internal error scopes
    /// and turns what they catch into [`Error::Gpu`] (or
    /// [`Error::DeviceLost`] when the device is gone). An error `work`
    /// returns itself wins over what the scopes caught, except a vague GPU
    /// failure, for which the scope holds the real cause.
    pub(super) fn scoped<T>(&self, work: impl FnOnce() -> Result<T, Error>) -> Result<T, Error> {
        self.check_device()?;
        let internal = self.device.push_error_scope(wgpu::ErrorFilter::Internal);
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let result = work();
        // Scopes pop in reverse order of pushing.
        let validation = pollster::block_on(validation.pop());
        let oom = pollster::block_on(oom.pop());
        let internal = pollster::block_on(internal.pop());
        let captured = validation
            .or(oom)
            .or(internal)
            .or_else(|| self.take_uncaptured())
            .map(|e| Error::Gpu(GpuError::from(e)));
        match (result, captured) {
            (Err(error @ Error::IndexOutOfRange { .. }), _) => Err(error),
            // A failed submit surfaces later as a failed map or wait; the
            // scope holds the validation error that caused it.
            (Err(Error::Gpu(_)), Some(cause)) => Err(self.lost_or(cause)),
            (Err(error), _) => Err(self.lost_or(error)),
            (Ok(_), Some(cause)) => Err(self.lost_or(cause)),
            (Ok(value), None) => Ok(value),
        }
    }

    /// `error`, unless the device turns out to be lost, which explains it.
    pub(super) fn lost_or(&self, error: Error) -> Error {
        if matches!(error, Error::DeviceLost(_)) {
            return error;
        }
        self.poll_quietly();
        match self.lost_reason() {
            Some(reason) => Error::DeviceLost(format!("{reason} (while: {error})")),
            None => error,
        }
    }

    /// The error for a wait on `what` that ran out of time.
    pub(super) fn timeout_error(&self, what: &'static str) -> Error {
        self.lost_or(Error::GpuTimeout {
            what,
            seconds: self.timeout.as_secs_f64(),
        })
    }

    /// When a wait that starts now must end.
    pub(super) fn deadline(&self) -> Instant {
        let now = Instant::now();
        // The timeout is at most a day, so the sum only overflows on a clock
        // near the end of its range; a timeout error beats a panic there.
        now.checked_add(self.timeout).unwrap_or(now)
    }

    /// Blocks until `submission` has finished or `deadline` passes.
    pub(super) fn wait_for(
        &self,
        submission: &wgpu::SubmissionIndex,
        what: &'static str,
        deadline: Instant,
    ) -> Result<(), Error> {
        let remaining = deadline.saturating_duration_since(Instant::now());
        // `Device::poll` panics on device errors other than timeouts.
        let polled = catch_unwind(AssertUnwindSafe(|| {
            self.device.poll(wgpu::PollType::Wait {
                submission_index: Some(submission.clone()),
                timeout: Some(remaining),
            })
        }));
        match polled {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(wgpu::PollError::Timeout)) => Err(self.timeout_error(what)),
            Ok(Err(error)) => Err(self.lost_or(GpuError::from(error).into())),
            Err(panic) => Err(self.lost_or(Error::DeviceLost(format!(
                "{what}: {}",
                panic_message(&*panic)
            )))),
        }
    }

    /// Processes finished work without blocking; this is also where wgpu
    /// reports a destroyed device through the device-lost callback.
    fn poll_quietly(&self) {
        // `Device::poll` panics on device errors other than timeouts.
        let _ = catch_unwind(AssertUnwindSafe(|| self.device.poll(wgpu::PollType::Poll)));
    }

    fn check_device(&self) -> Result<(), Error> {
        self.poll_quietly();
        match self.lost_reason() {
            Some(reason) => Err(Error::DeviceLost(reason)),
            None => Ok(()),
        }
    }

    fn lost_reason(&self) -> Option<String> {
        self.lost.lock().ok().and_then(|note| note.clone())
    }

    fn take_uncaptured(&self) -> Option<wgpu::Error> {
        self.uncaptured.lock().ok().and_then(|mut note| note.take())
    }
}
