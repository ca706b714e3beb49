//! `Pool`: the initializer runs once per worker; its return value reaches every call.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use initret::{Error, Pool};

#[test]
fn initializer_runs_once_per_worker_across_many_maps() {
    let calls = AtomicUsize::new(0);
    let pool = Pool::builder()
        .threads(3)
        .build_with(|worker| {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok::<_, Error>((worker, vec![7u64; 1 << 16]))
        })
        .unwrap();
    let items: Vec<usize> = (0..10_000).collect();
    for round in 0..100 {
        let out = pool
            .map(&items, |(_, cache), &i| cache[i] + i as u64 + round)
            .unwrap();
        assert_eq!(out.len(), items.len());
        assert!(
            out.iter()
                .enumerate()
                .all(|(i, &x)| x == 7 + i as u64 + round)
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(pool.init_calls(), 3);
    assert_eq!(pool.threads(), 3);
}

#[test]
fn map_keeps_input_order_for_every_length() {
    let pool = Pool::builder()
        .threads(2)
        .build_with(|_| Ok::<_, Error>(()))
        .unwrap();
    for n in [0usize, 1, 2, 7, 8, 9, 100, 1001] {
        let items: Vec<usize> = (0..n).collect();
        assert_eq!(
            pool.map(&items, |_, &i| i * 2).unwrap(),
            items.iter().map(|i| i * 2).collect::<Vec<_>>()
        );
    }
}

#[test]
fn failing_initializer_fails_the_build() {
    let err = Pool::builder()
        .threads(4)
        .build_with(|w| {
            if w >= 2 {
                Err(format!("worker {w} has no cache"))
            } else {
                Ok(())
            }
        })
        .unwrap_err();
    match err {
        Error::Initializer { worker, source } => {
            assert_eq!(worker, 2);
            assert_eq!(source.to_string(), "worker 2 has no cache");
        }
        other => panic!("expected Initializer, got {other:?}"),
    }
}

#[test]
fn panicking_initializer_fails_the_build() {
    let err = Pool::builder()
        .threads(2)
        .build_with(|w| {
            if w == 1 {
                panic!("boom in init {w}");
            }
            Ok::<_, Error>(())
        })
        .unwrap_err();
    assert!(
        matches!(&err, Error::InitializerPanicked { worker: 1, message } if message == "boom in init 1"),
        "{err:?}"
    );
}

#[test]
fn panicking_task_is_an_error_naming_the_worker_and_the_pool_keeps_serving() {
    let pool = Pool::builder()
        .threads(2)
        .build_with(Ok::<_, Error>)
        .unwrap();
    let items: Vec<u32> = (0..1000).collect();
    let err = pool
        .map(&items, |_, &i| {
            if i == 500 {
                panic!("task {i} failed");
            }
            i
        })
        .unwrap_err();
    match err {
        Error::TaskPanicked { worker, message } => {
            assert!(worker < 2, "worker {worker}");
            assert_eq!(message, "task 500 failed");
        }
        other => panic!("expected TaskPanicked, got {other:?}"),
    }
    for _ in 0..10 {
        assert_eq!(pool.map(&items, |_, &i| i + 1).unwrap()[999], 1000);
    }
}

#[test]
fn several_threads_may_map_on_one_pool_at_once() {
    let pool = Arc::new(
        Pool::builder()
            .threads(2)
            .build_with(|_| Ok::<_, Error>(3u64))
            .unwrap(),
    );
    let handles: Vec<_> = (0..8u64)
        .map(|t| {
            let pool = Arc::clone(&pool);
            std::thread::spawn(move || {
                for round in 0..50u64 {
                    let items: Vec<u64> = (0..(100 + t * 37 + round)).collect();
                    let out = pool.map(&items, |k, &x| x * k + t).unwrap();
                    assert!(out.iter().zip(&items).all(|(&o, &x)| o == x * 3 + t));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(pool.init_calls(), 2);
}

#[test]
fn nested_map_on_the_same_pool_does_not_deadlock() {
    let pool = Pool::builder()
        .threads(2)
        .build_with(|_| Ok::<_, Error>(1u32))
        .unwrap();
    let outer: Vec<u32> = (0..8).collect();
    let out = pool
        .map(&outer, |_, &x| {
            pool.map(&[x, x], |one, &y| y + one)
                .unwrap()
                .iter()
                .sum::<u32>()
        })
        .unwrap();
    assert_eq!(out, outer.iter().map(|x| 2 * x + 2).collect::<Vec<_>>());
}
