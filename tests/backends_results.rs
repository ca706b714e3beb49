//! Every backend (the CPU with each kernel this machine runs, the GPU, Auto
//! sending every batch to the GPU, and the Dispatcher over each) writing
//! every result type (`u8`, `u16`, `u32`) for every query type (`u32`,
//! `u64`, `i64`), from tables of every count width, against the scalar
//! reference: inline and split CPU batches, the natural result type
//! (`result_bytes`) on which every backend agrees, results too narrow
//! refused before any lookup, and the values only 64-bit queries can hold.
//! GPU cases skip without an adapter unless `INITRET_REQUIRE_GPU=1`.

mod common;

use common::every_kernel;

use initret::arch::CountWord;
use initret::cpu::CpuBackend;
use initret::gpu::GpuBackend;
use initret::harness::{gpu_or_skip, random_queries, random_table};
use initret::{Backend, BitTable, Dispatcher, Error, PopcountBackend, QueryIndex};

/// Tables of each natural result type: 1-word rows (u8), 9-word rows whose
/// counts pass 255 (u16), and 2048-word rows whose counts pass 65535 (u32).
fn tables() -> Vec<(BitTable, usize)> {
    vec![
        (random_table(1001, 1, 1).unwrap(), 1),
        (
            BitTable::from_fn(333, 9, |row, word| {
                if row % 7 == 0 {
                    u32::MAX
                } else {
                    (row as u32).wrapping_mul(0x9E37_79B9) ^ word as u32
                }
            })
            .unwrap(),
            2,
        ),
        (
            BitTable::from_fn(
                5,
                2048,
                |row, _| if row == 3 { u32::MAX } else { row as u32 },
            )
            .unwrap(),
            4,
        ),
    ]
}

/// Sizes covering empty, vector tails, and (for `large`) the CPU's split
/// path and a GPU batch of several workgroups.
fn sizes(large: bool) -> Vec<usize> {
    let mut sizes = vec![0, 1, 7, 33, 70, 1000];
    if large {
        sizes.push(200_000);
    }
    sizes
}

/// `backend` writes the reference's counts as `R` for `queries` of type `Q`
/// (into a poisoned buffer, so every result must be written), or refuses
/// `R` as too narrow without writing anything.
fn check<B: PopcountBackend, Q: QueryIndex, R: CountWord + std::fmt::Debug + PartialEq>(
    backend: &B,
    what: &str,
    expected: &[u32],
    queries: &[Q],
) {
    let poison = R::try_from_u32(u32::MAX >> (32 - 8 * R::BYTES));
    let mut out = vec![poison; queries.len()];
    let result = backend.popcount_indices_into(queries, &mut out);
    let label = format!(
        "{what}: {} -> {}, n={}",
        std::any::type_name::<Q>(),
        std::any::type_name::<R>(),
        queries.len()
    );
    if R::BYTES < backend.result_bytes() {
        assert!(
            matches!(result, Err(Error::OutputTooNarrow { output_bytes, count_bytes })
                if output_bytes == R::BYTES && count_bytes == backend.result_bytes()),
            "{label}: {result:?}"
        );
        assert!(
            out.iter().all(|&r| r == poison),
            "{label}: written before refusing"
        );
        return;
    }
    result.unwrap_or_else(|e| panic!("{label}: {e}"));
    let widened: Vec<u32> = out.iter().map(|&r| r.into()).collect();
    assert_eq!(widened, expected, "{label}");
}

/// `u8`/`u16`/`u32` from a `u32`, for the poison values (which fit).
trait FromU32: Sized {
    fn try_from_u32(value: u32) -> Self;
}
impl<R: CountWord> FromU32 for R {
    fn try_from_u32(value: u32) -> R {
        let table = initret::arch::CountTable::from_counts(&[value]);
        let mut out = [R::ZERO];
        // A one-row table holding `value`, looked up as `R`.
        initret::arch::LookupKernel::new(initret::arch::Kernel::SCALAR)
            .unwrap()
            .lookup_indices(&table, &[0u32], &mut out)
            .unwrap();
        out[0]
    }
}

