//! Dropping a pool joins its workers, also after a failed build. This binary
//! holds one test so that no other test's threads disturb the count.

use initret::{Backend, BitTable, Dispatcher, Error, Pool};

fn threads_now() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Waits (up to 2 s) for the thread count to come back to `expected`:
/// `pthread_join` returns once a thread has run its last instruction, a few
/// microseconds before the kernel removes it from `/proc/self/task`. A thread
/// that was not joined (still running, parked in a pool) never comes back.
fn settles_at(expected: usize) -> usize {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        let now = threads_now();
        if now == expected || std::time::Instant::now() > deadline {
            return now;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

#[test]
fn dropping_joins_every_worker() {
    if !std::path::Path::new("/proc/self/task").exists() {
        eprintln!("skipping: /proc/self/task is not available on this OS");
        return;
    }
    let before = threads_now();
    for _ in 0..20 {
        let pool = Pool::builder()
            .threads(4)
            .build_with(|_| Ok::<_, Error>(vec![0u8; 1024]))
            .unwrap();
        assert_eq!(threads_now(), before + 4);
        pool.map(&[1, 2, 3], |s, &x| s.len() + x).unwrap();
        drop(pool);
        assert_eq!(
            settles_at(before),
            before,
            "a dropped pool left threads behind"
        );

        let failed = Pool::builder()
            .threads(3)
            .build_with(|w| if w == 1 { Err("no") } else { Ok(()) });
        assert!(failed.is_err());
        assert_eq!(
            settles_at(before),
            before,
            "a failed build left threads behind"
        );

        let panicked = Pool::builder().threads(3).build_with(|w| {
            assert_ne!(w, 2, "init panics on worker 2");
            Ok::<_, Error>(())
        });
        assert!(panicked.is_err());
        assert_eq!(
            settles_at(before),
            before,
            "a panicking initializer left threads behind"
        );

        let dispatcher = Dispatcher::builder(BitTable::seed(1000))
            .backend(Backend::Cpu)
            .threads(2)
            .build()
            .unwrap();
        assert_eq!(dispatcher.popcount(&[7]).unwrap(), vec![3]);
        drop(dispatcher);
        assert_eq!(
            settles_at(before),
            before,
            "a dropped dispatcher left threads behind"
        );
    }
}
