//! GPU backend tests against the CPU reference.
//!
//! Without an adapter every test prints why and passes, unless
//! `INITRET_REQUIRE_GPU=1`, which turns a missing adapter into a failure:
//!
//! ```text
//! INITRET_REQUIRE_GPU=1 cargo test --test gpu
//! ```

#![cfg(feature = "gpu")]

use std::sync::Arc;

mod common;

use initret::gpu::{GpuBackend, adapters};
use initret::random::SplitMix64;
use initret::{BitTable, Error};

/// Builds the backend, or `None` (test skipped) when there is no GPU and
/// `INITRET_REQUIRE_GPU` is not `1`.
fn backend(table: &BitTable) -> Option<GpuBackend> {
    match GpuBackend::new(table) {
        Ok(gpu) => Some(gpu),
        Err(Error::GpuUnavailable(reason)) if !common::gpu_required() => {
            eprintln!("skipping GPU test: {reason}");
            None
        }
        Err(error) => panic!("GPU backend could not be built: {error}"),
    }
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
        }) => assert_eq!((p, i, r), (position, index, rows)),
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
fn many_small_chunks_stream_through_the_ring() {
    let mut rng = Rng::new(2);
    let table = rng.table(777, 3);
    let Some(gpu) = backend(&table) else { return };
    gpu.set_chunk_queries_for_test(100);
    for len in [1, 99, 100, 101, 250, 300, 301, 5_000] {
        let queries = rng.queries(len, 777);
        let expected = table.reference_popcount(&queries).unwrap();
        assert_eq!(gpu.popcount(&queries).unwrap(), expected, "{len} queries");
        let mut out = vec![0; len];
        gpu.popcount_timed(&queries, &mut out).unwrap();
        assert_eq!(out, expected, "{len} queries, timed");
    }
}

