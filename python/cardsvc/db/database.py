"""Opening the SQL store: SQLite (the default, one file in the data directory) or PostgreSQL.

``Database.open`` picks the URL (argument, else ``$CARDSVC_DATABASE_URL``, else
``sqlite:///DATA_DIR/cardsvc.db``), configures the engine for durability, checks that the
database answers and runs the Alembic migrations up to head. Callers then work in transactions::

    db = Database.open(data_dir)
    with db.write() as session:      # one transaction: committed on exit, rolled back on error
        session.add(Sku(...))
    with db.read() as session:       # read-only; never commits
        session.get(Sku, "VIP")

SQLite settings (docs/storage.md says why): WAL journal, ``synchronous=FULL`` (a commit is on
disk before it returns), foreign keys enforced, a 10 s busy timeout for other processes (the CLI
creating an API key while the server runs), and write transactions that start with
``BEGIN IMMEDIATE`` so they take the database's one write lock up front instead of failing with
SQLITE_BUSY half-way. Inside the process a lock lets one write transaction run at a time.

PostgreSQL: the psycopg 3 driver (``postgresql://`` is read as ``postgresql+psycopg://``), a
bounded pool with pre-ping, READ COMMITTED, and read-only transactions for ``read()``.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry, QueuePool

from cardsvc.errors import CardsvcError, ErrorCode, make_error
from cardsvc.files import create_private_file, make_private_dir

log = logging.getLogger("cardsvc.db")

DATABASE_URL_ENV = "CARDSVC_DATABASE_URL"
DATABASE_FILE = "cardsvc.db"
MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
"""The Alembic scripts (``cardsvc.migrations``): a path, not an import, since the migrations sit on
the top floor and see every package's tables."""

BUSY_TIMEOUT_S = 10.0
"""How long a write waits for the database's write lock (SQLite's busy timeout, our own write
lock, PostgreSQL's connect and pool-checkout timeouts) before DATABASE_UNAVAILABLE."""
SQLITE_READ_POOL_SIZE = 8
SQLITE_READ_POOL_OVERFLOW_MAX = 32
"""Read connections kept open (and extra ones allowed under load); a SQLite connection costs a
few hundred KB of page cache at most."""
PG_POOL_SIZE = 10
PG_POOL_OVERFLOW_MAX = 10
"""PostgreSQL connections per process (each is a server process of several MB on the server)."""
PG_MIGRATION_LOCK_KEY = 0x63617264_73766301
"""``pg_advisory_xact_lock`` key ("cardsvc" + 1) taken while migrating, so two processes that
start together migrate one after the other."""


