//! Every lookup kernel against the scalar reference (`BitTable::reference_popcount`).

use initret::arch::{Isa, LookupKernel};
use initret::bench::{SplitMix64, random_queries, random_table};
use initret::{BitTable, Error};

const WIDTHS: [usize; 6] = [1, 2, 3, 4, 8, 16];

fn kernels() -> Vec<LookupKernel> {
    for isa in Isa::ALL {
        if !isa.is_available() {
            eprintln!("skipping the {isa} kernel: this CPU or build cannot run it");
        }
    }
    Isa::available()
        .into_iter()
        .map(|isa| LookupKernel::new(isa).unwrap())
        .collect()
}

fn check(kernel: &LookupKernel, table: &BitTable, counts: &[u32], queries: &[u32]) {
    let expected = table.reference_popcount(queries).unwrap();
    let mut out = vec![u32::MAX; queries.len()];
    kernel.lookup(counts, queries, &mut out).unwrap();
    assert_eq!(
        out,
        expected,
        "{kernel:?} words_per_row={}",
        table.words_per_row()
    );
}

#[test]
fn every_kernel_matches_the_reference_for_every_tail() {
    for kernel in kernels() {
        for (k, &w) in WIDTHS.iter().enumerate() {
            let table = random_table(257, w, k as u64).unwrap();
            let counts = table.row_counts();
            for n in 0..=70 {
                let queries = random_queries(n, table.rows(), (n * 31 + k) as u64);
                check(&kernel, &table, &counts, &queries);
            }
        }
    }
}

#[test]
fn every_kernel_matches_on_large_batches_and_unaligned_outputs() {
    // Past the streaming-store threshold, with the output starting at every
    // offset inside a vector so the aligned head is exercised.
    let table = random_table(1 << 16, 1, 9).unwrap();
    let counts = table.row_counts();
    let n = (1 << 18) + 37;
    let queries = random_queries(n, table.rows(), 10);
    let expected = table.reference_popcount(&queries).unwrap();
    for kernel in kernels() {
        let mut backing = vec![0u32; n + 16];
        for shift in [0, 1, 3, 7, 15] {
            let out = &mut backing[shift..shift + n];
            kernel.lookup(&counts, &queries, out).unwrap();
            assert!(out == expected.as_slice(), "{kernel:?} shift {shift}");
        }
    }
}

#[test]
fn every_kernel_reports_the_first_bad_position() {
    let table = random_table(100, 2, 3).unwrap();
    let counts = table.row_counts();
    let mut rng = SplitMix64::new(4);
    for kernel in kernels() {
        for n in 1..=70 {
            for bad_at in [0, n / 2, n - 1] {
                let mut queries = random_queries(n, table.rows(), rng.next_u64());
                let bad = [100, 101, u32::MAX, 1 << 31][rng.below(4) as usize];
                queries[bad_at] = bad;
                // A second bad index later must not hide the first.
                if bad_at + 3 < n {
                    queries[bad_at + 3] = u32::MAX;
                }
                let mut out = vec![0; n];
                match kernel.lookup(&counts, &queries, &mut out) {
                    Err(Error::IndexOutOfRange {
                        position,
                        index,
                        rows,
                    }) => {
                        assert_eq!(
                            (position, index, rows),
                            (bad_at, bad, 100),
                            "{kernel:?} n={n}"
                        );
                    }
                    other => panic!("{kernel:?} n={n}: expected IndexOutOfRange, got {other:?}"),
                }
                // The same batch through the reference gives the same error.
                let reference = table.reference_popcount(&queries).unwrap_err();
                assert!(
                    matches!(reference, Error::IndexOutOfRange { position, .. } if position == bad_at)
                );
            }
        }
    }
}

#[test]
fn last_row_is_valid_and_one_past_is_not() {
    let table = BitTable::from_rows(1, vec![u32::MAX; 33]).unwrap();
    let counts = table.row_counts();
    for kernel in kernels() {
        let queries = vec![32u32; 40];
        let mut out = vec![0; 40];
        kernel.lookup(&counts, &queries, &mut out).unwrap();
        assert!(out.iter().all(|&c| c == 32));
        let queries = vec![33u32; 40];
        assert!(kernel.lookup(&counts, &queries, &mut out).is_err());
    }
}

#[test]
fn output_of_the_wrong_length_is_an_error() {
    for kernel in kernels() {
        let err = kernel.lookup(&[1, 2], &[0, 1, 0], &mut [0; 2]).unwrap_err();
        assert!(matches!(
            err,
            Error::OutputLength {
                queries: 3,
                output: 2
            }
        ));
    }
}

#[test]
fn unavailable_or_unknown_isas_are_errors() {
    for isa in Isa::ALL {
        assert_eq!(LookupKernel::new(isa).is_ok(), isa.is_available());
    }
    assert!(matches!(
        "sse9".parse::<Isa>(),
        Err(Error::IsaUnavailable { .. })
    ));
}
