//! GPU backend tests of the public API against the CPU reference (tests
//! that need the backend's private hooks are unit tests in `src/gpu`).
//!
//! Without an adapter every test prints why and passes, unless
//! `INITRET_REQUIRE_GPU=1`, which turns a missing adapter into a failure:
//!
//! ```text
//! INITRET_REQUIRE_GPU=1 cargo test --test gpu
//! ```

use std::sync::Arc;

mod common;

use initret::gpu::{DeviceLookup, GpuBackend, adapters};
use initret::harness::SplitMix64;
use initret::{BitTable, Error, PopcountBackend};

/// Builds the backend, or `None` (test skipped) when there is no GPU and
/// `INITRET_REQUIRE_GPU` is not `1`.
fn backend(table: &BitTable) -> Option<GpuBackend> {
    common::gpu_or_skip(GpuBackend::new(table))
}

/// Reproducible random tables and queries, on the crate's own generator.
struct Rng(SplitMix64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(SplitMix64::new(seed))
    }

    fn next(&mut self) -> u64 {
        self.0.next_u64()
    }

    fn below(&mut self, n: usize) -> u32 {
        self.0.below(n as u64) as u32
    }

    fn table(&mut self, rows: usize, words_per_row: usize) -> BitTable {
        BitTable::from_fn(rows, words_per_row, |_, _| self.next() as u32).unwrap()
    }

    fn queries(&mut self, len: usize, rows: usize) -> Vec<u32> {
        (0..len).map(|_| self.below(rows)).collect()
    }
}

fn assert_out_of_range(result: Result<Vec<u32>, Error>, position: usize, index: u32, rows: usize) {
    match result {
        Err(Error::IndexOutOfRange {
            position: p,
            index: i,
            rows: r,
        }) => assert_eq!((p, i, r), (position, i128::from(index), rows)),
        other => panic!("expected IndexOutOfRange at {position}, got {other:?}"),
    }
}

#[test]
fn matches_reference_on_random_tables() {
    let mut rng = Rng::new(1);
    for words_per_row in [1, 2, 3, 4, 8, 16] {
        let rows = 1 + rng.below(3000) as usize;
        let table = rng.table(rows, words_per_row);
        let Some(gpu) = backend(&table) else { return };
        let sizes = (0..=70).chain([255, 1000, 4097, 100_000]);
        for len in sizes {
            let queries = rng.queries(len, rows);
            assert_eq!(
                gpu.popcount(&queries).unwrap(),
                table.reference_popcount(&queries).unwrap(),
                "words_per_row {words_per_row}, {len} queries"
            );
        }
    }
}

#[test]
fn seed_workload_checksum() {
    let table = BitTable::seed(65535);
    let Some(gpu) = backend(&table) else { return };
    let queries: Vec<u32> = (0..65535).collect();
    let counts = gpu.popcount(&queries).unwrap();
    assert_eq!(counts.iter().map(|&c| u64::from(c)).sum::<u64>(), 524_272);
    assert_eq!(counts, table.reference_popcount(&queries).unwrap());
}

#[test]
fn empty_batch_and_output_length() {
    let table = BitTable::seed(8);
    let Some(gpu) = backend(&table) else { return };
    assert_eq!(gpu.popcount(&[]).unwrap(), Vec::<u32>::new());
    gpu.popcount_into(&[], &mut []).unwrap();
    let mut out = [0u32; 2];
    assert!(matches!(
        gpu.popcount_into(&[1, 2, 3], &mut out),
        Err(Error::OutputLength {
            queries: 3,
            output: 2
        })
    ));
    assert!(matches!(
        gpu.popcount_timed(&[1], &mut out),
        Err(Error::OutputLength {
            queries: 1,
            output: 2
        })
    ));
    let empty = gpu.upload_batch(&[]).unwrap();
    assert!(empty.is_empty());
    let counts = gpu.popcount_resident(&empty).unwrap();
    assert_eq!(gpu.read_back(&counts).unwrap(), Vec::<u32>::new());
}

