//! The CPU backend: a [`Pool`] whose initializer gives every worker its own
//! copy of the per-row popcount table, and a SIMD [`LookupKernel`] chosen
//! once at build time.

use crate::arch::{
    Calibration, CountTable, Isa, Kernel, KernelRequest, LookupKernel, STREAM_MIN_QUERIES,
};
use crate::{BitTable, Error, Pool, python_chunk_len};

/// Batches up to this many queries run on the calling thread against worker
/// 0's table: handing them to the pool costs more than the lookups. Measured
/// on the 2-core Zen 5 VM with the AVX-512 loads kernel: the seed's 65535
/// queries took 16.6–18 µs (median 17–18, 90th percentile 17–19) inline
/// against 17–18 µs best but 33 µs at the 90th percentile through the
/// workers; at 2^17 queries the workers win (22.5 against 28 µs).
pub const INLINE_MAX_QUERIES: usize = 1 << 16;

/// Chunks handed to workers are at least this long, so per-chunk overhead
/// stays small next to the lookups.
const MIN_CHUNK: usize = 1 << 14;

/// Popcount lookups on CPU threads with run-time-selected SIMD kernels.
///
/// Built once per table: each worker's initializer derives the table's
/// per-row popcounts ([`CountTable`], as `u8` where they fit) on its own
/// thread, so every lookup afterwards is a single load. The kernel that does
/// the loads (scalar, vector range checks with scalar loads or gathers,
/// with or without prefetching) is the one that measured fastest on this
/// machine and this table ([`CpuBackend::calibration`]).
///
/// ```
/// use initret::{BitTable, cpu::CpuBackend};
///
/// let cpu = CpuBackend::new(&BitTable::seed(1000), 2, None)?;
/// let mut out = [0; 3];
/// cpu.popcount_into(&[7, 255, 0], &mut out)?;
/// assert_eq!(out, [3, 8, 0]);
/// assert_eq!(cpu.init_calls(), 2);
/// # Ok::<(), initret::Error>(())
/// ```
#[derive(Debug)]
pub struct CpuBackend {
    pool: Pool<CountTable>,
    kernel: LookupKernel,
    calibration: Calibration,
    rows: usize,
}

impl CpuBackend {
    /// Starts `threads` workers (0: one per CPU), each deriving its own copy
    /// of `table`'s per-row counts, and picks the kernel by timing the
    /// candidates on those counts ([`Calibration`]): the kernels of `isa` if
    /// given, otherwise what `INITRET_FORCE_ISA` asks for
    /// ([`KernelRequest::from_env`]: every kernel when it is unset).
    ///
    /// Fails with [`Error::InvalidTable`] for a table with no rows and with
    /// [`Error::IsaUnavailable`] for a kernel this CPU cannot run.
    ///
    /// ```
    /// use initret::{BitTable, arch::Isa, cpu::CpuBackend};
    ///
    /// let cpu = CpuBackend::new(&BitTable::seed(16), 1, Some(Isa::Scalar))?;
    /// assert_eq!(cpu.isa(), Isa::Scalar);
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn new(table: &BitTable, threads: usize, isa: Option<Isa>) -> Result<CpuBackend, Error> {
        table.require_rows()?;
        let request = match isa {
            Some(isa) => KernelRequest::Measure { isa: Some(isa) }.check_available()?,
            None => KernelRequest::from_env()?,
        };
        CpuBackend::with_request(table, threads, request)
    }

    /// [`CpuBackend::new`] with the kernel request spelled out: measure
    /// among some candidates, or run a fixed kernel.
    ///
    /// ```
    /// use initret::{BitTable, arch::{Kernel, KernelRequest}, cpu::CpuBackend};
    ///
    /// let cpu = CpuBackend::with_request(&BitTable::seed(16), 1, KernelRequest::Fixed(Kernel::SCALAR))?;
    /// assert_eq!(cpu.kernel(), Kernel::SCALAR);
    /// assert!(cpu.calibration().rates().is_empty());
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn with_request(
        table: &BitTable,
        threads: usize,
        request: KernelRequest,
    ) -> Result<CpuBackend, Error> {
        table.require_rows()?;
        // Derived once here; each worker's initializer then makes its own
        // copy on its own thread, so the memory is first touched there.
        let counts = CountTable::new(table);
        let calibration = Calibration::measure(&counts, &request.candidates())?;
        let kernel = LookupKernel::new(calibration.chosen())?;
        let pool = Pool::builder()
            .threads(threads)
            .thread_name("initret-cpu")
            .build_with(|_worker| Ok::<_, Error>(counts.clone()))?;
        Ok(CpuBackend {
            pool,
            kernel,
            calibration,
            rows: table.rows(),
        })
    }

