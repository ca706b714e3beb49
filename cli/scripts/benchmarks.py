#!/usr/bin/env python3
"""Regenerates BENCHMARKS.md and python/BENCHMARKS-python.md on this machine.

Usage (from anywhere; run through cli/scripts/benchmarks.sh):

    cli/scripts/benchmarks.sh [--quick] [--bin PATH] [--python PYTHON]
                              [--no-gpu] [--no-python] [--placement] [--sweep]
                              [--shared-memory]
                              [--out FILE] [--python-out FILE]

Every table is written with the machine it ran on (the ``machine:`` line of
``initret info``) and the command that produced it. Every figure is a ratio
against a reference measured in the same run: a parallel memcpy of the same
bytes and the naive rayon loop (``initret bench``), the per-call-copy recipe
(the main job), numpy's ``counts[q]`` and the seed's global-initializer
recipe (``python -m initret bench``).

What the files hold below the line ``APPENDIX_MARKER`` (tables from other
machines) is kept as it is.

``--quick`` measures small sizes only (2^16 queries, tables of 2^16 and
2^20 rows, one repeat in Python), to check that everything runs: a minute or
two on 2 cores. Without it the sizes are the reference ones (2^24 queries,
tables up to 2^26 rows): about 10 minutes on 2 cores, more with
``--placement`` (the placement sweep), ``--sweep`` (the full default
sweep, which also redraws docs/bench.svg) and ``--shared-memory`` (Python's
memory per worker and start-up with shared state).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence

ROOT = pathlib.Path(__file__).resolve().parents[2]
HERE = pathlib.Path(__file__).resolve().parent
APPENDIX_MARKER = "<!-- appendix: everything below is kept as it is by cli/scripts/benchmarks.sh -->"
NO_ADAPTER = "no-such-adapter"  # INITRET_ADAPTER value that matches no adapter: no GPU rows


def log(message: str) -> None:
    print(f"[benchmarks {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Runner:
    """Runs the initret binary and Python, remembering how to show the commands."""

    def __init__(self, binary: pathlib.Path, python: Optional[str], no_gpu: bool):
        self.binary = binary
        self.python = python
        self.scratch = pathlib.Path(tempfile.mkdtemp(prefix="initret-benchmarks-"))
        self.env = dict(os.environ)
        if no_gpu:
            self.env["INITRET_ADAPTER"] = NO_ADAPTER

    def initret(self, args: Sequence[str], env: Optional[Dict[str, str]] = None) -> str:
        full_env = dict(self.env, **(env or {}))
        started = time.monotonic()
        log("initret " + " ".join(args) + "".join(f"  [{k}={v}]" for k, v in (env or {}).items()))
        out = subprocess.run([str(self.binary), *args], env=full_env, cwd=ROOT, check=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        log(f"  {time.monotonic() - started:.1f} s")
        return out.stdout

    def bench_json(self, args: Sequence[str], env: Optional[Dict[str, str]] = None) -> List[dict]:
        text = self.initret(["bench", "--json", *args], env)
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def py(self, args: Sequence[str]) -> str:
        assert self.python
        started = time.monotonic()
        log("python " + " ".join(args))
        out = subprocess.run([self.python, *args], env=self.env, cwd=ROOT, check=True,
                             stdout=subprocess.PIPE, text=True)
        log(f"  {time.monotonic() - started:.1f} s")
        return out.stdout


# ---------------------------------------------------------------------------
# Formatting


def pow2(n: int) -> str:
    """2^k for powers of two, else the number."""
    return f"2^{n.bit_length() - 1}" if n > 0 and n & (n - 1) == 0 else str(n)


def ratio(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.3f}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def provenance(machine: str, *commands: str) -> str:
    text = f"Machine: `{machine}`  \n"
    if len(commands) == 1:
        return text + f"Command: `{commands[0]}`\n\n"
    return text + "Commands:\n" + "".join(f"- `{c}`\n" for c in commands) + "\n"


def bench_rows_table(rows: List[dict]) -> str:
    """One row per strategy and point, with every reference ratio the row has."""
    body = []
    for r in rows:
        reference = r.get("ratio_to_device_copy")
        label = "device copy"
        if reference is None:
            reference, label = r.get("ratio_to_transfer"), "transfer"
        body.append([
            r["strategy"], r["backend"] if r["backend"] != "cpu" else "cpu", r["kernel"],
            pow2(r["rows"]), r["words_per_row"], pow2(r["queries"]),
            "-" if r["threads"] is None else r["threads"],
            f"{r['lookups_per_s']:.3e}", r.get("bytes_per_lookup", 8), ratio(r["ratio_to_memcpy"]),
            ratio(r["ratio_to_naive_rayon"]),
            "-" if reference is None else f"{reference:.3f} ({label})",
        ])
    return table(["strategy", "backend", "kernel", "rows", "words", "queries", "threads", "lookups/s",
                  "B/lookup", "ratio_to_memcpy", "ratio_to_naive_rayon", "GPU ratio (reference)"], body)


def code_block(text: str) -> str:
    return "```text\n" + text.rstrip("\n") + "\n```\n\n"


def tidy(markdown: str) -> str:
    """A command's markdown output as a part of the file: a blank line before
    every table (some outputs put one right under a line of text), and one
    blank line at the end. Their headings are `###`, under this file's `##`."""
    out: List[str] = []
    for line in markdown.strip("\n").splitlines():
        if line.startswith("|") and out and out[-1].strip() and not out[-1].startswith("|"):
            out.append("")
        out.append(line)
    return "\n".join(out) + "\n\n"


