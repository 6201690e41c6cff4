"""``python -m api``: the ``cardsvc`` command line with ``serve`` included explicitly.

``cardsvc serve`` finds ``serve`` through the installed entry-point metadata; this entry point
works from the repository root even when that metadata is stale or missing.
"""

from __future__ import annotations

import sys

from api.cli import SERVE
from cardsvc.cli import COMMANDS, main

if __name__ == "__main__":
    sys.exit(main(commands=(*COMMANDS, SERVE)))