    /// The instruction set of the kernel in use.
    ///
    /// ```
    /// # let cpu = initret::cpu::CpuBackend::new(&initret::BitTable::seed(4), 1, None)?;
    /// assert!(cpu.isa().is_available());
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn isa(&self) -> Isa {
        self.kernel.isa()
    }

    /// The kernel in use: the fastest measured, or the one requested.
    ///
    /// ```
    /// # let cpu = initret::cpu::CpuBackend::new(&initret::BitTable::seed(4), 1, None)?;
    /// assert!(cpu.kernel().is_available());
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn kernel(&self) -> Kernel {
        self.kernel.kernel()
    }

    /// Every candidate kernel's measured rate on this backend's table, and
    /// the one chosen.
    ///
    /// ```
    /// # let cpu = initret::cpu::CpuBackend::new(&initret::BitTable::seed(1000), 1, None)?;
    /// let calibration = cpu.calibration();
    /// assert_eq!(calibration.chosen(), cpu.kernel());
    /// for rate in calibration.rates() {
    ///     println!("{}: {:.2e} lookups/s", rate.kernel, rate.lookups_per_s);
    /// }
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn calibration(&self) -> &Calibration {
        &self.calibration
    }

    /// Number of worker threads.
    ///
    /// ```
    /// # let cpu = initret::cpu::CpuBackend::new(&initret::BitTable::seed(4), 2, None)?;
    /// assert_eq!(cpu.threads(), 2);
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn threads(&self) -> usize {
        self.pool.threads()
    }

    /// How many times the initializer ran (once per worker).
    ///
    /// ```
    /// # let cpu = initret::cpu::CpuBackend::new(&initret::BitTable::seed(4), 2, None)?;
    /// assert_eq!(cpu.init_calls(), 2);
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn init_calls(&self) -> usize {
        self.pool.init_calls()
    }

    /// Number of rows of the table.
    ///
    /// ```
    /// # let cpu = initret::cpu::CpuBackend::new(&initret::BitTable::seed(4), 1, None)?;
    /// assert_eq!(cpu.rows(), 4);
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Writes the popcount of row `queries[i]` to `out[i]`.
    ///
    /// Fails with [`Error::OutputLength`] if the lengths differ and with
    /// [`Error::IndexOutOfRange`] naming the first query `>= rows`; `out` is
    /// then only partly written.
    ///
    /// ```
    /// # let cpu = initret::cpu::CpuBackend::new(&initret::BitTable::seed(4), 1, None)?;
    /// let mut out = [0; 2];
    /// let err = cpu.popcount_into(&[1, 9], &mut out).unwrap_err();
    /// assert!(matches!(err, initret::Error::IndexOutOfRange { position: 1, index: 9, rows: 4 }));
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn popcount_into(&self, queries: &[u32], out: &mut [u32]) -> Result<(), Error> {
        if queries.len() <= INLINE_MAX_QUERIES {
            let counts = self
                .pool
                .state(0)
                .ok_or_else(|| Error::Internal("the CPU backend has no workers".into()))?;
            return self.kernel.lookup(counts, queries, out);
        }
        let chunk = python_chunk_len(queries.len(), self.threads()).max(MIN_CHUNK);
        // Decided for the whole batch: whether its output outgrows the caches
        // does not depend on how it is chunked.
        let streaming = queries.len() >= STREAM_MIN_QUERIES;
        self.pool
            .map_chunks_by(chunk, queries, out, |counts, offset, queries, out| {
                self.kernel
                    .lookup_with_stores(counts, queries, out, streaming)
                    .map_err(|e| e.offset_position(offset))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_batches_report_the_first_bad_position_across_chunks() {
        let table = BitTable::seed(1000);
        let cpu = CpuBackend::new(&table, 2, None).unwrap();
        let mut queries: Vec<u32> = (0..(INLINE_MAX_QUERIES as u32 * 3))
            .map(|i| i % 1000)
            .collect();
        let n = queries.len();
        queries[n - 1] = 1000;
        queries[n / 2 + 17] = u32::MAX;
        let mut out = vec![0; n];
        let err = cpu.popcount_into(&queries, &mut out).unwrap_err();
        match err {
            Error::IndexOutOfRange {
                position,
                index,
                rows,
            } => {
                assert_eq!((position, index, rows), (n / 2 + 17, u32::MAX, 1000));
            }
            other => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn empty_table_is_refused() {
        let err = CpuBackend::new(&BitTable::seed(0), 1, None).unwrap_err();
        assert!(matches!(err, Error::InvalidTable(_)));
    }
}