def keep_appendix(path: pathlib.Path) -> str:
    if not path.exists():
        return ""
    text = path.read_text(encoding="utf-8")
    at = text.find(APPENDIX_MARKER)
    return "" if at < 0 else text[at:]


# ---------------------------------------------------------------------------
# The sections


def info_section(run: Runner) -> "tuple[str, str, str]":
    """(machine line, the info header, the calibration part) of `initret info`."""
    text = run.initret(["info"])
    machine = next((line for line in text.splitlines() if line.startswith("machine: ")), "machine: unknown")
    machine = machine[len("machine: "):]
    head, _, calibration = text.partition("kernel calibration")
    return machine, head, "kernel calibration" + calibration


def headline(run: Runner, machine: str, quick: bool) -> str:
    out = "## Every table size, 1 word per row\n\n"
    if quick:
        queries = 65536
        rows: List[dict] = []
        commands = []
        for table_rows in (65536, 1048576):
            args = ["--queries", str(queries), "--words", "1", "--rows", str(table_rows)]
            rows += run.bench_json(args)
            commands.append("initret bench --json " + " ".join(args))
        out += provenance(machine, *commands)
    else:
        args = ["--queries", "16777216", "--words", "1"]
        rows = run.bench_json(args)
        out += provenance(machine, "initret bench --json " + " ".join(args))
    out += (f"{pow2(rows[0]['queries'])} random queries per call. The 2^16-row table runs every strategy, "
            "larger tables the references and initret only. GPU rows appear where there is an adapter "
            "(a software one, llvmpipe, shows correctness and overhead, not GPU speed).\n\n")
    return out + bench_rows_table(rows) + "\n"


def kernels(run: Runner, machine: str, info_head: str, quick: bool) -> str:
    """Every kernel this CPU runs, forced, then the measured choice."""
    out = "## Per-kernel table\n\n"
    names = []
    for line in info_head.splitlines():
        if line.startswith("available kernels: "):
            names = [k.strip() for k in line.split(":", 1)[1].split(",") if k.strip()]
    queries = "65536" if quick else "16777216"
    sizes = (65536, 1048576) if quick else (65536, 67108864)
    base = ["--no-baselines", "--queries", queries, "--words", "1"]
    out += provenance(machine, f"INITRET_FORCE_ISA=<kernel> initret bench --json {' '.join(base)} --rows <rows>",
                      f"initret bench --json {' '.join(base)} --rows <rows>   (the measured choice)")
    out += ("Each row is one process with its own memcpy and naive-rayon references; "
            "`INITRET_FORCE_ISA` fixes the kernel (a bare ISA name is run as `<isa>-loads`).\n\n")
    body = []
    no_gpu = {"INITRET_ADAPTER": NO_ADAPTER}
    for table_rows in sizes:
        for name in names:
            kernel = name if "-" in name else f"{name}-loads"
            for r in run.bench_json([*base, "--rows", str(table_rows)], dict(no_gpu, INITRET_FORCE_ISA=kernel)):
                if r["strategy"] == "initret-cpu":
                    body.append([r["kernel"], pow2(r["rows"]), f"{r['lookups_per_s']:.3e}",
                                 ratio(r["ratio_to_memcpy"]), ratio(r["ratio_to_naive_rayon"])])
        for r in run.bench_json([*base, "--rows", str(table_rows)], no_gpu):
            if r["strategy"] == "initret-cpu":
                body.append([f"**measured: {r['kernel']}**", pow2(r["rows"]), f"{r['lookups_per_s']:.3e}",
                             f"**{ratio(r['ratio_to_memcpy'])}**", f"**{ratio(r['ratio_to_naive_rayon'])}**"])
    return out + table(["kernel", "rows", "lookups/s", "ratio_to_memcpy", "ratio_to_naive_rayon"], body) + "\n"


def seed_workload(run: Runner, machine: str) -> str:
    out = "## The seed workload (main job)\n\n"
    out += provenance(machine, "initret")
    out += ("65535 lookups of the seed's cache through every strategy; `speedup` is over the per-call copy "
            "(one table copy per task) measured in the same run.\n\n")
    return out + code_block(run.initret([]))


