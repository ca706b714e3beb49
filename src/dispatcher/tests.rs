//! Dispatcher tests that need its private hook (`auto_accepts_software_gpu`,
//! so that `Auto` uses lavapipe) or the GPU backend's (`destroy_device`).

use crate::gpu::gpu_or_skip;
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
    assert!(auto.note().unwrap().contains("lost"), "{:?}", auto.note());
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
    let note = auto.note().unwrap();
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
fn without_a_gpu_auto_stays_on_the_cpu_and_says_why() {
    let table = random_table(100, 1, 1).unwrap();
    let auto = Dispatcher::new(table.clone(), Backend::Auto).unwrap();
    if auto.gpu().is_none() {
        assert_eq!(auto.route(1 << 24), Backend::Cpu);
        assert!(!auto.note().unwrap().is_empty());
    }
    if !crate::gpu::ENABLED {
        assert!(matches!(
            Dispatcher::new(table, Backend::Gpu),
            Err(Error::GpuUnavailable(reason)) if reason.contains("without the gpu feature")
        ));
    }
}
