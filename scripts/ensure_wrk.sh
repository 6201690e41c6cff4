#!/usr/bin/env bash
# Print the path of a usable wrk (the HTTP load generator of issue 4's figures). When none is on
# PATH, install Debian's wrk package and print the installed binary. The HTTP benchmark
# (bench/http_bench.py) runs it against its own uvicorn servers on free loopback ports.
# Honours CARDSVC_WRK when it already names an executable.
set -euo pipefail
# shellcheck source=scripts/_apt.sh
source "$(dirname "${BASH_SOURCE[0]}")/_apt.sh"

# `wrk -v` prints its version line ("wrk 4.1.0 [epoll] ...", Debian's "wrk debian/4.1.0-3+b2
# [epoll] ...") and then the usage text, and exits 1: match the line, not the status.
usable() {
  [[ -n "$1" && -x "$1" ]] || return 1
  local version
  version="$("$1" -v 2>&1 || true)"
  [[ "$version" == "wrk "* ]]
}

candidate="${CARDSVC_WRK:-}"
usable "$candidate" || candidate="$(command -v wrk || true)"
if ! usable "$candidate"; then
  echo "ensure_wrk: installing Debian's wrk package" >&2
  apt_install_without_services wrk
  candidate="$(command -v wrk || echo /usr/bin/wrk)"
fi
usable "$candidate" || { echo "ensure_wrk: no usable wrk" >&2; exit 1; }
printf '%s\n' "$candidate"
