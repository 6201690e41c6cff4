"""``python -m cardsvc``: the same command line as the ``cardsvc`` script."""

from __future__ import annotations

import sys

from cardsvc.cli import main

if __name__ == "__main__":
    sys.exit(main())
