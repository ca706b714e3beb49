//! `initret`: the seed workload through every strategy (the default), a
//! benchmark sweep (`bench`) and a report of CPU features and adapters (`info`).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use initret::{Backend, BitTable, Dispatcher, Error, Pool, SEED_CHECKSUM, SEED_ROWS};
use initret_cli::baseline::{self, GlobalInitializer, PerCallCopy, TaskSize};
use initret_cli::bench::{self, PointConfig};

const USAGE: &str = "\
usage: initret [COMMAND] [OPTIONS]

commands:
  (none)   run the seed workload (popcounts of the first 2^16-1 integers)
           through every strategy and print the side-by-side table
  bench    sweep query counts 2^10..2^26 (even powers) and words per row 1, 4, 16
  info     print CPU features, the chosen SIMD kernel and the GPU adapters

options:
  --threads T    worker threads (default: one per CPU)
bench options:
  --queries N    measure only N queries per call
  --words W      measure only W words per row
  --rows R       rows of the random table (default 65536)
  --json         one JSON object per row instead of a table
  --no-baselines only the references and initret's backends

environment:
  INITRET_FORCE_ISA=scalar|avx2|avx512|neon   force the CPU kernel
  INITRET_ADAPTER=<substring>                 pick the GPU adapter by name
";

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("initret: {e}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Debug, Default)]
struct Options {
    threads: usize,
    queries: Option<usize>,
    words: Option<usize>,
    rows: Option<usize>,
    json: bool,
    baselines: bool,
}

fn parse_number(flag: &str, value: Option<String>) -> Result<usize, Error> {
    let value = value.ok_or_else(|| Error::InvalidArgument(format!("{flag} needs a value")))?;
    value
        .replace('_', "")
        .parse()
        .map_err(|_| Error::InvalidArgument(format!("{flag} {value:?} is not a whole number")))
}

fn run(args: Vec<String>) -> Result<ExitCode, Error> {
    let mut args = args.into_iter().peekable();
    let command = match args.peek().map(String::as_str) {
        Some("bench") | Some("info") => args.next(),
        _ => None,
    };
    let mut options = Options {
        baselines: true,
        ..Options::default()
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--threads" => options.threads = parse_number(&arg, args.next())?,
            "--queries" => options.queries = Some(parse_number(&arg, args.next())?),
            "--words" => options.words = Some(parse_number(&arg, args.next())?),
            "--rows" => options.rows = Some(parse_number(&arg, args.next())?),
            "--json" => options.json = true,
            "--no-baselines" => options.baselines = false,
            "-h" | "--help" => {
                print!("{USAGE}");
                return Ok(ExitCode::SUCCESS);
            }
            other => {
                return Err(Error::InvalidArgument(format!(
                    "unexpected argument {other:?}\n\n{USAGE}"
                )));
            }
        }
    }
    if command.as_deref() != Some("info") {
        // A bad INITRET_FORCE_ISA fails here, before minutes of baselines.
        initret::arch::Isa::selected()?;
    }
    match command.as_deref() {
        Some("bench") => bench_command(&options),
        Some("info") => info_command(),
        _ => seed_command(&options),
    }
}

fn info_command() -> Result<ExitCode, Error> {
    println!("CPU features:");
    for (name, present) in initret::arch::cpu_features() {
        println!("  {name:<16} {}", if present { "yes" } else { "no" });
    }
    println!(
        "available kernels: {}",
        initret::arch::Isa::available_names()
    );
    println!("detected kernel:   {}", initret::arch::Isa::detected());
    match initret::arch::Isa::selected() {
        Ok(isa) => println!("chosen kernel:     {isa}"),
        Err(e) => println!("chosen kernel:     none: {e}"),
    }
    println!("CPU threads:       {}", rayon::current_num_threads());
    print_adapters();
    Ok(ExitCode::SUCCESS)
}

