//! x86-64 wrappers: each plugs its intrinsics into the generic algorithm.

pub(crate) mod avx2;
pub(crate) mod avx512;
