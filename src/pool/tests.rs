//! The pool's unit tests (they reach its private helpers).

use super::*;

#[test]
fn init_runs_once_per_worker_on_its_own_thread() {
    let pool = Pool::builder()
        .threads(3)
        .thread_name("t")
        .build_with(|w| {
            let name = std::thread::current().name().map(str::to_string);
            Ok::<_, String>((w, name))
        })
        .unwrap();
    for (w, state) in pool.states.iter().enumerate() {
        assert_eq!(state.0, w);
        assert_eq!(state.1.as_deref(), Some(format!("t-{w}").as_str()));
    }
    let items: Vec<u32> = (0..1000).collect();
    for _ in 0..50 {
        let seen = pool
            .map(&items, |(w, _), _| {
                // The state handed to a task is that of the worker running it.
                let me = std::thread::current().name().map(str::to_string);
                assert_eq!(me, Some(format!("t-{w}")));
                *w
            })
            .unwrap();
        assert!(seen.iter().all(|&w| w < 3));
    }
    assert_eq!(pool.init_calls(), 3);
}

#[test]
fn output_length_mismatch_is_an_error() {
    let pool = Pool::builder()
        .threads(1)
        .build_with(|_| Ok::<_, String>(()))
        .unwrap();
    let mut out = [0u8; 2];
    let err = pool
        .map_chunks(&[1u8, 2, 3], &mut out, |_, _, _, _| Ok::<(), Error>(()))
        .unwrap_err();
    assert!(matches!(
        err,
        Error::OutputLength {
            queries: 3,
            output: 2
        }
    ));
}

#[test]
fn lowest_failing_chunk_wins() {
    let pool = Pool::builder()
        .threads(2)
        .build_with(|_| Ok::<_, String>(()))
        .unwrap();
    let items: Vec<usize> = (0..100).collect();
    let mut out = vec![0usize; 100];
    for _ in 0..20 {
        let err = pool
            .map_chunks_by(7, &items, &mut out, |_, offset, input, _| {
                if input.iter().any(|&i| i % 30 == 29) {
                    Err(Error::Internal(offset.to_string()))
                } else {
                    Ok(())
                }
            })
            .unwrap_err();
        // 29 lies in the chunk starting at 28.
        assert!(matches!(err, Error::Internal(ref s) if s == "28"), "{err}");
    }
}

#[test]
fn map_returns_owned_results_in_order_and_survives_a_panicking_task() {
    // Results that own memory: a slot written twice, or dropped without
    // being written, would show up here (and under Miri).
    let pool = Pool::builder()
        .threads(2)
        .build_with(|worker| Ok::<_, String>(format!("w{worker}")))
        .unwrap();
    let items: Vec<usize> = (0..10_000).collect();
    for _ in 0..10 {
        let out = pool
            .map(&items, |state, &i| format!("{}:{i}", &state[..1]))
            .unwrap();
        assert_eq!(out.len(), items.len());
        assert!(out.iter().enumerate().all(|(i, s)| *s == format!("w:{i}")));
        let err = pool
            .map(&items, |_, &i| {
                assert!(i != 7_777, "task {i} fails");
                vec![i; 3]
            })
            .unwrap_err();
        assert!(matches!(err, Error::TaskPanicked { ref message, .. } if message.contains("7777")));
    }
    assert_eq!(pool.map(&[1usize], |_, &i| i + 1).unwrap(), vec![2]);
}

#[test]
fn map_drops_the_results_of_completed_chunks_when_another_fails() {
    use std::sync::atomic::AtomicUsize;

    #[derive(Debug)]
    struct Counted<'a>(&'a AtomicUsize);
    impl Drop for Counted<'_> {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    let pool = Pool::builder()
        .threads(2)
        .build_with(|_| Ok::<_, String>(()))
        .unwrap();
    let items: Vec<usize> = (0..8000).collect();
    let chunk = python_chunk_len(items.len(), pool.threads());
    let bad = 4321;
    for _ in 0..20 {
        let (created, dropped) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let err = pool
            .map(&items, |_, &i| {
                assert!(i != bad, "item {i} fails");
                created.fetch_add(1, Ordering::SeqCst);
                Counted(&dropped)
            })
            .unwrap_err();
        assert!(matches!(err, Error::TaskPanicked { .. }));
        // Everything made is dropped, but for the results the failing chunk
        // made before its panic, which are leaked.
        let leaked = bad - bad / chunk * chunk;
        assert_eq!(
            created.load(Ordering::SeqCst) - dropped.load(Ordering::SeqCst),
            leaked
        );
    }
    // And on success every result is handed over, none dropped early.
    let dropped = AtomicUsize::new(0);
    let out = pool.map(&items, |_, _| Counted(&dropped)).unwrap();
    assert_eq!(
        (out.len(), dropped.load(Ordering::SeqCst)),
        (items.len(), 0)
    );
    drop(out);
    assert_eq!(dropped.load(Ordering::SeqCst), items.len());
}

