//! 10,000 calls of mixed sizes leave resident memory flat. One test in this
//! binary, so no other test's allocations move the measurement.

mod common;

use initret::harness::{SplitMix64, random_queries, random_table};
use initret::{Backend, Dispatcher};

/// The page size, which `/proc/self/statm` counts in.
fn page_bytes() -> Option<u64> {
    let out = std::process::Command::new("getconf")
        .arg("PAGESIZE")
        .output()
        .ok()?;
    String::from_utf8(out.stdout).ok()?.trim().parse().ok()
}

/// Resident set size in bytes, from `/proc/self/statm` (second field, in pages).
fn resident_bytes(page: u64) -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page)
}

/// Allowed growth after warm-up. The largest batch's buffers (queries and
/// output, 2 × 4 × 300,000 bytes ≈ 2.3 MiB) may be held by the allocator at
/// any moment; anything proportional to the number of calls would blow far
/// past this (10,000 calls × even 1 KiB leaked = 10 MiB).
const TOLERANCE_BYTES: u64 = 8 << 20;

fn run_calls(dispatcher: &Dispatcher, rows: usize, calls: usize, rng: &mut SplitMix64) {
    for call in 0..calls {
        let n = match call % 5 {
            0 => 0,
            1 => rng.below(64) as usize,
            2 => rng.below(10_000) as usize,
            3 => 150_000 + rng.below(150_000) as usize,
            _ => 1,
        };
        let queries = random_queries(n, rows, rng.next_u64());
        let counts = dispatcher.popcount(&queries).expect("valid batch");
        assert_eq!(counts.len(), n);
        if call % 7 == 0 {
            let mut bad = queries.clone();
            bad.push(u32::MAX);
            assert!(dispatcher.popcount(&bad).is_err());
        }
    }
}

#[test]
fn ten_thousand_mixed_calls_keep_memory_flat() {
    let Some(page) = page_bytes().filter(|&p| resident_bytes(p).is_some()) else {
        eprintln!("skipping: /proc/self/statm or getconf is not available on this OS");
        return;
    };
    let table = random_table(1 << 16, 2, 1).expect("table");
    let mut backends = vec![(
        "cpu",
        Dispatcher::new(table.clone(), Backend::Cpu).expect("cpu"),
    )];
    if let Some(gpu) = common::gpu_dispatcher(&table) {
        backends.push(("gpu", gpu));
    }
    for (name, dispatcher) in &backends {
        let mut rng = SplitMix64::new(7);
        run_calls(dispatcher, table.rows(), 1_000, &mut rng);
        let before = resident_bytes(page).expect("statm");
        run_calls(dispatcher, table.rows(), 10_000, &mut rng);
        let after = resident_bytes(page).expect("statm");
        let growth = after.saturating_sub(before);
        eprintln!("{name}: resident {before} -> {after} bytes (+{growth})");
        assert!(
            growth <= TOLERANCE_BYTES,
            "{name}: resident memory grew by {growth} bytes over 10,000 calls (tolerance {TOLERANCE_BYTES})"
        );
    }
}
