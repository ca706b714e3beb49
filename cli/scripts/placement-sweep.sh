#!/usr/bin/env bash
# The placement tables of BENCHMARKS.md. Usage:
#   cli/scripts/placement-sweep.sh [initret binary]
# 1. Scaling: 2^24 random queries into tables of 2^22..2^26 one-word rows,
#    1..N threads (N: one per CPU), per-domain (the default) against
#    per-worker, each point with its own memcpy and naive-rayon references.
# 2. Huge pages: the default placement with INITRET_HUGE_PAGES=off and on.
# 3. Memory: an 8-thread CPU backend over 2^26 rows, every placement: the
#    count bytes placed and the resident memory the backend added.
# 4. Misses in flight: the loads kernel at prefetch distances 0 to 1024
#    queries, forced, at 2^26 rows.
set -euo pipefail
bin=${1:-target/release/initret}
here=$(dirname "$0")
export INITRET_ADAPTER=${INITRET_ADAPTER:-no-such-adapter}   # CPU rows only
echo "### Scaling (2^24 queries, 1 word per row)"
echo
echo "| rows | threads | per-domain lookups/s | per-worker lookups/s | per-domain ÷ per-worker | per-domain ratio_to_naive_rayon |"
echo "|---|---|---|---|---|---|"
for rows in 4194304 8388608 16777216 33554432 67108864; do
  "$bin" bench --json --no-baselines --queries 16777216 --words 1 --rows $rows \
    --placement per-domain,per-worker --scaling 2>/dev/null | python3 "$here/placement_rows.py" scaling
done
echo
echo "### Huge pages (2^24 queries, 1 word per row, default placement and threads)"
echo
echo "| rows | huge pages off | huge pages on | on ÷ off |"
echo "|---|---|---|---|"
for rows in 16777216 67108864; do
  off=$(INITRET_HUGE_PAGES=off "$bin" bench --json --no-baselines --queries 16777216 --words 1 --rows $rows 2>/dev/null)
  on=$("$bin" bench --json --no-baselines --queries 16777216 --words 1 --rows $rows 2>/dev/null)
  printf '%s\n%s\n' "$off" "$on" | python3 "$here/placement_rows.py" hugepages
done
echo
echo "### Memory (8 threads, 2^26 rows of 1 word, 64 MiB of u8 counts per copy)"
echo
echo "| placement | copies × bytes placed | resident memory added |"
echo "|---|---|---|"
"$bin" --threads 8 bench --json --no-baselines --queries 65536 --words 1 --rows 67108864 \
  --placement all 2>/dev/null | python3 "$here/placement_rows.py" memory
echo
echo "### Misses in flight (2^24 queries into 2^26 rows, default placement and threads, huge pages on)"
echo
echo "| kernel | lookups/s | ratio_to_naive_rayon |"
echo "|---|---|---|"
isa=$("$bin" info 2>/dev/null | sed -n 's/^detected ISA: *//p')
for distance in 0 32 128 256 512 1024; do
  if [[ $isa == scalar ]]; then k=scalar; else k=$isa-loads; fi
  [[ $distance == 0 ]] || k=$k-pf$distance
  [[ $k == scalar ]] && k=scalar-loads
  INITRET_FORCE_ISA=$k "$bin" bench --json --no-baselines --queries 16777216 --words 1 \
    --rows 67108864 2>/dev/null | python3 "$here/placement_rows.py" kernel
done
