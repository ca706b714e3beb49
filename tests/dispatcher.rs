//! `Dispatcher` on the CPU backend, with every kernel, against the reference.

mod common;

use initret::arch::Isa;
use initret::harness::LONGEST_INLINE_QUERIES;
use initret::harness::{SplitMix64, random_queries, random_table};
use initret::{Backend, BitTable, Dispatcher, Error, SEED_CHECKSUM, SEED_ROWS};

fn cpu_dispatchers(table: &BitTable) -> Vec<Dispatcher> {
    Isa::available()
        .into_iter()
        .map(|isa| {
            Dispatcher::builder(table.clone())
                .backend(Backend::Cpu)
                .threads(2)
                .isa(isa)
                .build()
                .unwrap()
        })
        .collect()
}

/// The CPU backend's measured inline limit for `u32` queries.
fn inline_limit(dispatcher: &Dispatcher) -> usize {
    let limit = dispatcher
        .cpu()
        .expect("a CPU dispatcher")
        .split_calibration()
        .inline_max_queries();
    assert!(limit <= LONGEST_INLINE_QUERIES, "{limit}");
    limit
}

#[test]
fn seed_workload_adds_up() {
    let dispatcher = Dispatcher::new(BitTable::seed(SEED_ROWS), Backend::Cpu).unwrap();
    let queries: Vec<u32> = (0..SEED_ROWS).collect();
    let counts = dispatcher.popcount(&queries).unwrap();
    assert_eq!(
        counts.iter().map(|&c| u64::from(c)).sum::<u64>(),
        SEED_CHECKSUM
    );
    assert_eq!(
        counts,
        BitTable::seed(SEED_ROWS)
            .reference_popcount(&queries)
            .unwrap()
    );
}

#[test]
fn every_kernel_matches_the_reference_small_and_large() {
    for (k, w) in [1usize, 2, 3, 4, 8, 16].into_iter().enumerate() {
        let table = random_table(1000, w, k as u64).unwrap();
        for dispatcher in cpu_dispatchers(&table) {
            // Both sides of the measured limit, and past any limit.
            let limit = inline_limit(&dispatcher);
            for n in (0..=70).chain([
                limit,
                limit + 1,
                LONGEST_INLINE_QUERIES + 1,
                2 * LONGEST_INLINE_QUERIES + 5,
            ]) {
                let queries = random_queries(n, table.rows(), n as u64);
                assert_eq!(
                    dispatcher.popcount(&queries).unwrap(),
                    table.reference_popcount(&queries).unwrap(),
                    "{} w={w} n={n}",
                    dispatcher.describe()
                );
            }
        }
    }
}

#[test]
fn out_of_range_names_the_first_position_on_small_and_large_batches() {
    let table = random_table(500, 3, 1).unwrap();
    let mut rng = SplitMix64::new(2);
    for dispatcher in cpu_dispatchers(&table) {
        for n in [
            1usize,
            9,
            70,
            1000,
            LONGEST_INLINE_QUERIES + 1,
            2 * LONGEST_INLINE_QUERIES + 77,
        ] {
            let mut queries = random_queries(n, 500, rng.next_u64());
            let at = rng.below(n as u64) as usize;
            queries[at] = 500 + rng.below(1000) as u32;
            let index = queries[at];
            let end = n.min(at + 5);
            queries[at + 1..end].fill(u32::MAX);
            let err = dispatcher.popcount(&queries).unwrap_err();
            assert!(
                matches!(err, Error::IndexOutOfRange { position, index: i, rows: 500 } if position == at && i == i128::from(index)),
                "{} n={n}: {err:?}",
                dispatcher.describe()
            );
        }
    }
}

