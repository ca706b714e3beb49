//! Runs the popcount lookups on the GPU without any window and checks them
//! against the CPU reference.
//!
//! ```text
//! cargo run --release --example headless_gpu
//! ```
//!
//! Prints the adapter, runs the seed workload (65535 lookups into
//! `BitTable::seed(65535)`, checksum 524272) and a 2^24-query batch of random
//! indices, with the upload / dispatch / read-back split and the bench's
//! reference times. Exits with status 1 on a mismatch, 2 when there is no
//! usable adapter.

use std::process::ExitCode;

fn main() -> ExitCode {
    match demo::run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(initret::Error::GpuUnavailable(reason)) => {
            eprintln!("no usable GPU adapter: {reason}");
            ExitCode::from(2)
        }
        Err(error) => {
            eprintln!("GPU run failed: {error}");
            ExitCode::from(1)
        }
    }
}

// Without the `gpu` feature this still builds: `GpuBackend::new` then says
// why there is no GPU, and the demo exits with status 2.
mod demo {
    use std::time::{Duration, Instant};

    use initret::gpu::{DeviceLookup, GpuBackend, adapters};
    use initret::harness::random_queries;
    use initret::{BitTable, Error, PopcountBackend, SEED_CHECKSUM, SEED_ROWS};

    const LARGE_BATCH: usize = 1 << 24;

    fn ms(d: Duration) -> String {
        format!("{:.3} ms", d.as_secs_f64() * 1e3)
    }

    pub fn run() -> Result<bool, Error> {
        println!("adapters:");
        for adapter in adapters() {
            println!("  {adapter}");
        }
        let table = BitTable::seed(SEED_ROWS);
        let started = Instant::now();
        let gpu = GpuBackend::new(&table)?;
        println!(
            "using: {}{}",
            gpu.adapter(),
            if gpu.is_software() { " [software]" } else { "" }
        );
        println!("backend built in {}", ms(started.elapsed()));
        let mut ok = true;

        // Seed workload: every row once, end to end through `popcount`.
        let queries: Vec<u32> = (0..SEED_ROWS).collect();
        let expected = table.reference_popcount(&queries)?;
        let mut seed_times = Vec::new();
        let mut counts = Vec::new();
        for _ in 0..20 {
            let started = Instant::now();
            counts = gpu.popcount(&queries)?;
            seed_times.push(started.elapsed());
        }
        let first_call = seed_times[0];
        seed_times.sort();
        let checksum: u64 = counts.iter().map(|&c| u64::from(c)).sum();
        println!(
            "seed workload: {} queries, checksum {checksum} (expected {SEED_CHECKSUM}); \
             first call {}, best {}, median {} over {} calls",
            queries.len(),
            ms(first_call),
            ms(seed_times[0]),
            ms(seed_times[seed_times.len() / 2]),
            seed_times.len()
        );
        if checksum != SEED_CHECKSUM || counts != expected {
            eprintln!("MISMATCH: seed workload differs from the CPU reference");
            ok = false;
        }
        let mut seed_out = vec![0; queries.len()];
        let timings = gpu.popcount_timed(&queries, &mut seed_out)?;
        println!(
            "seed workload phases: upload {}, dispatch {}, read-back {}",
            ms(timings.upload),
            ms(timings.dispatch),
            ms(timings.readback)
        );

        // 2^24 random indices.
        let large = random_queries(LARGE_BATCH, SEED_ROWS as usize, 0x1417_2024);
        let expected = table.reference_popcount(&large)?;
        let started = Instant::now();
        let first_counts = gpu.popcount(&large)?;
        let first_streamed = started.elapsed(); // includes growing the ring buffers
        let started = Instant::now();
        let counts = gpu.popcount(&large)?;
        let streamed = started.elapsed();
        let mut timed_counts = vec![0; large.len()];
        let timings = gpu.popcount_timed(&large, &mut timed_counts)?;
        println!(
            "2^24 random queries: popcount (pipelined) first call {}, second {}; timed phases: \
             upload {}, dispatch {}, read-back {} (sum {})",
            ms(first_streamed),
            ms(streamed),
            ms(timings.upload),
            ms(timings.dispatch),
            ms(timings.readback),
            ms(timings.total())
        );
        if first_counts != expected || counts != expected || timed_counts != expected {
            eprintln!("MISMATCH: 2^24 batch differs from the CPU reference");
            ok = false;
        }

        // Device-resident: upload once, look up, read back.
        let started = Instant::now();
        let batch = gpu.upload_batch(&large)?;
        let upload = started.elapsed();
        let mut resident = gpu.popcount_resident(&batch)?;
        let started = Instant::now();
        gpu.popcount_resident_into(&batch, &mut resident)?;
        let dispatch = started.elapsed();
        let started = Instant::now();
        let read = gpu.read_back(&resident)?;
        let readback = started.elapsed();
        println!(
            "2^24 resident: upload {}, lookups {}, read-back {}",
            ms(upload),
            ms(dispatch),
            ms(readback)
        );
        if read != expected {
            eprintln!("MISMATCH: resident 2^24 batch differs from the CPU reference");
            ok = false;
        }

        // What the in-shader range check saves: a host pass over the queries.
        let started = Instant::now();
        let first_bad = std::hint::black_box(&large)
            .iter()
            .position(|&q| q >= SEED_ROWS);
        println!(
            "host range pre-check of 2^24 queries (not done; the shader flags bad indices): {} \
             ({first_bad:?})",
            ms(started.elapsed())
        );

        // Rows wider than a shader loop may run (llvmpipe stops at 65535
        // iterations): the counting pass splits them across invocations.
        let wide = BitTable::from_fn(
            2,
            100_000,
            |row, word| if row == 0 { u32::MAX } else { word as u32 },
        )?;
        let wide_gpu = GpuBackend::new(&wide)?;
        let wide_counts = wide_gpu.popcount(&[0, 1])?;
        let wide_expected = wide.reference_popcount(&[0, 1])?;
        println!("rows of 100000 words: {wide_counts:?} (CPU reference {wide_expected:?})");
        if wide_counts != wide_expected {
            eprintln!("MISMATCH: wide rows differ from the CPU reference");
            ok = false;
        }

        let bytes = 4 * LARGE_BATCH as u64;
        // The counts come back packed in the table's count type.
        let counts_down = (gpu.result_bytes() * LARGE_BATCH) as u64;
        println!(
            "references for {} MiB of queries: device copy {}, queries host->device plus {} KiB of counts back {}",
            bytes >> 20,
            ms(initret::harness::measure_device_copy(&gpu, bytes)?),
            counts_down >> 10,
            ms(initret::harness::measure_transfer(
                &gpu,
                bytes,
                counts_down.next_multiple_of(4)
            )?)
        );
        println!("{}", if ok { "OK" } else { "FAILED" });
        Ok(ok)
    }
}
