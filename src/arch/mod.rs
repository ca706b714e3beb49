//! Popcount lookup kernels, one per instruction set, chosen at run time.
//!
//! The layout follows memchr's `src/arch`: `all` is the portable scalar
//! routine (also the reference the SIMD paths fall back to for tails and bad
//! batches), `generic` writes the vector algorithm once over a small trait,
//! and `x86_64/avx2`, `x86_64/avx512` and `aarch64/neon` are thin per-ISA
//! wrappers that plug intrinsics into it. The types each have a file, and
//! each file imports only those below it: `isa` ([`Isa`]), `counts`
//! ([`CountTable`]) over `buffer`, `kernel` ([`Kernel`], [`KernelRequest`]),
//! `lookup` ([`LookupKernel`], the routines of a kernel) and `select`
//! ([`Calibration`]). This file only declares them and re-exports.
//!
//! Every kernel computes `out[i] = counts[queries[i]]`, where `counts` is the
//! [`CountTable`] an initializer derives once from a
//! [`BitTable`](crate::BitTable). A query `>= rows` stops the kernel, which
//! reports the first such position.
//!
//! The queries are `u32`, or 64-bit (`u64`, or `i64` read as the same
//! words: a negative index is then one of at least 2^63, past any table).
//! Every kernel has both instances of the one algorithm, and reads 64-bit
//! queries in place: a vector of them is narrowed to `u32` lanes in
//! registers, checked with the same compare plus one test that every high
//! half is zero, and fetched as `u32` lanes are. No narrowed copy of a batch
//! is ever made. Which kernel is fastest is measured separately for the two
//! query widths ([`Calibration::measure`], [`Calibration::measure_wide`]),
//! as a vector of 64-bit queries is twice the bytes.
//!
//! ```
//! use initret::arch::{CountTable, Kernel, LookupKernel};
//!
//! let counts = CountTable::from_counts(&[0, 1, 1, 2]);
//! for kernel in Kernel::available() {
//!     let mut out = [0; 3];
//!     LookupKernel::new(kernel)?.lookup(&counts, &[3, 0, 2], &mut out)?;
//!     assert_eq!(out, [2, 0, 1]);
//! }
//! # Ok::<(), initret::Error>(())
//! ```

#[cfg(all(target_arch = "aarch64", target_endian = "little"))]
mod aarch64;
mod all;
pub(crate) mod buffer;
mod counts;
#[cfg(any(
    target_arch = "x86_64",
    all(target_arch = "aarch64", target_endian = "little")
))]
mod generic;
mod isa;
mod kernel;
mod lookup;
mod select;
#[cfg(target_arch = "x86_64")]
mod x86_64;

pub use buffer::{CountMemory, HUGE_PAGES_ENV, transparent_huge_pages_mode};
#[cfg(feature = "gpu")]
pub(crate) use counts::narrow_count;
pub use counts::{CountTable, CountWord};
pub use isa::{Isa, cpu_features};
#[cfg(feature = "harness")]
pub(crate) use kernel::PREFETCH_DISTANCES;
pub use kernel::{FORCE_ISA_ENV, Fetch, Kernel, KernelRequest};
pub use lookup::LookupKernel;
pub(crate) use lookup::STREAM_MIN_QUERIES;
#[cfg(feature = "harness")]
pub(crate) use select::{CALIBRATION_QUERIES, CALIBRATION_ROUNDS};
pub use select::{Calibration, KernelRate};
