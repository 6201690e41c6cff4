"""Goal: prove that ``cardsvc.db.Database`` opens SQLite and PostgreSQL with the promised
settings, that the migrations build exactly the schema the models describe, and that write
transactions are atomic and safe under concurrency.

Method: every test that can runs on both dialects (``database_url``: a temporary SQLite file and a
fresh database on the session's private PostgreSQL server). The schema test migrates an empty
database and asks Alembic's ``compare_metadata`` for differences with the models. Settings are
read back with PRAGMAs; atomicity by raising inside ``write()``; concurrency with 8 threads, and
with a second process writing while this one holds SQLite's write lock.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from cardsvc.catalog.tables import Sku
from cardsvc.db import DATABASE_URL_ENV, Database
from cardsvc.db.database import DATABASE_FILE, MIGRATIONS_DIR
from cardsvc.errors import CardsvcError, ErrorCode
from cardsvc.migrations.schema import metadata

if TYPE_CHECKING:
    from bench.pg_server import PostgresCluster as PostgresServer

T0_MS = 1_700_000_000_000


def _sku(name: str) -> Sku:
    return Sku(
        sku=name,
        name=f"product {name}",
        uses_per_code=1,
        redeem_requires_sale=True,
        validity_days_after_sale=None,
        created_at_ms=T0_MS,
    )


def _count_skus(database: Database) -> int:
    with database.read() as session:
        return int(session.scalar(select(func.count()).select_from(Sku)) or 0)


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database with no tables at all, on each dialect."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'empty.db'}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.create_database(f"empty_{uuid.uuid4().hex[:16]}")


@pytest.fixture
def sqlite_database(tmp_path: Path) -> Iterator[Database]:
    database = Database.open(tmp_path, f"sqlite:///{tmp_path / 'cardsvc.db'}")
    try:
        yield database
    finally:
        database.close()


def test_migrated_schema_equals_the_models(empty_database_url: str, tmp_path: Path) -> None:
    database = Database.open(tmp_path, empty_database_url, migrate=True)
    try:
        with database.write() as session:
            context = MigrationContext.configure(session.connection(), opts={"compare_type": True})
            differences = compare_metadata(context, metadata)
            current = context.get_current_revision()
    finally:
        database.close()
    assert differences == []
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    assert current == ScriptDirectory.from_config(config).get_current_head()


def test_opening_a_migrated_database_again_changes_nothing(
    database_url: str, tmp_path: Path
) -> None:
    first = Database.open(tmp_path, database_url)
    with first.write() as session:
        session.add(_sku("KEEP"))
    first.close()
    second = Database.open(tmp_path, database_url)
    try:
        assert _count_skus(second) == 1
    finally:
        second.close()


def test_sqlite_connections_use_wal_synchronous_full_and_foreign_keys(
    sqlite_database: Database,
) -> None:
    pragmas = ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
    with sqlite_database.write() as session:
        written = {name: session.execute(text(f"PRAGMA {name}")).scalar() for name in pragmas}
    with sqlite_database.read() as session:
        read = {name: session.execute(text(f"PRAGMA {name}")).scalar() for name in pragmas}
        query_only = session.execute(text("PRAGMA query_only")).scalar()
    expected = {"journal_mode": "wal", "synchronous": 2, "foreign_keys": 1, "busy_timeout": 10_000}
    assert written == expected  # synchronous 2 is FULL
    assert read == expected
    assert query_only == 1


def test_postgresql_url_uses_psycopg_3_and_read_committed(
    postgres_url: str, tmp_path: Path
) -> None:
    database = Database.open(tmp_path, postgres_url, migrate=False)
    try:
        assert database.dialect == "postgresql"
        assert database.url.startswith("postgresql+psycopg://")
        with database.write() as session:
            isolation = session.execute(text("SHOW transaction_isolation")).scalar()
        with database.read() as session:
            read_only = session.execute(text("SHOW transaction_read_only")).scalar()
    finally:
        database.close()
    assert isolation == "read committed"
    assert read_only == "on"


def test_write_commits_and_returned_objects_stay_readable(database: Database) -> None:
    with database.write() as session:
        sku = _sku("A")
        session.add(sku)
    assert sku.name == "product A"  # expire_on_commit=False: no reload after the session ended
    with database.read() as session:
        assert session.get(Sku, "A") is not None


def test_write_that_raises_rolls_back_and_reraises(database: Database) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom), database.write() as session:
        session.add(_sku("GONE"))
        session.flush()
        raise Boom
    assert _count_skus(database) == 0


def test_read_session_cannot_write(database: Database) -> None:
    with pytest.raises((DBAPIError, CardsvcError)), database.read() as session:
        session.add(_sku("NOPE"))
        session.flush()
    assert _count_skus(database) == 0


def test_write_inside_write_on_one_thread_is_refused(database: Database) -> None:
    with pytest.raises(RuntimeError), database.write(), database.write():
        pass
    with database.write() as session:  # the outer turn was released
        session.add(_sku("AFTER"))
    assert _count_skus(database) == 1


def test_concurrent_writers_from_eight_threads_all_succeed(database: Database) -> None:
    threads_n, writes_per_thread = 8, 10
    errors: list[BaseException] = []
    start = threading.Barrier(threads_n)

    def writer(thread_index: int) -> None:
        try:
            start.wait()
            for i in range(writes_per_thread):
                with database.write() as session:
                    session.add(_sku(f"T{thread_index}-{i}"))
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert _count_skus(database) == threads_n * writes_per_thread


CHILD_WRITE = """
import sys
from pathlib import Path
from cardsvc.db import Database
from cardsvc.catalog.tables import Sku
database = Database.open(Path(sys.argv[1]), sys.argv[2])
with database.write() as session:
    session.add(Sku(sku="CHILD", name="child", uses_per_code=1, redeem_requires_sale=True,
                    validity_days_after_sale=None, created_at_ms=0))