#[test]
fn bad_shapes_and_lengths_are_specific_errors() {
    assert!(matches!(
        Dispatcher::new(BitTable::seed(0), Backend::Cpu),
        Err(Error::InvalidTable(_))
    ));
    assert!(matches!(
        BitTable::from_rows(0, vec![1]),
        Err(Error::InvalidTable(_))
    ));
    assert!(matches!(
        BitTable::from_rows(4, vec![1; 6]),
        Err(Error::InvalidTable(_))
    ));
    let dispatcher = Dispatcher::new(BitTable::seed(10), Backend::Cpu).unwrap();
    assert!(matches!(
        dispatcher.popcount_into(&[1, 2, 3], &mut [0; 4]),
        Err(Error::OutputLength {
            queries: 3,
            output: 4
        })
    ));
    assert!(matches!(
        dispatcher.popcount(&[u32::MAX]),
        Err(Error::IndexOutOfRange {
            position: 0,
            index: 0xFFFF_FFFF,
            rows: 10
        })
    ));
    assert_eq!(dispatcher.popcount(&[]).unwrap(), Vec::<u32>::new());
}

#[test]
fn unavailable_forced_isa_is_an_error_not_a_fallback() {
    for isa in Isa::ALL.into_iter().filter(|i| !i.is_available()) {
        let err = Dispatcher::builder(BitTable::seed(4))
            .backend(Backend::Cpu)
            .isa(isa)
            .build()
            .unwrap_err();
        assert!(matches!(err, Error::IsaUnavailable { .. }), "{err:?}");
    }
}

#[cfg(not(feature = "gpu"))]
#[test]
fn gpu_without_the_feature_is_unavailable() {
    let err = Dispatcher::new(BitTable::seed(4), Backend::Gpu).unwrap_err();
    assert!(matches!(err, Error::GpuUnavailable(_)), "{err:?}");
}

#[test]
fn dispatcher_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Dispatcher>();
    assert_send_sync::<initret::Pool<Vec<u32>>>();
}

#[test]
fn sixteen_threads_share_one_dispatcher() {
    let table = random_table(4096, 2, 5).unwrap();
    let dispatcher = Dispatcher::builder(table.clone())
        .backend(Backend::Cpu)
        .threads(2)
        .build()
        .unwrap();
    let limit = inline_limit(&dispatcher);
    common::sixteen_threads_check(dispatcher, table, limit);
}

#[test]
fn sixty_four_bit_queries_match_and_name_the_first_bad_position() {
    let table = random_table(500, 3, 7).unwrap();
    let mut rng = SplitMix64::new(8);
    let mut dispatchers = cpu_dispatchers(&table);
    dispatchers.push(Dispatcher::new(table.clone(), Backend::Auto).unwrap());
    for dispatcher in dispatchers {
        for n in [
            0usize,
            1,
            9,
            70,
            1000,
            LONGEST_INLINE_QUERIES + 1,
            2 * LONGEST_INLINE_QUERIES + 77,
        ] {
            let queries = random_queries(n, 500, rng.next_u64());
            let expected = table.reference_popcount(&queries).unwrap();
            let wide: Vec<u64> = queries.iter().map(|&q| q.into()).collect();
            let signed: Vec<i64> = queries.iter().map(|&q| q.into()).collect();
            let what = format!("{} n={n}", dispatcher.describe());
            assert_eq!(dispatcher.popcount_u64(&wide).unwrap(), expected, "{what}");
            assert_eq!(
                dispatcher.popcount_i64(&signed).unwrap(),
                expected,
                "{what}"
            );
            if n == 0 {
                continue;
            }
            let at = rng.below(n as u64) as usize;
            let end = n.min(at + 5);
            let mut signed = signed;
            signed[at] = -(1 << 32) + 3;
            signed[at + 1..end].fill(i64::MIN);
            let err = dispatcher.popcount_i64(&signed).unwrap_err();
            assert!(
                matches!(err, Error::IndexOutOfRange { position, index, rows: 500 } if position == at && index == -(1 << 32) + 3),
                "{what}: {err:?}"
            );
            let mut wide = wide;
            wide[at] = (1 << 32) + 3;
            wide[at + 1..end].fill(u64::MAX);
            let err = dispatcher.popcount_u64(&wide).unwrap_err();
            assert!(
                matches!(err, Error::IndexOutOfRange { position, index, rows: 500 } if position == at && index == (1 << 32) + 3),
                "{what}: {err:?}"
            );
        }
    }
}
