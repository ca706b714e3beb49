//! [`Kernel`]: one concrete lookup routine (an instruction set, a way of
//! fetching counts, a prefetch distance), and [`KernelRequest`]: what the
//! caller or `INITRET_FORCE_ISA` asks for.

use std::fmt;

use super::all;
use super::isa::Isa;
use crate::Error;

/// Environment variable that steers the CPU kernel: an instruction set's
/// name (`scalar`, `avx2`, `avx512`, `neon`) limits the measurement to that
/// ISA's kernels, and a kernel's full name (`avx512-gather`, `scalar-pf128`;
/// `scalar-loads` for the plain scalar loop) fixes the kernel. Read by
/// [`KernelRequest::from_env`] only: by a [`Dispatcher`](crate::Dispatcher)
/// whose builder was given no kernel, and by a CPU backend whose builder
/// was asked to ([`CpuBackendBuilder::kernel_request_from_env`]).
///
/// [`CpuBackendBuilder::kernel_request_from_env`]: crate::cpu::CpuBackendBuilder::kernel_request_from_env
pub const FORCE_ISA_ENV: &str = "INITRET_FORCE_ISA";

/// How a kernel reads the counts of a block of range-checked queries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fetch {
    /// One scalar load per query (every ISA can).
    Loads,
    /// The ISA's gather instruction (`vpgatherdd`; AVX2 and AVX-512 only).
    /// Fast on some cores, slow microcode on others: measure.
    Gather,
}

/// The prefetch distances (in queries) that kernels are offered with, as
/// well as none. Which one, if any, wins depends on the table against this
/// machine's caches, so [`Calibration`](super::select::Calibration) picks
/// (measurements in BENCHMARKS.md).
pub(crate) const PREFETCH_DISTANCES: [u16; 2] = [32, 128];

/// One lookup routine: an instruction set, how it fetches counts, and how
/// many queries ahead it prefetches (0: it does not).
///
/// Its [`name`](Kernel::name) is the ISA, then `-gather` or `-loads` for the
/// vector ISAs, then `-pfN` for a prefetch distance of `N`: `scalar`,
/// `scalar-pf64`, `avx2-gather`, `avx512-loads-pf64`, `neon-loads`. Names
/// parse back with `str::parse`, and `INITRET_FORCE_ISA` takes them to fix
/// the kernel, except the bare `scalar`, which there (like every bare ISA
/// name) only limits the measurement: write `scalar-loads` to fix it.
///
/// ```
/// use initret::arch::{Fetch, Isa, Kernel};
///
/// let kernel: Kernel = "avx512-loads-pf64".parse()?;
/// assert_eq!((kernel.isa(), kernel.fetch(), kernel.prefetch_distance()), (Isa::Avx512, Fetch::Loads, 64));
/// assert_eq!(kernel.to_string(), "avx512-loads-pf64");
/// assert_eq!(Kernel::SCALAR.name(), "scalar");
/// # Ok::<(), initret::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Kernel {
    isa: Isa,
    fetch: Fetch,
    prefetch: u16,
}

impl Kernel {
    /// The portable scalar loop: runs everywhere.
    pub const SCALAR: Kernel = Kernel {
        isa: Isa::Scalar,
        fetch: Fetch::Loads,
        prefetch: 0,
    };

    /// The kernel for `isa` fetching with `fetch`, prefetching `prefetch`
    /// queries ahead (0: not at all). Whether this CPU can run it is
    /// [`Kernel::is_available`].
    ///
    /// ```
    /// use initret::arch::{Fetch, Isa, Kernel};
    /// assert_eq!(Kernel::new(Isa::Avx2, Fetch::Gather, 0).name(), "avx2-gather");
    /// ```
    pub const fn new(isa: Isa, fetch: Fetch, prefetch: u16) -> Kernel {
        Kernel {
            isa,
            fetch,
            prefetch,
        }
    }

    /// The instruction set.
    ///
    /// ```
    /// assert_eq!(initret::arch::Kernel::SCALAR.isa(), initret::arch::Isa::Scalar);
    /// ```
    pub fn isa(self) -> Isa {
        self.isa
    }

    /// How counts are fetched.
    ///
    /// ```
    /// assert_eq!(initret::arch::Kernel::SCALAR.fetch(), initret::arch::Fetch::Loads);
    /// ```
    pub fn fetch(self) -> Fetch {
        self.fetch
    }

