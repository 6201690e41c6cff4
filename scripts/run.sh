#!/usr/bin/env bash
# The run command: make the environment ready (setup.sh), then serve the HTTP API and the shop on
# the embedded defaults: `cardsvc serve` on http://127.0.0.1:8000 with the data directory data/ in the
# repository and the file journal (no server needed). It prints where it listens, the durability
# guarantee and the health URLs; stop it with Ctrl-C. Arguments go to `cardsvc serve`, e.g.
# `scripts/run.sh --port 9000` or `scripts/run.sh --journal redis --redis-url redis://...`.
# `cardsvc demo` (a walk through the engine in memory) is still there: .venv/bin/cardsvc demo
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

bash scripts/setup.sh
# The embedded defaults show a shop: two demo products (test codes) in an empty catalog, paid in
# the sandbox channel; mail goes to data/mail/*.eml.
export CARDSVC_STORE_DEMO="${CARDSVC_STORE_DEMO:-1}"
exec "$root/.venv/bin/cardsvc" serve --data-dir "$root/data" "$@"
