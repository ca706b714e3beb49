//! Popcount lookup kernels, one per instruction set, chosen at run time.
//!
//! The layout follows memchr's `src/arch`: `all` is the portable scalar
//! routine (also the reference the SIMD paths fall back to for tails and bad
//! batches), `generic` writes the vector algorithm once over a small trait,
//! and `x86_64/avx2`, `x86_64/avx512` and `aarch64/neon` are thin per-ISA
//! wrappers that plug intrinsics into it.
//!
//! Every kernel computes `out[i] = counts[queries[i]]`, where `counts` is the
//! [`CountTable`] an initializer derives once from a
//! [`BitTable`](crate::BitTable). A query `>= rows` stops the kernel, which
//! reports the first such position.
//!
//! The queries are `u32`, or 64-bit (`u64`, or `i64` read as the same
//! words: a negative index is then one of at least 2^63, past any table).
//! Every kernel has both instances of the one algorithm, and reads 64-bit
//! queries in place: a vector of them is narrowed to `u32` lanes in
//! registers, checked with the same compare plus one test that every high
//! half is zero, and fetched as `u32` lanes are. No narrowed copy of a batch
//! is ever made. Which kernel is fastest is measured separately for the two
//! query widths ([`Calibration::measure`], [`Calibration::measure_wide`]),
//! as a vector of 64-bit queries is twice the bytes.
//!
//! ```
//! use initret::arch::{CountTable, Kernel, LookupKernel};
//!
//! let counts = CountTable::from_counts(&[0, 1, 1, 2]);
//! for kernel in Kernel::available() {
//!     let mut out = [0; 3];
//!     LookupKernel::new(kernel)?.lookup(&counts, &[3, 0, 2], &mut out)?;
//!     assert_eq!(out, [2, 0, 1]);
//! }
//! # Ok::<(), initret::Error>(())
//! ```

#[cfg(all(target_arch = "aarch64", target_endian = "little"))]
mod aarch64;
mod all;
pub(crate) mod buffer;
mod counts;
#[cfg(any(
    target_arch = "x86_64",
    all(target_arch = "aarch64", target_endian = "little")
))]
mod generic;
mod kernel;
mod select;
#[cfg(target_arch = "x86_64")]
mod x86_64;

use std::fmt;
use std::sync::OnceLock;

use crate::query::sealed::Words;
use crate::{Error, QueryIndex};
pub use buffer::{CountMemory, HUGE_PAGES_ENV, transparent_huge_pages_mode};
use counts::CountStorage;
pub use counts::{CountTable, CountWord};
#[cfg(feature = "harness")]
pub(crate) use kernel::PREFETCH_DISTANCES;
pub use kernel::{Fetch, Kernel, KernelRequest};
#[cfg(feature = "harness")]
pub(crate) use select::{CALIBRATION_QUERIES, CALIBRATION_ROUNDS};
pub use select::{Calibration, KernelRate};

/// Environment variable that steers the CPU kernel: an instruction set's
/// name (`scalar`, `avx2`, `avx512`, `neon`) limits the measurement to that
/// ISA's kernels, and a kernel's full name (`avx512-gather`, `scalar-pf128`;
/// `scalar-loads` for the plain scalar loop) fixes the kernel. See
/// [`KernelRequest::from_env`]. Read each time a CPU backend is built.
pub const FORCE_ISA_ENV: &str = "INITRET_FORCE_ISA";

/// An instruction set a lookup kernel is written for.
///
/// ```
/// use initret::arch::Isa;
///
/// assert!(Isa::Scalar.is_available());
/// assert_eq!("avx2".parse::<Isa>()?, Isa::Avx2);
/// # Ok::<(), initret::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Isa {
    /// Portable Rust, one lookup at a time. Runs everywhere.
    Scalar,
    /// x86-64 AVX2: 8 lanes, `vpgatherdd`.
    Avx2,
    /// x86-64 AVX-512F: 16 lanes, mask compares and `vpgatherdd zmm`.
    Avx512,
    /// AArch64 NEON: 4-lane range checks, scalar loads (NEON has no gather).
    Neon,
}

impl Isa {
    /// Every kernel this crate has, available here or not.
    ///
    /// ```
    /// assert_eq!(initret::arch::Isa::ALL.len(), 4);
    /// ```
    pub const ALL: [Isa; 4] = [Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Neon];