#[cfg(feature = "gpu")]
fn print_adapters() {
    let adapters = initret::gpu::adapters();
    println!("GPU adapters: {}", adapters.len());
    for adapter in &adapters {
        println!("  {adapter}");
    }
    if adapters.is_empty() {
        println!(
            "  none found; on Debian, `apt-get install mesa-vulkan-drivers` provides a software Vulkan adapter (lavapipe)"
        );
    }
}

#[cfg(not(feature = "gpu"))]
fn print_adapters() {
    println!("GPU adapters: not built (the `gpu` feature is off)");
}

/// One line of the seed table.
struct SeedRow {
    strategy: String,
    workers: String,
    init_calls: String,
    setup: Duration,
    time: Duration,
    counts: Vec<u32>,
}

/// Best of up to 5 runs, stopping early once 2 s have been spent.
fn best_of<T>(f: impl FnMut() -> Result<T, Error>) -> Result<(Duration, T), Error> {
    bench::best_run(1..=5, Duration::from_secs(2), f)
}

fn timed<T>(f: impl FnOnce() -> Result<T, Error>) -> Result<(Duration, T), Error> {
    let t = Instant::now();
    let value = f()?;
    Ok((t.elapsed(), value))
}

fn seed_command(options: &Options) -> Result<ExitCode, Error> {
    let cache = BitTable::seed(SEED_ROWS);
    let items: Vec<u32> = (0..SEED_ROWS).collect();
    let threads = if options.threads == 0 {
        rayon::current_num_threads()
    } else {
        options.threads
    };
    println!(
        "seed workload: popcount of each of the first 2^16-1 integers via a {}-row cache ({} KiB), {} worker threads",
        cache.rows(),
        cache.size_in_bytes() / 1024,
        threads
    );
    let mut rows = Vec::new();

    let (time, counts) = best_of(|| baseline::serial(&cache, &items))?;
    rows.push(SeedRow {
        strategy: "serial".into(),
        workers: "1".into(),
        init_calls: "0".into(),
        setup: Duration::ZERO,
        time,
        counts,
    });

    for (name, task_size) in [
        ("per-call copy (1/task)", TaskSize::One),
        ("per-call copy (py chunks)", TaskSize::PythonDefault),
    ] {
        let (setup, pool) = timed(|| PerCallCopy::new(threads, task_size))?;
        let (time, outcome) = best_of(|| pool.run(&cache, &items))?;
        rows.push(SeedRow {
            strategy: name.into(),
            workers: pool.workers().to_string(),
            init_calls: outcome.init_calls.to_string(),
            setup,
            time,
            counts: outcome.counts,
        });
    }

    let (setup, global) = timed(|| GlobalInitializer::new(cache.clone(), threads))?;
    let (time, outcome) = best_of(|| global.run(&items))?;
    rows.push(SeedRow {
        strategy: "global initializer".into(),
        workers: global.workers().to_string(),
        init_calls: global.init_calls().to_string(),
        setup,
        time,
        counts: outcome.counts,
    });

    // rayon's `map_init` runs on whatever pool it is called in: give it one
    // with the same number of threads as the others.
    let (setup, rayon_pool) = timed(|| baseline::thread_pool(threads, "map-init"))?;
    let (time, outcome) =
        rayon_pool.install(|| best_of(|| baseline::rayon_map_init(&cache, &items)))?;
    rows.push(SeedRow {
        strategy: "rayon map_init".into(),
        workers: rayon_pool.current_num_threads().to_string(),
        init_calls: outcome.init_calls.to_string(),
        setup,
        time,
        counts: outcome.counts,
    });

    let (setup, pool) = timed(|| {
        Pool::builder()
            .threads(threads)
            .build_with(|_worker| Ok::<_, Error>(cache.clone()))
    })?;
    let (time, counts) = best_of(|| {
        pool.map(&items, |cache: &BitTable, &i| {
            cache.row_popcount(i as usize).unwrap_or(u32::MAX)
        })
    })?;
    rows.push(SeedRow {
        strategy: "initret Pool::map".into(),
        workers: pool.threads().to_string(),
        init_calls: pool.init_calls().to_string(),
        setup,
        time,
        counts,
    });

    let (setup, dispatcher) = timed(|| {
        Dispatcher::builder(cache.clone())
            .backend(Backend::Cpu)
            .threads(threads)
            .build()
    })?;
    let (time, counts) = best_of(|| dispatcher.popcount(&items))?;
    let cpu = dispatcher.cpu();
    rows.push(SeedRow {
        strategy: format!(
            "initret cpu ({})",
            cpu.map_or("?".into(), |c| c.isa().to_string())
        ),
        workers: cpu.map_or(0, |c| c.threads()).to_string(),
        init_calls: cpu.map_or(0, |c| c.init_calls()).to_string(),
        setup,
        time,
        counts,
    });

    let mut notes = Vec::new();
    seed_gpu_rows(&cache, &items, &mut rows, &mut notes)?;

    let reference = rows
        .iter()
        .find(|r| r.strategy.starts_with("per-call copy (1/task)"))
        .map_or(Duration::ZERO, |r| r.time);
    println!(
        "\n{:<34} {:>7} {:>10} {:>11} {:>11} {:>12} {:>10} {:>9}",
        "strategy", "workers", "init calls", "setup", "time", "lookups/s", "speedup", "checksum"
    );
    let expected = cache.reference_popcount(&items)?;
    let mut disagreements = Vec::new();
    for row in &rows {
        let checksum: u64 = row.counts.iter().map(|&c| u64::from(c)).sum();
        if row.counts != expected || checksum != SEED_CHECKSUM {
            disagreements.push(row.strategy.clone());
        }
        println!(
            "{:<34} {:>7} {:>10} {:>11} {:>11} {:>12.3e} {:>9.1}x {:>9}",
            row.strategy,
            row.workers,
            row.init_calls,
            format!("{:.1?}", row.setup),
            format!("{:.1?}", row.time),
            items.len() as f64 / row.time.as_secs_f64(),
            reference.as_secs_f64() / row.time.as_secs_f64(),
            checksum
        );
    }
    for note in notes {
        println!("{note}");
    }
    println!(
        "\nspeedup is over per-call copy (1/task); time is the best of up to 5 runs; expected checksum {SEED_CHECKSUM}"
    );
    if disagreements.is_empty() {
        println!("checksum {SEED_CHECKSUM}: all strategies agree");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "initret: strategies disagree with the reference: {}",
            disagreements.join(", ")
        );
        Ok(ExitCode::FAILURE)
    }
}