class Database:
    """An open SQL store. Thread-safe: sessions come from ``write()``/``read()``, one per block.

    Use :meth:`open`; the constructor takes ready engines.
    """

    def __init__(self, url: URL, write_engine: Engine, read_engine: Engine) -> None:
        self.url: str = url.render_as_string(hide_password=True)
        self.dialect: str = write_engine.dialect.name
        self._write_engine = write_engine
        self._read_engine = read_engine
        self._write_sessions = sessionmaker(
            bind=write_engine, expire_on_commit=False, autoflush=True
        )
        self._read_sessions = sessionmaker(bind=read_engine, expire_on_commit=False, autoflush=True)
        # SQLite has one writer per database; taking turns here keeps our own threads from
        # spinning on SQLITE_BUSY. PostgreSQL locks rows instead.
        self._write_lock = threading.Lock() if self.dialect == "sqlite" else None
        self._in_write = threading.local()

    def __repr__(self) -> str:
        return f"Database(url={self.url!r}, dialect={self.dialect!r})"

    @classmethod
    def open(cls, data_dir: Path, url: str | None = None, *, migrate: bool = True) -> Database:
        """Opens the database named by ``url``, else ``$CARDSVC_DATABASE_URL``, else the SQLite
        file ``data_dir/cardsvc.db`` (creating ``data_dir`` if needed).

        With ``migrate`` the schema is upgraded to the newest Alembic revision (concurrent
        starters take turns). Raises INVALID_ARGUMENT for a URL that is malformed or names an
        unsupported database, DATABASE_UNAVAILABLE when the database cannot be reached or
        opened in WAL mode (SQLite), or a connection or lock fails while migrating.
        """
        resolved = resolve_url(data_dir, url)
        write_engine, read_engine = _create_engines(resolved)
        database = cls(resolved, write_engine, read_engine)
        try:
            if database.dialect == "sqlite":
                _enable_wal(write_engine)
            else:
                with read_engine.connect() as connection:
                    connection.execute(text("SELECT 1"))
            if migrate:
                with database._write_turn():
                    _migrate(write_engine)
        except (OperationalError, PoolTimeoutError) as exc:
            database.close()
            raise _unavailable(database.url, exc) from exc
        except BaseException:
            database.close()
            raise
        log.info("database %s open (%s)", database.url, database.dialect)
        return database

    @property
    def session_factories(self) -> tuple[sessionmaker[Session], sessionmaker[Session]]:
        """The write and read session factories, for extensions that configure every session
        of this database (the price cache adds its ``info`` entry and listeners here)."""
        return self._write_sessions, self._read_sessions

    @contextmanager
    def write(self) -> Iterator[Session]:
        """One write transaction: committed when the block exits normally, rolled back when it
        raises (the exception propagates). On SQLite one write block runs at a time per process.

        Preconditions: not already inside ``write()`` on this thread (RuntimeError: it would
        wait for itself); the block does not commit or roll back the session itself. Raises
        DATABASE_UNAVAILABLE when the database cannot be reached or its write lock is not free
        within 10 s; the transaction then changed nothing.
        """
        with self._write_turn():
            try:
                with self._write_sessions.begin() as session:
                    yield session
            except (OperationalError, PoolTimeoutError) as exc:
                raise _unavailable(self.url, exc) from exc

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only session over one transaction (a consistent snapshot on SQLite); never
        commits. Writing in it fails (SQLite ``query_only``, PostgreSQL READ ONLY).

        Raises DATABASE_UNAVAILABLE when the database cannot be reached.
        """
        try:
            with self._read_sessions() as session:
                yield session
        except (OperationalError, PoolTimeoutError) as exc:
            raise _unavailable(self.url, exc) from exc

    def close(self) -> None:
        """Closes every pooled connection. Sessions still open keep theirs until they end."""
        self._write_engine.dispose()
        self._read_engine.dispose()

    @contextmanager
    def _write_turn(self) -> Iterator[None]:
        if getattr(self._in_write, "active", False):
            raise RuntimeError("write() inside write() on one thread would wait for itself")
        lock = self._write_lock
        if lock is not None and not lock.acquire(timeout=BUSY_TIMEOUT_S):
            raise make_error(
                ErrorCode.DATABASE_UNAVAILABLE,
                "the database is busy with other writes; retry later",
                {"database": self.url, "reason": "write_lock_timeout"},
            )
        self._in_write.active = True
        try:
            yield
        finally:
            self._in_write.active = False
            if lock is not None:
                lock.release()


def resolve_url(data_dir: Path, url: str | None) -> URL:
    """The URL ``Database.open`` uses (see there), with ``postgresql://`` mapped to the psycopg 3
    driver. Creates ``data_dir`` when it falls back to the default SQLite file.

    Raises INVALID_ARGUMENT for a malformed URL or a database other than SQLite or PostgreSQL
    (psycopg 3); the message never repeats the URL, which may hold a password.
    """
    text_url = url if url is not None else os.environ.get(DATABASE_URL_ENV) or None
    if text_url is None:
        # 0700 / 0600 from the start: SQLite gives the WAL and SHM files the database file's
        # mode, so creating the file first makes all three private (docs/security.md).
        make_private_dir(data_dir)
        create_private_file(data_dir / DATABASE_FILE)
        return URL.create("sqlite", database=str(data_dir / DATABASE_FILE))
    try:
        parsed = make_url(text_url)
    except ArgumentError:
        raise make_error(
            ErrorCode.INVALID_ARGUMENT,
            "the database URL is not valid",
            {"field": "database_url"},
        ) from None
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.drivername not in ("sqlite", "sqlite+pysqlite", "postgresql+psycopg"):
        raise make_error(
            ErrorCode.INVALID_ARGUMENT,
            "the database URL must start with sqlite:// or postgresql://",
            {"field": "database_url", "driver": parsed.drivername},
        )
    return parsed


def _create_engines(url: URL) -> tuple[Engine, Engine]:
    """(write engine, read engine) configured for the URL's dialect."""
    if url.get_backend_name() == "sqlite":
        # One connection: the write lock lets one write transaction run at a time anyway.
        write_engine = create_engine(
            url, poolclass=QueuePool, pool_size=1, max_overflow=0, pool_timeout=BUSY_TIMEOUT_S
        )
        read_engine = create_engine(
            url,
            poolclass=QueuePool,
            pool_size=SQLITE_READ_POOL_SIZE,
            max_overflow=SQLITE_READ_POOL_OVERFLOW_MAX,
            pool_timeout=BUSY_TIMEOUT_S,
        )
        _configure_sqlite(write_engine, begin="BEGIN IMMEDIATE", query_only=False)
        _configure_sqlite(read_engine, begin="BEGIN", query_only=True)
        return write_engine, read_engine
    engine = create_engine(
        url,
        pool_size=PG_POOL_SIZE,
        max_overflow=PG_POOL_OVERFLOW_MAX,
        pool_timeout=BUSY_TIMEOUT_S,
        pool_pre_ping=True,
        isolation_level="READ COMMITTED",
        connect_args={"connect_timeout": int(BUSY_TIMEOUT_S)},
    )
    # An executemany INSERT as multi-row INSERT ... VALUES statements (SQLAlchemy's
    # "insertmanyvalues", pages of at most 1,000 rows) instead of one statement per row: the
    # order path's commit groups insert orders, ledger transactions and postings by the
    # hundred, and each statement costs PostgreSQL a round of parsing and executing (about a
    # third of its CPU per order). psycopg 3's dialect enables it only with RETURNING.
    engine.dialect.use_insertmanyvalues_wo_returning = True
    return engine, engine.execution_options(postgresql_readonly=True)


