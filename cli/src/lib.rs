//! The harness around the `initret` library: the baselines users compare
//! against, the benchmark sweep behind `initret bench`, the main job, the
//! plot, and (in `src/main.rs`) the command-line tool. Kept apart from the
//! library, as memchr keeps its `benchmarks/`, so that the library imports
//! nothing of it.
//!
//! * [`baseline`]: the recipes initret is compared with.
//! * [`bench`](mod@bench): the sweep plan, its size checks and the measurements.
//! * [`seed`]: the main job; [`seed_batch`]: the seed batch one call at a time, workers parked.
//! * [`gpu`]: the GPU rows (a stub without the `gpu` feature).
//! * [`machine`]: the line naming the machine beside every table.
//! * [`plot`]: `bench --plot FILE.svg`.
//! * [`error`]: the CLI's error, wrapping the library's.

#![warn(missing_docs)]

pub mod baseline;
pub mod bench;
pub mod error;
pub mod gpu;
pub mod machine;
pub mod plot;
pub mod seed;
pub mod seed_batch;
