"""Options shared by the commands that open the SQL store without the core (they work beside a
running server): the data directory and the database URL."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def add_database_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path,
                        default=Path(os.environ.get("CARDSVC_DATA_DIR", "data")))
    parser.add_argument("--database-url", default=None,
                        help="SQL database URL (default: CARDSVC_DATABASE_URL, else "
                             "DATA_DIR/cardsvc.db)")
