#!/usr/bin/env bash
# The per-kernel table of BENCHMARKS.md: every CPU kernel this machine can
# run, forced with INITRET_FORCE_ISA, at 2^24 random queries into a 2^16-row
# (in cache) and a 2^26-row (past the caches) table of 1-word rows, each with
# its own memcpy and naive-rayon references measured in the same run; then
# the default (measured) choice. Usage: cli/scripts/kernel-table.sh [initret binary]
set -euo pipefail
bin=${1:-target/release/initret}
kernels=$("$bin" info | sed -n 's/^available kernels: //p' | tr -d ',')
echo "| kernel | rows | lookups/s | ratio_to_memcpy | ratio_to_naive_rayon |"
echo "|---|---|---|---|---|"
here=$(dirname "$0")
for rows in 65536 67108864; do
  for k in $kernels; do
    # A bare ISA name only limits the measurement; `scalar-loads` fixes the
    # plain scalar kernel.
    [[ $k == *-* ]] || k=$k-loads
    INITRET_FORCE_ISA=$k "$bin" bench --json --no-baselines --queries 16777216 --words 1 --rows $rows 2>/dev/null | python3 "$here/kernel_rows.py"
  done
  "$bin" bench --json --no-baselines --queries 16777216 --words 1 --rows $rows 2>/dev/null | python3 "$here/kernel_rows.py" --measured
done