    /// The lower-case name used by `INITRET_FORCE_ISA` and the CLI.
    ///
    /// ```
    /// assert_eq!(initret::arch::Isa::Avx512.name(), "avx512");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
            Isa::Neon => "neon",
        }
    }

    /// Whether this build and this CPU can run the kernel.
    ///
    /// ```
    /// // The scalar kernel is always there.
    /// assert!(initret::arch::Isa::Scalar.is_available());
    /// ```
    pub fn is_available(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => std::arch::is_x86_feature_detected!("avx2"),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
            // The vector kernels read counts as little-endian words.
            #[cfg(all(target_arch = "aarch64", target_endian = "little"))]
            Isa::Neon => std::arch::is_aarch64_feature_detected!("neon"),
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// Every kernel this CPU can run, scalar first.
    ///
    /// ```
    /// assert!(initret::arch::Isa::available().contains(&initret::arch::Isa::Scalar));
    /// ```
    pub fn available() -> Vec<Isa> {
        Isa::ALL
            .into_iter()
            .filter(|isa| isa.is_available())
            .collect()
    }

    /// The names of [`Isa::available`], comma-separated.
    ///
    /// ```
    /// assert!(initret::arch::Isa::available_names().starts_with("scalar"));
    /// ```
    pub fn available_names() -> String {
        Isa::available()
            .iter()
            .map(|i| i.name())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The widest instruction set this CPU can run, detected once per
    /// process. Widest is not fastest: the kernel that runs is measured (see
    /// [`Calibration`]).
    ///
    /// ```
    /// assert!(initret::arch::Isa::detected().is_available());
    /// ```
    pub fn detected() -> Isa {
        static DETECTED: OnceLock<Isa> = OnceLock::new();
        *DETECTED.get_or_init(|| {
            [Isa::Avx512, Isa::Avx2, Isa::Neon]
                .into_iter()
                .find(|isa| isa.is_available())
                .unwrap_or(Isa::Scalar)
        })
    }

    /// The instruction set `INITRET_FORCE_ISA` names (on its own or as
    /// part of a kernel's name), if set, otherwise [`Isa::detected`]. Fails
    /// with [`Error::IsaUnavailable`] if the variable names an unknown kernel
    /// or one this CPU cannot run, rather than quietly running another. The
    /// kernel a CPU backend runs is measured: among this ISA's kernels when
    /// the variable names one, among every available kernel when it is
    /// unset (see [`KernelRequest`] and [`Calibration`]).
    ///
    /// ```
    /// let isa = initret::arch::Isa::selected()?;
    /// assert!(isa.is_available());
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn selected() -> Result<Isa, Error> {
        Ok(match KernelRequest::from_env()? {
            KernelRequest::Measure { isa: Some(isa) } => isa,
            KernelRequest::Measure { isa: None } => Isa::detected(),
            KernelRequest::Fixed(kernel) => kernel.isa(),
        })
    }

    pub(crate) fn check_available(self) -> Result<Isa, Error> {
        if self.is_available() {
            Ok(self)
        } else {
            Err(Error::IsaUnavailable {
                requested: self.name().into(),
                reason: format!(
                    "this CPU or build lacks it; available here: {}",
                    Isa::available_names()
                ),
            })
        }
    }
}

impl fmt::Display for Isa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Isa {
    type Err = Error;

    fn from_str(s: &str) -> Result<Isa, Error> {
        let name = s.trim().to_ascii_lowercase();
        Isa::ALL
            .into_iter()
            .find(|isa| isa.name() == name)
            .ok_or_else(|| Error::IsaUnavailable {
                requested: s.into(),
                reason: "unknown instruction set; expected scalar, avx2, avx512 or neon".into(),
            })
    }
}

/// The CPU features that matter to the kernels, as `name: yes/no` pairs,
/// for `initret info`.
///
/// ```
/// let features = initret::arch::cpu_features();
/// # #[cfg(target_arch = "x86_64")]
/// assert!(features.iter().any(|&(name, _)| name == "avx2"));
/// ```
pub fn cpu_features() -> Vec<(&'static str, bool)> {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        vec![
            ("popcnt", has!("popcnt")),
            ("avx2", has!("avx2")),
            ("avx512f", has!("avx512f")),
            ("avx512vpopcntdq", has!("avx512vpopcntdq")),
        ]
    }
    #[cfg(target_arch = "aarch64")]
    {
        vec![("neon", std::arch::is_aarch64_feature_detected!("neon"))]
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        Vec::new()
    }
}

/// Batches of at least this many queries are written with streaming
/// (non-temporal) stores by [`LookupKernel::lookup`]: their output is far
/// bigger than the caches, so bypassing them saves the read-for-ownership of
/// every output line. Smaller outputs are stored normally, since the caller
/// is likely to read them while they are still cached.
pub(crate) const STREAM_MIN_QUERIES: usize = 1 << 18;

/// The raw per-ISA routine over counts of type `C` and query words of type
/// `Q`: `(padded counts, rows, queries, out, streaming, prefetch distance)`.
/// `unsafe` because it may use instructions the CPU lacks; [`LookupKernel`]
/// only holds one whose ISA was checked.
type RawLookup<C, Q> = unsafe fn(&[C], usize, &[Q], &mut [u32], bool, usize) -> Result<(), usize>;

