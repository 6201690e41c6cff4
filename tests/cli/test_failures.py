"""Goal: every failure of every command is one line on stderr, ``error: CODE: message`` with a
stable code, never a traceback, and exits with the command's failure status: 1 (``reconcile``:
2, since its 1 means differences found; bad arguments: 2).

Method: ``main`` in-process (stderr captured) for each command's failure paths: a data
directory held by another process (an in-process lock stands for a running server without a
control socket), missing and existing files, unknown objects, bad arguments, a port in use;
one ``python -m cardsvc`` subprocess proves the same outside pytest.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cardsvc import crypto
from cardsvc.cli import main
from cardsvc.db import Database
from cardsvc.engine import DataDirLock

ONE_ERROR = re.compile(r"error: ([A-Z][A-Z0-9_]+): \S.*")


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    Database.open(path, None).close()  # migrated: commands that only open SQL find a schema
    crypto.load_keyring(path)  # and a master key, as a server's first start leaves
    return path


@pytest.fixture
def locked(data_dir: Path) -> Iterator[Path]:
    lock = DataDirLock(data_dir)
    try:
        yield data_dir
    finally:
        lock.close()


def failure(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str]:
    try:
        status = main(argv)
    except SystemExit as stop:  # argparse refusals
        status = int(stop.code or 0)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    found = ONE_ERROR.fullmatch(lines[0])
    assert found is not None, lines[0]
    return status, found.group(1)


@pytest.mark.parametrize(("argv", "code"), [
    (["snapshot"], "DATA_DIR_LOCKED"),
    (["recover"], "DATA_DIR_LOCKED"),
    (["keys", "rotate-master"], "DATA_DIR_LOCKED"),
    (["serve", "--port", "0"], "DATA_DIR_LOCKED"),
])
def test_commands_on_a_held_data_directory(capsys: pytest.CaptureFixture[str], locked: Path,
                                           argv: list[str], code: str) -> None:
    assert failure(capsys, [*argv, "--data-dir", str(locked)]) == (1, code)


def test_reconcile_that_cannot_run_exits_2(capsys: pytest.CaptureFixture[str],
                                           locked: Path) -> None:
    assert failure(capsys, ["reconcile", "--data-dir", str(locked)]) == (2, "DATA_DIR_LOCKED")


def test_import_failures(capsys: pytest.CaptureFixture[str], locked: Path,
                         tmp_path: Path) -> None:
    missing = ["import", str(tmp_path / "nope.csv"), "--sku", "VIP", "--data-dir", str(locked)]
    assert failure(capsys, missing) == (1, "INVALID_ARGUMENT")
    codes = tmp_path / "codes.csv"
    codes.write_text("code\nIMPORT-0001\n")
    held = ["import", str(codes), "--sku", "VIP", "--data-dir", str(locked)]
    assert failure(capsys, held) == (1, "DATA_DIR_LOCKED")


def test_keys_users_export_and_audit_failures(capsys: pytest.CaptureFixture[str],
                                              data_dir: Path, tmp_path: Path) -> None:
    where = ["--data-dir", str(data_dir)]
    assert failure(capsys, ["keys", "create", "--role", "agent", *where]) == (
        1, "INVALID_ARGUMENT")
    assert failure(capsys, ["keys", "create", "--role", "terminal", "--sku", "NOPE",
                            *where]) == (1, "SKU_NOT_FOUND")
    assert failure(capsys, ["keys", "revoke", "f" * 16, *where]) == (1, "KEY_NOT_FOUND")
    assert failure(capsys, ["users", "reset-totp", "--login", "nobody", *where]) == (
        1, "USER_NOT_FOUND")
    existing = tmp_path / "out.csv"
    existing.write_text("keep me")
    assert failure(capsys, ["export", "--batch", "1", "--out", str(existing), *where]) == (
        1, "IO_ERROR")
    assert existing.read_text() == "keep me"
    assert failure(capsys, ["audit", "list", "--limit", "0", *where])[0] == 1


def test_serve_on_a_port_in_use(capsys: pytest.CaptureFixture[str], data_dir: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = str(taken.getsockname()[1])
        assert failure(capsys, ["serve", "--port", port, "--data-dir", str(data_dir)]) == (
            1, "IO_ERROR")


@pytest.mark.parametrize("argv", [["keys"], ["no-such-command"], ["import"],
                                  ["serve", "--port", "eighty"]])
def test_bad_arguments_are_one_line_with_status_2(capsys: pytest.CaptureFixture[str],
                                                  argv: list[str]) -> None:
    assert failure(capsys, argv) == (2, "INVALID_ARGUMENT")


def test_a_failure_outside_pytest_is_one_line_too(tmp_path: Path, data_dir: Path) -> None:
    out = tmp_path / "exists.csv"
    out.write_text("")
    run = subprocess.run([sys.executable, "-m", "cardsvc", "export", "--batch", "1", "--out",
                          str(out), "--data-dir", str(data_dir)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 1
    [line] = run.stderr.strip().splitlines()
    assert line.startswith("error: IO_ERROR: ") and "Traceback" not in run.stderr
