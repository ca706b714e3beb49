//! # initret
//!
//! Map a function over many inputs that all read one large, read-only state,
//! the *initializer's return value*, on CPU SIMD lanes and on the GPU.
//!
//! This crate grew out of a Python question (see the README): how should
//! `multiprocessing.Pool` workers get at a big lookup cache? Shipping the cache
//! with every task (`functools.partial`) copies it per task; a global set by a
//! pool `initializer` works but hides the data flow; the proposed fix hands the
//! initializer's return value (`initret`) to every call. [`Pool`] is that
//! proposal for any Rust closure, and [`Dispatcher`] applies it to the post's
//! own workload (popcount lookups into a [`BitTable`]) on a CPU backend with
//! run-time-selected SIMD kernels and, with the `gpu` feature, a wgpu backend.
//!
//! ```
//! use initret::{Backend, BitTable, Dispatcher};
//!
//! // The seed's cache: row i holds the binary representation of i.
//! let cache = BitTable::seed(65535);
//! // Placed once (the initializer); reused by every call.
//! let dispatcher = Dispatcher::new(cache, Backend::Cpu)?;
//! let queries: Vec<u32> = (0..65535).collect();
//! let counts = dispatcher.popcount(&queries)?;
//! assert_eq!(counts.iter().map(|&c| c as u64).sum::<u64>(), 524272);
//! # Ok::<(), initret::Error>(())
//! ```

#![warn(missing_docs)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod arch;
mod backend;
pub mod cpu;
mod dispatcher;
mod error;
pub mod frozen;
pub mod gpu;
#[cfg(feature = "harness")]
#[doc(hidden)]
pub mod harness;
mod placement;
mod pool;
mod query;
mod random;
mod table;
mod timing;
pub mod topology;

pub use backend::PopcountBackend;
pub use dispatcher::{Backend, Dispatcher, DispatcherBuilder};
pub use error::Error;
pub use placement::Placement;
pub use pool::{MAX_THREADS, Pool, PoolBuilder};
pub use query::QueryIndex;
pub use table::{BitTable, MAX_WORDS_PER_ROW};
pub use topology::{CacheDomain, Topology};

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// The seed problem's workload size: the cache holds the first `2^16 - 1`
/// integers and every one of them is looked up once.
pub const SEED_ROWS: u32 = (1 << 16) - 1;

/// The sum of the popcounts of `0..SEED_ROWS`: what the seed workload must add up to.
pub const SEED_CHECKSUM: u64 = 524_272;
