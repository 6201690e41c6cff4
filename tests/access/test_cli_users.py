"""Goal: prove ``cardsvc users create-owner``: it reads the password from standard input (never
the command line), creates one active owner with a confirmed TOTP secret, prints the provisioning
URI, a QR code and ten recovery codes once, and the owner can then log in with a code from that
URI; a second run is refused. ``users list`` shows no secret; ``users reset-totp`` makes the
owner's next login enrol again.

Method: ``cardsvc.cli.main`` on a temporary data directory (SQLite), standard input replaced by
a text stream, the output captured from a rich Console.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from rich.console import Console

from cardsvc import crypto
from cardsvc.access import Logins, Passwords
from cardsvc.access.users import totp_code, totp_step
from cardsvc.cli import EXIT_ERROR, EXIT_OK, EXIT_USAGE, main
from cardsvc.db import Database

PASSWORD = "the host owner's passphrase"


def run(args: list[str], stdin: str, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    buffer = io.StringIO()
    console = Console(file=buffer, width=200, highlight=False, color_system=None)
    return main(args, console=console), buffer.getvalue()


def test_create_owner_prints_enrolment_once_and_the_owner_can_log_in(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("CARDSVC_DATABASE_URL", raising=False)
    base = ["users", "create-owner", "--data-dir", str(tmp_path), "--login", "Boss"]
    status, out = run(base, PASSWORD + "\n", monkeypatch)
    assert status == EXIT_OK, out
    assert PASSWORD not in out
    uri = re.search(r"otpauth://totp/\S+", out)
    assert uri is not None and "▀" in out  # the QR code
    secret = parse_qs(urlparse(uri.group(0)).query)["secret"][0]
    codes = re.findall(r"^\s+([a-z2-7]{4}(?:-[a-z2-7]{4}){3})$", out, re.MULTILINE)
    assert len(codes) == 10

    db = Database.open(tmp_path)
    try:
        logins = Logins(db, crypto.load_keyring(tmp_path), passwords=Passwords())
        now = logins.now_ms()
        result = logins.login("boss", PASSWORD, ip="127.0.0.1",
                              totp_code=totp_code(secret, totp_step(now)))
        assert result.session.stage == "full"
        assert result.session.principal.role == "owner"
    finally:
        db.close()

    again, _ = run([*base[:-1], "Other"], PASSWORD + "\n", monkeypatch)
    assert again == EXIT_ERROR
    assert "USER_EXISTS" in capsys.readouterr().err

    status, listing = run(["users", "list", "--data-dir", str(tmp_path)], "", monkeypatch)
    assert status == EXIT_OK and "boss" in listing and secret not in listing
    status, _ = run(["users", "reset-totp", "--data-dir", str(tmp_path), "--login", "BOSS"], "",
                    monkeypatch)
    assert status == EXIT_OK
    db = Database.open(tmp_path)
    try:
        logins = Logins(db, crypto.load_keyring(tmp_path), passwords=Passwords())
        assert logins.login("boss", PASSWORD, ip="127.0.0.1").session.stage == "enrol"
    finally:
        db.close()


def test_the_password_is_never_taken_from_the_command_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CARDSVC_DATABASE_URL", raising=False)
    with pytest.raises(SystemExit) as caught:
        run(["users", "create-owner", "--data-dir", str(tmp_path), "--login", "boss",
             "--password", PASSWORD], "", monkeypatch)
    assert caught.value.code == EXIT_USAGE
    status, _ = run(["users", "create-owner", "--data-dir", str(tmp_path), "--login", "boss"],
                    "", monkeypatch)
    assert status == EXIT_ERROR
