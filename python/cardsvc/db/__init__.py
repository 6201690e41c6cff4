"""The SQL machinery: opening the database (``database``), the declarative base every package's
tables share (``base``) and the group commit of the order path (``batcher``).

The tables themselves live with their packages (``cardsvc.<package>.tables``); the migrations
(``cardsvc.migrations``) see them all. See docs/storage.md for which facts live here and which
in the core.
"""

from cardsvc.db.base import Base
from cardsvc.db.batcher import BatchKind, WriteBatcher
from cardsvc.db.database import DATABASE_URL_ENV, Database

__all__ = ["DATABASE_URL_ENV", "Base", "BatchKind", "Database", "WriteBatcher"]
