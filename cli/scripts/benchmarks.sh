#!/usr/bin/env bash
# Regenerates BENCHMARKS.md and python/BENCHMARKS-python.md on this machine:
# every table names the machine (initret info's `machine:` line) and its
# command, and every figure is a ratio against a reference measured in the
# same run. Tables below the appendix marker are kept as they are.
#
#   cli/scripts/benchmarks.sh --quick      # small sizes: checks that it all runs (a minute or two)
#   cli/scripts/benchmarks.sh              # the reference sizes (about 10 minutes on 2 cores)
#   cli/scripts/benchmarks.sh --placement --sweep --shared-memory   # also the placement sweep, the full
#                                          # sweep (and docs/bench.svg), Python memory per worker and start-up
#
# Options: --bin PATH (skip the cargo build), --python PYTHON (one that imports
# initret; default python3), --no-python, --no-gpu, --out FILE, --python-out FILE.
# Run it on a quiet machine: other work on the same cores shows up in the figures.
set -euo pipefail
exec python3 "$(dirname "$0")/benchmarks.py" "$@"
