//! Helpers shared by the integration tests.
#![allow(dead_code)] // each test binary uses a subset

use std::sync::Arc;

use initret::arch::{CountTable, CountWord, Fetch, Isa, Kernel, LookupKernel};
use initret::harness::PREFETCH_DISTANCES;
pub use initret::harness::gpu_or_skip;
use initret::harness::{SplitMix64, random_queries};
use initret::{Backend, BitTable, Dispatcher, Error, QueryIndex};

/// A command that runs this test binary again (for tests that need a fresh
/// process). Under a cross-target runner the binary cannot be exec'd
/// directly (qemu-user without binfmt), so it runs under the same runner
/// cargo used: `CARGO_TARGET_<TRIPLE>_RUNNER` for this architecture and OS,
/// which cargo's environment passes on to the test process. Like cargo, the
/// value is split on whitespace into the program and its arguments.
pub fn self_command() -> std::process::Command {
    let exe = std::env::current_exe().unwrap();
    let arch = format!("{}_", std::env::consts::ARCH.to_uppercase());
    let os = std::env::consts::OS.to_uppercase();
    let runner = std::env::vars().find_map(|(key, value)| {
        let triple = key.strip_prefix("CARGO_TARGET_")?.strip_suffix("_RUNNER")?;
        (triple.starts_with(&arch) && triple.split('_').any(|word| word == os)).then_some(value)
    });
    let words: Vec<String> = runner
        .map(|value| value.split_whitespace().map(String::from).collect())
        .unwrap_or_default();
    match words.split_first() {
        Some((program, args)) => {
            let mut command = std::process::Command::new(program);
            command.args(args).arg(exe);
            command
        }
        None => std::process::Command::new(exe),
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

/// Every kernel this CPU can run, with the calibration's prefetch distances
/// and a few odd ones (a distance of 1, one shorter than a vector, one
/// longer than most batches here); the others are reported as skipped.
pub fn every_kernel() -> Vec<LookupKernel> {
    let mut kernels = Vec::new();
    for isa in Isa::ALL {
        for fetch in [Fetch::Loads, Fetch::Gather] {
            let odd = [0, 1, 5, 100];
            for prefetch in odd.into_iter().chain(PREFETCH_DISTANCES) {
                let kernel = Kernel::new(isa, fetch, prefetch);
                if kernel.is_available() {
                    kernels.push(LookupKernel::new(kernel).unwrap());
                } else if isa.is_available() && prefetch == 0 && isa != Isa::Scalar {
                    eprintln!("skipping the {kernel} kernel: not on this target");
                }
            }
        }
        if !isa.is_available() {
            eprintln!("skipping the {isa} kernels: this CPU or build cannot run them");
        }
    }
    for kernel in Kernel::available() {
        assert!(
            kernels.iter().any(|k| k.kernel() == kernel),
            "{kernel} untested"
        );
    }
    kernels
}

/// `kernel` on `queries` fails at `position` with `value` for results of
/// type `R`, as the reference does.
pub fn check_bad<Q: QueryIndex, R: CountWord>(
    kernel: &LookupKernel,
    table: &BitTable,
    counts: &CountTable,
    queries: &[Q],
    position: usize,
    value: Q,
) {
    let mut out = vec![R::ZERO; queries.len()];
    let expected = (position, value.to_i128(), table.rows());
    let what = format!(
        "{kernel:?} -> {} n={}",
        std::any::type_name::<R>(),
        queries.len()
    );
    match kernel.lookup_indices(counts, queries, &mut out) {
        Err(Error::IndexOutOfRange {
            position,
            index,
            rows,
        }) => assert_eq!((position, index, rows), expected, "{what}"),
        other => panic!("{what}: expected IndexOutOfRange at {position}, got {other:?}"),
    }
    match table.reference_popcount_indices(queries) {
        Err(Error::IndexOutOfRange {
            position,
            index,
            rows,
        }) => assert_eq!((position, index, rows), expected, "the reference"),
        other => panic!("the reference: {other:?}"),
    }
}
