#!/usr/bin/env bash
# Builds the Python package for distribution, from anywhere in a clone:
#
#   python/build-wheel.sh [OUT_DIR]        (default: target/wheels)
#
# Writes into OUT_DIR:
#   * one abi3 wheel for Linux x86-64 (CPython >= 3.9), tagged manylinux2014:
#     it installs with pip on glibc >= 2.17 without a Rust toolchain;
#   * the sdist, from which pip builds the same package with cargo.
#
# Needs cargo (a Rust toolchain) and Python with venv. maturin and ziglang
# (Zig, as a PyPI package) are installed into a throwaway virtual
# environment; maturin's --zig links with Zig against glibc 2.17's symbols,
# which is what the manylinux2014 tag promises and what maturin's checks
# verify. The venv's bin is put first on PATH so maturin finds that Zig
# (`python3 -m ziglang`).
#
# Environment: PYTHON (interpreter for the build venv, default python3),
# INITRET_BUILD_VENV (reuse this venv instead of a new temporary one),
# CARGO_TARGET_DIR (honoured by the build).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$(mkdir -p "${1:-$root/target/wheels}" && cd "${1:-$root/target/wheels}" && pwd)"
python="${PYTHON:-python3}"
venv="${INITRET_BUILD_VENV:-$(mktemp -d -t initret-build-XXXXXX)/venv}"

if [ ! -x "$venv/bin/maturin" ] || ! "$venv/bin/python" -c "import ziglang" 2>/dev/null; then
  echo "== python/build-wheel.sh: maturin and ziglang into $venv"
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  "$venv/bin/python" -m pip install --quiet "maturin>=1.9.4,<2" ziglang
fi
export PATH="$venv/bin:$PATH"

cd "$root"
echo "== maturin build --release --zig --compatibility manylinux2014 ($(maturin --version))"
maturin build --release --zig --compatibility manylinux2014 \
  --target x86_64-unknown-linux-gnu -m python/Cargo.toml --out "$out"
echo "== maturin sdist"
maturin sdist -m python/Cargo.toml --out "$out"
echo "== python/build-wheel.sh: built into $out"
ls -l "$out"
