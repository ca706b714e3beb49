//! The binary: the main job, `bench --json`, `info`, and bad arguments.

use std::process::Command;

fn initret(args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_initret"));
    cmd.args(args);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("the initret binary runs")
}

#[test]
fn main_job_prints_every_strategy_and_the_checksum() {
    let out = initret(&[], &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
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
}

#[test]
fn bench_json_rows_have_every_field() {
    let out = initret(
        &["bench", "--queries", "4096", "--words", "4", "--json"],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines.len() >= 7, "{stdout}");
    for line in &lines {
        for field in [
            "strategy",
            "backend",
            "queries",
            "words_per_row",
            "seconds",
            "lookups_per_s",
            "ratio_to_memcpy",
            "ratio_to_naive_rayon",
        ] {
            assert!(
                line.contains(&format!("\"{field}\":")),
                "{field} missing from {line}"
            );
        }
        assert!(
            line.contains("\"queries\":4096") && line.contains("\"words_per_row\":4"),
            "{line}"
        );
    }
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
            stdout.contains(&format!("\"strategy\":\"{strategy}\"")),
            "no {strategy} row"
        );
    }
}

#[test]
fn info_names_the_chosen_kernel_and_honours_the_override() {
    let out = initret(&["info"], &[("INITRET_FORCE_ISA", "scalar")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(stdout.contains("chosen kernel:     scalar"), "{stdout}");
    assert!(stdout.contains("available kernels: scalar"), "{stdout}");
}

#[test]
fn unknown_forced_isa_fails_clearly_and_at_once() {
    let started = std::time::Instant::now();
    let out = initret(&[], &[("INITRET_FORCE_ISA", "sse9")]);
    // Before any baseline runs (the main job takes seconds).
    assert!(
        started.elapsed() < std::time::Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("sse9") && stderr.contains("INITRET_FORCE_ISA"),
        "{stderr}"
    );
}

#[test]
fn bad_arguments_fail_clearly() {
    let out = initret(&["bench", "--queries", "many"], &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--queries"));
    let out = initret(&["--frobnicate"], &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage"));
}
