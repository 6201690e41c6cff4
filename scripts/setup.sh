#!/usr/bin/env bash
# Make the development environment ready: .venv with the project installed in development mode
# (dev extras included) and the Rust extension cardsvc._core built in release mode.
#
# Idempotent and fast when nothing changed: it records what it last installed in .venv/ and
# redoes only what is stale:
#   * .venv/.deps-hash  hash of pyproject.toml: when it changes, pip reinstalls the project and
#                       its dependencies (which also rebuilds the extension);
#   * .venv/.core-hash  hash of the Rust sources (Cargo files, core/**/*.rs, Cargo.lock): when it
#                       changes, or the built module is missing, `maturin develop --release
#                       --skip-install` rebuilds the extension in place (python/cardsvc/).
# It also keeps site-packages/cardsvc-repo.pth naming the repository root, so the top-level `api`
# package (and with it `cardsvc serve`) imports from anywhere in the environment.
# Uses python3 from PATH (3.11+; override with CARDSVC_PYTHON) and cargo; needs PyPI and
# crates.io. Exports nothing.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="$root/.venv"
python="${CARDSVC_PYTHON:-python3}"

log() { printf 'setup: %s\n' "$*" >&2; }

hash_files() {
  # A stable hash of the named files' paths and contents (missing files hash as absent).
  local file
  for file in "$@"; do
    printf '%s\n' "$file"
    if [[ -f "$file" ]]; then sha256sum <"$file"; else printf 'absent\n'; fi
  done | sha256sum | cut -d' ' -f1
}

core_hash() {
  local files
  mapfile -t files < <(
    { printf '%s\n' Cargo.toml Cargo.lock core/Cargo.toml core/build.rs
      if [[ -d core ]]; then find core -name target -prune -o -type f -name '*.rs' -print; fi
    } | LC_ALL=C sort -u
  )
  hash_files "${files[@]}"
}

extension_built() {
  compgen -G "$root/python/cardsvc/_core*.so" >/dev/null
}

# One setup at a time per checkout (run.sh and test.sh may start together): lock this script.
exec 9<"${BASH_SOURCE[0]}"
flock 9

if [[ ! -x "$venv/bin/python" ]]; then
  "$python" -c 'import sys; assert sys.version_info >= (3, 11), sys.version' \
    || { log "cardsvc needs Python 3.11 or newer as $python"; exit 1; }
  log "creating $venv"
  "$python" -m venv "$venv"
fi

deps_now="$(hash_files pyproject.toml)"
core_now="$(core_hash)"
deps_done="$(cat "$venv/.deps-hash" 2>/dev/null || true)"
core_done="$(cat "$venv/.core-hash" 2>/dev/null || true)"

if [[ "$deps_now" != "$deps_done" ]]; then
  log "installing the project and its dev dependencies (this builds the Rust extension)"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
  # maturin builds release binaries by default as a PEP 517 backend.
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e '.[dev]'
  printf '%s\n' "$deps_now" >"$venv/.deps-hash"
  printf '%s\n' "$core_now" >"$venv/.core-hash"
  core_done="$core_now"
fi

if [[ "$core_now" != "$core_done" ]] || ! extension_built; then
  log "rebuilding the Rust extension (release)"
  VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH" \
    "$venv/bin/maturin" develop --release --skip-install --quiet
  printf '%s\n' "$core_now" >"$venv/.core-hash"
fi

# The HTTP layer `api/` is a top-level package of the repository, beside python/cardsvc, and the
# editable install puts only python/ on the path. This .pth file adds the repository root, so
# the `cardsvc` script finds `cardsvc serve` (server.cli, an entry point) from any directory.
site_dir="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
repo_pth="$site_dir/cardsvc-repo.pth"
if [[ "$(cat "$repo_pth" 2>/dev/null || true)" != "$root" ]]; then
  printf '%s\n' "$root" >"$repo_pth"
fi

extension_built || { log "the extension python/cardsvc/_core*.so was not built"; exit 1; }
