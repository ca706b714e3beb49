//! Helpers shared by the integration tests.
#![allow(dead_code)] // each test binary uses a subset

use std::sync::Arc;

use initret::random::{SplitMix64, random_queries};
use initret::{Backend, BitTable, Dispatcher, Error};

/// Whether `INITRET_REQUIRE_GPU=1` turns a missing adapter into a failure.
/// Builds without the `gpu` feature never require one.
pub fn gpu_required() -> bool {
    initret::gpu::ENABLED && std::env::var("INITRET_REQUIRE_GPU").as_deref() == Ok("1")
}

/// The integration tests' one GPU-or-skip rule: the built value, or `None`
/// after printing why there is none (`GpuUnavailable`); panics instead when
/// the GPU is required, and on any other error, which is a failure wherever
/// it happens.
pub fn gpu_or_skip<T>(built: Result<T, Error>) -> Option<T> {
    match built {
        Ok(value) => Some(value),
        Err(Error::GpuUnavailable(reason)) if !gpu_required() => {
            eprintln!("skipping the GPU backend: {reason}");
            None
        }
        Err(e) => panic!("building the GPU backend failed: {e}"),
    }
}

/// A `Backend::Gpu` dispatcher for `table`, or `None` (see [`gpu_or_skip`]).
pub fn gpu_dispatcher(table: &BitTable) -> Option<Dispatcher> {
    gpu_or_skip(Dispatcher::new(table.clone(), Backend::Gpu))
}

/// 16 threads × 200 calls of mixed sizes (empty to `large + 1000` queries)
/// on one shared dispatcher, every result checked against the reference.
pub fn sixteen_threads_check(dispatcher: Dispatcher, table: BitTable, large: usize) {
    let (dispatcher, table) = (Arc::new(dispatcher), Arc::new(table));
    let handles: Vec<_> = (0..16u64)
        .map(|t| {
            let (dispatcher, table) = (Arc::clone(&dispatcher), Arc::clone(&table));
            std::thread::spawn(move || {
                let mut rng = SplitMix64::new(t);
                for call in 0..200 {
                    let n = match call % 4 {
                        0 => rng.below(100) as usize,
                        1 => rng.below(5000) as usize,
                        2 => large + rng.below(1000) as usize,
                        _ => 1,
                    };
                    let queries = random_queries(n, table.rows(), rng.next_u64());
                    assert_eq!(
                        dispatcher.popcount(&queries).unwrap(),
                        table.reference_popcount(&queries).unwrap(),
                        "{} n={n}",
                        dispatcher.describe()
                    );
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}
