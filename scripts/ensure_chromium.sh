#!/usr/bin/env bash
# Print the path of a usable Chromium executable for the browser tests (tests/web/).
#
# Playwright cannot download its own browser builds here (only package registries are reachable),
# so the tests drive Debian's `chromium` package through `chromium.launch(executable_path=...)`.
# When no usable Chromium is found, this installs Debian's `chromium` and `fonts-noto-cjk` (the
# latter so that zh-CN pages render Chinese characters instead of empty boxes in screenshots),
# without starting any service, and prints the installed executable.
#
# Honours CARDSVC_CHROMIUM when it already names a working executable. Exits non-zero, with a
# message on stderr, when no Chromium can be had (no root, no package); scripts/test.sh then
# lets the browser tests skip with that message.
set -euo pipefail
# shellcheck source=scripts/_apt.sh
source "$(dirname "${BASH_SOURCE[0]}")/_apt.sh"

usable() { [[ -n "$1" && -x "$1" ]] && "$1" --headless=new --version >/dev/null 2>&1; }

# The CJK fonts matter as much as the browser: without them the zh-CN screenshots show tofu.
fonts_present() { fc-list 2>/dev/null | grep -qi 'Noto Sans CJK'; }

candidate="${CARDSVC_CHROMIUM:-}"
usable "$candidate" || candidate="$(command -v chromium || true)"
packages=()
usable "$candidate" || packages+=(chromium)
fonts_present || packages+=(fonts-noto-cjk)
if [[ "${#packages[@]}" -gt 0 ]]; then
  echo "ensure_chromium: installing Debian's ${packages[*]}" >&2
  apt_install_without_services "${packages[@]}"
  usable "$candidate" || candidate="$(command -v chromium || echo /usr/bin/chromium)"
fi
usable "$candidate" || { echo "ensure_chromium: no usable chromium" >&2; exit 1; }
printf '%s\n' "$candidate"