    /// How many queries ahead counts are prefetched (0: no prefetching).
    ///
    /// ```
    /// assert_eq!(initret::arch::Kernel::SCALAR.prefetch_distance(), 0);
    /// ```
    pub fn prefetch_distance(self) -> u16 {
        self.prefetch
    }

    /// The same kernel fetching with `fetch`.
    pub(crate) fn with_fetch(self, fetch: Fetch) -> Kernel {
        Kernel { fetch, ..self }
    }

    /// The kernel's name, as described on [`Kernel`].
    ///
    /// ```
    /// use initret::arch::{Fetch, Isa, Kernel};
    /// assert_eq!(Kernel::new(Isa::Scalar, Fetch::Loads, 32).name(), "scalar-pf32");
    /// ```
    pub fn name(self) -> String {
        let mut name = self.isa.name().to_string();
        if self.isa != Isa::Scalar {
            name.push_str(match self.fetch {
                Fetch::Loads => "-loads",
                Fetch::Gather => "-gather",
            });
        }
        if self.prefetch != 0 {
            name.push_str(&format!("-pf{}", self.prefetch));
        }
        name
    }

    /// Whether this build and this CPU can run the kernel: its ISA is
    /// available, it gathers only on an ISA that has a gather instruction,
    /// and it prefetches only where the target has a prefetch hint.
    ///
    /// ```
    /// use initret::arch::{Fetch, Isa, Kernel};
    /// assert!(Kernel::SCALAR.is_available());
    /// assert!(!Kernel::new(Isa::Scalar, Fetch::Gather, 0).is_available());
    /// ```
    pub fn is_available(self) -> bool {
        let gathers = matches!(self.isa, Isa::Avx2 | Isa::Avx512);
        self.isa.is_available()
            && (self.fetch == Fetch::Loads || gathers)
            && (self.prefetch == 0 || all::CAN_PREFETCH)
    }

