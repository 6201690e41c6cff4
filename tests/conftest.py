"""Shared test setup: hypothesis profiles, a fresh engine on a manual clock, and SQL databases.

Profiles (select with ``HYPOTHESIS_PROFILE``): ``fast`` (the default, for every test run) and
``slow`` (many more and longer random histories, for a nightly or pre-release run).

SQL: ``postgres_server``/``postgres_url`` start one private PostgreSQL server for the session
(tests using it get the ``postgres`` marker, so ``-m "not postgres"`` deselects them), and
``database_url`` gives each test a fresh database on SQLite and on PostgreSQL in turn.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, settings

if TYPE_CHECKING:
    from cardsvc.db import Database
    from cardsvc.engine import Engine

settings.register_profile(
    "fast",
    max_examples=300,
    stateful_step_count=50,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "slow",
    max_examples=3_000,
    stateful_step_count=150,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fast"))

# A fixed engine secret and start time keep failures reproducible.
LOOKUP_KEY = bytes(range(32))
T0_MS = 1_700_000_000_000


@pytest.fixture
def engine() -> Engine:
    """A fresh engine whose clock is stopped at ``T0_MS``."""
    # Imported here so that tests which do not need the extension still collect without it.
    from cardsvc.engine import Engine

    eng = Engine(LOOKUP_KEY)
    eng.set_clock_ms(T0_MS)
    return eng


# ---------------------------------------------------------------------------------------------
# PostgreSQL: one private server for the session (never the system's), on a free loopback port,
# in a temporary directory. The server programs come from scripts/ensure_postgres.sh, which
# installs Debian's package when they are missing. initdb and postgres refuse to run as root, so
# under root they run as the `postgres` user (or `nobody`) through runuser. Each test gets its
# database emptied: one migrated database, truncated before each test (PostgresTestDatabase).

REPO_ROOT = Path(__file__).resolve().parent.parent
PG_START_TIMEOUT_S = 30
PG_SUPERUSER = "postgres"
PG_TEST_DB = "cardsvc_test"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "postgres: runs against the session's private PostgreSQL server"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        params = callspec.params if callspec is not None else {}
        uses_pg = "postgres_server" in getattr(item, "fixturenames", ())
        if uses_pg or "postgresql" in params.values():
            item.add_marker(pytest.mark.postgres)


@dataclass(frozen=True)
class PostgresServer:
    """A running private PostgreSQL server; the superuser ``postgres`` connects without a
    password over TCP on 127.0.0.1."""

    host: str
    port: int
    base_dir: Path

    def url(self, database: str) -> str:
        return f"postgresql://{PG_SUPERUSER}@{self.host}:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Creates the empty database ``name`` and returns its URL."""
        import psycopg

        with psycopg.connect(
            f"host={self.host} port={self.port} user={PG_SUPERUSER} dbname=postgres",
            autocommit=True,
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"'.encode())
        return self.url(name)


def _postgres_bindir() -> Path:
    result = subprocess.run(
        ["bash", str(REPO_ROOT / "scripts" / "ensure_postgres.sh")],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"scripts/ensure_postgres.sh failed:\n{result.stderr[-2000:]}")
    return Path(result.stdout.strip().splitlines()[-1])


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _server_user() -> str | None:
    """The user to run the server programs as (None: ourselves, when we are not root)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return "nobody"
    return "postgres"


def _run_as(user: str | None, args: list[str]) -> None:
    command = args if user is None else ["runuser", "-u", user, "--", *args]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{args[0]} failed ({result.returncode}):\n{result.stderr[-2000:]}")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    bindir = _postgres_bindir()
    user = _server_user()
    # Not under pytest's tmp_path: that is private to root, and the server user must reach it.
    base_dir = Path(tempfile.mkdtemp(prefix="cardsvc-pg-"))
    data_dir = base_dir / "data"
    log_file = base_dir / "server.log"
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(base_dir, entry.pw_uid, entry.pw_gid)
    port = _free_loopback_port()
    options = (
        f"-c port={port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={base_dir}"
        " -c fsync=on -c synchronous_commit=on"
    )
    pg_ctl = str(bindir / "pg_ctl")
    try:
        _run_as(
            user,
            [
                str(bindir / "initdb"), "-D", str(data_dir), "-U", PG_SUPERUSER,
                "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync",
            ],
        )  # fmt: skip
        _run_as(
            user,
            [
                pg_ctl, "start", "-D", str(data_dir), "-l", str(log_file), "-w",
                "-t", str(PG_START_TIMEOUT_S), "-o", options,
            ],
        )  # fmt: skip
    except RuntimeError as exc:
        log = log_file.read_text(errors="replace")[-2000:] if log_file.exists() else ""
        shutil.rmtree(base_dir, ignore_errors=True)
        pytest.fail(f"could not start PostgreSQL: {exc}\nserver log:\n{log}")
    try:
        server = PostgresServer(host="127.0.0.1", port=port, base_dir=base_dir)
        server.create_database("cardsvc")
        yield server
    finally:
        try:
            _run_as(user, [pg_ctl, "stop", "-D", str(data_dir), "-m", "fast", "-w"])
        finally:
            shutil.rmtree(base_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    """The URL of the private server's (empty) ``cardsvc`` database."""
    return postgres_server.url("cardsvc")


class PostgresTestDatabase:
    """One migrated PostgreSQL database that every test reuses, emptied before each test: its
    tables are truncated and the rows the migrations seeded (the audit head) put back. That is
    several times cheaper than a CREATE DATABASE per test with fsync on."""

    def __init__(self, url: str) -> None:
        from sqlalchemy import create_engine, select
        from sqlalchemy.pool import NullPool

        from cardsvc.db import Database
        from cardsvc.db.database import resolve_url
        from cardsvc.migrations.schema import metadata

        Database.open(REPO_ROOT, url, migrate=True).close()
        self.url = url
        self._engine = create_engine(resolve_url(REPO_ROOT, url), poolclass=NullPool)
        self._tables = metadata.sorted_tables
        with self._engine.connect() as connection:
            self._seed = {
                table.name: [dict(row._mapping) for row in connection.execute(select(table))]
                for table in self._tables
            }

    def reset(self) -> None:
        from sqlalchemy import insert, text

        database = self.url.rsplit("/", 1)[1]
        with self._engine.begin() as connection:
            # A connection a failed test left open could hold locks that TRUNCATE waits for.
            connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": database},
            )
            names = ", ".join(f'"{table.name}"' for table in self._tables)
            connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
            for table in self._tables:
                if self._seed[table.name]:
                    connection.execute(insert(table), self._seed[table.name])

    def close(self) -> None:
        self._engine.dispose()


@pytest.fixture(scope="session")
def postgres_test_database(postgres_server: PostgresServer) -> Iterator[PostgresTestDatabase]:
    test_database = PostgresTestDatabase(postgres_server.create_database(PG_TEST_DB))
    try:
        yield test_database
    finally:
        test_database.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database per test, on each dialect: a new SQLite file, or the session's
    PostgreSQL test database, migrated and emptied (so ``Database.open`` finds it at head)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'cardsvc.db'}"
    test_database: PostgresTestDatabase = request.getfixturevalue("postgres_test_database")
    test_database.reset()
    return test_database.url


@pytest.fixture
def database(database_url: str, tmp_path: Path) -> Iterator[Database]:
    """``database_url`` opened (and migrated); closed after the test."""
    from cardsvc.db import Database

    opened = Database.open(tmp_path, database_url)
    try:
        yield opened
    finally:
        opened.close()