#[cfg(not(feature = "gpu"))]
fn seed_gpu_rows(
    _cache: &BitTable,
    _items: &[u32],
    _rows: &mut Vec<SeedRow>,
    notes: &mut Vec<String>,
) -> Result<(), Error> {
    notes.push("gpu: not built (the `gpu` feature is off)".into());
    Ok(())
}

#[cfg(feature = "gpu")]
fn seed_gpu_rows(
    cache: &BitTable,
    items: &[u32],
    rows: &mut Vec<SeedRow>,
    notes: &mut Vec<String>,
) -> Result<(), Error> {
    let (setup, dispatcher) = match timed(|| Dispatcher::new(cache.clone(), Backend::Gpu)) {
        Ok(built) => built,
        Err(e) => {
            notes.push(format!("gpu: no rows: {e}"));
            return Ok(());
        }
    };
    let Some(gpu) = dispatcher.gpu() else {
        notes.push("gpu: no rows: the dispatcher has no GPU backend".into());
        return Ok(());
    };
    let adapter = &gpu.adapter().name;
    let (time, counts) = best_of(|| dispatcher.popcount(items))?;
    rows.push(SeedRow {
        strategy: "initret gpu end-to-end".into(),
        workers: "gpu".into(),
        init_calls: "1".into(),
        setup,
        time,
        counts,
    });
    let batch = gpu.upload_batch(items)?;
    let mut resident = gpu.popcount_resident(&batch)?;
    let (time, ()) = best_of(|| gpu.popcount_resident_into(&batch, &mut resident))?;
    rows.push(SeedRow {
        strategy: "initret gpu resident".into(),
        workers: "gpu".into(),
        init_calls: "1".into(),
        setup,
        time,
        counts: gpu.read_back(&resident)?,
    });
    notes.push(format!(
        "gpu rows ran on {adapter}{}",
        if gpu.is_software() {
            " (a software adapter on the CPU cores: correctness, not speed)"
        } else {
            ""
        }
    ));
    Ok(())
}

