//! AArch64 wrappers.

pub(crate) mod neon;
