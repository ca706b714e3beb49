//! Every lookup kernel's 64-bit query path (`u64`, and `i64` read as the
//! same words) against the naive reference
//! (`BitTable::reference_popcount_indices`): tails, every count width, the
//! first-bad-position rule with the values only 64-bit queries can hold, and
//! every kernel forced through a CPU backend.

mod common;

use common::{check_bad, every_kernel};

use initret::arch::{CountTable, Kernel, LookupKernel};
use initret::cpu::CpuBackend;
use initret::harness::{SplitMix64, random_queries, random_table};
use initret::{BitTable, Error, PopcountBackend, QueryIndex};

const WIDTHS: [usize; 4] = [1, 3, 8, 16];

fn as_u64(queries: &[u32]) -> Vec<u64> {
    queries.iter().map(|&q| q.into()).collect()
}

fn as_i64(queries: &[u32]) -> Vec<i64> {
    queries.iter().map(|&q| q.into()).collect()
}

/// `kernel` on `queries` of type `Q` gives the reference's counts.
fn check<Q: QueryIndex>(
    kernel: &LookupKernel,
    table: &BitTable,
    counts: &CountTable,
    queries: &[Q],
) {
    let expected = table.reference_popcount_indices(queries).unwrap();
    let mut out = vec![u32::MAX; queries.len()];
    kernel.lookup_indices(counts, queries, &mut out).unwrap();
    assert_eq!(out, expected, "{kernel:?} {}", std::any::type_name::<Q>());
}

#[test]
fn every_kernel_reads_64_bit_queries_for_every_tail() {
    for kernel in every_kernel() {
        for (k, &w) in WIDTHS.iter().enumerate() {
            let table = random_table(257, w, k as u64).unwrap();
            let counts = CountTable::new(&table);
            // 0..=70 covers every tail of the 4-, 8- and 16-lane vectors;
            // the rest sit around larger multiples of them.
            let lengths = (0..=70).chain([127, 128, 129, 255, 256, 257, 1023, 1024, 1025]);
            for n in lengths {
                let queries = random_queries(n, table.rows(), (n * 31 + k) as u64);
                check(&kernel, &table, &counts, &as_u64(&queries));
                check(&kernel, &table, &counts, &as_i64(&queries));
            }
        }
    }
}

#[test]
fn every_kernel_reads_exactly_its_count_for_every_count_width() {
    let mut rng = SplitMix64::new(12);
    for (max, width) in [(255u64, 1usize), (65_535, 2), (u64::from(u32::MAX), 4)] {
        for rows in [1usize, 2, 5, 17, 1000] {
            let mut values: Vec<u32> = (0..rows).map(|_| rng.below(max + 1) as u32).collect();
            values[rows - 1] = max as u32;
            let counts = CountTable::from_counts(&values);
            assert_eq!(counts.bytes_per_count(), width);
            for kernel in every_kernel() {
                for n in [1usize, 4, 8, 9, 16, 17, 70, 1000] {
                    let mut queries = random_queries(n, rows, rng.next_u64());
                    queries[n - 1] = (rows - 1) as u32;
                    let expected: Vec<u32> = queries.iter().map(|&q| values[q as usize]).collect();
                    let mut out = vec![0; n];
                    kernel
                        .lookup_indices(&counts, &as_u64(&queries), &mut out)
                        .unwrap();
                    assert_eq!(
                        out, expected,
                        "{kernel:?} u64 width={width} rows={rows} n={n}"
                    );
                    kernel
                        .lookup_indices(&counts, &as_i64(&queries), &mut out)
                        .unwrap();
                    assert_eq!(
                        out, expected,
                        "{kernel:?} i64 width={width} rows={rows} n={n}"
                    );
                }
            }
        }
    }
}

/// Out-of-range `u64` values: just past the table, past `u32`, and ones
/// whose low 32 bits name a valid row (only the high half is wrong).
const BAD_U64: [u64; 7] = [
    100,
    101,
    u32::MAX as u64,
    1 << 32,
    (1 << 32) + 3,
    (7 << 40) | 5,
    u64::MAX,
];

/// Out-of-range `i64` values: negative ones (some whose low 32 bits name a
/// valid row) and ones past the table.
const BAD_I64: [i64; 8] = [
    -1,
    -100,
    i64::MIN,
    i64::MIN + 3,
    -(1 << 32) + 2,
    100,
    1 << 32,
    i64::MAX,
];

#[test]
fn every_kernel_reports_the_first_bad_64_bit_position() {
    let table = random_table(100, 2, 3).unwrap();
    let counts = CountTable::new(&table);
    let mut rng = SplitMix64::new(4);
    for kernel in every_kernel() {
        for n in 1..=70 {
            for bad_at in [0, n / 2, n - 1] {
                let clean = random_queries(n, table.rows(), rng.next_u64());
                let bad = BAD_U64[rng.below(BAD_U64.len() as u64) as usize];
                let mut queries = as_u64(&clean);
                queries[bad_at] = bad;
                // Later bad values must not hide the first.
                for later in [bad_at + 1, bad_at + 3, n - 1] {
                    if later > bad_at && later < n {
                        queries[later] = u64::MAX;
                    }
                }
                check_bad::<_, u32>(&kernel, &table, &counts, &queries, bad_at, bad);

                let bad = BAD_I64[rng.below(BAD_I64.len() as u64) as usize];
                let mut queries = as_i64(&clean);
                queries[bad_at] = bad;
                for later in [bad_at + 2, n - 1] {
                    if later > bad_at && later < n {
                        queries[later] = i64::MIN;
                    }
                }
                check_bad::<_, u32>(&kernel, &table, &counts, &queries, bad_at, bad);
            }
        }
    }
}

