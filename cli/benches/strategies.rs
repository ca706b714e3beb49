//! Criterion benches: every strategy at 2^16 and 2^24 queries (initret's
//! CPU backend from `u32`, `u64` and `i64` queries), in one group per size
//! with the references (parallel memcpy of the same bytes, the
//! naive rayon loop) measured beside them. Throughput is in bytes moved
//! (8 per lookup), so criterion's GB/s column compares directly with memcpy;
//! the ratios are printed at the end from one more measurement of the same
//! strategies (`initret_cli::bench::measure_cpu_point`). criterion's HTML
//! reports (drawn with plotters, or gnuplot where installed) land in
//! `target/criterion/report/index.html`.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use initret::gpu::DeviceLookup;
use initret::{Backend, Dispatcher, PopcountBackend};
use initret_cli::baseline::{self, GlobalInitializer, PerCallCopy, TaskSize};
use initret_cli::bench::{
    Point, PointSpec, format_table, measure_cpu_point, parallel_memcpy, random_queries,
    random_table,
};

const ROWS: usize = 1 << 16;

fn strategies(c: &mut Criterion) {
    let table = random_table(ROWS, 1, 1).expect("table");
    let dispatcher = Dispatcher::new(table.clone(), Backend::Cpu).expect("cpu dispatcher");
    let global = GlobalInitializer::new(table.clone(), 0).expect("global initializer pool");
    let copy = PerCallCopy::new(0, TaskSize::PythonDefault).expect("per-call copy pool");
    let gpu = match initret::gpu::GpuBackend::new(&table) {
        Ok(gpu) => Some(gpu),
        Err(e) => {
            eprintln!("no GPU rows: {e}");
            None
        }
    };
    for log2 in [16u32, 24] {
        let n = 1usize << log2;
        let queries = random_queries(n, ROWS, u64::from(log2));
        let mut out = vec![0u32; n];
        let mut group = c.benchmark_group(format!("popcount_2^{log2}"));
        group
            .sample_size(10)
            .throughput(Throughput::Bytes(8 * n as u64));
        group.bench_function("memcpy", |b| {
            b.iter(|| parallel_memcpy(black_box(&queries), &mut out))
        });
        group.bench_function("naive-rayon", |b| {
            b.iter(|| baseline::naive_rayon_into(&table, black_box(&queries), &mut out))
        });
        group.bench_function("initret-cpu", |b| {
            b.iter(|| dispatcher.popcount_into(black_box(&queries), &mut out))
        });
        // The same lookups from 64-bit queries (numpy's default `int64`),
        // read in place by the CPU backend's 64-bit kernel.
        let wide: Vec<u64> = queries.iter().map(|&q| q.into()).collect();
        let signed: Vec<i64> = queries.iter().map(|&q| q.into()).collect();
        group.bench_function("initret-cpu-u64", |b| {
            b.iter(|| dispatcher.popcount_u64_into(black_box(&wide), &mut out))
        });
        group.bench_function("initret-cpu-i64", |b| {
            b.iter(|| dispatcher.popcount_i64_into(black_box(&signed), &mut out))
        });
        group.bench_function("global-initializer", |b| {
            b.iter(|| global.run(black_box(&queries)))
        });
        group.bench_function("rayon-map-init", |b| {
            b.iter(|| baseline::rayon_map_init(&table, black_box(&queries)))
        });
        group.bench_function("per-call-copy", |b| {
            b.iter(|| copy.run(&table, black_box(&queries)))
        });
        group.bench_function(BenchmarkId::new("serial", n), |b| {
            b.iter(|| baseline::serial(&table, black_box(&queries)))
        });
        if let Some(gpu) = &gpu {
            group.bench_function("gpu-end-to-end", |b| {
                b.iter(|| gpu.popcount_into(black_box(&queries), &mut out))
            });
            if let Ok(batch) = gpu.upload_batch(&queries)
                && let Ok(mut counts) = gpu.popcount_resident(&batch)
            {
                group.bench_function("gpu-resident", |b| {
                    b.iter(|| gpu.popcount_resident_into(&batch, &mut counts))
                });
            }
        }
        group.finish();
    }
    for log2 in [16u32, 24] {
        let spec = PointSpec {
            rows: ROWS,
            words_per_row: 1,
            queries: 1 << log2,
            threads: 0,
            baselines: true,
            placement: initret::Placement::default(),
        };
        match Point::new(&spec).and_then(|point| measure_cpu_point(&spec, &point)) {
            Ok(measured) => print!("{}", format_table(&measured.rows)),
            Err(e) => eprintln!("ratio summary failed: {e}"),
        }
    }
}

criterion_group!(benches, strategies);
criterion_main!(benches);
