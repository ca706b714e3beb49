//! Dispatcher tests that need its private hook (`auto_accepts_software_gpu`,
//! so that `Auto` uses lavapipe) or the GPU backend's (`destroy_device`).

use crate::gpu::skip::gpu_or_skip;
use crate::random::{random_queries, random_table};
use crate::{Backend, Dispatcher, Error};

#[test]
fn lost_device_is_an_error_on_gpu_and_a_cpu_fallback_on_auto() {
    let table = random_table(1000, 1, 9).unwrap();
    let Some(d) = gpu_or_skip(Dispatcher::new(table.clone(), Backend::Gpu)) else {
        return;
    };
    let queries = random_queries(5000, 1000, 1);
    d.popcount(&queries).unwrap();
    d.gpu().unwrap().destroy_device();
    for _ in 0..3 {
        assert!(matches!(d.popcount(&queries), Err(Error::DeviceLost(_))));
    }

    let auto = Dispatcher::builder(table.clone())
        .backend(Backend::Auto)
        .auto_accepts_software_gpu(true)
        .auto_crossover(1000)
        .build()
        .unwrap();
    assert_eq!(auto.route(999), Backend::Cpu);
    assert_eq!(auto.route(1000), Backend::Gpu);
    assert_eq!(
        auto.popcount(&queries).unwrap(),
        table.reference_popcount(&queries).unwrap()
    );
    auto.gpu().unwrap().destroy_device();
    for _ in 0..3 {
        assert_eq!(
            auto.popcount(&queries).unwrap(),
            table.reference_popcount(&queries).unwrap()
        );
    }
    assert_eq!(auto.route(1 << 20), Backend::Cpu);
    assert!(
        auto.auto_decision().unwrap().contains("lost"),
        "{:?}",
        auto.auto_decision()
    );
}

#[test]
fn auto_measured_crossover_routes_consistently() {
    let table = random_table(1 << 16, 1, 4).unwrap();
    if gpu_or_skip(Dispatcher::new(table.clone(), Backend::Gpu)).is_none() {
        return;
    }
    let auto = Dispatcher::builder(table.clone())
        .backend(Backend::Auto)
        .auto_accepts_software_gpu(true)
        .build()
        .unwrap();
    let note = auto.auto_decision().unwrap();
    eprintln!("auto on this machine: {} ({note})", auto.describe());
    // Whatever was measured, routing is monotone in batch size and results are right.
    let sizes = [1usize, 1 << 12, 1 << 16, 1 << 20, 1 << 22];
    let routes: Vec<Backend> = sizes.iter().map(|&n| auto.route(n)).collect();
    if let Some(first_gpu) = routes.iter().position(|&r| r == Backend::Gpu) {
        assert!(
            routes[first_gpu..].iter().all(|&r| r == Backend::Gpu),
            "{routes:?}"
        );
        assert!(note.contains("go to the GPU"), "{note}");
    } else {
        assert!(note.contains("slower than the CPU"), "{note}");
    }
    for n in [100, 1 << 16, (1 << 20) + 3] {
        let queries = random_queries(n, table.rows(), n as u64);
        assert_eq!(
            auto.popcount(&queries).unwrap(),
            table.reference_popcount(&queries).unwrap()
        );
    }
}

#[test]
fn auto_routes_as_its_note_says() {
    let table = random_table(100, 1, 1).unwrap();
    let auto = Dispatcher::new(table.clone(), Backend::Auto).unwrap();
    let note = auto.auto_decision().unwrap();
    match auto.gpu() {
        // No GPU kept (none, a software one, or a slower one): every batch
        // stays on the CPU, and the note says why.
        None => {
            for n in [0, 1, 1 << 16, 1 << 24, usize::MAX] {
                assert_eq!(auto.route(n), Backend::Cpu, "{n}: {note}");
            }
            assert!(!note.is_empty());
        }
        // A GPU kept: small batches stay on the CPU, the largest go to the
        // GPU, and the note names the crossover.
        Some(_) => {
            assert_eq!(auto.route(1), Backend::Cpu, "{note}");
            assert_eq!(auto.route(usize::MAX), Backend::Gpu, "{note}");
            assert!(note.contains("go to the GPU"), "{note}");
        }
    }
    let queries = random_queries(1000, 100, 2);
    assert_eq!(
        auto.popcount(&queries).unwrap(),
        table.reference_popcount(&queries).unwrap()
    );
    if !crate::gpu::ENABLED {
        assert!(matches!(
            Dispatcher::new(table, Backend::Gpu),
            Err(Error::GpuUnavailable(reason)) if reason.contains("without the gpu feature")
        ));
    }
}

/// `Auto` over counts derived already: the CPU reads them in place and the
/// GPU (lavapipe accepted here) uploads them; both halves agree.
#[test]
fn auto_over_borrowed_counts_uses_both_backends() {
    use crate::arch::CountTable;
    use std::sync::Arc;
    let table = random_table(3000, 2, 5).unwrap();
    let derived = CountTable::new(&table);
    let memory = Arc::new(derived.as_bytes().to_vec());
    let counts =
        CountTable::from_memory(memory, derived.rows(), derived.bytes_per_count()).unwrap();
    let built = Dispatcher::counts_builder(counts, 2)
        .backend(Backend::Auto)
        .auto_accepts_software_gpu(true)
        .auto_crossover(1000)
        .build();
    let Some(auto) = gpu_or_skip(built) else {
        return;
    };
    if auto.gpu().is_none() {
        // No adapter: Auto runs on the CPU alone, which is allowed when a
        // GPU is not required (gpu_or_skip let the build through).
        assert!(
            !crate::gpu::skip::gpu_required(),
            "{:?}",
            auto.auto_decision()
        );
        return;
    }
    assert!(auto.cpu().is_some_and(|cpu| cpu.counts().is_borrowed()));
    for n in [999, 1000, 20_000] {
        let queries = random_queries(n, 3000, n as u64);
        assert_eq!(
            auto.route(n),
            if n < 1000 { Backend::Cpu } else { Backend::Gpu }
        );
        assert_eq!(
            auto.popcount(&queries).unwrap(),
            table.reference_popcount(&queries).unwrap()
        );
    }
}
