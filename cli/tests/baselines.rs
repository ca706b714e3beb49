//! The baselines compute the same counts and errors as the reference.

use initret::{BitTable, Error, SEED_CHECKSUM, SEED_ROWS};
use initret_cli::baseline::{self, GlobalInitializer, PerCallCopy, TaskSize};
use initret_cli::bench::{random_queries, random_table};

fn all_baselines(
    table: &BitTable,
    queries: &[u32],
) -> Vec<(&'static str, Result<Vec<u32>, Error>)> {
    let mut naive = Vec::new();
    let naive_result = baseline::naive_rayon_into(table, queries, &mut naive).map(|_| naive);
    vec![
        ("serial", baseline::serial(table, queries)),
        (
            "per-call copy 1",
            PerCallCopy::new(2, TaskSize::One)
                .unwrap()
                .run(table, queries)
                .map(|o| o.counts)
                .map_err(library_error),
        ),
        (
            "per-call copy py",
            PerCallCopy::new(2, TaskSize::PythonDefault)
                .unwrap()
                .run(table, queries)
                .map(|o| o.counts)
                .map_err(library_error),
        ),
        (
            "global initializer",
            GlobalInitializer::new(table.clone(), 2)
                .unwrap()
                .run(queries)
                .map(|o| o.counts),
        ),
        (
            "rayon map_init",
            baseline::rayon_map_init(table, queries).map(|o| o.counts),
        ),
        ("naive rayon", naive_result),
    ]
}

#[test]
fn baselines_agree_with_the_reference() {
    for w in [1, 3, 16] {
        let table = random_table(300, w, w as u64).unwrap();
        for n in [0, 1, 17, 1000] {
            let queries = random_queries(n, 300, n as u64);
            let expected = table.reference_popcount(&queries).unwrap();
            for (name, got) in all_baselines(&table, &queries) {
                assert_eq!(got.unwrap(), expected, "{name} w={w} n={n}");
            }
        }
    }
}

#[test]
fn baselines_report_the_first_bad_position() {
    let table = random_table(300, 2, 1).unwrap();
    let mut queries = random_queries(1000, 300, 2);
    queries[640] = 300;
    queries[700] = u32::MAX;
    for (name, got) in all_baselines(&table, &queries) {
        assert!(
            matches!(
                got,
                Err(Error::IndexOutOfRange {
                    position: 640,
                    index: 300,
                    rows: 300
                })
            ),
            "{name}: {got:?}"
        );
    }
}

#[test]
fn seed_checksum_and_init_counts() {
    let cache = BitTable::seed(SEED_ROWS);
    let items: Vec<u32> = (0..SEED_ROWS).collect();
    let py = PerCallCopy::new(2, TaskSize::PythonDefault)
        .unwrap()
        .run(&cache, &items)
        .unwrap();
    assert_eq!(
        py.init_calls, 8,
        "ceil(65535 / 8) items per task gives 8 tasks, so 8 copies"
    );
    assert_eq!(
        py.counts.iter().map(|&c| u64::from(c)).sum::<u64>(),
        SEED_CHECKSUM
    );
    let global = GlobalInitializer::new(cache.clone(), 2).unwrap();
    for _ in 0..5 {
        global.run(&items).unwrap();
    }
    assert_eq!(global.init_calls(), 2);
    let per_item = PerCallCopy::new(2, TaskSize::One)
        .unwrap()
        .run(&cache, &items[..500])
        .unwrap();
    assert_eq!(per_item.init_calls, 500);
}

/// The library error inside a baseline's [`CliError`]; these tables are
/// small, so any other error (an allocation failure) fails the test.
fn library_error(error: initret_cli::error::CliError) -> Error {
    match error {
        initret_cli::error::CliError::Initret(error) => error,
        other => panic!("not a library error: {other}"),
    }
}