fn bench_command(options: &Options) -> Result<ExitCode, Error> {
    let queries: Vec<usize> = match options.queries {
        Some(n) => vec![n],
        None => (10..=26).step_by(2).map(|p| 1usize << p).collect(),
    };
    let words: Vec<usize> = match options.words {
        Some(w) => vec![w],
        None => vec![1, 4, 16],
    };
    let config = PointConfig {
        rows: options.rows.unwrap_or(1 << 16),
        threads: options.threads,
        baselines: options.baselines,
    };
    if config.rows == 0 || queries.contains(&0) || words.contains(&0) {
        return Err(Error::InvalidArgument(
            "--rows, --queries and --words must be positive".into(),
        ));
    }
    let total = queries.len() * words.len();
    let mut gpu = GpuBench::default();
    let mut all_rows = Vec::new();
    for (k, (&w, &n)) in words
        .iter()
        .flat_map(|w| queries.iter().map(move |n| (w, n)))
        .enumerate()
    {
        eprint!(
            "\r[{:>2}/{total}] queries={n} words_per_row={w}            ",
            k + 1
        );
        let point = bench::Point::new(&config, n, w)?;
        let mut rows = bench::measure_cpu_point(&config, &point)?;
        gpu_bench_rows(&mut gpu, &point, &mut rows)?;
        if options.json {
            for row in &rows {
                println!("{}", row.to_json());
            }
        }
        all_rows.extend(rows);
    }
    eprintln!("\r{:60}\r", "");
    if !options.json {
        print!("{}", bench::format_table(&all_rows));
        println!(
            "rows={} threads={} kernel={}; ratios against a parallel memcpy and the naive rayon loop measured in the same run",
            config.rows,
            if config.threads == 0 {
                rayon::current_num_threads()
            } else {
                config.threads
            },
            initret::arch::Isa::selected().map_or_else(|e| e.to_string(), |i| i.to_string())
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The GPU backend for the sweep, rebuilt whenever the table changes, or the
/// reason there is none (reported once).
#[derive(Default)]
struct GpuBench {
    #[cfg(feature = "gpu")]
    built: Option<(usize, initret::gpu::GpuBackend)>,
    reported: bool,
}

#[cfg(not(feature = "gpu"))]
fn gpu_bench_rows(
    gpu: &mut GpuBench,
    _point: &bench::Point,
    _rows: &mut Vec<bench::BenchRow>,
) -> Result<(), Error> {
    if !gpu.reported {
        eprintln!("\nno GPU rows: this build has no `gpu` feature");
        gpu.reported = true;
    }
    Ok(())
}

#[cfg(feature = "gpu")]
fn gpu_bench_rows(
    gpu: &mut GpuBench,
    point: &bench::Point,
    rows: &mut Vec<bench::BenchRow>,
) -> Result<(), Error> {
    // Every point with the same width has the same table: rebuild the
    // backend (re-upload) only when the width changes.
    let words = point.table.words_per_row();
    if gpu.built.as_ref().is_none_or(|(w, _)| *w != words) {
        gpu.built = None;
        match initret::gpu::GpuBackend::new(&point.table) {
            Ok(backend) => gpu.built = Some((words, backend)),
            Err(e) => {
                if !gpu.reported {
                    eprintln!("\nno GPU rows: {e}");
                    gpu.reported = true;
                }
                return Ok(());
            }
        }
    }
    if let Some((_, backend)) = &gpu.built {
        rows.extend(bench::measure_gpu_point(point, backend, &rows[..2])?);
    }
    Ok(())
}