#[test]
fn out_of_range_reports_lowest_position() {
    let rows = 1000;
    let mut rng = Rng::new(4);
    let table = rng.table(rows, 2);
    let Some(gpu) = backend(&table) else { return };
    let len = 5000;
    let good = rng.queries(len, rows);
    for (position, index) in [
        (0, rows as u32),
        (len / 2, rows as u32 + 17),
        (len - 1, u32::MAX),
        (1234, u32::MAX),
    ] {
        let mut queries = good.clone();
        queries[position] = index;
        assert_out_of_range(gpu.popcount(&queries), position, index, rows);
        assert_out_of_range(table.reference_popcount(&queries), position, index, rows);
    }
    // Several bad indices: the lowest position wins.
    let mut queries = good.clone();
    for (position, index) in [(4000, u32::MAX), (77, 5000), (3000, 1000), (78, 1001)] {
        queries[position] = index;
    }
    assert_out_of_range(gpu.popcount(&queries), 77, 5000, rows);
    let mut out = vec![0; len];
    assert!(matches!(
        gpu.popcount_timed(&queries, &mut out),
        Err(Error::IndexOutOfRange { position: 77, .. })
    ));
    // The failed calls leave the backend usable.
    assert_eq!(
        gpu.popcount(&good).unwrap(),
        table.reference_popcount(&good).unwrap()
    );
}

/// The device packs its results in the table's count type (4 `u8` or 2
/// `u16` counts to a word): a bad index in any lane of a word is reported
/// at its own position, and the lowest of several in one word wins.
#[test]
fn a_bad_index_in_any_lane_of_a_packed_result_word_names_its_position() {
    let mut rng = Rng::new(9);
    // Every other row all ones, so the largest count sets the lanes: 1-word
    // rows count at most 32 (u8 lanes), 9 words 288 (u16), 2048 words
    // 65536 (u32).
    for (words_per_row, rows, lane_bytes) in [(1, 300, 1), (9, 200, 2), (2048, 6, 4)] {
        let random = rng.table(rows, words_per_row);
        let table = BitTable::from_fn(rows, words_per_row, |row, word| {
            if row % 2 == 0 {
                u32::MAX
            } else {
                random.row(row).map_or(0, |r| r[word])
            }
        })
        .unwrap();
        let Some(gpu) = backend(&table) else { return };
        assert_eq!(gpu.result_bytes(), lane_bytes, "{words_per_row} words");
        for len in 1..=9 {
            let good = rng.queries(len, rows);
            assert_eq!(
                gpu.popcount(&good).unwrap(),
                table.reference_popcount(&good).unwrap(),
                "{words_per_row} words, {len} queries"
            );
            for position in 0..len {
                let mut queries = good.clone();
                queries[position] = rows as u32 + position as u32;
                if position + 1 < len {
                    queries[position + 1] = u32::MAX;
                }
                assert_out_of_range(
                    gpu.popcount(&queries),
                    position,
                    rows as u32 + position as u32,
                    rows,
                );
            }
        }
    }
}

#[test]
fn table_without_rows_rejects_every_index() {
    let table = BitTable::from_rows(2, vec![]).unwrap();
    let Some(gpu) = backend(&table) else { return };
    assert_out_of_range(gpu.popcount(&[0, 1]), 0, 0, 0);
}

#[test]
fn resident_round_trip() {
    let mut rng = Rng::new(7);
    let rows = 4096;
    let table = rng.table(rows, 3);
    let Some(gpu) = backend(&table) else { return };
    let queries = rng.queries(10_000, rows);
    let expected = table.reference_popcount(&queries).unwrap();
    let batch = gpu.upload_batch(&queries).unwrap();
    assert_eq!(batch.len(), queries.len());
    let mut counts = gpu.popcount_resident(&batch).unwrap();
    assert_eq!(counts.len(), queries.len());
    assert_eq!(gpu.read_back(&counts).unwrap(), expected);
    for _ in 0..3 {
        gpu.popcount_resident_into(&batch, &mut counts).unwrap();
        assert_eq!(gpu.read_back(&counts).unwrap(), expected);
    }
    // Counts follow a different batch when given one.
    let other = rng.queries(300, rows);
    let other_batch = gpu.upload_batch(&other).unwrap();
    gpu.popcount_resident_into(&other_batch, &mut counts)
        .unwrap();
    assert_eq!(
        gpu.read_back(&counts).unwrap(),
        table.reference_popcount(&other).unwrap()
    );
}

