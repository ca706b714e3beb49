//! Property tests: random tables and batches through every strategy agree
//! with the scalar reference, and a planted bad index is reported at exactly
//! its position everywhere.

// The library's shared test helpers (one GPU-or-skip rule for every test).
#[path = "../../tests/common/mod.rs"]
mod common;

use initret::arch::Kernel;
use initret::cpu::CpuBackend;
use initret::{BitTable, Error, PopcountBackend};
use initret_cli::baseline::{self, GlobalInitializer, PerCallCopy, TaskSize};
use initret_cli::bench::SplitMix64;
use proptest::prelude::*;

/// How a generated row is filled.
fn row_word(rng: &mut SplitMix64, style: u64) -> u32 {
    match style {
        0 => 0,
        1 => u32::MAX,
        _ => rng.next_u64() as u32,
    }
}

fn make_table(rows: usize, words_per_row: usize, seed: u64) -> BitTable {
    let mut rng = SplitMix64::new(seed);
    let mut style = 2;
    BitTable::from_fn(rows, words_per_row, |_, word| {
        if word == 0 {
            // Roughly one row in eight is all zeros, one in eight all ones.
            style = match rng.below(8) {
                0 => 0,
                1 => 1,
                _ => 2,
            };
        }
        row_word(&mut rng, style)
    })
    .expect("valid shape")
}

fn make_queries(n: usize, rows: usize, seed: u64, shape: u8) -> Vec<u32> {
    let mut rng = SplitMix64::new(seed);
    let mut queries: Vec<u32> = (0..n).map(|_| rng.below(rows as u64) as u32).collect();
    match shape {
        0 => {}
        1 => queries.sort_unstable(),
        2 => queries.iter_mut().for_each(|q| *q = (rows - 1) as u32),
        _ => {
            // Long runs of repeats.
            for i in 1..n {
                if rng.below(4) != 0 {
                    queries[i] = queries[i - 1];
                }
            }
        }
    }
    queries
}

/// Every strategy's answer for one batch, by name.
fn every_strategy(table: &BitTable, queries: &[u32]) -> Vec<(String, Result<Vec<u32>, Error>)> {
    let mut results = Vec::new();
    for kernel in Kernel::available() {
        let cpu = CpuBackend::builder()
            .threads(2)
            .kernel_request(kernel)
            .build(table)
            .expect("cpu backend");
        let mut out = vec![0; queries.len()];
        let result = cpu.popcount_into(queries, &mut out).map(|()| out);
        results.push((format!("cpu-{kernel}"), result));
    }
    results.extend(gpu_strategies(table, queries));
    results.push(("serial".into(), baseline::serial(table, queries)));
    // One copy per item only where that stays affordable.
    let task = if table.words().len().saturating_mul(queries.len()) <= 20_000_000 {
        TaskSize::One
    } else {
        TaskSize::PythonDefault
    };
    let copy = PerCallCopy::new(2, task).expect("pool");
    results.push((
        "per-call-copy".into(),
        copy.run(table, queries)
            .map(|o| o.counts)
            .map_err(library_error),
    ));
    let global = GlobalInitializer::new(table.clone(), 2).expect("pool");
    results.push((
        "global-initializer".into(),
        global.run(queries).map(|o| o.counts),
    ));
    results.push((
        "rayon-map-init".into(),
        baseline::rayon_map_init(table, queries).map(|o| o.counts),
    ));
    let mut naive = Vec::new();
    results.push((
        "naive-rayon".into(),
        baseline::naive_rayon_into(table, queries, &mut naive).map(|_| naive),
    ));
    results
}

/// The GPU backend's answer, where there is one (none in a build without
/// the `gpu` feature: the library's stub never builds).
fn gpu_strategies(table: &BitTable, queries: &[u32]) -> Vec<(String, Result<Vec<u32>, Error>)> {
    common::gpu_dispatcher(table)
        .map(|gpu| ("gpu".to_string(), gpu.popcount(queries)))
        .into_iter()
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn every_strategy_agrees_with_the_reference(
        rows in prop_oneof![1usize..=64, 1usize..=100_000],
        words_per_row in 1usize..=40,
        n in prop_oneof![0usize..=70, 0usize..=100_000],
        shape in 0u8..4,
        seed in any::<u64>(),
    ) {
        let table = make_table(rows, words_per_row, seed);
        let queries = make_queries(n, rows, seed ^ 0xABCD, shape);
        let expected = table.reference_popcount(&queries).expect("valid queries");
        for (name, got) in every_strategy(&table, &queries) {
            prop_assert_eq!(got.as_ref().ok(), Some(&expected), "{} rows={} w={} n={}", name, rows, words_per_row, n);
        }
    }

    #[test]
    fn a_planted_bad_index_is_reported_at_its_position(
        rows in 1usize..=5_000,
        words_per_row in 1usize..=40,
        n in 1usize..=100_000,
        at in any::<prop::sample::Index>(),
        over in prop_oneof![Just(0u64), 1u64..1000, Just(u64::MAX)],
        seed in any::<u64>(),
    ) {
        let table = make_table(rows, words_per_row, seed);
        let mut queries = make_queries(n, rows, seed ^ 0x1234, (seed % 4) as u8);
        let position = at.index(n);
        let index = (rows as u64).saturating_add(over).min(u64::from(u32::MAX)) as u32;
        queries[position] = index;
        for (name, got) in every_strategy(&table, &queries) {
            let ok = matches!(
                got,
                Err(Error::IndexOutOfRange { position: p, index: i, rows: r }) if p == position && i == i128::from(index) && r == rows
            );
            prop_assert!(ok, "{}: expected IndexOutOfRange at {} (index {}), got {:?}", name, position, index, got.map(|v| v.len()));
        }
    }
}

/// Rows wider than a shader loop may run (llvmpipe ends loops after 65535
/// iterations): the random strategy above stops at 40 words a row,
/// so these widths get their own case, on every backend and baseline.
#[test]
fn rows_wider_than_a_shader_loop_agree_with_the_reference() {
    for (rows, words_per_row, seed) in
        [(3usize, 65_536usize, 1u64), (4, 70_000, 2), (2, 100_000, 3)]
    {
        let table = make_table(rows, words_per_row, seed);
        for shape in 0..4 {
            let queries = make_queries(50, rows, seed ^ u64::from(shape), shape);
            let expected = table.reference_popcount(&queries).expect("valid queries");
            for (name, got) in every_strategy(&table, &queries) {
                assert_eq!(
                    got.as_ref().ok(),
                    Some(&expected),
                    "{name} rows={rows} w={words_per_row}"
                );
            }
        }
    }
}

/// The library error inside a baseline's [`CliError`]; these tables are
/// small, so any other error (an allocation failure) fails the test.
fn library_error(error: initret_cli::error::CliError) -> Error {
    match error {
        initret_cli::error::CliError::Initret(error) => error,
        other => panic!("not a library error: {other}"),
    }
}
