"""Turns `initret bench --json` rows into the Markdown rows of
placement-sweep.sh. Usage: placement_rows.py scaling|hugepages|memory|kernel < rows"""
import json
import sys

mode = sys.argv[1]
rows = [json.loads(line) for line in sys.stdin if line.strip()]
cpu = [r for r in rows if r["strategy"].startswith("initret-cpu")]


def mib(n):
    return "-" if n is None else f"{n / 2**20:.1f} MiB"


if mode == "scaling":
    for threads in sorted({r["threads"] for r in cpu}):
        at = {r["placement"]: r for r in cpu if r["threads"] == threads}
        dom, per = at["per-domain"], at["per-worker"]
        print(f"| 2^{dom['rows'].bit_length() - 1} | {threads} | {dom['lookups_per_s']:.3e} "
              f"| {per['lookups_per_s']:.3e} | {dom['lookups_per_s'] / per['lookups_per_s']:.2f} "
              f"| {dom['ratio_to_naive_rayon']:.1f} |")
elif mode == "hugepages":
    off, on = cpu[0], cpu[1]
    print(f"| 2^{on['rows'].bit_length() - 1} | {off['lookups_per_s']:.3e} | {on['lookups_per_s']:.3e} "
          f"| {on['lookups_per_s'] / off['lookups_per_s']:.2f} |")
elif mode == "memory":
    for r in cpu:
        print(f"| {r['placement']} | {mib(r['count_bytes_placed'])} | {mib(r['resident_bytes_added'])} |")
elif mode == "kernel":
    for r in cpu:
        print(f"| {r['kernel']} | {r['lookups_per_s']:.3e} | {r['ratio_to_naive_rayon']:.1f} |")
else:
    sys.exit(f"unknown mode {mode}")
