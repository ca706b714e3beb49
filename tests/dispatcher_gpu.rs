//! `Dispatcher` with `Backend::Gpu` and `Backend::Auto`. Tests that need an
//! adapter skip with the reason when there is none, unless
//! `INITRET_REQUIRE_GPU=1`, which turns a missing adapter into a failure.
//! (Tests that need the crate's test hooks are unit tests in
//! `src/dispatcher/tests.rs`.)

mod common;

use initret::harness::{SplitMix64, random_queries, random_table};
use initret::{Backend, BitTable, Dispatcher, Error, PopcountBackend, SEED_CHECKSUM, SEED_ROWS};

use common::gpu_dispatcher;

#[test]
fn seed_workload_on_the_gpu() {
    let Some(d) = gpu_dispatcher(&BitTable::seed(SEED_ROWS)) else {
        return;
    };
    let queries: Vec<u32> = (0..SEED_ROWS).collect();
    let counts = d.popcount(&queries).unwrap();
    assert_eq!(
        counts.iter().map(|&c| u64::from(c)).sum::<u64>(),
        SEED_CHECKSUM
    );
    assert_eq!(d.route(queries.len()), Backend::Gpu);
    assert!(d.describe().starts_with("gpu ("), "{}", d.describe());
}

#[test]
fn gpu_matches_the_reference_for_every_width_and_tail() {
    for (k, w) in [1usize, 2, 3, 4, 8, 16].into_iter().enumerate() {
        let table = random_table(1000, w, k as u64).unwrap();
        let Some(d) = gpu_dispatcher(&table) else {
            return;
        };
        for n in (0..=70).chain([1000, 100_000]) {
            let queries = random_queries(n, 1000, n as u64);
            assert_eq!(
                d.popcount(&queries).unwrap(),
                table.reference_popcount(&queries).unwrap(),
                "w={w} n={n}"
            );
        }
    }
}

#[test]
fn gpu_reports_the_first_bad_position() {
    let table = random_table(500, 3, 1).unwrap();
    let Some(d) = gpu_dispatcher(&table) else {
        return;
    };
    let mut rng = SplitMix64::new(3);
    for n in [1usize, 9, 70, 1000, 300_000] {
        let mut queries = random_queries(n, 500, rng.next_u64());
        let at = rng.below(n as u64) as usize;
        queries[at] = 500;
        let end = n.min(at + 5);
        queries[at + 1..end].fill(u32::MAX);
        let err = d.popcount(&queries).unwrap_err();
        assert!(
            matches!(err, Error::IndexOutOfRange { position, index: 500, rows: 500 } if position == at),
            "n={n}: {err:?}"
        );
    }
    assert!(matches!(
        d.popcount_into(&[1, 2], &mut [0; 3]),
        Err(Error::OutputLength {
            queries: 2,
            output: 3
        })
    ));
}

#[test]
fn sixteen_threads_share_one_gpu_dispatcher() {
    let table = random_table(4096, 2, 5).unwrap();
    let Some(d) = gpu_dispatcher(&table) else {
        return;
    };
    common::sixteen_threads_check(d, table, 20_000);
}

#[test]
fn auto_skips_a_software_adapter_and_says_why() {
    let table = random_table(1000, 1, 2).unwrap();
    let Some(gpu) = gpu_dispatcher(&table) else {
        return;
    };
    let software = gpu.gpu().unwrap().is_software();
    let auto = Dispatcher::new(table.clone(), Backend::Auto).unwrap();
    let note = auto.auto_decision().unwrap();
    if software {
        assert_eq!(auto.route(1 << 24), Backend::Cpu);
        assert!(note.contains("software"), "{note}");
    }
    let queries = random_queries(200_000, 1000, 3);
    assert_eq!(
        auto.popcount(&queries).unwrap(),
        table.reference_popcount(&queries).unwrap()
    );
}

#[test]
fn a_huge_timeout_is_clamped_not_a_panic() {
    let table = random_table(100, 1, 6).unwrap();
    let Some(d) = gpu_dispatcher(&table) else {
        return;
    };
    let gpu = d.gpu().unwrap();
    gpu.set_timeout(std::time::Duration::MAX);
    assert_eq!(gpu.timeout(), initret::gpu::MAX_TIMEOUT);
    let queries = random_queries(1000, 100, 2);
    assert_eq!(
        d.popcount(&queries).unwrap(),
        table.reference_popcount(&queries).unwrap()
    );
    assert!(matches!(
        initret::harness::measure_transfer(gpu, u64::MAX, 4),
        Err(Error::InvalidConfig(_))
    ));
    assert!(matches!(
        initret::harness::measure_device_copy(gpu, u64::MAX),
        Err(Error::InvalidConfig(_))
    ));
}

