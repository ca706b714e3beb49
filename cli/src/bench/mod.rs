//! The benchmark harness behind `initret bench` and the criterion benches.
//!
//! Every row is reported against references measured in the same run, since
//! the machine is shared and absolute times drift:
//!
//! * `ratio_to_memcpy`: a parallel memcpy of the bytes the row really moved
//!   (`bytes_per_lookup × queries`, read plus written: a `u32` lookup with a
//!   `u32` result moves 8 bytes, the same as copying `queries` words; one
//!   with a `u8` result moves 5, the same as copying `2.5 × queries` bytes)
//!   divided by the row's time. 1.0 means "as fast as moving the bytes", and
//!   a narrow result is not flattered by a wider reference.
//! * `ratio_to_naive_rayon`: the naive rayon loop's time divided by the
//!   row's time. 2.0 means twice as fast as `par_iter().map(row_popcount)`.
//!
//! Times are the best of several repetitions (at least 3, and at least
//! [`MIN_SECONDS_PER_ROW`] in total), which is the least disturbed by other
//! load on a shared machine.
//!
//! The harness in parts, each depending only on those before it:
//! `timing.rs` (best-of rule, memcpy reference, calibration report),
//! `row.rs` (rows, references, the text table), `sweep.rs` (the plan, the
//! points, the CPU rows).

mod row;
mod sweep;
mod timing;

pub use initret::harness::{SplitMix64, random_queries, random_table};
pub use row::{BenchRow, DEFAULT_BYTES_PER_LOOKUP, NO_KERNEL, References, Shape, format_table};
pub use sweep::{
    CpuRows, DEFAULT_ROWS, DEFAULT_WORDS, Point, PointSpec, ROWS_SWEEP_QUERIES, ROWS_SWEEP_WORDS,
    SEED_SIZED_ROWS, SweepOptions, default_queries, initret_cpu_strategy, measure_cpu_point, plan,
    try_with_capacity,
};
pub use timing::{
    DRAM_SIZED_ROWS, MIN_SECONDS_PER_ROW, best_run, best_time, calibration_report, kernel_name,
    parallel_memcpy, resident_bytes, resolved_threads,
};
