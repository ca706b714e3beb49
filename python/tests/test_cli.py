"""`python -m initret`: the seed workload table, info, and the bench."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import initret


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=600)


def test_seed_workload_table():
    result = run("-m", "initret", "--repeat", "1", "--processes", "2", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    names = [row["strategy"] for row in report["rows"]]
    for expected in ("serial", "functools.partial", "global initializer", "numpy counts[q]",
                     "initret.Pool", "initret.Dispatcher cpu", "initret.Dispatcher gpu"):
        assert any(expected in name for name in names), (expected, names)
    for row in report["rows"]:
        if row.get("seconds") is not None:
            assert row["checksum"] == initret.SEED_CHECKSUM, row
            assert row["seconds"] > 0 and row["lookups_per_second"] > 0 and row["speedup_vs_serial"] > 0

    table = run("-m", "initret", "--repeat", "1", "--processes", "2", "--no-gpu")
    assert table.returncode == 0, table.stderr
    assert "| strategy | time | lookups/s | speedup vs serial | checksum |" in table.stdout
    assert table.stdout.count("524272") >= 7


def test_info_is_json():
    result = run("-m", "initret", "info")
    assert result.returncode == 0, result.stderr
    assert set(json.loads(result.stdout)) >= {"isa", "kernels", "gpu_adapters"}


def test_bench_script_runs_small():
    from initret._bench import bench

    report = bench(repeat=1, queries_log2=16, rows_log2=10, processes=2)
    assert len(report["sections"]) == 3
    for section in report["sections"]:
        for m in section["measurements"]:
            assert m["correct"] and m["seconds"] > 0, m
    assert (Path(__file__).parent.parent / "bench.py").exists()


def closed_pipe_run(command: list) -> subprocess.CompletedProcess:
    """Runs ``command`` with its stdout a pipe whose reading end is already
    closed (``| head -0`` without the race), so its first write fails."""
    import os

    reader, writer = os.pipe()
    os.close(reader)
    try:
        return subprocess.run(command, stdout=writer, stderr=subprocess.PIPE, text=True, timeout=300)
    finally:
        os.close(writer)


def test_a_closed_pipe_ends_quietly():
    script = Path(sys.executable).parent / "initret"
    commands = [[sys.executable, "-m", "initret", "info"]]
    if script.exists():  # the console script pip installed
        commands.append([str(script), "info"])
    for command in commands:
        result = closed_pipe_run(command)
        assert result.returncode == 0, (command, result.stderr)
        ours = [line for line in result.stderr.splitlines() if "XDG_RUNTIME_DIR" not in line]
        assert ours == [], (command, result.stderr)


def test_repeat_and_processes_must_be_positive():
    for flag in ("--repeat", "--processes"):
        for value in ("0", "-1"):
            result = run("-m", "initret", flag, value)
            assert result.returncode == 2, result.stdout
            assert "must be at least 1" in result.stderr, result.stderr