#[test]
fn batch_larger_than_one_dispatch_dimension() {
    // Past 65535 workgroups of 64 invocations: needs the 2D grid.
    let len = 65535 * 64 + 1000;
    let table = BitTable::seed(65535);
    let Some(gpu) = backend(&table) else { return };
    let mut rng = Rng::new(3);
    let queries = rng.queries(len, 65535);
    let expected = table.reference_popcount(&queries).unwrap();
    // Default chunks (streamed), then the whole batch as one dispatch.
    assert_eq!(gpu.popcount(&queries).unwrap(), expected);
    gpu.set_chunk_queries_for_test(len);
    assert_eq!(gpu.popcount(&queries).unwrap(), expected);
    let counts = gpu
        .popcount_resident(&gpu.upload_batch(&queries).unwrap())
        .unwrap();
    assert_eq!(gpu.read_back(&counts).unwrap(), expected);
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

#[test]
fn out_of_range_in_a_later_chunk() {
    let rows = 300;
    let mut rng = Rng::new(5);
    let table = rng.table(rows, 1);
    let Some(gpu) = backend(&table) else { return };
    gpu.set_chunk_queries_for_test(64);
    let good = rng.queries(1000, rows);
    for position in [63, 64, 500, 999] {
        let mut queries = good.clone();
        queries[position] = 300;
        // A second bad index further on must not win.
        if position + 70 < queries.len() {
            queries[position + 70] = u32::MAX;
        }
        assert_out_of_range(gpu.popcount(&queries), position, 300, rows);
        assert_eq!(
            gpu.popcount(&good).unwrap(),
            table.reference_popcount(&good).unwrap()
        );
    }
}

#[test]
fn table_without_rows_rejects_every_index() {
    let table = BitTable::from_rows(2, vec![]).unwrap();
    let Some(gpu) = backend(&table) else { return };
    assert_out_of_range(gpu.popcount(&[0, 1]), 0, 0, 0);
}

#[test]
fn repeated_calls_reuse_buffers() {
    let mut rng = Rng::new(6);
    let table = rng.table(500, 4);
    let Some(gpu) = backend(&table) else { return };
    let queries = rng.queries(20_000, 500);
    let expected = table.reference_popcount(&queries).unwrap();
    assert_eq!(gpu.popcount(&queries).unwrap(), expected);
    let after_first = gpu.buffer_allocations();
    for _ in 0..5 {
        assert_eq!(gpu.popcount(&queries).unwrap(), expected);
        // Same or smaller batches fit the buffers already there.
        assert_eq!(gpu.popcount(&queries[..123]).unwrap(), expected[..123]);
    }
    let mut out = vec![0; queries.len()];
    gpu.popcount_timed(&queries, &mut out).unwrap();
    assert_eq!(gpu.buffer_allocations(), after_first);
    // A larger batch grows them once.
    let larger = rng.queries(50_000, 500);
    gpu.popcount(&larger).unwrap();
    let after_growth = gpu.buffer_allocations();
    assert!(after_growth > after_first);
    gpu.popcount(&larger).unwrap();
    gpu.popcount(&queries).unwrap();
    assert_eq!(gpu.buffer_allocations(), after_growth);
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
    // Repeated lookups into the same counts allocate nothing.
    let allocated = gpu.buffer_allocations();
    for _ in 0..3 {
        gpu.popcount_resident_into(&batch, &mut counts).unwrap();
        assert_eq!(gpu.read_back(&counts).unwrap(), expected);
    }
    assert_eq!(gpu.buffer_allocations(), allocated);
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
fn resident_segments_and_bad_indices() {
    let mut rng = Rng::new(8);
    let rows = 100;
    let table = rng.table(rows, 1);
    let Some(gpu) = backend(&table) else { return };
    gpu.set_chunk_queries_for_test(256);
    let mut queries = rng.queries(1000, rows);
    let batch = gpu.upload_batch(&queries).unwrap();
    let counts = gpu.popcount_resident(&batch).unwrap();
    assert_eq!(
        gpu.read_back(&counts).unwrap(),
        table.reference_popcount(&queries).unwrap()
    );

    queries[700] = 100;
    queries[300] = 12345;
    queries[900] = u32::MAX;
    let bad = gpu.upload_batch(&queries).unwrap();
    // The resident call succeeds; read_back reports the lowest bad position.
    let counts = gpu.popcount_resident(&bad).unwrap();
    assert_out_of_range(gpu.read_back(&counts), 300, 12345, rows);
    assert_out_of_range(gpu.read_back(&counts), 300, 12345, rows);
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
        Err(Error::InvalidArgument(_))
    ));
    let counts = first.popcount_resident(&batch).unwrap();
    assert!(matches!(
        second.read_back(&counts),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(first.read_back(&counts).unwrap(), vec![1, 1, 2]);
}

#[test]
fn device_loss_is_reported_not_hung() {
    let table = BitTable::seed(1024);
    let Some(gpu) = backend(&table) else { return };
    let queries: Vec<u32> = (0..1024).collect();
    gpu.popcount(&queries).unwrap();
    let batch = gpu.upload_batch(&queries).unwrap();
    let counts = gpu.popcount_resident(&batch).unwrap();
    gpu.destroy_device_for_test();
    for _ in 0..2 {
        assert!(matches!(gpu.popcount(&queries), Err(Error::DeviceLost(_))));
    }
    let mut out = vec![0; queries.len()];
    assert!(matches!(
        gpu.popcount_timed(&queries, &mut out),
        Err(Error::DeviceLost(_))
    ));
    assert!(matches!(
        gpu.upload_batch(&queries),
        Err(Error::DeviceLost(_))
    ));
    assert!(matches!(
        gpu.popcount_resident(&batch),
        Err(Error::DeviceLost(_))
    ));
    assert!(matches!(gpu.read_back(&counts), Err(Error::DeviceLost(_))));
    assert!(matches!(
        gpu.measure_device_copy(1024),
        Err(Error::DeviceLost(_))
    ));
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

#[test]
fn table_past_the_binding_limit_is_refused() {
    let Some(gpu) = backend(&BitTable::seed(4)) else {
        return;
    };
    let limit = gpu
        .adapter()
        .max_storage_buffer_binding_size
        .min(gpu.adapter().max_buffer_size);
    if limit > 1 << 30 {
        eprintln!("skipping: a table past {limit} bytes is too large to build here");
        return;
    }
    let words = (limit / 4 + 1) as usize;
    let table = BitTable::from_rows(1, vec![0; words]).unwrap();
    match GpuBackend::new(&table) {
        Err(Error::GpuUnavailable(message)) => {
            assert!(
                message.contains("max_storage_buffer_binding_size"),
                "{message}"
            );
            assert!(message.contains(&gpu.adapter().name), "{message}");
        }
        other => panic!("expected GpuUnavailable, got {other:?}"),
    }
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
    let copy = gpu.measure_device_copy(1 << 20).unwrap();
    let transfer = gpu.measure_transfer(1 << 20).unwrap();
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
    let status = std::process::Command::new(std::env::current_exe().unwrap())
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
