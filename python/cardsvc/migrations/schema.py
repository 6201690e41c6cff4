"""Every table of every package on the one ``MetaData``: what the migrations must produce.

Importing this module registers each package's ``tables.py`` on ``cardsvc.db.Base``; Alembic's
environment (``env.py``) and the schema test compare the migrated database with ``metadata``.
"""

from __future__ import annotations

from types import ModuleType

from cardsvc.access import tables as access_tables
from cardsvc.agents import tables as agents_tables
from cardsvc.audit import tables as audit_tables
from cardsvc.catalog import tables as catalog_tables
from cardsvc.db import models as remaining_tables
from cardsvc.db.base import Base
from cardsvc.money import tables as money_tables

TABLE_MODULES: tuple[ModuleType, ...] = (
    access_tables, agents_tables, audit_tables, catalog_tables, money_tables, remaining_tables,
)
"""The modules that define tables, one per package."""
metadata = Base.metadata
"""Every table, once the modules above are imported."""