/// `INITRET_FORCE_ISA` steers the CPU kernel only: a GPU-only dispatcher
/// builds whatever it says (here an unknown name), while a CPU one reports
/// it. Run in a child process, since the variable is read once per process.
#[test]
fn a_forced_cpu_kernel_does_not_stop_a_gpu_dispatcher() {
    let status = common::self_command()
        .args([
            "forced_isa_child",
            "--exact",
            "--nocapture",
            "--include-ignored",
        ])
        .env("INITRET_FORCE_ISA", "no-such-kernel")
        .env("INITRET_FORCED_ISA_CHILD", "1")
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
#[ignore = "run by a_forced_cpu_kernel_does_not_stop_a_gpu_dispatcher in a child process"]
fn forced_isa_child() {
    if std::env::var("INITRET_FORCED_ISA_CHILD").is_err() {
        return;
    }
    let table = BitTable::seed(16);
    let err = Dispatcher::new(table.clone(), Backend::Cpu).unwrap_err();
    assert!(matches!(err, Error::IsaUnavailable { .. }), "{err}");
    if let Some(gpu) = gpu_dispatcher(&table) {
        assert_eq!(gpu.popcount(&[15]).unwrap(), vec![4]);
    }
}

/// A dispatcher over counts derived already (as from shared memory), on
/// every backend: the GPU uploads them as they are, for every count width
/// (u8 for 1 word a row, u16 for 9, u32 for 2^11 words), and gives the
/// same counts and the same first bad position as the table's dispatcher.
#[test]
fn a_dispatcher_over_borrowed_counts_matches_one_over_the_table() {
    use initret::arch::CountTable;
    use initret::harness::gpu_or_skip;
    use std::sync::Arc;
    for (k, (rows, words)) in [(1001usize, 1usize), (333, 9), (5, 2048)]
        .into_iter()
        .enumerate()
    {
        let table = random_table(rows, words, 40 + k as u64).unwrap();
        let derived = CountTable::new(&table);
        for backend in [Backend::Cpu, Backend::Gpu, Backend::Auto] {
            let memory = Arc::new(derived.as_bytes().to_vec());
            let counts =
                CountTable::from_memory(memory, derived.rows(), derived.bytes_per_count()).unwrap();
            let built = Dispatcher::counts_builder(counts, words)
                .backend(backend)
                .threads(2)
                .auto_crossover(1)
                .build();
            let Some(d) = gpu_or_skip(built) else {
                return;
            };
            assert_eq!((d.rows(), d.words_per_row()), (rows, words));
            for n in [0, 1, 3, 70, 5000] {
                let queries = random_queries(n, rows, n as u64);
                assert_eq!(
                    d.popcount(&queries).unwrap(),
                    table.reference_popcount(&queries).unwrap(),
                    "{backend} rows={rows} words={words} n={n}: {}",
                    d.describe()
                );
            }
            let mut bad = random_queries(100, rows, 7);
            bad[40] = rows as u32;
            bad[90] = u32::MAX;
            assert!(
                matches!(
                    d.popcount(&bad),
                    Err(Error::IndexOutOfRange { position: 40, .. })
                ),
                "{backend}"
            );
        }
    }
}

#[test]
fn a_dispatcher_over_counts_needs_rows() {
    let empty = initret::arch::CountTable::from_counts(&[]);
    assert!(matches!(
        Dispatcher::counts_builder(empty, 1)
            .backend(Backend::Cpu)
            .build(),
        Err(Error::InvalidTable(_))
    ));
}

/// `u64` and `i64` batches on the GPU (narrowed and range checked on the
/// host), through the dispatcher and through the GPU backend itself.
#[test]
fn gpu_takes_64_bit_queries_and_names_the_first_bad_value() {
    let table = random_table(700, 2, 11).unwrap();
    let Some(d) = gpu_dispatcher(&table) else {
        return;
    };
    let gpu = d.gpu().unwrap();
    let mut rng = SplitMix64::new(12);
    for n in (0..=70).chain([1000, 300_000]) {
        let queries = random_queries(n, 700, rng.next_u64());
        let expected = table.reference_popcount(&queries).unwrap();
        let wide: Vec<u64> = queries.iter().map(|&q| q.into()).collect();
        let signed: Vec<i64> = queries.iter().map(|&q| q.into()).collect();
        assert_eq!(d.popcount_u64(&wide).unwrap(), expected, "n={n}");
        assert_eq!(gpu.popcount_i64(&signed).unwrap(), expected, "n={n}");
        if n == 0 {
            continue;
        }
        for at in [0, n / 2, n - 1] {
            let mut bad = signed.clone();
            bad[at] = i64::MIN + 5;
            bad[n - 1] = if at == n - 1 { i64::MIN + 5 } else { -1 };
            let err = d.popcount_i64(&bad).unwrap_err();
            assert!(
                matches!(err, Error::IndexOutOfRange { position, index, rows: 700 }
                    if position == at && index == i128::from(i64::MIN + 5)),
                "n={n}: {err:?}"
            );
            let mut bad = wide.clone();
            bad[at] = (1 << 32) + 1;
            let err = gpu.popcount_u64(&bad).unwrap_err();
            assert!(
                matches!(err, Error::IndexOutOfRange { position, index, rows: 700 }
                    if position == at && index == (1 << 32) + 1),
                "n={n}: {err:?}"
            );
        }
    }
    assert!(matches!(
        d.popcount_i64_into(&[1, 2], &mut [0; 3]),
        Err(Error::OutputLength {
            queries: 2,
            output: 3
        })
    ));
}
