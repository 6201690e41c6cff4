#!/usr/bin/env bash
# The test command: every check CI runs, in one go.
#
#   scripts/test.sh [PYTEST ARGS...]
#
# Runs setup.sh, then: cargo test (plain Rust, no Python), cargo clippy (-D warnings, without and
# with the python feature), ruff, mypy (strict), lint-imports (layout contracts), stubtest
# (python/cardsvc/_core.pyi against the built extension) and finally pytest over tests/ and bench/
# with benchmarks disabled, Redis-backed tests included (a private redis-server found or installed
# by ensure_redis.sh) and the browser tests of tests/web included (Debian's chromium and CJK
# fonts found or installed by ensure_chromium.sh; only when that is impossible do they skip,
# saying so). Extra arguments go to pytest, e.g. `scripts/test.sh -k masking -x` or
# `scripts/test.sh --run-slow`.
#
# A failing check does not stop the others; the script exits non-zero if any failed and names
# them after pytest's summary.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

bash scripts/setup.sh

# For this script's own processes only.
export PATH="$root/.venv/bin:$PATH"
export VIRTUAL_ENV="$root/.venv"
export PYO3_PYTHON="$root/.venv/bin/python"
CARDSVC_REDIS_SERVER="$(bash scripts/ensure_redis.sh)"
export CARDSVC_REDIS_SERVER
if CARDSVC_CHROMIUM="$(bash scripts/ensure_chromium.sh)"; then
  export CARDSVC_CHROMIUM
else
  unset CARDSVC_CHROMIUM
  printf '\nwarning: chromium could not be installed; the browser tests in tests/web will skip\n'
fi

failed=()
started=$SECONDS

step() {
  local name="$1" status=0 t0=$SECONDS
  shift
  printf '\n==> %s\n' "$name"
  "$@" || status=$?
  if [[ "$status" == 0 ]]; then
    printf '<== %s: ok (%ss)\n' "$name" $((SECONDS - t0))
  else
    printf '<== %s: FAILED with status %s (%ss)\n' "$name" "$status" $((SECONDS - t0))
    failed+=("$name")
  fi
  return 0
}

step "cargo test" cargo test --workspace
if cargo clippy --version >/dev/null 2>&1; then
  step "cargo clippy" cargo clippy --workspace --all-targets -- -D warnings
  step "cargo clippy (python feature)" \
    cargo clippy --workspace --all-targets --all-features -- -D warnings
else
  printf '\nwarning: cargo clippy is not installed; skipping it (rustup component add clippy)\n'
fi
step "ruff" ruff check python api server web tests bench scripts conftest.py
step "mypy" mypy
step "lint-imports" lint-imports --no-cache
stubtest_args=(cardsvc._core)
if [[ -s scripts/stubtest-allowlist.txt ]]; then
  stubtest_args+=(--allowlist scripts/stubtest-allowlist.txt)
fi
step "stubtest" python -m mypy.stubtest "${stubtest_args[@]}"

printf '\n==> pytest (checks so far took %ss)\n' $((SECONDS - started))
pytest_status=0
python -m pytest --benchmark-disable "$@" || pytest_status=$?

if [[ "${#failed[@]}" -gt 0 ]]; then
  printf 'test.sh: FAILED checks before pytest: %s\n' "$(IFS=,; echo "${failed[*]}")"
  [[ "$pytest_status" != 0 ]] || pytest_status=1
fi
exit "$pytest_status"
