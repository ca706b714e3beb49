//! Every lookup kernel against the scalar reference (`BitTable::reference_popcount`).

mod common;

use common::every_kernel;

use initret::arch::{CountTable, Fetch, Isa, Kernel, LookupKernel};
use initret::harness::{SplitMix64, random_queries, random_table};
use initret::{BitTable, Error};

const WIDTHS: [usize; 6] = [1, 2, 3, 4, 8, 16];

fn check(kernel: &LookupKernel, table: &BitTable, counts: &CountTable, queries: &[u32]) {
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
    for kernel in every_kernel() {
        for (k, &w) in WIDTHS.iter().enumerate() {
            let table = random_table(257, w, k as u64).unwrap();
            let counts = CountTable::new(&table);
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
    let counts = CountTable::new(&table);
    let n = (1 << 18) + 37;
    let queries = random_queries(n, table.rows(), 10);
    let expected = table.reference_popcount(&queries).unwrap();
    for kernel in every_kernel() {
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
    let counts = CountTable::new(&table);
    let mut rng = SplitMix64::new(4);
    for kernel in every_kernel() {
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
                            (bad_at, i128::from(bad), 100),
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
    let counts = CountTable::new(&table);
    for kernel in every_kernel() {
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
    for kernel in every_kernel() {
        let err = kernel
            .lookup(&CountTable::from_counts(&[1, 2]), &[0, 1, 0], &mut [0; 2])
            .unwrap_err();
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
        for fetch in [Fetch::Loads, Fetch::Gather] {
            let kernel = Kernel::new(isa, fetch, 0);
            assert_eq!(LookupKernel::new(kernel).is_ok(), kernel.is_available());
        }
    }
    assert!(LookupKernel::new(Kernel::new(Isa::Scalar, Fetch::Gather, 0)).is_err());
    assert!(matches!(
        "sse9".parse::<Isa>(),
        Err(Error::IsaUnavailable { .. })
    ));
}

#[test]
fn every_count_width_reads_exactly_its_own_count() {
    // Random counts over the width's whole range, so reading a byte too
    // many or too few, or at the wrong offset, shows up as a wrong count.
    let mut rng = SplitMix64::new(11);
    for (max, width) in [(255u64, 1usize), (65_535, 2), (u64::from(u32::MAX), 4)] {
        for rows in [1usize, 2, 3, 5, 17, 1000] {
            let values: Vec<u32> = (0..rows).map(|_| rng.below(max + 1) as u32).collect();
            let mut with_max = values.clone();
            with_max[rows - 1] = max as u32;
            let counts = CountTable::from_counts(&with_max);
            assert_eq!(counts.bytes_per_count(), width);
            for kernel in every_kernel() {
                for n in [1usize, 7, 8, 9, 16, 17, 70, 1000] {
                    // Include the last row, whose 4-byte read ends in the padding.
                    let mut queries = random_queries(n, rows, rng.next_u64());
                    queries[n - 1] = (rows - 1) as u32;
                    let mut out = vec![0; n];
                    kernel.lookup(&counts, &queries, &mut out).unwrap();
                    let expected: Vec<u32> =
                        queries.iter().map(|&q| with_max[q as usize]).collect();
                    assert_eq!(out, expected, "{kernel:?} width={width} rows={rows} n={n}");
                }
            }
        }
    }
}

#[test]
fn wide_rows_use_wider_counts() {
    let narrow = CountTable::new(&BitTable::from_rows(7, vec![u32::MAX; 7]).unwrap());
    assert_eq!((narrow.bytes_per_count(), narrow.get(0)), (1, Some(224)));
    let medium = CountTable::new(&BitTable::from_rows(8, vec![u32::MAX; 8]).unwrap());
    assert_eq!((medium.bytes_per_count(), medium.get(0)), (2, Some(256)));
    let wide = CountTable::new(&BitTable::from_rows(2048, vec![u32::MAX; 2048]).unwrap());
    assert_eq!((wide.bytes_per_count(), wide.get(0)), (4, Some(65_536)));
}

#[test]
fn every_kernel_reports_the_first_bad_position_on_the_streaming_path() {
    // Past the streaming-store threshold, with an unaligned output: a bad
    // index in the scalar head, at a vector edge, mid-batch and in the tail,
    // each followed by a second bad index that must not hide it.
    let table = random_table(1 << 16, 1, 21).unwrap();
    let counts = CountTable::new(&table);
    let n = (1 << 18) + 45;
    let clean = random_queries(n, table.rows(), 22);
    let expected = table.reference_popcount(&clean).unwrap();
    for kernel in every_kernel() {
        for bad_at in [1, 16, 64, n / 2 + 3, n - 2] {
            let mut queries = clean.clone();
            queries[bad_at] = u32::MAX - 7;
            queries[(bad_at + 2).min(n - 1)] = 1 << 16;
            let mut backing = vec![0u32; n + 5];
            let out = &mut backing[5..];
            match kernel.lookup(&counts, &queries, out) {
                Err(Error::IndexOutOfRange { position, .. }) => {
                    assert_eq!(position, bad_at, "{kernel:?}");
                }
                other => panic!("{kernel:?}: {other:?}"),
            }
            assert!(
                out[..bad_at] == expected[..bad_at],
                "{kernel:?}: counts before position {bad_at}"
            );
        }
    }
}

/// On little-endian AArch64 the NEON kernels are among those tested above
/// (CI's aarch64 step, under qemu-user, checks that this test ran).
#[cfg(all(target_arch = "aarch64", target_endian = "little"))]
#[test]
fn neon_kernels_are_tested_on_aarch64() {
    assert!(Isa::Neon.is_available());
    assert!(every_kernel().iter().any(|k| k.isa() == Isa::Neon));
}
