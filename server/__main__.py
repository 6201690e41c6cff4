"""``python -m server``: the ``cardsvc`` command line with ``serve`` included explicitly.

``cardsvc serve`` finds ``serve`` through the installed entry-point metadata; this entry point
works from the repository root even when that metadata is stale or missing.
"""

from __future__ import annotations

import sys

from cardsvc.cli import COMMANDS, main
from server.cli import SERVE

if __name__ == "__main__":
    sys.exit(main(commands=(*COMMANDS, SERVE)))
