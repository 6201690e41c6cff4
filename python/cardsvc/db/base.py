"""The SQL machinery every package's tables share: the declarative base, the constraint naming
convention and the column lengths.

Each domain package keeps its own tables in its ``tables.py`` on this base (one ``MetaData``), so
foreign keys between packages are named by table (``"agents.agent_id"``) without an import, and
the migrations (``cardsvc.migrations``) see every table through ``Base.metadata``.

Times are integer milliseconds since the Unix epoch (``*_ms``), the core's unit, so they compare
across stores and survive every database's timestamp quirks. Money is integer minor units.
Columns hold no plaintext code or PIN anywhere.
"""

from __future__ import annotations

from typing import Any, ClassVar

from sqlalchemy import JSON, MetaData
from sqlalchemy.orm import DeclarativeBase

from cardsvc.checks import ID_LEN_MAX, NAME_LEN_MAX, REF_LEN_MAX

__all__ = ["ID_LEN_MAX", "NAME_LEN_MAX", "NAMING_CONVENTION", "REF_LEN_MAX", "Base"]

# Named constraints, so Alembic migrations name them the same on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    # Every column, so a unique constraint over (agent_id, client_order_id) is not named as if it
    # covered agent_id alone (and cannot collide with a later one that does).
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}



class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dict[str, Any]: JSON,
        list[Any]: JSON,
        list[int]: JSON,
        list[str]: JSON,
    }
