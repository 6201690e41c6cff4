"""The Alembic environment for cardsvc's SQL store.

At run time ``cardsvc.db.database`` runs the migrations itself: it passes an open connection,
already inside the transaction (and, on PostgreSQL, holding the migration lock), in
``config.attributes["connection"]``. From the developer's ``alembic`` command line (alembic.ini
at the repository root) the database is ``$CARDSVC_DATABASE_URL``, opened through
``cardsvc.db.Database`` so it gets the same settings. Offline (``--sql``) mode is not supported.
"""

from __future__ import annotations

import os
from logging.config import fileConfig
from pathlib import Path

from alembic import context
from sqlalchemy.engine import Connection

from cardsvc.db.database import DATABASE_URL_ENV, Database
from cardsvc.migrations.schema import metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_from_command_line() -> None:
    if context.config.config_file_name is not None:
        fileConfig(context.config.config_file_name)
    url = os.environ.get(DATABASE_URL_ENV)
    if not url:
        raise SystemExit(f"set {DATABASE_URL_ENV} to the database to migrate or compare with")
    database = Database.open(Path.cwd(), url, migrate=False)
    try:
        with database.write() as session:
            _run(session.connection())
    finally:
        database.close()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported")
given = context.config.attributes.get("connection")
if isinstance(given, Connection):
    _run(given)
else:
    _run_from_command_line()
