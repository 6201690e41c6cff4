#!/usr/bin/env bash
# Issue 3's durability benchmark: acknowledged (durable) redeems/s through the store with the file
# sink and the Redis sink (appendfsync always / everysec) beside the raw fsync rate, a Redis + Lua
# redeemer under the same fsync setting and a dict with a group-committed journal; then the caller
# stall during a snapshot of 10M codes and the recovery time.
#
#   scripts/bench_durability.sh [ARGS...]      e.g. --quick, --codes 2000000, --no-redis
#
# Runs setup.sh (the .venv and a release build of the extension), then
# `python -m bench.durability_bench "$@"`, which starts and stops its own redis-servers on free
# 127.0.0.1 ports (found or installed by ensure_redis.sh), prints markdown tables with PASS/MISS
# per target and writes bench/results/durability.json. See bench/RESULTS.md for recorded runs.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

bash scripts/setup.sh
CARDSVC_REDIS_SERVER="$(bash scripts/ensure_redis.sh)"
export CARDSVC_REDIS_SERVER
exec "$root/.venv/bin/python" -m bench.durability_bench "$@"
