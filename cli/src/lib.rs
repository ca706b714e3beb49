//! The harness around the `initret` library: the baselines users compare
//! against, the benchmark sweep behind `initret bench`, and (in
//! `src/main.rs`) the command-line tool. Kept apart from the library, as
//! memchr keeps its `benchmarks/`, so that the library imports nothing of it.

#![warn(missing_docs)]

pub mod baseline;
pub mod bench;
