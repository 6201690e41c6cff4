# shellcheck shell=bash
# Sourced by ensure_redis.sh and ensure_postgres.sh: install Debian packages without starting
# their services. We always run our own server instances on free loopback ports, so a system
# service would only hold ports and memory.

apt_install_without_services() {
  local sudo=()
  if [[ "$(id -u)" != 0 ]]; then
    command -v sudo >/dev/null || { echo "need root (or sudo) to install: $*" >&2; return 1; }
    sudo=(sudo)
  fi
  # policy-rc.d exiting 101 tells invoke-rc.d not to start services during the install. Leave an
  # existing one alone; remove ours afterwards.
  local policy=/usr/sbin/policy-rc.d created=0
  if [[ ! -e "$policy" ]]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
    "${sudo[@]}" chmod 755 "$policy"
    created=1
  fi
  local status=0
  {
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
      && "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends "$@"
  } >&2 || status=$?
  if [[ "$created" == 1 ]]; then "${sudo[@]}" rm -f "$policy"; fi
  return "$status"
}

stop_system_service() {
  # Best effort: stop and disable a system service a package may have started or enabled.
  local service="$1" sudo=()
  [[ "$(id -u)" == 0 ]] || sudo=(sudo)
  if command -v systemctl >/dev/null && [[ -d /run/systemd/system ]]; then
    "${sudo[@]}" systemctl disable --now "$service" >/dev/null 2>&1 || true
  elif command -v service >/dev/null; then
    "${sudo[@]}" service "$service" stop >/dev/null 2>&1 || true
  fi
  if command -v update-rc.d >/dev/null; then
    "${sudo[@]}" update-rc.d "$service" disable >/dev/null 2>&1 || true
  fi
}
