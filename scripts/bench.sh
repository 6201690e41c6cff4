#!/usr/bin/env bash
# Issue 2's side-by-side benchmark: the engine vs a Redis + Lua baseline vs a plain-dict baseline.
#
#   scripts/bench.sh [ARGS...]      e.g. --quick, --codes 1000000, --redis-persistence always
#
# Runs setup.sh (the .venv and a release build of the extension), then
# `python -m bench.run_all "$@"`, which starts and stops its own redis-server on a free 127.0.0.1
# port (found or installed by ensure_redis.sh), prints markdown tables with PASS/MISS per target
# and writes bench/results/latest.json. See bench/RESULTS.md for recorded runs.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

bash scripts/setup.sh
CARDSVC_REDIS_SERVER="$(bash scripts/ensure_redis.sh)"
export CARDSVC_REDIS_SERVER
exec "$root/.venv/bin/python" -m bench.run_all "$@"
