#!/usr/bin/env bash
# CI for the Python package, run from anywhere in a clean clone:
#
#   python/ci.sh [--smoke] [pytest arguments...]
#
# Creates a fresh virtual environment, installs the package with its dask
# and test extras from source (pip builds the extension with maturin, which
# needs cargo on PATH), and runs the tests against the installed package.
# With --smoke, only the tests run from python/ (errors and the Dispatcher)
# and the CLI: .ci/run runs the whole suite against the wheel
# (python/ci-wheel.sh) and checks the source build with --smoke.
#
# Environment: PYTHON (interpreter, default python3), INITRET_PY_VENV (where
# to create the venv, default a new temporary directory), CARGO_TARGET_DIR
# (honoured by the build), INITRET_REQUIRE_GPU=1 (a missing GPU adapter
# fails the GPU tests instead of skipping them).
set -euo pipefail

smoke=0
if [ "${1:-}" = --smoke ]; then
  smoke=1
  shift
fi
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python3}"
venv="${INITRET_PY_VENV:-$(mktemp -d -t initret-py-XXXXXX)/venv}"

echo "== python/ci.sh: fresh venv at $venv ($("$python" --version))"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
echo "== pip install ./python[dask,test]"
cd "$root"
"$venv/bin/python" -m pip install "./python[dask,test]"
if [ "$smoke" = 0 ]; then
  echo "== pytest python/tests"
  # From the repository root, `import initret` finds the installed package
  # (the pure-Python source lives in python/python/initret, which is not on
  # sys.path here, so it cannot shadow the installed package).
  "$venv/bin/python" -m pytest python/tests "$@"
fi
echo "== pytest tests, from python/ (the source tree must not shadow the installed package)"
(cd python && "$venv/bin/python" -m pytest tests/test_errors.py tests/test_dispatcher.py "$@")
"$venv/bin/python" -m initret --repeat 1 --no-gpu >/dev/null
echo "== python/ci.sh: ok"
