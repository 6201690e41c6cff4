#!/usr/bin/env bash
# Print the directory holding PostgreSQL's server programs (initdb, pg_ctl, postgres), e.g.
# /usr/lib/postgresql/15/bin. When there is none, install Debian's postgresql package (without
# letting it start its cluster) and print the installed directory. Tests create and start their
# own cluster with these programs in a temporary directory on a free loopback port.
set -euo pipefail
# shellcheck source=scripts/_apt.sh
source "$(dirname "${BASH_SOURCE[0]}")/_apt.sh"

find_bindir() {
  local dir initdb dirs
  # Debian's layout, newest major version first (an unmatched glob fails the -x tests below).
  mapfile -t dirs < <(printf '%s\n' /usr/lib/postgresql/*/bin | sort -rV)
  for dir in "${dirs[@]}"; do
    if [[ -x "$dir/initdb" && -x "$dir/pg_ctl" && -x "$dir/postgres" ]]; then
      printf '%s\n' "$dir"
      return 0
    fi
  done
  # Anything else on PATH (a symlink is resolved to the real directory).
  initdb="$(command -v initdb || true)"
  if [[ -n "$initdb" ]]; then
    dir="$(dirname "$(readlink -f "$initdb")")"
    if [[ -x "$dir/pg_ctl" && -x "$dir/postgres" ]]; then
      printf '%s\n' "$dir"
      return 0
    fi
  fi
  return 1
}

if ! bindir="$(find_bindir)"; then
  echo "ensure_postgres: installing Debian's postgresql package" >&2
  apt_install_without_services postgresql
  stop_system_service postgresql
  bindir="$(find_bindir)" || { echo "ensure_postgres: no initdb after install" >&2; exit 1; }
fi
printf '%s\n' "$bindir"
