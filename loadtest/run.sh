#!/usr/bin/env bash
# Runs one locust file against a throwaway server and exits with locust's exit code.
#
#   loadtest/run.sh LOCUSTFILE [USERS] [RUN_TIME] [-- EXTRA LOCUST ARGUMENTS...]
#   loadtest/run.sh loadtest/flash_sale.py                 # 50 users for 15 s
#   loadtest/run.sh loadtest/terminals.py 100 30s -- --codes 5000 --only-summary
#
# What it does: starts `cardsvc serve` on a free port of 127.0.0.1 (never another interface)
# with a fresh data directory in a temporary directory and CARDSVC_RISK_LIMITS=off (one client
# IP hammering the server would otherwise be rate limited; the report says limits were off;
# the shop's buyer caps and its proof-of-work challenge are off too: CARDSVC_RETAIL_LIMITS=off,
# CARDSVC_STORE_CHALLENGE=0),
# waits until /readyz answers, creates an admin key with `cardsvc keys create`, runs locust
# headless (all users started at once) with --host, CARDSVC_ADMIN_KEY and CARDSVC_DATA_DIR set,
# then stops the server (SIGTERM: it flushes its journal) and deletes the temporary directory.
# The server's log is printed when locust fails. Environment: CARDSVC_VENV (default: the
# repository's .venv) names the Python environment holding cardsvc and locust.
set -euo pipefail

usage() {
    sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

[[ $# -ge 1 ]] || usage
locustfile=$1
shift
users=50
run_time=15s
if [[ $# -gt 0 && $1 != -- ]]; then users=$1; shift; fi
if [[ $# -gt 0 && $1 != -- ]]; then run_time=$1; shift; fi
if [[ $# -gt 0 && $1 == -- ]]; then shift; fi
[[ -f $locustfile ]] || { echo "run.sh: no such locust file: $locustfile" >&2; exit 2; }
[[ $users =~ ^[0-9]+$ ]] || { echo "run.sh: USERS must be a number: $users" >&2; exit 2; }

repo=$(cd "$(dirname "$0")/.." && pwd)
venv=${CARDSVC_VENV:-$repo/.venv}
bin=$venv/bin
host=127.0.0.1
work=$(mktemp -d "${TMPDIR:-/tmp}/cardsvc-loadtest.XXXXXX")
server_pid=

cleanup() {
    if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port=$("$bin/python" -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
url=http://$host:$port

CARDSVC_RISK_LIMITS=off CARDSVC_RETAIL_LIMITS=off CARDSVC_STORE_CHALLENGE=0 "$bin/cardsvc" serve --data-dir "$work/data" --host "$host" \
    --port "$port" >"$work/server.log" 2>&1 &
server_pid=$!

"$bin/python" - "$url" "$server_pid" <<'EOF' || { cat "$work/server.log" >&2; exit 1; }
import os, sys, time, urllib.request
url, pid = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    try:
        with urllib.request.urlopen(url + "/readyz", timeout=2) as answer:
            if answer.status == 200:
                sys.exit(0)
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit("run.sh: the server exited during start-up")
    time.sleep(0.1)
sys.exit("run.sh: the server did not become ready within 60 s")
EOF

admin_key=$("$bin/cardsvc" keys create --data-dir "$work/data" --role admin \
    --name "loadtest run.sh" | tail -n 1)

echo "run.sh: server $url (pid $server_pid, data $work/data, CARDSVC_RISK_LIMITS=off);" \
    "locust $locustfile, $users users, $run_time"
status=0
CARDSVC_ADMIN_KEY=$admin_key CARDSVC_DATA_DIR=$work/data CARDSVC_RISK_LIMITS=off \
    "$bin/locust" -f "$locustfile" --headless -u "$users" -r "$users" -t "$run_time" \
    --host "$url" "$@" || status=$?
if [[ $status -ne 0 ]]; then
    echo "run.sh: locust exited with $status; server log:" >&2
    tail -n 50 "$work/server.log" >&2
fi
exit "$status"