def calibration(machine: str, text: str) -> str:
    out = "## Kernel calibration\n\n"
    out += provenance(machine, "initret info")
    out += "What a CPU backend measures when it is built; the rates are relative to each other, in one run.\n\n"
    return out + code_block(text)


def placement(run: Runner, machine: str, quick: bool) -> str:
    out = "## Placement\n\n"
    if quick:
        return out + "Not measured with `--quick`: `cli/scripts/placement-sweep.sh` has one size, 2^24 queries into tables up to 2^26 rows.\n\n"
    out += provenance(machine, "cli/scripts/placement-sweep.sh target/release/initret")
    log("cli/scripts/placement-sweep.sh")
    text = subprocess.run([str(HERE / "placement-sweep.sh"), str(run.binary)], cwd=ROOT, env=run.env,
                          check=True, stdout=subprocess.PIPE, text=True).stdout
    return out + tidy(text)


def sweep(run: Runner, machine: str, quick: bool) -> str:
    out = "## Full default sweep\n\n"
    if quick:
        # One small point, plotted beside the output file: docs/bench.svg keeps the real sweep.
        args = ["--queries", "65536", "--rows", "65536", "--plot", str(run.scratch / "bench-quick.svg")]
    else:
        args = ["--plot", "docs/bench.svg"]
    rows = run.bench_json(args)
    out += provenance(machine, "initret bench --json " + " ".join(args))
    if not quick:
        out += "The plot is [`docs/bench.svg`](docs/bench.svg).\n\n"
    return out + "<details><summary>every row</summary>\n\n" + bench_rows_table(rows) + "\n</details>\n\n"


def shared_memory(run: Runner, machine: str, quick: bool) -> str:
    """python/bench_dask_share.py and python/bench_startup.py: memory per worker and start-up."""
    rows_log2 = "20" if quick else "26"
    out = "## Memory per worker and start-up with shared state\n\n"
    out += ("Private memory is `Private_Clean + Private_Dirty` of a worker's `/proc/<pid>/smaps_rollup`; "
            "each command prints both placements (or both array sizes) of the same run.\n\n")
    commands = [["python/bench_dask_share.py", "--pool", "--rows-log2", rows_log2],
                ["python/bench_startup.py", "--repeat", "2" if quick else "4"] + (["--gib", "0.0625"] if quick else [])]
    probe = subprocess.run([run.python, "-c", "import distributed"], capture_output=True)
    if probe.returncode == 0:
        commands.insert(1, ["python/bench_dask_share.py", "--rows-log2", rows_log2, "--workers", "3"])
    else:
        out += "(Dask is not installed here: the Dask rows were not measured.)\n\n"
    for args in commands:
        out += provenance(machine, "python " + " ".join(args)) + code_block(run.py(args))
    return out


def python_file(run: Runner, machine: str, quick: bool, shared: bool, appendix: str) -> str:
    repeat = ["--repeat", "1"] if quick else ["--repeat", "7"]
    out = "# initret from Python: measurements\n\n"
    out += (f"Generated by `cli/scripts/benchmarks.sh{' --quick' if quick else ''}` on "
            f"{datetime.date.today().isoformat()}. Every table names the machine (the `machine:` line of "
            "`initret info`, then Python's own line with the Python and numpy versions) and the command. "
            "Ratios are against a reference measured in the same run: numpy's `counts[q]` (the count table "
            "derived once, then fancy-indexed), the seed's serial loop, or the seed's global-initializer "
            "recipe. Tables from other machines are in the appendix at the end.\n\n")
    gpu = [] if run.env.get("INITRET_ADAPTER") == NO_ADAPTER else ["--gpu"]
    big = [] if quick else ["--big"]
    args = ["-m", "initret", "bench", *repeat, *big, *gpu]
    out += "## Against numpy's `counts[q]`\n\n" + provenance(machine, "python " + " ".join(args))
    out += tidy(run.py(args))
    args = ["-m", "initret", *repeat] + (["--no-gpu"] if not gpu else [])
    out += "## The seed workload, every strategy\n\n" + provenance(machine, "python " + " ".join(args))
    out += tidy(run.py(args))
    entries = ["--state-entries", "65535"] if quick else []
    args = ["-m", "initret", "bench", "--state", *entries]
    out += "## The seed's dict placed once per machine\n\n" + provenance(machine, "python " + " ".join(args))
    out += tidy(run.py(args))
    if shared:
        out += shared_memory(run, machine, quick)
    return out + appendix


