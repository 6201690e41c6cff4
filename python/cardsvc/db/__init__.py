"""The SQL store: the schema (``models``), opening it (``database``) and its migrations.

See docs/storage.md for which facts live here and which in the core.
"""

from cardsvc.db import money as _money  # noqa: F401  (registers the money tables on Base)
from cardsvc.db.base import Base
from cardsvc.db.database import DATABASE_URL_ENV, Database

__all__ = ["DATABASE_URL_ENV", "Base", "Database"]
