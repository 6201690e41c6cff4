"""Every table of every package on the one ``MetaData``: what the migrations must produce.

Which store owns which fact (docs/storage.md has the full table):

* The core (``cardsvc._core``, journaled) owns every code's *state*: available, held, allocated,
  redeemed, frozen, void; pools, holds, allocations by order reference, redemptions and rollbacks,
  and the idempotency of allocations (order reference) and redemptions (request id).
* SQL owns everything else, each package its own tables (``cardsvc.<package>.tables``): the
  catalog (SKUs, pools by name, batches, the *encrypted payload* of each code; the core keeps only
  a keyed hash), API keys (hashed), agents and prices, the ledger, orders (the saga record binding
  an agent's ``client_order_id`` to the core's allocation), exports and the audit log.

Times are integer milliseconds since the Unix epoch (``*_ms``), the core's unit; money is integer
minor units; no column holds a plaintext code or PIN. Importing this module registers every
``tables.py`` on ``cardsvc.db.Base``; Alembic's environment (``env.py``) and the schema test
compare the migrated database with ``metadata``, so a change to a table needs a new revision.
"""

from __future__ import annotations

from types import ModuleType

from cardsvc.access import tables as access_tables
from cardsvc.agents import tables as agents_tables
from cardsvc.audit import tables as audit_tables
from cardsvc.catalog import tables as catalog_tables
from cardsvc.db.base import Base
from cardsvc.delivery import tables as delivery_tables
from cardsvc.events import tables as events_tables
from cardsvc.money import tables as money_tables
from cardsvc.payments import tables as payments_tables
from cardsvc.reports import tables as reports_tables
from cardsvc.sales import tables as sales_tables

TABLE_MODULES: tuple[ModuleType, ...] = (
    access_tables, agents_tables, audit_tables, catalog_tables, delivery_tables, events_tables,
    money_tables, payments_tables, reports_tables, sales_tables,
)
"""The modules that define tables, one per package."""
metadata = Base.metadata
"""Every table, once the modules above are imported."""