#[test]
fn every_kernel_checks_64_bit_queries_on_the_streaming_path() {
    // Past the streaming-store threshold, with an unaligned output: a bad
    // value in the scalar head, at a vector edge, mid-batch and in the tail.
    let table = random_table(1 << 16, 1, 21).unwrap();
    let counts = CountTable::new(&table);
    let n = (1 << 18) + 45;
    let clean = random_queries(n, table.rows(), 22);
    let expected = table.reference_popcount(&clean).unwrap();
    let (wide, signed) = (as_u64(&clean), as_i64(&clean));
    for kernel in every_kernel() {
        let mut backing = vec![0u32; n + 5];
        let out = &mut backing[5..];
        kernel.lookup_indices(&counts, &wide, out).unwrap();
        assert!(out == expected.as_slice(), "{kernel:?} u64");
        kernel.lookup_indices(&counts, &signed, out).unwrap();
        assert!(out == expected.as_slice(), "{kernel:?} i64");
        for bad_at in [1, 16, 64, n / 2 + 3, n - 2] {
            let mut queries = signed.clone();
            queries[bad_at] = -(1 << 32) + 1;
            queries[(bad_at + 2).min(n - 1)] = 1 << 16;
            check_bad::<_, u32>(&kernel, &table, &counts, &queries, bad_at, -(1 << 32) + 1);
            let mut queries = wide.clone();
            queries[bad_at] = (1 << 33) | 9;
            check_bad::<_, u32>(&kernel, &table, &counts, &queries, bad_at, (1 << 33) | 9);
        }
    }
}

#[test]
fn every_forced_kernel_serves_64_bit_batches_through_the_backend() {
    let table = random_table(5000, 1, 30).unwrap();
    // Past the inline limit given below: split into several chunks.
    let n = (3 << 16) + 11;
    let clean = random_queries(n, table.rows(), 31);
    let expected = table.reference_popcount(&clean).unwrap();
    for kernel in Kernel::available() {
        let cpu = CpuBackend::builder()
            .threads(2)
            .kernel_request(kernel)
            .inline_max_queries(1 << 16)
            .build(&table)
            .unwrap();
        assert_eq!((cpu.kernel(), cpu.wide_kernel()), (kernel, kernel));
        assert_eq!(
            cpu.popcount_u64(&as_u64(&clean)).unwrap(),
            expected,
            "{kernel}"
        );
        assert_eq!(
            cpu.popcount_i64(&as_i64(&clean)).unwrap(),
            expected,
            "{kernel}"
        );
        // Bad values in several chunks: the lowest position is reported.
        let mut queries = as_i64(&clean);
        queries[n - 1] = -1;
        queries[n / 2 + 17] = i64::MIN;
        queries[n / 2 + 18] = 5000;
        let mut out = vec![0; n];
        let err = cpu.popcount_i64_into(&queries, &mut out).unwrap_err();
        assert!(
            matches!(err, Error::IndexOutOfRange { position, index, rows: 5000 }
                if position == n / 2 + 17 && index == i128::from(i64::MIN)),
            "{kernel}: {err:?}"
        );
        let mut queries = as_u64(&clean);
        queries[n - 3] = u64::MAX;
        let err = cpu.popcount_u64_into(&queries, &mut out).unwrap_err();
        assert!(
            matches!(err, Error::IndexOutOfRange { position, index, rows: 5000 }
                if position == n - 3 && index == i128::from(u64::MAX)),
            "{kernel}: {err:?}"
        );
    }
}

#[test]
fn the_64_bit_kernel_is_measured_among_every_available_kernel() {
    let cpu = CpuBackend::builder()
        .threads(1)
        .build(&random_table(1 << 12, 1, 40).unwrap())
        .unwrap();
    let rates = cpu.wide_calibration().rates();
    if Kernel::available().len() > 1 {
        assert_eq!(rates.len(), Kernel::available().len());
        assert!(rates.iter().all(|r| r.lookups_per_s > 0.0));
    }
    assert!(Kernel::available().contains(&cpu.wide_kernel()));
    assert_eq!(cpu.wide_calibration().chosen(), cpu.wide_kernel());
}

#[test]
fn output_of_the_wrong_length_is_an_error_for_64_bit_queries() {
    let counts = CountTable::from_counts(&[1, 2]);
    for kernel in every_kernel() {
        assert!(matches!(
            kernel.lookup_indices(&counts, &[0u64, 1, 0], &mut [0u32; 2]),
            Err(Error::OutputLength {
                queries: 3,
                output: 2
            })
        ));
        assert!(matches!(
            kernel.lookup_indices(&counts, &[0i64], &mut [0u32; 2]),
            Err(Error::OutputLength {
                queries: 1,
                output: 2
            })
        ));
    }
}
