#!/usr/bin/env bash
# Issues 4 and 6's HTTP benchmark: our API's POST /v1/verify, POST /v1/redeem and POST /v1/orders
# (quantity 1 and 10, on SQLite and on PostgreSQL) beside a raw ASGI app, a FastAPI no-op endpoint
# and a FastAPI redeem over an in-memory dict, each under one uvicorn worker (uvloop, httptools)
# loaded by wrk (64 connections) on this machine, in one run.
#
#   scripts/bench_http.sh [ARGS...]      e.g. --quick, --duration 5, --targets raw,noop
#
# Runs setup.sh (the .venv and a release build of the extension), then
# `python -m bench.http_bench "$@"` with wrk found or installed by ensure_wrk.sh and PostgreSQL's
# server programs found or installed by ensure_postgres.sh (when that fails, the _pg targets are
# reported as not measured). It starts and stops its own servers on free 127.0.0.1 ports (our
# API over a temporary data directory, with CARDSVC_RISK_LIMITS=off; for the _pg targets a
# private PostgreSQL cluster in a temporary directory, a fresh database per sample), prints a
# markdown table and writes bench/results/http_latest.json. See bench/RESULTS.md for recorded
# runs.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

bash scripts/setup.sh
CARDSVC_WRK="$(bash scripts/ensure_wrk.sh)"
export CARDSVC_WRK
if pg_bindir="$(bash scripts/ensure_postgres.sh | tail -n 1)" && [[ -n "$pg_bindir" ]]; then
  export CARDSVC_PG_BINDIR="$pg_bindir"
else
  echo "bench_http: no PostgreSQL (scripts/ensure_postgres.sh failed); the _pg targets will be" \
    "reported as not measured" >&2
fi
exec "$root/.venv/bin/python" -m bench.http_bench "$@"