def main() -> int:
    parser = argparse.ArgumentParser(description="Regenerate BENCHMARKS.md and python/BENCHMARKS-python.md.")
    parser.add_argument("--quick", action="store_true", help="small sizes only: checks that everything runs")
    parser.add_argument("--bin", type=pathlib.Path, default=None,
                        help="the initret binary (default: cargo build --release -p initret-cli, "
                             "then target/release/initret)")
    parser.add_argument("--python", default=None,
                        help="the Python with initret installed (default: python3, if it imports initret)")
    parser.add_argument("--no-python", action="store_true", help="leave python/BENCHMARKS-python.md alone")
    parser.add_argument("--no-gpu", action="store_true", help="no GPU rows (INITRET_ADAPTER=no-such-adapter)")
    parser.add_argument("--placement", action="store_true", help="also run cli/scripts/placement-sweep.sh")
    parser.add_argument("--sweep", action="store_true",
                        help="also run the full default sweep and redraw docs/bench.svg")
    parser.add_argument("--shared-memory", action="store_true",
                        help="Python: also python/bench_dask_share.py and python/bench_startup.py "
                             "(tables of 256 MiB, a 1 GiB array)")
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument("--python-out", type=pathlib.Path, default=ROOT / "python" / "BENCHMARKS-python.md")
    args = parser.parse_args()
    started = time.monotonic()

    binary = args.bin
    if binary is None:
        log("cargo build --release -p initret-cli")
        subprocess.run(["cargo", "build", "--release", "-p", "initret-cli"], cwd=ROOT, check=True)
        binary = ROOT / "target" / "release" / "initret"
    binary = binary.resolve()

    python = None
    if not args.no_python:
        candidate = args.python or shutil.which("python3") or sys.executable
        probe = subprocess.run([candidate, "-c", "import initret"], cwd=ROOT, capture_output=True)
        if probe.returncode == 0:
            python = candidate
        else:
            log(f"{candidate} cannot import initret: python/BENCHMARKS-python.md is left as it is "
                "(install the package, or pass --python)")
    run = Runner(binary, python, args.no_gpu)

    machine, head, calibration_text = info_section(run)
    flags = " ".join(a for a in sys.argv[1:]
                     if a in ("--quick", "--no-gpu", "--placement", "--sweep", "--shared-memory"))
    command = "cli/scripts/benchmarks.sh" + (f" {flags}" if flags else "")
    doc = "# Benchmarks\n\n"
    doc += (f"Generated by `{command}` on {datetime.date.today().isoformat()}"
            f"{' (small sizes only: a check that everything runs, not reference figures)' if args.quick else ''}. "
            "Run it again to measure your own machine; it rewrites everything above the appendix. "
            "Each table names the machine it ran on (the `machine:` line of `initret info`) and its command "
            "(`initret` is `target/release/initret`, i.e. `cargo run --release --`).\n\n")
    doc += ("References, measured in the same run as the row they divide:\n\n"
            "- `ratio_to_memcpy`: a parallel memcpy of the bytes the row really moved (`B/lookup`: the query "
            "read plus the result written; 8 for a `u32` count, 5 for the `u8` count of an `initret-cpu-u8` row, "
            "the natural result type of 1-word rows) ÷ the row's time; 1.0 is as fast as moving the bytes.\n"
            "- `ratio_to_naive_rayon`: the naive loop `par_iter().map(|&q| row_popcount(q))` ÷ the row's time.\n"
            "- GPU rows: `ratio_to_device_copy` (a GPU buffer copy of the queries' bytes, resident rows) or "
            "`ratio_to_transfer` (the queries host→device plus the counts device→host, packed in the table's "
            "count type as the lookup reads them back; end-to-end rows) ÷ the row's time.\n\n"
            "Times are the best of at least 3 runs and 0.3 s. Python's figures are in "
            "[`python/BENCHMARKS-python.md`](python/BENCHMARKS-python.md).\n\n")
    doc += "## Machine\n\n" + provenance(machine, "initret info") + code_block(head)
    doc += headline(run, machine, args.quick)
    doc += kernels(run, machine, head, args.quick)
    doc += seed_workload(run, machine)
    doc += calibration(machine, calibration_text)
    if args.placement:
        doc += placement(run, machine, args.quick)
    if args.sweep:
        doc += sweep(run, machine, args.quick)
    doc += keep_appendix(args.out)
    args.out.write_text(doc.rstrip("\n") + "\n", encoding="utf-8")
    log(f"wrote {args.out}")

    if python:
        text = python_file(run, machine, args.quick, args.shared_memory, keep_appendix(args.python_out))
        args.python_out.write_text(text.rstrip("\n") + "\n", encoding="utf-8")
        log(f"wrote {args.python_out}")
    shutil.rmtree(run.scratch, ignore_errors=True)
    log(f"done in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except subprocess.CalledProcessError as e:
        print(f"benchmarks: {shlex.join(str(a) for a in e.cmd)} failed with status {e.returncode}",
              file=sys.stderr)
        if e.stderr:
            print(e.stderr, file=sys.stderr)
        sys.exit(1)