#[test]
fn resident_values_belong_to_their_backend() {
    let table = BitTable::seed(16);
    let Some(first) = backend(&table) else { return };
    let Some(second) = backend(&table) else {
        return;
    };
    let batch = first.upload_batch(&[1, 2, 3]).unwrap();
    assert!(matches!(
        second.popcount_resident(&batch),
        Err(Error::ForeignGpuValue { what: "GpuBatch" })
    ));
    let mut counts = first.popcount_resident(&batch).unwrap();
    assert!(matches!(
        second.read_back(&counts),
        Err(Error::ForeignGpuValue { what: "GpuCounts" })
    ));
    let other = second.upload_batch(&[1]).unwrap();
    assert!(matches!(
        first.popcount_resident_into(&other, &mut counts),
        Err(Error::ForeignGpuValue { what: "GpuBatch" })
    ));
    assert_eq!(first.read_back(&counts).unwrap(), vec![1, 1, 2]);
}

#[test]
fn timeout_is_reported_and_recoverable() {
    let table = BitTable::seed(65535);
    let Some(gpu) = backend(&table) else { return };
    let queries: Vec<u32> = (0..1 << 22).map(|i| i % 65535).collect();
    let expected = table.reference_popcount(&queries).unwrap();
    gpu.set_timeout(std::time::Duration::ZERO);
    assert!(matches!(
        gpu.popcount(&queries),
        Err(Error::GpuTimeout { .. })
    ));
    gpu.set_timeout(std::time::Duration::from_secs(60));
    assert_eq!(gpu.popcount(&queries).unwrap(), expected);
}

/// Rows wider than a shader loop may run (llvmpipe stops loops after 65535
/// iterations): each must get its exact count, or a typed refusal, never a
/// wrong count.
fn check_wide_rows(words_per_row: usize, all_ones: bool) {
    let mut rng = SplitMix64::new(words_per_row as u64);
    let table = BitTable::from_fn(3, words_per_row, |row, _| match (all_ones, row) {
        (true, _) | (_, 1) => u32::MAX,
        _ => rng.next_u64() as u32,
    })
    .unwrap();
    let Some(gpu) = backend(&table) else { return };
    let expected: Vec<u32> = (0..3).map(|r| table.row_popcount(r).unwrap()).collect();
    assert_eq!(expected[1], 32 * words_per_row as u32);
    assert_eq!(
        gpu.popcount(&[0, 1, 2]).unwrap(),
        expected,
        "rows of {words_per_row} words"
    );
    let counts = gpu
        .popcount_resident(&gpu.upload_batch(&[2, 1, 0]).unwrap())
        .unwrap();
    let mut reversed = expected.clone();
    reversed.reverse();
    assert_eq!(gpu.read_back(&counts).unwrap(), reversed);
}

#[test]
fn an_all_ones_row_of_65536_words_counts_2097152() {
    let table = BitTable::from_rows(65536, vec![u32::MAX; 65536]).unwrap();
    let Some(gpu) = backend(&table) else { return };
    assert_eq!(gpu.popcount(&[0]).unwrap(), vec![2_097_152]);
}

#[test]
fn rows_of_70000_131072_and_2_pow_20_words_match_the_reference() {
    for words_per_row in [70_000, 131_072, 1 << 20] {
        check_wide_rows(words_per_row, true);
    }
}

#[test]
fn random_rows_of_100000_words_match_the_reference() {
    check_wide_rows(100_000, false);
}

