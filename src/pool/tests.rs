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
