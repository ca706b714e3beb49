//! `initret`: the seed workload through every strategy (the default), a
//! benchmark sweep (`bench`) and a report of CPU features and adapters (`info`).
//!
//! Errors are one line on stderr and exit status 1 (2 for arguments clap
//! rejects). A closed stdout (`initret info | head -2`) ends the program
//! quietly with status 0: the reader has what it asked for.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use initret_cli::bench::{self, SweepOptions};
use initret_cli::error::CliError;
use initret_cli::{gpu, machine, plot, seed, seed_batch};

const ENVIRONMENT: &str = "\
Environment:
  INITRET_FORCE_ISA=scalar|avx2|avx512|neon   measure only that ISA's CPU kernels
  INITRET_FORCE_ISA=<kernel>                  run that kernel, as `info` names it
                                              (`scalar-loads`: the plain scalar loop)
  INITRET_ADAPTER=<substring>                 pick the GPU adapter by name
  INITRET_HUGE_PAGES=off                      count tables do not ask for transparent huge pages";

/// Map a function over many inputs that all read one large read-only state:
/// with no command, the seed workload (popcounts of the first 2^16-1
/// integers) through every strategy, side by side.
#[derive(Debug, Parser)]
#[command(name = "initret", version, after_help = ENVIRONMENT)]
struct Cli {
    /// Worker threads (0: one per CPU; at most 1024)
    #[arg(long, global = true, value_name = "T", default_value_t = 0, value_parser = parse_threads)]
    threads: usize,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Sweep batch sizes, row widths and table sizes against memcpy and the naive loop
    ///
    /// By default: query counts 2^10..2^26 (even powers) and words per row
    /// 1, 4, 16 on a 2^16-row table with every strategy; then tables of
    /// 2^20, 2^24 and 2^26 rows at 1 word per row and 2^16, 2^20, 2^24
    /// queries (or --queries), references and initret only. --rows measures
    /// one table with every strategy.
    Bench(BenchArgs),
    /// Print CPU features, the GPU adapters, and every kernel's measured rate
    /// on a seed-sized (2^16 rows) and a DRAM-sized (2^26 rows) table with
    /// the kernel each picks
    Info,
}

#[derive(Debug, Args)]
struct BenchArgs {
    /// Measure only N queries per call (e.g. 4096, 1_000_000 or 2^20)
    #[arg(long, value_name = "N", value_parser = parse_count)]
    queries: Option<usize>,
    /// Measure only W words per row
    #[arg(long, value_name = "W", value_parser = parse_count)]
    words: Option<usize>,
    /// Rows of the random table: only this table, with every strategy
    #[arg(long, value_name = "R", value_parser = parse_count)]
    rows: Option<usize>,
    /// One JSON object per row on stdout instead of a table
    #[arg(long)]
    json: bool,
    /// Only the references and initret's backends
    #[arg(long)]
    no_baselines: bool,
    /// Also draw lookups/s against queries per call into this SVG file
    /// (with --scaling, also lookups/s against threads)
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
    /// How the CPU backend places its counts: per-domain (the default: one
    /// copy per cache domain), shared (one copy), per-worker (one per
    /// thread), a comma-separated list of them, or `all`
    #[arg(long, value_name = "P[,P..]", value_parser = parse_placements)]
    placement: Option<Placements>,
    /// Measure every point at 1, 2, ... up to --threads threads (default:
    /// one per CPU), references and initret only
    #[arg(long)]
    scaling: bool,
}

/// The placements `--placement` names (a newtype: clap would read a bare
/// `Vec` as a repeated argument).
#[derive(Clone, Debug)]
struct Placements(Vec<initret::Placement>);

/// `per-domain`, `shared,per-worker` or `all`.
fn parse_placements(text: &str) -> Result<Placements, String> {
    if text.trim().eq_ignore_ascii_case("all") {
        return Ok(Placements(initret::Placement::ALL.to_vec()));
    }
    let mut placements = Vec::new();
    for part in text.split(',') {
        let placement: initret::Placement = part.parse().map_err(|e| format!("{e}"))?;
        if !placements.contains(&placement) {
            placements.push(placement);
        }
    }
    Ok(Placements(placements))
}

/// A thread count: 0 (one per CPU) to [`initret::MAX_THREADS`].
fn parse_threads(text: &str) -> Result<usize, String> {
    let threads: usize = text.parse().map_err(|e| format!("{e}"))?;
    if threads > initret::MAX_THREADS {
        return Err(format!(
            "at most {} worker threads; got {threads}",
            initret::MAX_THREADS
        ));
    }
    Ok(threads)
}

