//! The binary: the main job, `bench --json`, `--plot`, `info`, bad
//! arguments, requests too large to allocate and a closed stdout.

use std::process::{Command, Output, Stdio};

fn initret(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_initret"));
    cmd.args(args);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("the initret binary runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Fails unless the run failed with exit status 1 and exactly one line on
/// stderr (no panic, no abort); returns that line.
fn one_line_error(out: &Output) -> String {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

/// `bench --json` output, one object per line.
fn json_rows(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is one JSON object"))
        .collect()
}

#[test]
fn main_job_prints_every_strategy_and_the_checksum() {
    let out = initret(&[], &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", stderr(&out));
    for strategy in [
        "serial",
        "per-call copy (1/task)",
        "per-call copy (py chunks)",
        "global initializer",
        "rayon map_init",
        "initret Pool::map",
        "initret cpu",
    ] {
        assert!(stdout.contains(strategy), "missing {strategy}:\n{stdout}");
    }
    assert!(
        stdout.contains("checksum 524272: all strategies agree"),
        "{stdout}"
    );
    // The machine the numbers were measured on, beside them.
    let machine = stdout.lines().last().unwrap_or_default();
    assert!(
        machine.starts_with("machine: ") && machine.contains(" CPUs, "),
        "{stdout}"
    );
}

#[test]
fn bench_table_names_the_machine_and_json_rows_stay_json() {
    let args = [
        "bench",
        "--queries",
        "4096",
        "--rows",
        "512",
        "--words",
        "1",
        "--no-baselines",
    ];
    let out = initret(&args, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", stderr(&out));
    let machine = stdout.lines().last().unwrap_or_default();
    assert!(machine.starts_with("machine: "), "{stdout}");
    let out = initret(&[&args[..], &["--json"]].concat(), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows = json_rows(&String::from_utf8_lossy(&out.stdout));
    assert!(!rows.is_empty() && rows.iter().all(|r| r.get("machine").is_none()));
}

#[test]
fn main_job_names_the_kernel_that_ran() {
    let out = initret(&["--threads", "1"], &[("INITRET_FORCE_ISA", "scalar")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout.contains("initret cpu (scalar"), "{stdout}");
}

#[test]
fn bench_json_rows_have_every_field() {
    let out = initret(
        &["bench", "--queries", "4096", "--words", "4", "--json"],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let rows = json_rows(&stdout);
    // Seed-sized table with every strategy; the larger tables are swept at
    // 1 word per row only.
    assert!(rows.len() >= 7, "{stdout}");
    assert!(rows.iter().all(|r| r["rows"] == 1 << 16), "{stdout}");
    for row in &rows {
        for field in [
            "strategy",
            "backend",
            "kernel",
            "queries",
            "rows",
            "words_per_row",
            "seconds",
            "lookups_per_s",
            "ratio_to_memcpy",
            "ratio_to_naive_rayon",
            "bytes_per_lookup",
            "ratio_to_device_copy",
            "ratio_to_transfer",
        ] {
            assert!(row.get(field).is_some(), "{field} missing from {row}");
        }
        assert_eq!(row["queries"], 4096, "{row}");
        assert_eq!(row["words_per_row"], 4, "{row}");
        assert!(
            row["lookups_per_s"].as_f64().is_some_and(|x| x > 0.0),
            "{row}"
        );
    }
    let strategies_at = |rows_in_table: u64| -> Vec<&str> {
        rows.iter()
            .filter(|r| r["rows"] == rows_in_table)
            .filter_map(|r| r["strategy"].as_str())
            .collect()
    };
    for strategy in [
        "memcpy",
        "naive-rayon",
        "initret-cpu",
        "global-initializer",
        "rayon-map-init",
        "per-call-copy",
        "serial",
    ] {
        assert!(
            strategies_at(1 << 16).contains(&strategy),
            "no {strategy} row"
        );
    }
    // 4-word rows hold at most 128 bits: a byte holds every count, and the
    // natural-result row moves a 4-byte query and a 1-byte count.
    assert!(
        rows.iter()
            .any(|r| r["strategy"] == "initret-cpu-u8" && r["bytes_per_lookup"] == 5),
        "no initret-cpu-u8 row"
    );
    for row in &rows {
        let kernel = row["kernel"].as_str().unwrap_or_default();
        match row["strategy"].as_str() {
            Some("initret-cpu" | "initret-cpu-u8" | "initret-cpu-u16") => {
                assert!(!kernel.is_empty() && kernel != "-", "{row}")
            }
            Some("gpu-end-to-end" | "gpu-resident") => assert_eq!(kernel, "gpu", "{row}"),
            _ => assert_eq!(kernel, "-", "{row}"),
        }
    }
}

#[test]
fn bench_sweeps_larger_tables_at_one_word_per_row() {
    let out = initret(
        &[
            "bench",
            "--queries",
            "1024",
            "--words",
            "1",
            "--json",
            "--no-baselines",
        ],
        &[("INITRET_ADAPTER", "no-such-adapter")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for table in [
        1u64 << 16,
        1 << 20,
        1 << 22,
        1 << 23,
        1 << 24,
        1 << 25,
        1 << 26,
    ] {
        let at = |strategy: &str| {
            stdout
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .any(|r| r["rows"] == table && r["strategy"] == strategy)
        };
        assert!(
            at("memcpy") && at("naive-rayon") && at("initret-cpu"),
            "{table}: {stdout}"
        );
        assert!(!at("serial"), "{stdout}");
    }
}

#[test]
fn bench_measures_each_placement_at_each_thread_count() {
    let out = initret(
        &[
            "bench",
            "--rows",
            "4096",
            "--queries",
            "2^17",
            "--words",
            "1",
            "--json",
            "--no-baselines",
            "--placement",
            "all",
            "--scaling",
            "--threads",
            "2",
        ],
        &[("INITRET_ADAPTER", "no-such-adapter")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let rows = json_rows(&stdout);
    let placed = |strategy: &str, threads: u64| -> u64 {
        let row = rows
            .iter()
            .find(|r| r["strategy"] == strategy && r["threads"] == threads)
            .unwrap_or_else(|| panic!("no {strategy} row at {threads} threads:\n{stdout}"));
        let placement = strategy
            .strip_prefix("initret-cpu/")
            .unwrap_or("per-domain");
        assert_eq!(row["placement"], placement, "{row}");
        assert!(row.get("resident_bytes_added").is_some(), "{row}");
        row["count_bytes_placed"]
            .as_u64()
            .expect("count_bytes_placed")
    };
    for threads in [1, 2] {
        let shared = placed("initret-cpu/shared", threads);
        assert!(shared >= 4096, "{stdout}");
        // One copy per worker against one in all; per-domain in between.
        assert_eq!(placed("initret-cpu/per-worker", threads), threads * shared);
        let per_domain = placed("initret-cpu", threads);
        assert!(per_domain >= shared && per_domain <= threads * shared);
    }
    // No baselines in a scaling sweep; references at every thread count.
    assert!(rows.iter().all(|r| r["strategy"] != "serial"), "{stdout}");
    for threads in [1, 2] {
        assert!(
            rows.iter()
                .any(|r| r["strategy"] == "memcpy" && r["threads"] == threads)
        );
    }
}

#[test]
fn info_lists_the_cache_domains() {
    let out = initret(&["info"], &[("INITRET_FORCE_ISA", "scalar")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("cache domains:"), "{stdout}");
    assert!(stdout.contains("  domain 0: cpus "), "{stdout}");
    assert!(stdout.contains("placed per-domain: "), "{stdout}");
}

#[test]
fn unknown_placement_is_refused() {
    let out = initret(&["bench", "--placement", "per-core"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("per-domain, shared or per-worker"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn bench_kernel_field_follows_the_forced_kernel() {
    let out = initret(
        &[
            "bench",
            "--queries",
            "256",
            "--rows",
            "512",
            "--words",
            "1",
            "--json",
            "--no-baselines",
        ],
        &[("INITRET_FORCE_ISA", "scalar")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let cpu = stdout
        .lines()
        .find(|l| l.contains("\"strategy\":\"initret-cpu\""))
        .expect("an initret-cpu row");
    assert!(
        cpu.contains("\"kernel\":\"scalar") && cpu.contains("\"rows\":512"),
        "{cpu}"
    );
}

#[test]
fn bench_plot_writes_an_svg_with_every_line() {
    let dir = std::env::temp_dir().join(format!("initret-plot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("bench.svg");
    let path_str = path.to_str().expect("utf-8 temp path");
    let out = initret(
        &[
            "bench",
            "--queries",
            "1024",
            "--rows",
            "4096",
            "--words",
            "2",
            "--no-baselines",
            "--plot",
            path_str,
        ],
        &[("INITRET_ADAPTER", "no-such-adapter")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let svg = std::fs::read_to_string(&path).expect("the plot was written");
    assert!(svg.starts_with("<svg"), "{svg}");
    for text in [
        "memcpy",
        "naive-rayon",
        "initret-cpu",
        "2 words/row",
        "lookups/s",
    ] {
        assert!(svg.contains(text), "{text} missing from the plot");
    }
    let _ = std::fs::remove_dir_all(&dir);

    let out = initret(&["bench", "--plot", "bench.png"], &[]);
    let err = one_line_error(&out);
    assert!(err.contains("--plot") && err.contains(".svg"), "{err}");
}

#[test]
fn info_prints_the_calibration_and_honours_the_override() {
    let out = initret(
        &["info", "--threads", "1"],
        &[("INITRET_FORCE_ISA", "scalar")],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout.contains("available kernels: scalar"), "{stdout}");
    for table in [
        "seed-sized table (65536 rows × 1 word): picks scalar",
        "DRAM-sized table (67108864 rows × 1 word): picks scalar",
    ] {
        assert!(stdout.contains(table), "{stdout}");
    }
    // Only scalar kernels were candidates, and one of them is marked.
    let rates: Vec<&str> = stdout.lines().filter(|l| l.contains("lookups/s")).collect();
    assert!(
        rates.iter().all(|l| l.trim_start().starts_with("scalar")),
        "{stdout}"
    );
    assert!(
        rates.is_empty() || rates.iter().filter(|l| l.ends_with("<- picked")).count() == 2,
        "{stdout}"
    );
}

#[test]
fn info_into_a_closed_pipe_ends_quietly() {
    // The reading end is closed before initret starts, so its first write
    // fails with EPIPE every time (`initret info | head -0`, without the race).
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_initret"))
        .arg("info")
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .expect("the initret binary runs");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
}

#[test]
fn a_headless_run_that_succeeds_prints_no_error() {
    // Without a login session (no XDG_RUNTIME_DIR), Mesa's Vulkan
    // device-select layer used to have libwayland print "error:
    // XDG_RUNTIME_DIR is invalid or not set in the environment." at every
    // instance creation; the library's Vulkan instance enables no
    // window-system extension, so nothing looks for a display.
    let out = Command::new(env!("CARGO_BIN_EXE_initret"))
        .env_remove("XDG_RUNTIME_DIR")
        .output()
        .expect("the initret binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = stderr(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let errors: Vec<&str> = stdout
        .lines()
        .chain(stderr.lines())
        .filter(|line| line.to_lowercase().contains("error"))
        .collect();
    assert!(errors.is_empty(), "{errors:?}\n{stdout}\n{stderr}");
    // The GPU still works without the extensions: where a GPU is required
    // (CI, on lavapipe), its rows ran.
    if initret::harness::gpu_required() {
        assert!(stdout.contains("gpu rows ran on"), "{stdout}");
    }
}

#[test]
fn unknown_forced_isa_fails_clearly_and_at_once() {
    let out = initret(&[], &[("INITRET_FORCE_ISA", "sse9")]);
    // One line, before any baseline runs (the main job takes seconds and
    // prints its table).
    let err = one_line_error(&out);
    assert!(out.stdout.is_empty());
    assert!(
        err.contains("sse9") && err.contains("INITRET_FORCE_ISA"),
        "{err}"
    );
}

#[test]
fn bad_arguments_fail_clearly() {
    let out = initret(&["bench", "--queries", "many"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--queries"));
    let out = initret(&["bench", "--rows", "0"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("at least 1"), "{}", stderr(&out));
    let out = initret(&["--frobnicate"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("Usage"), "{}", stderr(&out));
}

#[test]
fn queries_too_many_to_allocate_are_an_error() {
    // 4 × (2^64 - 1) bytes overflows; 4 × 10^17 bytes is past any address space.
    for (queries, why) in [
        ("18446744073709551615", "the size overflows"),
        ("100000000000000000", "memory allocation failed"),
    ] {
        let out = initret(&["bench", "--queries", queries], &[]);
        let err = one_line_error(&out);
        assert!(
            err.starts_with("initret: cannot allocate bench point"),
            "{err}"
        );
        assert!(
            err.contains(&format!("queries={queries}")) && err.contains(why),
            "{err}"
        );
    }
}

#[test]
fn rows_past_the_address_space_limit_are_an_error() {
    let command = format!(
        "ulimit -v 4000000; exec '{}' bench --rows 600000000",
        env!("CARGO_BIN_EXE_initret")
    );
    let out = Command::new("sh")
        .args(["-c", &command])
        .output()
        .expect("sh runs");
    let err = one_line_error(&out);
    assert!(
        err.starts_with("initret: cannot allocate bench point"),
        "{err}"
    );
    assert!(err.contains("rows=600000000"), "{err}");
}

/// The main job under `ulimit -v KIB` (no Vulkan driver, whose own
/// allocations are not initret's to check).
fn main_job_under_ulimit(kib: u32, threads: &str) -> Output {
    let command = format!(
        "ulimit -v {kib}; exec '{}' --threads {threads}",
        env!("CARGO_BIN_EXE_initret")
    );
    Command::new("bash")
        .args(["-c", &command])
        .env("VK_ICD_FILENAMES", "/nonexistent")
        .output()
        .expect("bash runs")
}

#[test]
fn main_job_with_one_thread_fits_in_100_mb_of_address_space() {
    // The per-call copy baseline once copied the table for all 65535 tasks
    // before any ran (16.8 GB) and aborted here.
    let out = main_job_under_ulimit(100_000, "1");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout.contains("checksum 524272: all strategies agree"),
        "{stdout}"
    );
}

#[test]
fn main_job_under_a_tight_address_space_limit_fails_with_an_error_not_an_abort() {
    let mut refused = 0;
    for threads in ["1", "2"] {
        for kib in [60_000, 40_000, 30_000, 25_000, 20_000, 17_000] {
            let out = main_job_under_ulimit(kib, threads);
            if out.status.success() {
                let stdout = String::from_utf8_lossy(&out.stdout);
                assert!(stdout.contains("all strategies agree"), "{stdout}");
                continue;
            }
            let err = one_line_error(&out);
            assert!(
                err.starts_with("initret: cannot allocate")
                    || err.starts_with("initret: could not start worker threads"),
                "ulimit -v {kib}, --threads {threads}: {err}"
            );
            refused += 1;
        }
    }
    assert!(refused > 0, "no limit was tight enough to test");
}

#[test]
fn plot_extension_is_case_insensitive() {
    let dir = std::env::temp_dir().join(format!("initret-plot-case-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("BENCH.SVG");
    let out = initret(
        &[
            "bench",
            "--queries",
            "1024",
            "--rows",
            "1024",
            "--words",
            "1",
            "--no-baselines",
            "--plot",
            path.to_str().expect("utf-8 temp path"),
        ],
        &[("INITRET_ADAPTER", "no-such-adapter")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let svg = std::fs::read_to_string(&path).expect("the plot was written");
    assert!(svg.starts_with("<svg"), "{svg}");
    // Only the plot is left in the directory: no temporary file.
    let names: Vec<_> = std::fs::read_dir(&dir)
        .expect("temp dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names, ["BENCH.SVG"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_interrupted_plot_sweep_leaves_the_previous_plot_alone() {
    let dir = std::env::temp_dir().join(format!("initret-plot-keep-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("bench.svg");
    std::fs::write(&path, "<svg>the previous plot</svg>").expect("previous plot");
    // The full default sweep takes minutes: it is stopped once its
    // temporary file exists, that is, once the sweep has begun.
    let mut child = Command::new(env!("CARGO_BIN_EXE_initret"))
        .args(["bench", "--plot", path.to_str().expect("utf-8 temp path")])
        .env("INITRET_ADAPTER", "no-such-adapter")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the initret binary runs");
    let temporary = dir.join(format!(".bench.svg.{}.tmp", child.id()));
    let mut started = false;
    for _ in 0..600 {
        if temporary.exists() {
            started = true;
            break;
        }
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let previous = std::fs::read_to_string(&path).expect("the previous plot");
    child.kill().expect("kill the sweep");
    child.wait().expect("wait");
    assert!(started, "the sweep never created {}", temporary.display());
    assert_eq!(previous, "<svg>the previous plot</svg>");
    assert_eq!(
        std::fs::read_to_string(&path).expect("the previous plot"),
        "<svg>the previous plot</svg>"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn threads_past_the_maximum_are_refused_by_the_argument_parser() {
    let out = initret(&["--threads", "3000"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("at most 1024"), "{}", stderr(&out));
    let out = initret(&["bench", "--threads", "1025"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn a_scalar_gather_kernel_is_named_as_missing() {
    let out = initret(&[], &[("INITRET_FORCE_ISA", "scalar-gather")]);
    let err = one_line_error(&out);
    assert!(
        err.contains("\"scalar-gather\"") && err.contains("there is no scalar gather kernel"),
        "{err}"
    );
    assert!(err.contains("scalar-pf") || err.contains("scalar"), "{err}");
}