#[test]
fn concurrent_calls_from_eight_threads() {
    let mut rng = Rng::new(9);
    let rows = 2000;
    let table = Arc::new(rng.table(rows, 2));
    let Some(gpu) = backend(&table) else { return };
    let gpu = Arc::new(gpu);
    let workers: Vec<_> = (0..8u64)
        .map(|t| {
            let gpu = Arc::clone(&gpu);
            let table = Arc::clone(&table);
            std::thread::spawn(move || {
                let mut rng = Rng::new(100 + t);
                for round in 0..20 {
                    let len = 1 + rng.below(3000) as usize;
                    let mut queries = rng.queries(len, rows);
                    if round % 5 == 4 {
                        queries[len / 2] = rows as u32;
                        assert!(matches!(
                            gpu.popcount(&queries),
                            Err(Error::IndexOutOfRange { position, .. }) if position == len / 2
                        ));
                    } else {
                        assert_eq!(
                            gpu.popcount(&queries).unwrap(),
                            table.reference_popcount(&queries).unwrap()
                        );
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
}

#[test]
fn bench_references_and_timings() {
    let table = BitTable::seed(65535);
    let Some(gpu) = backend(&table) else { return };
    let copy = initret::harness::measure_device_copy(&gpu, 1 << 20).unwrap();
    let transfer = initret::harness::measure_transfer(&gpu, 1 << 20, 1 << 18).unwrap();
    assert!(initret::harness::measure_transfer(&gpu, 4, u64::MAX).is_err());
    assert!(copy.as_nanos() > 0 && transfer.as_nanos() > 0);
    let queries: Vec<u32> = (0..65535).collect();
    let mut out = vec![0; queries.len()];
    let timings = gpu.popcount_timed(&queries, &mut out).unwrap();
    assert_eq!(out, table.reference_popcount(&queries).unwrap());
    assert!(timings.total() >= timings.dispatch);
}

#[test]
fn adapters_are_listed() {
    let table = BitTable::seed(4);
    let Some(gpu) = backend(&table) else { return };
    let all = adapters();
    assert!(all.iter().any(|a| a.name == gpu.adapter().name));
    let line = gpu.adapter().to_string();
    assert!(line.contains(&gpu.adapter().name) && !line.contains('\n'));
}

/// Runs the child test below in a fresh process with `INITRET_ADAPTER` set,
/// since the variable is process-wide.
fn run_child(filter: &str) -> bool {
    let status = common::self_command()
        .args([
            "adapter_filter_child",
            "--exact",
            "--nocapture",
            "--include-ignored",
        ])
        .env("INITRET_ADAPTER", filter)
        .env("INITRET_ADAPTER_CHILD", "1")
        .status()
        .unwrap();
    status.success()
}

#[test]
fn adapter_filter_selects_or_explains() {
    let table = BitTable::seed(4);
    let Some(gpu) = backend(&table) else { return };
    // Matching is by case-insensitive substring of the name.
    let name = gpu.adapter().name.to_uppercase();
    assert!(run_child(&name[..name.len().min(4)]));
    assert!(run_child("definitely-not-an-adapter"));
}

#[test]
#[ignore = "run by adapter_filter_selects_or_explains in a child process"]
fn adapter_filter_child() {
    if std::env::var("INITRET_ADAPTER_CHILD").is_err() {
        return;
    }
    let wanted = std::env::var("INITRET_ADAPTER").unwrap();
    let result = GpuBackend::new(&BitTable::seed(4));
    if wanted == "definitely-not-an-adapter" {
        match result {
            Err(Error::GpuUnavailable(message)) => {
                assert!(message.contains(&wanted), "{message}");
                assert!(message.contains(&adapters()[0].name), "{message}");
            }
            other => panic!("expected GpuUnavailable, got {other:?}"),
        }
    } else {
        let gpu = result.unwrap();
        assert!(
            gpu.adapter()
                .name
                .to_lowercase()
                .contains(&wanted.to_lowercase())
        );
    }
}

#[test]
fn gpu_types_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<GpuBackend>();
    assert_send_sync::<initret::gpu::GpuBatch>();
    assert_send_sync::<initret::gpu::GpuCounts>();
}
