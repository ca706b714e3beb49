#!/usr/bin/env bash
# CI for the Python wheel, run from anywhere in a clean clone:
#
#   python/ci-wheel.sh [pytest arguments...]
#
# Builds the abi3 manylinux wheel and the sdist with python/build-wheel.sh
# (or takes the wheel already in INITRET_WHEEL_DIR), then, where no Rust
# toolchain is on PATH, installs the wheel with its dask and test extras into
# a fresh virtual environment and runs the Python tests against it: what a
# user who installs the wheel gets, with no compiler to fall back on.
#
# Environment: PYTHON (interpreter, default python3), INITRET_WHEEL_DIR (a
# directory holding the wheel: skips the build), INITRET_PY_VENV (where to
# create the test venv, default a new temporary directory), INITRET_BUILD_VENV
# and CARGO_TARGET_DIR (passed to the build), INITRET_REQUIRE_GPU=1 (a missing
# GPU adapter fails the GPU tests instead of skipping them), INITRET_PY_TESTS
# (the test paths, relative to the repository root, default python/tests).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python3}"
work="$(mktemp -d -t initret-wheel-XXXXXX)"
venv="${INITRET_PY_VENV:-$work/venv}"

if [ -n "${INITRET_WHEEL_DIR:-}" ]; then
  wheels="$INITRET_WHEEL_DIR"
else
  wheels="$work/wheels"
  build_start=$SECONDS
  "$root/python/build-wheel.sh" "$wheels"
  echo "== python/ci-wheel.sh: wheel and sdist built in $((SECONDS - build_start)) s"
  sdists=("$wheels"/initret-*.tar.gz)
  [ -f "${sdists[0]}" ] || { echo "no sdist in $wheels" >&2; exit 1; }
fi
shopt -s nullglob
found=("$wheels"/initret-*-cp39-abi3-*manylinux*_x86_64*.whl)
shopt -u nullglob
if [ "${#found[@]}" != 1 ]; then
  echo "expected one abi3 manylinux x86-64 wheel in $wheels, found ${#found[@]}" >&2
  exit 1
fi
wheel="${found[0]}"

# Every command of this PATH but the Rust toolchain's: ~/.cargo/bin and
# $CARGO_HOME/bin are left out, and so are cargo and rustc themselves where
# they sit beside other tools (Debian's /usr/bin/rustc, from the aarch64 step
# of an earlier CI run on this machine).
norust="$work/bin-without-rust"
mkdir -p "$norust"
IFS=: read -ra path_dirs <<<"$PATH"
for dir in "${path_dirs[@]}"; do
  case "$dir" in
    "" | "$HOME/.cargo/bin" | "${CARGO_HOME:-$HOME/.cargo}/bin") continue ;;
  esac
  for tool in "$dir"/*; do
    name="${tool##*/}"
    case "$name" in
      cargo | cargo-* | rustc | rustc-* | rustdoc | rustup | rust-* | clippy-driver | rustfmt) continue ;;
    esac
    if [ -f "$tool" ] && [ -x "$tool" ] && [ ! -e "$norust/$name" ]; then
      ln -s "$tool" "$norust/$name"
    fi
  done
done

echo "== python/ci-wheel.sh: fresh venv at $venv ($("$python" --version))"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip

(
  export PATH="$venv/bin:$norust"
  unset CARGO RUSTC RUSTUP_TOOLCHAIN
  if command -v cargo >/dev/null || command -v rustc >/dev/null; then
    echo "a Rust toolchain is still on PATH: $(command -v cargo rustc)" >&2
    exit 1
  fi
  echo "== no cargo or rustc on PATH; pip install ${wheel##*/}[dask,test]"
  python -m pip install "$wheel[dask,test]"
  read -ra tests <<<"${INITRET_PY_TESTS:-python/tests}"
  echo "== pytest ${tests[*]}, against the wheel"
  cd "$root"
  # From the repository root, `import initret` finds the installed package
  # (the pure-Python source lives in python/python/initret, which is not on
  # sys.path here, so it cannot shadow the installed package).
  python -c 'import initret, sys; p = initret.__file__; print("initret from", p); sys.exit(not p.startswith(sys.prefix))'
  python -m pytest "${tests[@]}" "$@"
  echo "== pytest tests, from python/ (the source tree must not shadow the installed package)"
  (cd python && python -m pytest tests/test_errors.py tests/test_dispatcher.py "$@")
  initret --repeat 1 --no-gpu >/dev/null
)
echo "== python/ci-wheel.sh: ok"
