//! Every lookup kernel writing every result type (`u8`, `u16`, `u32`) from
//! counts of every width, for every query type (`u32`, `u64`, `i64`),
//! against the scalar reference (`BitTable::reference_popcount_indices`):
//! every vector tail, streaming batches, the first bad position with the
//! values only 64-bit queries can hold, and results too narrow for the
//! counts refused before any lookup.

mod common;

use common::{check_bad, every_kernel};

use initret::arch::{CountTable, CountWord, LookupKernel};
use initret::harness::{STREAM_MIN_QUERIES, SplitMix64, random_queries, random_table};
use initret::{Error, QueryIndex};

/// `kernel` writes the reference's counts as results of type `R`.
fn check<Q: QueryIndex, R: CountWord + std::fmt::Debug>(
    kernel: &LookupKernel,
    expected: &[u32],
    counts: &CountTable,
    queries: &[Q],
) {
    // Poisoned: every result must be written.
    let mut out = vec![poison::<R>(); queries.len()];
    kernel.lookup_indices(counts, queries, &mut out).unwrap();
    let widened: Vec<u32> = out.iter().map(|&r| r.into()).collect();
    assert_eq!(
        widened,
        expected,
        "{kernel:?} {} -> {}",
        std::any::type_name::<Q>(),
        std::any::type_name::<R>()
    );
}

/// The all-ones value of `R`, which no count here equals: looked up, as an
/// `R`, from a one-row table holding it.
fn poison<R: CountWord>() -> R {
    let mut out = [R::ZERO];
    let table = CountTable::from_counts(&[u32::MAX >> (32 - 8 * R::BYTES)]);
    LookupKernel::new(initret::arch::Kernel::SCALAR)
        .unwrap()
        .lookup_indices(&table, &[0u32], &mut out)
        .unwrap();
    out[0]
}

/// Every query type and every result type that holds `counts`.
fn check_every_type(kernel: &LookupKernel, expected: &[u32], counts: &CountTable, queries: &[u32]) {
    let wide: Vec<u64> = queries.iter().map(|&q| q.into()).collect();
    let signed: Vec<i64> = queries.iter().map(|&q| q.into()).collect();
    macro_rules! results {
        ($($r:ty),+) => {$(
            if <$r as CountWord>::BYTES >= counts.bytes_per_count() {
                check::<u32, $r>(kernel, expected, counts, queries);
                check::<u64, $r>(kernel, expected, counts, &wide);
                check::<i64, $r>(kernel, expected, counts, &signed);
            }
        )+};
    }
    results!(u8, u16, u32);
}

#[test]
fn every_kernel_writes_every_result_type_for_every_tail() {
    for kernel in every_kernel() {
        for (k, words) in [1usize, 16].into_iter().enumerate() {
            // 1 word a row: counts fit a byte; 16: up to 512, two bytes.
            let table = random_table(300, words, k as u64).unwrap();
            let counts = CountTable::new(&table);
            for n in (0..=70).chain([127, 128, 129, 1023, 1024, 1025]) {
                let queries = random_queries(n, table.rows(), (n * 7 + k) as u64);
                let expected = table.reference_popcount(&queries).unwrap();
                check_every_type(&kernel, &expected, &counts, &queries);
            }
        }
    }
}

#[test]
fn every_kernel_writes_every_result_type_from_every_count_width() {
    let mut rng = SplitMix64::new(21);
    for max in [255u32, 65_535, u32::MAX] {
        let rows = 1000;
        let mut values: Vec<u32> = (0..rows)
            .map(|_| rng.below(u64::from(max) + 1) as u32)
            .collect();
        values[rows - 1] = max;
        let counts = CountTable::from_counts(&values);
        for kernel in every_kernel() {
            for n in [1usize, 8, 17, 70, 1000] {
                let mut queries = random_queries(n, rows, rng.next_u64());
                queries[n - 1] = (rows - 1) as u32;
                let expected: Vec<u32> = queries.iter().map(|&q| values[q as usize]).collect();
                check_every_type(&kernel, &expected, &counts, &queries);
            }
        }
    }
}

#[test]
fn streaming_batches_of_every_result_type() {
    let table = random_table(5000, 16, 3).unwrap();
    let counts = CountTable::new(&table);
    let n = STREAM_MIN_QUERIES + 37;
    let queries = random_queries(n, table.rows(), 4);
    let expected = table.reference_popcount(&queries).unwrap();
    let narrow_table = random_table(5000, 1, 5).unwrap();
    let narrow_counts = CountTable::new(&narrow_table);
    assert_eq!(narrow_counts.bytes_per_count(), 1);
    let narrow_expected = narrow_table.reference_popcount(&queries).unwrap();
    for kernel in every_kernel() {
        check_every_type(&kernel, &expected, &counts, &queries);
        check_every_type(&kernel, &narrow_expected, &narrow_counts, &queries);
    }
}

#[test]
fn values_only_64_bit_queries_hold_are_out_of_range_for_every_result_type() {
    let table = random_table(300, 1, 9).unwrap();
    let counts = CountTable::new(&table);
    for kernel in every_kernel() {
        for n in [1usize, 5, 16, 33, 100] {
            let clean = random_queries(n, table.rows(), n as u64);
            for at in [0, n / 2, n - 1] {
                // 2^32 + a valid row: its low half alone would be in range.
                let mut wide: Vec<u64> = clean.iter().map(|&q| q.into()).collect();
                let alias = (1u64 << 32) + u64::from(clean[at]);
                wide[at] = alias;
                check_bad::<u64, u8>(&kernel, &table, &counts, &wide, at, alias);
                check_bad::<u64, u16>(&kernel, &table, &counts, &wide, at, alias);
                check_bad::<u64, u32>(&kernel, &table, &counts, &wide, at, alias);
                // A negative i64 whose low half is a valid row.
                let mut signed: Vec<i64> = clean.iter().map(|&q| q.into()).collect();
                let negative = i64::MIN + i64::from(clean[at]);
                signed[at] = negative;
                check_bad::<i64, u8>(&kernel, &table, &counts, &signed, at, negative);
                check_bad::<i64, u16>(&kernel, &table, &counts, &signed, at, negative);
                check_bad::<i64, u32>(&kernel, &table, &counts, &signed, at, negative);
                signed[at] = -1;
                check_bad::<i64, u8>(&kernel, &table, &counts, &signed, at, -1);
            }
        }
    }
}

#[test]
fn results_narrower_than_the_counts_are_refused_before_any_lookup() {
    let counts = CountTable::from_counts(&[300, 70_000]);
    assert_eq!(counts.bytes_per_count(), 4);
    for kernel in every_kernel() {
        let mut bytes = [7u8; 2];
        assert!(matches!(
            kernel.lookup_indices(&counts, &[0u32, 1], &mut bytes),
            Err(Error::OutputTooNarrow {
                output_bytes: 1,
                count_bytes: 4
            })
        ));
        assert_eq!(bytes, [7, 7], "nothing written");
        assert!(matches!(
            kernel.lookup_indices(&counts, &[0i64, 1], &mut [0u16; 2]),
            Err(Error::OutputTooNarrow {
                output_bytes: 2,
                count_bytes: 4
            })
        ));
        // The length is checked first, as for every lookup.
        assert!(matches!(
            kernel.lookup_indices(&counts, &[0u64], &mut [0u8; 2]),
            Err(Error::OutputLength { .. })
        ));
    }
}
