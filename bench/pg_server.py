"""A throwaway PostgreSQL cluster for the benchmarks: initdb in a temporary directory, pg_ctl on a
free 127.0.0.1 port, removed afterwards.

Goal: measure our API on PostgreSQL (issue 6's order figures) against a server nobody else uses,
with the durability the service is meant to run with (``fsync=on``, ``synchronous_commit=on``),
never the system's own cluster. Each sample gets a fresh database in it (``create_database``,
``drop_database``), so samples do not see each other's rows.

Method: the same as the test suite's ``postgres_server`` fixture (``tests/conftest.py``), which
benchmarks must not import: the server programs come from ``scripts/ensure_postgres.sh`` (which
installs Debian's package when they are missing) or the Debian layout; initdb and postgres
refuse to run as root, so under root they run as the ``postgres`` user (or ``nobody``) through
``runuser``. The superuser ``postgres`` connects over TCP without a password (``--auth=trust``,
loopback only). ``cpu_seconds`` adds up the CPU time of the postmaster and its children
(``/proc``), so that a benchmark can report what the database cost beside its client.

Expected cost: initdb (``--no-sync``) and a start take a few seconds, once per benchmark run;
CREATE DATABASE copies the template (a few MB, one checkpoint with fsync on): well under a second.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.common import REPO

HOST = "127.0.0.1"
SUPERUSER = "postgres"
START_TIMEOUT_S = 60
COMMAND_TIMEOUT_S = 120
ENV_BINDIR = "CARDSVC_PG_BINDIR"
"""The directory of initdb, pg_ctl and postgres (``scripts/bench_http.sh`` sets it)."""
SERVER_PROGRAMS = ("initdb", "pg_ctl", "postgres")
SETTINGS = {
    "listen_addresses": HOST,
    "fsync": "on",
    "synchronous_commit": "on",
    "max_connections": "100",
}
"""Durable commits, as in production; 100 connections is several times the service's pool."""


class PostgresUnavailable(Exception):
    """No PostgreSQL server programs, or the cluster did not start."""


def is_bindir(path: Path) -> bool:
    return all(os.access(path / name, os.X_OK) for name in SERVER_PROGRAMS)


def find_bindir(install: bool = False) -> Path | None:
    """The directory holding PostgreSQL's server programs, or ``None``: ``$CARDSVC_PG_BINDIR``,
    then ``scripts/ensure_postgres.sh`` (which installs Debian's package when missing) when
    ``install``, then Debian's layout (newest major version first) and ``initdb`` on PATH."""
    configured = os.environ.get(ENV_BINDIR, "")
    if configured and is_bindir(Path(configured)):
        return Path(configured)
    if install:
        proc = subprocess.run(
            ["bash", str(REPO / "scripts" / "ensure_postgres.sh")],
            capture_output=True, text=True, timeout=900, check=False,
        )  # fmt: skip
        lines = [line.strip() for line in proc.stdout.splitlines() if line.strip()]
        if proc.returncode == 0 and lines and is_bindir(Path(lines[-1])):
            return Path(lines[-1])
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: [int(part) if part.isdigit() else 0 for part in p.split("/")[-2].split(".")],
        reverse=True,
    )
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(str(Path(initdb).resolve().parent))
    return next((Path(c) for c in candidates if is_bindir(Path(c))), None)


def server_user() -> str | None:
    """The user the server programs run as: ourselves unless we are root (initdb refuses)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return "nobody"
    return "postgres"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def run_as(user: str | None, args: list[str]) -> None:
    """Run a server program (as ``user`` when given). Raises PostgresUnavailable on failure."""
    command = args if user is None else ["runuser", "-u", user, "--", *args]
    proc = subprocess.run(
        command, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False
    )
    if proc.returncode != 0:
        raise PostgresUnavailable(
            f"{Path(args[0]).name} failed ({proc.returncode}): {proc.stderr[-1500:]}"
        )


@dataclass(frozen=True)
class PostgresCluster:
    """A running private cluster; see the module docstring."""

    bindir: Path
    base_dir: Path
    port: int
    version: str
    host: str = HOST

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    def url(self, database: str) -> str:
        """The SQLAlchemy-style URL cardsvc takes (``--database-url``)."""
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{database}"

    def _admin_sql(self, statement: str) -> None:
        import psycopg

        dsn = f"host={self.host} port={self.port} user={SUPERUSER} dbname=postgres"
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(statement.encode())

    def create_database(self, name: str) -> str:
        """Creates the empty database ``name`` (a plain identifier) and returns its URL."""
        check_identifier(name)
        self._admin_sql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drops ``name``, ending any connection still open to it."""
        check_identifier(name)
        self._admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def postmaster_pid(self) -> int:
        return int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])

    def cpu_seconds(self) -> float:
        """User + system CPU time of the postmaster, its exited children (reaped into its
        ``cutime``/``cstime``) and its live children (backends, WAL writer, checkpointer)."""
        root = self.postmaster_pid()
        ticks = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue  # the process ended meanwhile
            pid, ppid = int(stat.parent.name), int(fields[1])
            if pid == root:
                ticks += sum(int(f) for f in fields[11:15])
            elif ppid == root:
                ticks += int(fields[11]) + int(fields[12])
        return ticks / os.sysconf("SC_CLK_TCK")


def check_identifier(name: str) -> None:
    if not name.replace("_", "").isalnum() or not name.isascii():
        raise ValueError(f"not a plain database name: {name!r}")


def server_version(bindir: Path) -> str:
    proc = subprocess.run(
        [str(bindir / "postgres"), "--version"],
        capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False,
    )  # fmt: skip
    return proc.stdout.strip() or proc.stderr.strip()


@contextmanager
def postgres_cluster(bindir: Path) -> Iterator[PostgresCluster]:
    """initdb + start a cluster in a new temporary directory, yield it, stop it and remove the
    directory. Raises PostgresUnavailable (with the server's log) when it does not start."""
    user = server_user()
    # Not under a root-only directory: the server user must reach it.
    base_dir = Path(tempfile.mkdtemp(prefix="cardsvc-bench-pg-"))
    log_file = base_dir / "server.log"
    cluster = PostgresCluster(bindir, base_dir, free_port(), server_version(bindir))
    pg_ctl = str(bindir / "pg_ctl")
    options = f"-c port={cluster.port} -c unix_socket_directories={base_dir} " + " ".join(
        f"-c {name}={value}" for name, value in SETTINGS.items()
    )
    started = False
    try:
        if user is not None:
            entry = pwd.getpwnam(user)
            os.chown(base_dir, entry.pw_uid, entry.pw_gid)
        run_as(user, [
            str(bindir / "initdb"), "-D", str(cluster.data_dir), "-U", SUPERUSER,
            "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync",
        ])  # fmt: skip
        try:
            run_as(user, [
                pg_ctl, "start", "-D", str(cluster.data_dir), "-l", str(log_file), "-w",
                "-t", str(START_TIMEOUT_S), "-o", options,
            ])  # fmt: skip
        except PostgresUnavailable as err:
            tail = log_file.read_text(errors="replace")[-1500:] if log_file.exists() else ""
            raise PostgresUnavailable(f"{err}; server log: {tail}") from err
        started = True
        yield cluster
    finally:
        try:
            if started:
                run_as(user, [pg_ctl, "stop", "-D", str(cluster.data_dir), "-m", "fast", "-w"])
        finally:
            shutil.rmtree(base_dir, ignore_errors=True)