/// A lookup routine for one [`Kernel`], chosen once (at backend build) and
/// then called directly through function pointers, one per count width and
/// query width: the same algorithm reads `u32` queries, and `u64` or `i64`
/// ones in place (no narrowed copy; see [`LookupKernel::lookup_indices`]).
///
/// ```
/// use initret::arch::{CountTable, Kernel, LookupKernel};
///
/// let kernel = LookupKernel::new(Kernel::SCALAR)?;
/// let mut out = [0; 2];
/// // Position 1 holds an index past the 2-row count table.
/// assert!(kernel.lookup(&CountTable::from_counts(&[5, 6]), &[1, 2], &mut out).is_err());
/// # Ok::<(), initret::Error>(())
/// ```
#[derive(Clone, Copy)]
pub struct LookupKernel {
    kernel: Kernel,
    u8: RawLookup<u8, u32>,
    u16: RawLookup<u16, u32>,
    u32: RawLookup<u32, u32>,
    wide_u8: RawLookup<u8, u64>,
    wide_u16: RawLookup<u16, u64>,
    wide_u32: RawLookup<u32, u64>,
}

impl fmt::Debug for LookupKernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LookupKernel")
            .field("kernel", &self.kernel)
            .finish()
    }
}

/// The instances of one generic routine for the three count widths and the
/// two query widths.
macro_rules! routines {
    ($kernel:expr, $f:path) => {
        LookupKernel {
            kernel: $kernel,
            u8: $f,
            u16: $f,
            u32: $f,
            wide_u8: $f,
            wide_u16: $f,
            wide_u32: $f,
        }
    };
}

