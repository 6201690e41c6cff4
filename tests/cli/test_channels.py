"""Goal: ``cardsvc channels`` creates, lists, updates and switches payment channels from the
host's command line, printing notify URLs and secret names but never a secret. Method: the
command line in process over a temporary data directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from cardsvc.cli import main

SECRET = "cli-epay-merchant-secret-0001"


def test_channels_commands_never_print_a_secret(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    data = str(tmp_path / "data")
    key_file = tmp_path / "key.txt"
    key_file.write_text(SECRET)
    assert main(["channels", "create", "--data-dir", data, "--id", "ep1", "--provider", "epay",
                 "--name", "EPay", "--merchant-id", "1001", "--secret", f"key=@{key_file}",
                 "--option", "gateway=https://pay.example.com/"]) == 0
    assert main(["channels", "list", "--data-dir", data]) == 0
    assert main(["channels", "disable", "--data-dir", data, "--id", "ep1"]) == 0
    assert main(["channels", "update", "--data-dir", data, "--id", "ep1", "--secret",
                 "key=another-secret-value"]) == 0
    out = capsys.readouterr().out
    assert "/pay/notify/" in out and "disabled" in out
    assert SECRET not in out and "another-secret-value" not in out
