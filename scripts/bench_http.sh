#!/usr/bin/env bash
# Issue 4's HTTP benchmark: our API's POST /v1/verify and POST /v1/redeem beside a raw ASGI app,
# a FastAPI no-op endpoint and a FastAPI redeem over an in-memory dict, each under one uvicorn
# worker (uvloop, httptools) loaded by wrk (64 connections) on this machine, in one run.
#
#   scripts/bench_http.sh [ARGS...]      e.g. --quick, --duration 5, --targets raw,noop
#
# Runs setup.sh (the .venv and a release build of the extension), then
# `python -m bench.http_bench "$@"` with wrk found or installed by ensure_wrk.sh. It starts and
# stops its own servers on free 127.0.0.1 ports (our API over a temporary data directory, with
# CARDSVC_RISK_LIMITS=off), prints a markdown table and writes bench/results/http_latest.json.
# See bench/RESULTS.md for recorded runs.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

bash scripts/setup.sh
CARDSVC_WRK="$(bash scripts/ensure_wrk.sh)"
export CARDSVC_WRK
exec "$root/.venv/bin/python" -m bench.http_bench "$@"