/// A positive count: digits with optional `_` separators, or `B^E`.
fn parse_count(text: &str) -> Result<usize, String> {
    let digits = text.replace('_', "");
    let value = match digits.split_once('^') {
        Some((base, exp)) => {
            let base: usize = base.parse().map_err(|e| format!("{e}"))?;
            let exp: u32 = exp.parse().map_err(|e| format!("{e}"))?;
            base.checked_pow(exp)
                .ok_or_else(|| format!("{text} does not fit in {} bits", usize::BITS))?
        }
        None => digits.parse().map_err(|e| format!("{e}"))?,
    };
    if value == 0 {
        return Err("must be at least 1".into());
    }
    Ok(value)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(code) => code,
        Err(e) if e.is_broken_pipe() => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(io::stderr(), "initret: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> Result<ExitCode, CliError> {
    if !matches!(cli.command, Some(Command::Info)) {
        // A bad INITRET_FORCE_ISA fails here, before minutes of baselines.
        initret::arch::Isa::selected()?;
    }
    let mut out = io::stdout().lock();
    match &cli.command {
        Some(Command::Bench(args)) => bench_command(&mut out, cli.threads, args),
        Some(Command::Info) => info_command(&mut out, cli.threads),
        None => seed_command(&mut out, cli.threads),
    }
}

fn info_command(out: &mut impl Write, threads: usize) -> Result<ExitCode, CliError> {
    let mut text = machine::summary() + "\n";
    text += "CPU features:\n";
    for (name, present) in initret::arch::cpu_features() {
        text += &format!("  {name:<16} {}\n", if present { "yes" } else { "no" });
    }
    text += &format!(
        "available kernels: {}\n",
        initret::arch::Kernel::available()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    text += &format!("detected ISA:      {}\n", initret::arch::Isa::detected());
    text += &format!("CPU threads:       {}\n", rayon::current_num_threads());
    let topology = initret::Topology::detect();
    text += &format!(
        "cache domains:     {} (a CPU backend places one count table in each domain it has workers in)\n",
        topology.domains().len()
    );
    for (i, domain) in topology.domains().iter().enumerate() {
        text += &format!("  domain {i}: {domain}\n");
    }
    text += &format!(
        "huge pages:        transparent huge pages {}; count tables of 2 MiB or more ask for them\n",
        initret::arch::transparent_huge_pages_mode().unwrap_or_else(|| "not reported".into())
    );
    match gpu::adapters() {
        Ok(adapters) => {
            text += &format!("GPU adapters: {}\n", adapters.len());
            for adapter in &adapters {
                text += &format!("  {adapter}\n");
            }
            if adapters.is_empty() {
                text += "  none found; on Debian, `apt-get install mesa-vulkan-drivers` provides a software Vulkan adapter (lavapipe)\n";
            }
        }
        Err(reason) => text += &format!("GPU adapters: {reason}\n"),
    }
    // What is known at once goes out first; the calibrations take a moment.
    text += &format!(
        "kernel calibration (what a CPU backend measures when it is built: each candidate's best of {} runs of {} random queries with streaming stores, one per candidate in turn):\n",
        initret::harness::CALIBRATION_ROUNDS,
        initret::harness::CALIBRATION_QUERIES
    );
    write_out(out, &text)?;
    for (name, rows) in [
        ("seed-sized", bench::SEED_SIZED_ROWS),
        ("DRAM-sized", bench::DRAM_SIZED_ROWS),
    ] {
        write_out(out, &bench::calibration_report(name, rows, threads))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn seed_command(out: &mut impl Write, threads: usize) -> Result<ExitCode, CliError> {
    let report = seed::run(threads)?;
    let batch = seed_batch::report(threads)?;
    write_out(
        out,
        &(report.render() + &batch + &machine::summary() + "\n"),
    )?;
    let disagreements = report.disagreements();
    if disagreements.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(CliError::Initret(initret::Error::Internal(format!(
            "strategies disagree with the reference: {}",
            disagreements.join(", ")
        ))))
    }
}

fn bench_command(
    out: &mut impl Write,
    threads: usize,
    args: &BenchArgs,
) -> Result<ExitCode, CliError> {
    if let Some(path) = &args.plot
        && !path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("svg"))
    {
        return Err(CliError::Argument(format!(
            "--plot {}: the plot is SVG, name a .svg file",
            path.display()
        )));
    }
    let points = bench::plan(&SweepOptions {
        queries: args.queries,
        words_per_row: args.words,
        rows: args.rows,
        threads,
        baselines: !args.no_baselines,
        placements: args.placement.clone().map(|p| p.0).unwrap_or_default(),
        scaling: args.scaling,
    });
    // Every size check before the first measurement: a request that cannot
    // be allocated fails at once, not after minutes of sweeping.
    for spec in &points {
        spec.check_allocatable()?;
    }
    // Fail on an unwritable plot directory now, too. The plot is written to
    // a temporary file beside FILE and renamed over it once complete, so an
    // interrupted or failed sweep leaves a previous FILE as it was.
    let plot_file = args.plot.as_deref().map(PlotFile::create).transpose()?;

    let progress = ProgressBar::new(points.len() as u64).with_style(
        ProgressStyle::with_template("[{pos}/{len}] {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    if !progress.is_hidden() {
        // Keeps the elapsed time moving during long points; one wake-up a
        // second does not disturb the timings.
        progress.enable_steady_tick(std::time::Duration::from_secs(1));
    }
    let mut sweep_gpu = gpu::SweepGpu::default();
    let mut all_rows = Vec::new();
    // Consecutive points of one shape (other placements or thread counts)
    // share the table and queries instead of generating them again.
    let mut last: Option<(bench::Shape, bench::Point)> = None;
    let max_threads = bench::resolved_threads(threads);
    for spec in &points {
        progress.set_message(format!(
            "rows={} queries={} words_per_row={} threads={} placement={}",
            spec.rows, spec.queries, spec.words_per_row, spec.threads, spec.placement
        ));
        if last
            .as_ref()
            .is_none_or(|(shape, _)| *shape != spec.shape())
        {
            // The previous point's memory goes before the next is made.
            drop(last.take());
            last = Some((spec.shape(), bench::Point::new(spec)?));
        }
        let Some((_, point)) = &last else {
            unreachable!("set just above")
        };
        let cpu = bench::measure_cpu_point(spec, point)?;
        // The GPU rows do not depend on the CPU's placement or threads: once
        // per shape, with the full thread count's references.
        let first_of_shape = spec.placement == points[0].placement
            && bench::resolved_threads(spec.threads) == max_threads;
        let gpu = if first_of_shape {
            sweep_gpu.measure(point, cpu.references)?
        } else {
            gpu::GpuPointRows::default()
        };
        if let Some(note) = &gpu.note {
            progress.suspend(|| eprintln!("{note}"));
        }
        let rows = cpu.rows.into_iter().chain(gpu.rows);
        for row in rows {
            if args.json {
                let line = serde_json::to_string(&row)? + "\n";
                progress.suspend(|| write_out(out, &line))?;
            }
            all_rows.push(row);
        }
        progress.inc(1);
    }
    progress.finish_and_clear();
    if !args.json {
        let kernels: Vec<String> = all_rows
            .iter()
            .filter(|r| r.strategy.starts_with("initret-cpu"))
            .map(|r| format!("{} at {} rows", r.kernel, r.rows))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let footer = format!(
            "threads={}; initret-cpu kernel: {}; ratios against a parallel memcpy and the naive rayon loop measured in the same run\n{}\n",
            if threads == 0 {
                rayon::current_num_threads()
            } else {
                threads
            },
            kernels.join(", "),
            machine::summary()
        );
        write_out(out, &(bench::format_table(&all_rows) + &footer))?;
    }
    if let Some(file) = plot_file {
        let svg = plot::render_svg(&all_rows)?;
        let path = file.finish(svg.as_bytes())?;
        progress.suspend(|| eprintln!("plot written to {}", path.display()));
    }
    Ok(ExitCode::SUCCESS)
}

/// The plot's temporary file, `.FILE.PID.tmp` beside `FILE`: renamed over
/// `FILE` by [`PlotFile::finish`], removed if dropped before.
struct PlotFile {
    file: Option<std::fs::File>,
    temporary: PathBuf,
    path: PathBuf,
}

impl PlotFile {
    fn create(path: &Path) -> Result<PlotFile, CliError> {
        let name = path.file_name().ok_or_else(|| {
            CliError::Argument(format!("--plot {}: not a file name", path.display()))
        })?;
        let mut temporary_name = std::ffi::OsString::from(".");
        temporary_name.push(name);
        temporary_name.push(format!(".{}.tmp", std::process::id()));
        let temporary = path.with_file_name(temporary_name);
        let file = std::fs::File::create(&temporary).map_err(|e| io_error(&temporary, e))?;
        Ok(PlotFile {
            file: Some(file),
            temporary,
            path: path.to_path_buf(),
        })
    }

    /// Writes `bytes` and renames the temporary file over the plot's path.
    fn finish(mut self, bytes: &[u8]) -> Result<PathBuf, CliError> {
        let mut file = self
            .file
            .take()
            .ok_or_else(|| CliError::Plot("the plot's temporary file was already closed".into()))?;
        file.write_all(bytes)
            .and_then(|()| file.sync_all())
            .map_err(|e| io_error(&self.temporary, e))?;
        drop(file);
        std::fs::rename(&self.temporary, &self.path).map_err(|e| io_error(&self.path, e))?;
        Ok(std::mem::take(&mut self.path))
    }
}

impl Drop for PlotFile {
    fn drop(&mut self) {
        // Not renamed: the sweep failed or was cut short.
        if !self.path.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.temporary);
        }
    }
}

fn write_out(out: &mut impl Write, text: &str) -> Result<(), CliError> {
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(CliError::stdout)
}

fn io_error(path: &Path, source: io::Error) -> CliError {
    CliError::Io {
        what: format!("writing {}", path.display()),
        source,
    }
}