    pub(crate) fn check_available(self) -> Result<Kernel, Error> {
        if self.fetch == Fetch::Gather && !matches!(self.isa, Isa::Avx2 | Isa::Avx512) {
            return Err(Error::IsaUnavailable {
                requested: format!("{}-gather", self.isa.name()),
                reason: format!(
                    "there is no {} gather kernel (only avx2 and avx512 gather); kernels available here: {}",
                    self.isa.name(),
                    Kernel::available()
                        .iter()
                        .map(|k| k.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
        self.isa.check_available()?;
        if self.is_available() {
            Ok(self)
        } else {
            Err(Error::IsaUnavailable {
                requested: self.name(),
                reason: "this instruction set has no such kernel on this target".into(),
            })
        }
    }

    /// Every kernel of `isa` this CPU can run: scalar loads without and with
    /// each of the prefetch distances 32 and 128 (where the target can
    /// prefetch), then, for AVX2 and AVX-512, one gather kernel without
    /// prefetching.
    ///
    /// ```
    /// use initret::arch::{Isa, Kernel};
    /// assert_eq!(Kernel::of(Isa::Scalar)[0], Kernel::SCALAR);
    /// ```
    pub fn of(isa: Isa) -> Vec<Kernel> {
        let mut kernels = vec![Kernel::new(isa, Fetch::Loads, 0)];
        kernels.extend(
            PREFETCH_DISTANCES
                .iter()
                .map(|&d| Kernel::new(isa, Fetch::Loads, d)),
        );
        kernels.push(Kernel::new(isa, Fetch::Gather, 0));
        kernels.retain(|k| k.is_available());
        kernels
    }

    /// Every kernel this CPU can run, scalar first.
    ///
    /// ```
    /// use initret::arch::Kernel;
    /// let kernels = Kernel::available();
    /// assert_eq!(kernels[0], Kernel::SCALAR);
    /// assert!(kernels.iter().all(|k| k.is_available()));
    /// ```
    pub fn available() -> Vec<Kernel> {
        Isa::available().into_iter().flat_map(Kernel::of).collect()
    }
}

impl fmt::Display for Kernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl std::str::FromStr for Kernel {
    type Err = Error;

    fn from_str(s: &str) -> Result<Kernel, Error> {
        let unknown = || Error::IsaUnavailable {
            requested: s.into(),
            reason: "unknown kernel; expected an instruction set (scalar, avx2, avx512, neon), \
                     optionally followed by -loads or -gather and -pfN"
                .into(),
        };
        let name = s.trim().to_ascii_lowercase();
        let mut parts = name.split('-');
        let isa: Isa = parts.next().unwrap_or_default().parse()?;
        let mut kernel = Kernel::new(isa, Fetch::Loads, 0);
        // At most one fetch part, then at most one `pfN` part, in that order.
        let (mut fetch_seen, mut prefetch_seen) = (false, false);
        for part in parts {
            let digits = part
                .strip_prefix("pf")
                .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()));
            match (part, digits) {
                ("loads" | "gather", _) if !fetch_seen && !prefetch_seen => {
                    fetch_seen = true;
                    if part == "gather" {
                        kernel.fetch = Fetch::Gather;
                    }
                }
                (_, Some(digits)) if !prefetch_seen => {
                    prefetch_seen = true;
                    kernel.prefetch = digits.parse().map_err(|_| unknown())?;
                }
                _ => return Err(unknown()),
            }
        }
        Ok(kernel)
    }
}

// `Isa::selected` lives here, beside the request it reads, so that `isa.rs`
// needs nothing from this file.
impl Isa {
    /// The instruction set `INITRET_FORCE_ISA` names (on its own or as
    /// part of a kernel's name), if set, otherwise [`Isa::detected`]. Fails
    /// with [`Error::IsaUnavailable`] if the variable names an unknown kernel
    /// or one this CPU cannot run, rather than quietly running another. The
    /// kernel a CPU backend runs is measured: among this ISA's kernels when
    /// the variable names one, among every available kernel when it is
    /// unset (see [`KernelRequest`] and [`Calibration`](super::select::Calibration)).
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
}

/// Which kernel a CPU backend should run.
///
/// ```
/// use initret::arch::{Isa, Kernel, KernelRequest};
///
/// assert_eq!("avx2".parse::<KernelRequest>()?, KernelRequest::Measure { isa: Some(Isa::Avx2) });
/// assert_eq!("scalar-pf64".parse::<KernelRequest>()?, KernelRequest::Fixed("scalar-pf64".parse()?));
/// # Ok::<(), initret::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelRequest {
    /// Time every kernel this CPU can run (of `isa` only, if given) and keep
    /// the fastest: the default.
    Measure {
        /// Limits the candidates to one instruction set.
        isa: Option<Isa>,
    },
    /// Run this kernel, unmeasured.
    Fixed(Kernel),
}

impl KernelRequest {
    /// What `INITRET_FORCE_ISA` asks for: an instruction set's name limits
    /// the measurement to its kernels, a kernel's full name (such as
    /// `avx512-loads-pf64`) fixes the kernel, and an unset or empty variable
    /// measures every kernel. An unknown name, or one this CPU cannot run,
    /// is [`Error::IsaUnavailable`], never a quiet fallback. Read anew on
    /// every call, so every backend built sees the variable as it is then.
    ///
    /// ```
    /// let request = initret::arch::KernelRequest::from_env()?;
    /// assert!(!request.candidates().is_empty());
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn from_env() -> Result<KernelRequest, Error> {
        match std::env::var(FORCE_ISA_ENV) {
            Ok(name) if !name.trim().is_empty() => name
                .parse::<KernelRequest>()
                .and_then(KernelRequest::check_available)
                .map_err(|e| match e {
                    Error::IsaUnavailable { requested, reason } => Error::IsaUnavailable {
                        requested,
                        reason: format!("{reason} (set by {FORCE_ISA_ENV})"),
                    },
                    other => Error::IsaUnavailable {
                        requested: name,
                        reason: format!("{other} (set by {FORCE_ISA_ENV})"),
                    },
                }),
            Err(std::env::VarError::NotUnicode(name)) => Err(Error::IsaUnavailable {
                requested: name.to_string_lossy().into_owned(),
                reason: format!("not valid UTF-8 (set by {FORCE_ISA_ENV})"),
            }),
            _ => Ok(KernelRequest::Measure { isa: None }),
        }
    }

    /// This request, or [`Error::IsaUnavailable`] if this CPU cannot serve it.
    ///
    /// ```
    /// use initret::arch::KernelRequest;
    /// assert!(KernelRequest::Measure { isa: None }.check_available().is_ok());
    /// ```
    pub fn check_available(self) -> Result<KernelRequest, Error> {
        match self {
            KernelRequest::Measure { isa: Some(isa) } => isa.check_available().map(|_| self),
            KernelRequest::Measure { isa: None } => Ok(self),
            KernelRequest::Fixed(kernel) => kernel.check_available().map(|_| self),
        }
    }

    /// The kernels this request leaves to choose from, all available here.
    ///
    /// ```
    /// use initret::arch::{Kernel, KernelRequest};
    /// assert_eq!(KernelRequest::Fixed(Kernel::SCALAR).candidates(), vec![Kernel::SCALAR]);
    /// ```
    pub fn candidates(self) -> Vec<Kernel> {
        match self {
            KernelRequest::Measure { isa: Some(isa) } => Kernel::of(isa),
            KernelRequest::Measure { isa: None } => Kernel::available(),
            KernelRequest::Fixed(kernel) => vec![kernel],
        }
    }
}

/// An instruction set as a request: measure its kernels, keep the fastest.
///
/// ```
/// use initret::arch::{Isa, KernelRequest};
/// assert_eq!(KernelRequest::from(Isa::Avx2), KernelRequest::Measure { isa: Some(Isa::Avx2) });
/// ```
impl From<Isa> for KernelRequest {
    fn from(isa: Isa) -> KernelRequest {
        KernelRequest::Measure { isa: Some(isa) }
    }
}

/// A kernel as a request: run it, unmeasured.
///
/// ```
/// use initret::arch::{Kernel, KernelRequest};
/// assert_eq!(KernelRequest::from(Kernel::SCALAR), KernelRequest::Fixed(Kernel::SCALAR));
/// ```
impl From<Kernel> for KernelRequest {
    fn from(kernel: Kernel) -> KernelRequest {
        KernelRequest::Fixed(kernel)
    }
}

impl std::str::FromStr for KernelRequest {
    type Err = Error;

    fn from_str(s: &str) -> Result<KernelRequest, Error> {
        if s.contains('-') {
            s.parse().map(KernelRequest::Fixed)
        } else {
            s.parse()
                .map(|isa| KernelRequest::Measure { isa: Some(isa) })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_parses_back_to_its_kernel() {
        for isa in Isa::ALL {
            for fetch in [Fetch::Loads, Fetch::Gather] {
                for prefetch in [0, 8, 64, 1000] {
                    let kernel = Kernel::new(isa, fetch, prefetch);
                    if isa == Isa::Scalar && fetch == Fetch::Gather {
                        continue; // named "scalar", the loads kernel
                    }
                    assert_eq!(kernel.name().parse::<Kernel>().unwrap(), kernel);
                }
            }
        }
    }

    #[test]
    fn bad_names_are_errors() {
        for name in [
            "",
            "avx3",
            "avx2-pf",
            "avx2-pfx",
            "avx2-pf+5",
            "avx2-scatter",
            "scalar-pf99999999",
            "avx2-loads-gather",
            "avx2-pf32-loads",
            "avx2-loads-pf32-pf64",
        ] {
            assert!(name.parse::<Kernel>().is_err(), "{name}");
        }
    }

    #[test]
    fn a_gather_kernel_of_an_isa_without_gathers_is_named_as_such() {
        for name in ["scalar-gather", "neon-gather"] {
            let err = name
                .parse::<KernelRequest>()
                .and_then(KernelRequest::check_available)
                .unwrap_err();
            let Error::IsaUnavailable { requested, reason } = err else {
                panic!("{name}: {err}");
            };
            assert_eq!(requested, name);
            let isa = name.split('-').next().unwrap();
            assert!(
                reason.contains(&format!("there is no {isa} gather kernel")),
                "{reason}"
            );
            assert!(reason.contains("scalar"), "{reason}");
        }
    }

    #[test]
    fn candidates_are_available_and_start_with_scalar() {
        let all = KernelRequest::Measure { isa: None }.candidates();
        assert_eq!(all[0], Kernel::SCALAR);
        assert!(all.iter().all(|k| k.is_available()));
        for isa in Isa::available() {
            let of = KernelRequest::Measure { isa: Some(isa) }.candidates();
            assert!(!of.is_empty() && of.iter().all(|k| k.isa() == isa));
        }
    }
}
