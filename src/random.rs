//! The deterministic random data initret measures with: the batches that
//! choose a CPU kernel and Auto's crossover, and (through
//! [`harness`](crate::harness)) the tables and queries of the tests and
//! benchmarks, so that every measurement can be repeated.

#[cfg(any(test, feature = "harness"))]
use crate::{BitTable, Error};

/// A small, fast, deterministic generator (splitmix64) for benchmark and
/// test data.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator started from `seed`.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..bound` (`bound > 0`).
    pub fn below(&mut self, bound: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }
}

/// `rows × words_per_row` random words.
#[cfg(any(test, feature = "harness"))]
pub fn random_table(rows: usize, words_per_row: usize, seed: u64) -> Result<BitTable, Error> {
    let mut rng = SplitMix64::new(seed);
    BitTable::from_fn(rows, words_per_row, |_, _| rng.next_u64() as u32)
}

/// `n` random indices in `0..rows` (`rows > 0`).
pub fn random_queries(n: usize, rows: usize, seed: u64) -> Vec<u32> {
    let mut rng = SplitMix64::new(seed);
    (0..n).map(|_| rng.below(rows as u64) as u32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_splitmix64() {
        // splitmix64's published first output for seed 0.
        assert_eq!(SplitMix64::new(0).next_u64(), 0xE220_A839_7B1D_CDAF);
        let mut rng = SplitMix64::new(3);
        assert!((0..100).all(|_| rng.below(10) < 10));
        let t = random_table(10, 3, 7).unwrap();
        assert_eq!((t.rows(), t.words_per_row()), (10, 3));
    }
}
