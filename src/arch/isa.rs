//! [`Isa`]: the instruction sets the lookup kernels are written for, and
//! which of them this CPU runs.

use std::fmt;
use std::sync::OnceLock;

use crate::Error;

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
    /// [`Calibration`](super::select::Calibration)).
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