def _configure_sqlite(engine: Engine, *, begin: str, query_only: bool) -> None:
    """Per-connection settings, and our own BEGIN in place of pysqlite's (which begins only
    before DML, so SELECTs would run outside the transaction and writes would start deferred)."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        dbapi_connection.isolation_level = None  # pysqlite: emit no BEGIN of its own
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.execute("PRAGMA synchronous = FULL")
            if query_only:
                cursor.execute("PRAGMA query_only = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        connection.exec_driver_sql(begin)


def _enable_wal(engine: Engine) -> None:
    """Switches the file to WAL mode (persistent; a no-op when it already is). Raises
    DATABASE_UNAVAILABLE when SQLite refuses, e.g. for an in-memory database."""
    dbapi_connection = engine.raw_connection()
    try:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode = WAL")
        row = cursor.fetchone()
        mode = str(row[0]).lower() if row else ""
        cursor.close()
    finally:
        dbapi_connection.close()
    if mode != "wal":
        raise make_error(
            ErrorCode.DATABASE_UNAVAILABLE,
            "the SQLite database cannot use WAL journaling (an in-memory database?)",
            {"database": engine.url.render_as_string(hide_password=True), "journal_mode": mode},
        )


def _migrate(engine: Engine) -> None:
    """Upgrades the schema to head in one transaction (SQLite and PostgreSQL both have
    transactional DDL, so a failed migration leaves the schema as it was)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_MIGRATION_LOCK_KEY}
            )
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def _unavailable(url: str, exc: Exception) -> CardsvcError:
    """DATABASE_UNAVAILABLE for a driver or pool failure, naming its class but not its text
    (which may quote SQL and parameters)."""
    orig = getattr(exc, "orig", None)
    reason = type(orig if orig is not None else exc).__name__
    return make_error(
        ErrorCode.DATABASE_UNAVAILABLE,
        "the database is unavailable; retry later",
        {"database": url, "reason": reason},
    )