impl LookupKernel {
    /// The routine for `kernel`, or [`Error::IsaUnavailable`] if this CPU
    /// or build cannot run it.
    ///
    /// ```
    /// use initret::arch::{Kernel, LookupKernel};
    ///
    /// assert_eq!(LookupKernel::new(Kernel::SCALAR)?.kernel(), Kernel::SCALAR);
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn new(kernel: Kernel) -> Result<LookupKernel, Error> {
        kernel.check_available()?;
        Ok(match (kernel.isa(), kernel.fetch()) {
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx2, Fetch::Gather) => routines!(kernel, x86_64::avx2::lookup_gather),
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx2, Fetch::Loads) => routines!(kernel, x86_64::avx2::lookup_loads),
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx512, Fetch::Gather) => routines!(kernel, x86_64::avx512::lookup_gather),
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx512, Fetch::Loads) => routines!(kernel, x86_64::avx512::lookup_loads),
            #[cfg(all(target_arch = "aarch64", target_endian = "little"))]
            (Isa::Neon, _) => routines!(kernel, aarch64::neon::lookup_loads),
            _ => routines!(kernel, all::lookup_raw),
        })
    }

    /// Whether this routine can serve `counts` as it is: the gathers take
    /// signed 32-bit byte offsets, so a gather kernel hands tables past
    /// 2^31 bytes of counts to its ISA's scalar-load variant instead.
    ///
    /// ```
    /// use initret::arch::{CountTable, Kernel, LookupKernel};
    /// let kernel = LookupKernel::new(Kernel::SCALAR)?;
    /// assert!(kernel.serves(&CountTable::from_counts(&[1, 2, 3])));
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn serves(&self, counts: &CountTable) -> bool {
        self.kernel.fetch() != Fetch::Gather
            || counts.rows().saturating_mul(counts.bytes_per_count()) <= 1 << 31
    }

    /// The kernel that runs when this routine serves `counts`: itself, or,
    /// for a gather kernel on a table past 2^31 bytes of counts (see
    /// [`LookupKernel::serves`]), the same ISA's loads kernel.
    ///
    /// ```
    /// use initret::arch::{CountTable, Kernel, LookupKernel};
    /// let counts = CountTable::from_counts(&[1, 2]);
    /// assert_eq!(LookupKernel::new(Kernel::SCALAR)?.kernel_for(&counts), Kernel::SCALAR);
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn kernel_for(&self, counts: &CountTable) -> Kernel {
        if self.serves(counts) {
            self.kernel
        } else {
            self.kernel.with_fetch(Fetch::Loads)
        }
    }

    /// The kernel this routine runs.
    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    /// The instruction set of the kernel.
    pub fn isa(&self) -> Isa {
        self.kernel.isa()
    }

    /// Writes the count of row `queries[i]` to `out[i]` for every `i`,
    /// with streaming stores when there are at least 2^18 queries (their
    /// output is far bigger than the caches).
    ///
    /// Fails with [`Error::OutputLength`] if `out` and `queries` differ in
    /// length, and with [`Error::IndexOutOfRange`] at the first query
    /// `>= counts.rows()`; `out` is then only partly written.
    ///
    /// ```
    /// use initret::arch::{CountTable, Kernel, LookupKernel};
    ///
    /// for kernel in Kernel::available() {
    ///     let mut out = [0; 4];
    ///     LookupKernel::new(kernel)?.lookup(&CountTable::from_counts(&[7, 8, 9]), &[2, 2, 0, 1], &mut out)?;
    ///     assert_eq!(out, [9, 9, 7, 8]);
    /// }
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn lookup(
        &self,
        counts: &CountTable,
        queries: &[u32],
        out: &mut [u32],
    ) -> Result<(), Error> {
        self.lookup_indices(counts, queries, out)
    }

    /// [`LookupKernel::lookup`] for queries of any [`QueryIndex`] type:
    /// `u32`, `u64` or `i64`. The kernel reads 64-bit queries directly
    /// (a vector of them is narrowed in registers and range checked
    /// there); a negative `i64` or a value `>= counts.rows()` is
    /// [`Error::IndexOutOfRange`] at the first such position, with the value
    /// as given.
    ///
    /// ```
    /// use initret::Error;
    /// use initret::arch::{CountTable, Kernel, LookupKernel};
    ///
    /// let counts = CountTable::from_counts(&[7, 8, 9]);
    /// for kernel in Kernel::available() {
    ///     let kernel = LookupKernel::new(kernel)?;
    ///     let mut out = [0; 3];
    ///     kernel.lookup_indices(&counts, &[2u64, 0, 1], &mut out)?;
    ///     assert_eq!(out, [9, 7, 8]);
    ///     kernel.lookup_indices(&counts, &[1i64, 1, 2], &mut out)?;
    ///     assert_eq!(out, [8, 8, 9]);
    ///     assert!(matches!(
    ///         kernel.lookup_indices(&counts, &[0i64, -1, 5], &mut out),
    ///         Err(Error::IndexOutOfRange { position: 1, index: -1, rows: 3 })
    ///     ));
    /// }
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn lookup_indices<Q: QueryIndex>(
        &self,
        counts: &CountTable,
        queries: &[Q],
        out: &mut [u32],
    ) -> Result<(), Error> {
        let streaming = queries.len() >= STREAM_MIN_QUERIES;
        self.lookup_with_stores(counts, queries, out, streaming)
    }

    /// [`LookupKernel::lookup`] with the store kind chosen by the caller:
    /// a caller that splits one large batch into chunks decides `streaming`
    /// once, from the whole batch's size.
    pub(crate) fn lookup_with_stores<Q: QueryIndex>(
        &self,
        counts: &CountTable,
        queries: &[Q],
        out: &mut [u32],
        streaming: bool,
    ) -> Result<(), Error> {
        Error::check_output_len(queries.len(), out.len())?;
        let rows = counts.rows();
        // The gathers take signed 32-bit byte offsets: tables past 2^31
        // bytes of counts go to the same ISA's scalar loads, which index
        // with usize.
        let kernel = if self.serves(counts) {
            *self
        } else {
            LookupKernel::new(self.kernel.with_fetch(Fetch::Loads))?
        };
        let prefetch = usize::from(kernel.kernel.prefetch_distance());
        // SAFETY: the routines were chosen by `LookupKernel::new` only after
        // `check_available` confirmed the CPU supports their ISA; `out` and
        // `queries` have equal lengths (checked above); `CountTable` stores
        // `rows` counts plus the padding the 4-byte gathers need; and the
        // gather routines only see tables of at most 2^31 bytes (above).
        let result = unsafe {
            match (counts.words(), Q::words(queries)) {
                (CountStorage::U8(words), Words::U32(q)) => {
                    (kernel.u8)(words, rows, q, out, streaming, prefetch)
                }
                (CountStorage::U16(words), Words::U32(q)) => {
                    (kernel.u16)(words, rows, q, out, streaming, prefetch)
                }
                (CountStorage::U32(words), Words::U32(q)) => {
                    (kernel.u32)(words, rows, q, out, streaming, prefetch)
                }
                (CountStorage::U8(words), Words::U64(q)) => {
                    (kernel.wide_u8)(words, rows, q, out, streaming, prefetch)
                }
                (CountStorage::U16(words), Words::U64(q)) => {
                    (kernel.wide_u16)(words, rows, q, out, streaming, prefetch)
                }
                (CountStorage::U32(words), Words::U64(q)) => {
                    (kernel.wide_u32)(words, rows, q, out, streaming, prefetch)
                }
            }
        };
        // The position is read again to be reported: if another thread
        // rewrote it meanwhile, that is said, not a valid index called bad.
        result.map_err(|position| Error::flagged(position, queries[position].to_i128(), rows))
    }
}
