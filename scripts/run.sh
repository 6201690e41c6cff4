#!/usr/bin/env bash
# The run command: make the environment ready (setup.sh), then run `cardsvc demo`, a short walk
# through the engine in memory (every code masked). Arguments go to the demo command.
# Later issues turn this into `cardsvc serve`.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

bash scripts/setup.sh
exec "$root/.venv/bin/cardsvc" demo "$@"
