"""Goal: migration 0005 keeps every report line of existing batches and lets a line carry any
number of problems; its downgrade keeps one problem per line (the old key).

Method: on each dialect (a new SQLite file, or a database of its own on the session's PostgreSQL
server, dropped afterwards: the migrations are run down and up, which the shared test database
must never see), migrate an empty database to 0004, store a batch with two report lines, upgrade
to head, add a second problem to one line, then downgrade to 0004 and read what is left.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from bench.pg_server import PostgresCluster
from cardsvc.db import DATABASE_URL_ENV, Database
from cardsvc.db.database import MIGRATIONS_DIR

MIGRATION_TEST_DB = "cardsvc_migration_test"


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database nobody else uses, never migrated: a new SQLite file or a new PostgreSQL
    database (dropped after the test)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'migrations.db'}"
        return
    server: PostgresCluster = request.getfixturevalue("postgres_server")
    url = server.create_database(MIGRATION_TEST_DB)
    try:
        yield url
    finally:
        server.drop_database(MIGRATION_TEST_DB)


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def _lines(database: Database) -> list[tuple[int, str]]:
    with database.read() as session:
        rows = session.execute(sa.text("SELECT line, field FROM batch_issues ORDER BY line, field"))
        return [(int(line), str(field)) for line, field in rows]


def test_migration_keeps_every_report_line_and_the_downgrade_one_per_line(
    empty_database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    database_url = empty_database_url
    monkeypatch.setenv(DATABASE_URL_ENV, database_url)
    config = _config()
    command.upgrade(config, "0004")
    database = Database.open(tmp_path, database_url, migrate=False)
    try:
        with database.write() as session:
            session.execute(sa.text(
                "INSERT INTO skus (sku, name, uses_per_code, redeem_requires_sale, "
                "created_at_ms) VALUES ('S', 's', 1, :yes, 0)"), {"yes": True})
            session.execute(sa.text(
                "INSERT INTO batches (batch_id, sku, pool_id, status, source, data_key_wrapped,"
                " master_key_id, submitted, imported, duplicates, created_at_ms, processed) "
                "VALUES (1, 'S', 0, 'rejected', 'upload', :key, 'k', 0, 0, 0, 0, 0)"),
                {"key": b"\x00"})
            session.execute(sa.text(
                "INSERT INTO batch_issues (batch_id, line, field, reason) VALUES "
                "(1, 2, 'code', 'empty'), (1, 5, 'pin', 'too_long')"))
    finally:
        database.close()
    command.upgrade(config, "head")
    database = Database.open(tmp_path, database_url, migrate=False)
    try:
        with database.write() as session:
            session.execute(sa.text("INSERT INTO batch_issues (batch_id, line, field, reason) "
                                    "VALUES (1, 2, 'row', 'extra_columns')"))
        assert _lines(database) == [(2, "code"), (2, "row"), (5, "pin")]
    finally:
        database.close()
    command.downgrade(config, "0004")
    database = Database.open(tmp_path, database_url, migrate=False)
    try:
        assert _lines(database) == [(2, "code"), (5, "pin")]
    finally:
        database.close()