mod placement {
    use crate::topology::affinity;
    use crate::{CacheDomain, Placement, Pool, Topology};

    fn two_domains() -> Topology {
        // This machine's first two CPUs as two domains, so pinning is real.
        Topology::from_domains(vec![
            CacheDomain {
                cpus: vec![0],
                llc_bytes: None,
                numa_node: Some(0),
            },
            CacheDomain {
                cpus: vec![1],
                llc_bytes: None,
                numa_node: Some(0),
            },
        ])
    }

    #[test]
    fn one_domain_gets_exactly_one_copy() {
        let pool = Pool::builder()
            .threads(4)
            .topology(Topology::single(4))
            .build_per_domain(|domain, _| Ok::<_, String>(vec![domain as u8; 1 << 16]))
            .unwrap();
        assert_eq!((pool.init_calls(), pool.copies()), (1, 1));
        let first = pool.state(0).unwrap().as_ptr();
        for worker in 0..4 {
            assert_eq!(pool.copy_of_worker(worker), Some(0));
            assert!(std::ptr::eq(pool.state(worker).unwrap().as_ptr(), first));
        }
        // Every task, wherever it runs, sees that one copy.
        let seen = pool
            .map(&[(); 64], |table, _| table.as_ptr() as usize)
            .unwrap();
        assert!(seen.iter().all(|&p| p == first as usize));
    }

    #[test]
    fn workers_read_their_own_domains_copy_and_are_pinned_there() {
        if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
            eprintln!("skipped: needs two CPUs to pin to");
            return;
        }
        let pool = Pool::builder()
            .threads(4)
            .topology(two_domains())
            .build_per_domain(|domain, cpus| {
                // Built on a worker of the domain, already pinned there.
                assert_eq!(affinity::current(), Some(cpus.cpus.clone()));
                Ok::<_, String>(domain)
            })
            .unwrap();
        assert_eq!((pool.init_calls(), pool.copies()), (2, 2));
        assert_eq!(
            pool.domain_of_copy(1).map(|d| d.cpus.clone()),
            Some(vec![1])
        );
        for worker in 0..4 {
            assert_eq!(pool.copy_of_worker(worker), Some(worker % 2));
            assert_eq!(pool.state(worker), Some(&(worker % 2)));
        }
        // A task sees the copy of the domain its thread is pinned to.
        let pairs = pool
            .map(&[(); 256], |domain, _| (*domain, affinity::current()))
            .unwrap();
        for (domain, cpus) in pairs {
            assert_eq!(cpus, Some(vec![domain]));
        }
    }

    #[test]
    fn per_worker_and_shared_make_as_many_copies_as_they_say() {
        let per_worker = Pool::builder()
            .threads(3)
            .build_placed(Placement::PerWorker, Ok::<_, String>)
            .unwrap();
        assert_eq!((per_worker.init_calls(), per_worker.copies()), (3, 3));
        assert_eq!(per_worker.state(2), Some(&2));
        let shared = Pool::builder()
            .threads(3)
            .build_shared(|| Ok::<_, String>(7))
            .unwrap();
        assert_eq!((shared.init_calls(), shared.copies()), (1, 1));
        assert_eq!(shared.map(&[1, 2, 3], |s, x| s + x).unwrap(), [8, 9, 10]);
    }

    #[test]
    fn a_failing_domain_initializer_names_its_worker() {
        let err = Pool::builder()
            .threads(4)
            .topology(two_domains())
            .build_per_domain(|domain, _| if domain == 1 { Err("no") } else { Ok(()) })
            .unwrap_err();
        assert!(
            matches!(err, crate::Error::Initializer { worker: 1, .. }),
            "{err}"
        );
    }
}
