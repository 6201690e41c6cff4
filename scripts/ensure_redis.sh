#!/usr/bin/env bash
# Print the path of a usable redis-server. When none is on PATH, install Debian's redis-server
# package (without letting it start its system service) and print the installed binary.
# Tests start their own private instance from this path on a free loopback port.
# Honours CARDSVC_REDIS_SERVER when it already names an executable.
set -euo pipefail
# shellcheck source=scripts/_apt.sh
source "$(dirname "${BASH_SOURCE[0]}")/_apt.sh"

usable() { [[ -n "$1" && -x "$1" ]] && "$1" --version >/dev/null 2>&1; }

candidate="${CARDSVC_REDIS_SERVER:-}"
usable "$candidate" || candidate="$(command -v redis-server || true)"
if ! usable "$candidate"; then
  echo "ensure_redis: installing Debian's redis-server package" >&2
  apt_install_without_services redis-server
  stop_system_service redis-server
  candidate="$(command -v redis-server || echo /usr/bin/redis-server)"
fi
usable "$candidate" || { echo "ensure_redis: no usable redis-server" >&2; exit 1; }
printf '%s\n' "$candidate"