database.close()
"""


def test_another_process_waits_for_the_write_lock_instead_of_failing(
    sqlite_database: Database, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'cardsvc.db'}"
    hold_s = 1.0
    with sqlite_database.write() as session:
        session.add(_sku("PARENT"))
        session.flush()  # BEGIN IMMEDIATE already holds the write lock; keep it a while
        child = subprocess.Popen([sys.executable, "-c", CHILD_WRITE, str(tmp_path), url])
        time.sleep(hold_s)
        assert child.poll() is None, "the child finished while we held the write lock"
    assert child.wait(timeout=30) == 0
    assert _count_skus(sqlite_database) == 2


def test_open_rejects_urls_of_other_databases_and_malformed_urls(tmp_path: Path) -> None:
    for url in ("mysql://user@localhost/cardsvc", "postgresql+psycopg2://h/db", "not a url"):
        with pytest.raises(CardsvcError) as caught:
            Database.open(tmp_path, url)
        assert caught.value.code is ErrorCode.INVALID_ARGUMENT


def test_unreachable_postgresql_is_unavailable_and_the_password_stays_hidden(
    tmp_path: Path,
) -> None:
    with pytest.raises(CardsvcError) as caught:
        Database.open(tmp_path, "postgresql://cardsvc:hunter2@127.0.0.1:1/cardsvc")
    assert caught.value.code is ErrorCode.DATABASE_UNAVAILABLE
    assert "hunter2" not in caught.value.message
    assert "hunter2" not in repr(caught.value.details)


def test_password_is_hidden_in_url_and_repr(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    # Trust authentication ignores the password, so this opens.
    url = f"postgresql://postgres:hunter2@{postgres_server.host}:{postgres_server.port}/cardsvc"
    database = Database.open(tmp_path, url, migrate=False)
    try:
        assert "hunter2" not in database.url
        assert "hunter2" not in repr(database)
    finally:
        database.close()


def test_in_memory_sqlite_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CardsvcError) as caught:
        Database.open(tmp_path, "sqlite://")
    assert caught.value.code is ErrorCode.DATABASE_UNAVAILABLE


def test_url_comes_from_the_environment_then_the_data_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_file = tmp_path / "from-env.db"
    monkeypatch.setenv(DATABASE_URL_ENV, f"sqlite:///{env_file}")
    Database.open(tmp_path / "unused", None).close()
    assert env_file.exists()
    assert not (tmp_path / "unused").exists()

    monkeypatch.delenv(DATABASE_URL_ENV)
    data_dir = tmp_path / "data"
    Database.open(data_dir, None).close()
    assert (data_dir / DATABASE_FILE).exists()