/// Every query type and result type on `backend`, and the first bad
/// position with values only 64-bit queries hold (2^32 + row, negatives).
fn check_backend<B: PopcountBackend>(
    backend: &B,
    what: &str,
    table: &BitTable,
    natural: usize,
    large: bool,
) {
    assert_eq!(
        backend.result_bytes(),
        natural,
        "{what}: natural result type"
    );
    let rows = table.rows();
    for n in sizes(large) {
        let queries = random_queries(n, rows, n as u64 + 3);
        let expected = table.reference_popcount(&queries).unwrap();
        let wide: Vec<u64> = queries.iter().map(|&q| q.into()).collect();
        let signed: Vec<i64> = queries.iter().map(|&q| q.into()).collect();
        macro_rules! every_result {
            ($q:expr) => {
                check::<B, _, u8>(backend, what, &expected, $q);
                check::<B, _, u16>(backend, what, &expected, $q);
                check::<B, _, u32>(backend, what, &expected, $q);
            };
        }
        every_result!(&queries);
        every_result!(&wide);
        every_result!(&signed);
        if n < 3 {
            continue;
        }
        // 2^32 + a valid row: a u32 truncation would read that row.
        let at = n / 2;
        let mut bad = wide.clone();
        bad[at] = (1 << 32) + (queries[at] as u64);
        bad[n - 1] = u64::MAX;
        let mut bad_signed = signed.clone();
        bad_signed[at] = -(1 << 40);
        bad_signed[n - 1] = i64::MIN;
        macro_rules! first_bad {
            ($r:ty) => {
                if <$r as CountWord>::BYTES >= natural {
                    let mut out = vec![<$r as CountWord>::ZERO; n];
                    let err = backend.popcount_indices_into(&bad, &mut out).unwrap_err();
                    assert!(
                        matches!(err, Error::IndexOutOfRange { position, index, rows: r }
                            if position == at && index == (1i128 << 32) + i128::from(queries[at]) && r == rows),
                        "{what} n={n}: {err:?}"
                    );
                    let err = backend.popcount_indices_into(&bad_signed, &mut out).unwrap_err();
                    assert!(
                        matches!(err, Error::IndexOutOfRange { position, index, .. }
                            if position == at && index == -(1i128 << 40)),
                        "{what} n={n}: {err:?}"
                    );
                }
            };
        }
        first_bad!(u8);
        first_bad!(u16);
        first_bad!(u32);
    }
}

#[test]
fn the_cpu_backend_writes_every_result_type_with_every_kernel() {
    for (table, natural) in tables() {
        for kernel in every_kernel() {
            let cpu = CpuBackend::builder()
                .threads(2)
                .kernel_request(kernel.kernel())
                .build(&table)
                .unwrap();
            let what = format!("cpu {}", kernel.kernel());
            // The split path once per table, on the scalar kernel; the
            // others run the inline path (the kernels themselves are
            // checked on every size in tests/kernels_results.rs).
            let large = kernel.kernel() == initret::arch::Kernel::SCALAR;
            check_backend(&cpu, &what, &table, natural, large);
        }
    }
}

#[test]
fn the_gpu_backend_writes_every_result_type() {
    for (table, natural) in tables() {
        let Some(gpu) = gpu_or_skip(GpuBackend::new(&table)) else {
            return;
        };
        check_backend(&gpu, "gpu", &table, natural, true);
        let counts = initret::arch::CountTable::new(&table);
        let Some(gpu) = gpu_or_skip(GpuBackend::from_counts(&counts, table.words_per_row())) else {
            return;
        };
        check_backend(&gpu, "gpu from counts", &table, natural, false);
    }
}

#[test]
fn every_dispatcher_writes_every_result_type() {
    for (table, natural) in tables() {
        for backend in [Backend::Cpu, Backend::Gpu, Backend::Auto] {
            let built = Dispatcher::builder(table.clone())
                .backend(backend)
                .threads(2)
                .auto_crossover(1)
                .build();
            let Some(d) = gpu_or_skip(built) else {
                continue;
            };
            assert_eq!(d.result_bytes(), natural, "{backend}");
            check_backend(&d, &d.describe(), &table, natural, backend != Backend::Cpu);
        }
    }
}

/// Rows of 8 words can hold 256 set bits, one more than a byte; a table
/// whose largest count is 255 still has `u8` as its natural result type on
/// every backend, the GPU included (its count lanes follow the actual
/// largest count, not the widest row possible).
#[test]
fn the_natural_result_type_follows_the_largest_count_not_the_row_width() {
    let almost_full = BitTable::from_fn(64, 8, |row, word| {
        if word == 0 {
            u32::MAX >> (1 + row % 2)
        } else {
            u32::MAX
        }
    })
    .unwrap();
    let full = BitTable::from_fn(64, 8, |_, _| u32::MAX).unwrap();
    for (table, natural) in [(almost_full, 1), (full, 2)] {
        for backend in [Backend::Cpu, Backend::Gpu] {
            let Some(d) = gpu_or_skip(Dispatcher::new(table.clone(), backend)) else {
                continue;
            };
            assert_eq!(d.result_bytes(), natural, "{backend}");
            let queries: Vec<i64> = (0..64).collect();
            let expected = table.reference_popcount_indices(&queries).unwrap();
            if natural == 1 {
                let counts: Vec<u8> = d.popcount_as(&queries).unwrap();
                assert_eq!(
                    counts.iter().map(|&c| u32::from(c)).collect::<Vec<_>>(),
                    expected
                );
            }
            let counts: Vec<u16> = d.popcount_as(&queries).unwrap();
            assert_eq!(
                counts.iter().map(|&c| u32::from(c)).collect::<Vec<_>>(),
                expected
            );
        }
    }
}
