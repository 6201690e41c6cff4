"""Goal: the ``cardsvc`` command line works and never prints a full code (DESIGN.md invariant 5).

Method: run ``main`` in-process with a console that writes to a string, and the demo with codes
chosen by the test, then search the output for each code in its given and normalised forms;
``python -m cardsvc`` runs once in a subprocess to prove the module entry point.
"""

from __future__ import annotations

import importlib.metadata
import io
import subprocess
import sys

import pytest
from rich.console import Console

import cardsvc
from cardsvc import cli
from cardsvc.cli import COMMANDS, EXIT_ERROR, EXIT_OK, all_commands, main
from cardsvc.cli.demo import DEMO_CODE_COUNT, generate_codes, run_demo
from cardsvc.masking import mask_code


def _console() -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, width=160, highlight=False, color_system=None), buffer


def test_version_prints_the_package_version() -> None:
    console, buffer = _console()
    assert main(["version"], console=console) == EXIT_OK
    assert buffer.getvalue().strip() == f"cardsvc {cardsvc.__version__}"


def test_every_command_has_a_unique_name() -> None:
    names = [command.name for command in all_commands()]
    assert len(names) == len(set(names))
    assert [command.name for command in COMMANDS] == names[: len(COMMANDS)]


def test_a_plugin_that_cannot_be_imported_explains_itself(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broken = importlib.metadata.EntryPoint(
        name="broken", value="no_such_module_xyz:COMMAND", group=cli.PLUGIN_GROUP
    )

    def entry_points(*, group: str) -> list[importlib.metadata.EntryPoint]:
        return [broken] if group == cli.PLUGIN_GROUP else []

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    console, _ = _console()
    assert "broken" in [command.name for command in all_commands()]
    assert main(["broken", "--anything"], console=console) == EXIT_ERROR


def test_unknown_command_exits_with_usage_status() -> None:
    with pytest.raises(SystemExit) as caught:
        main(["no-such-command"])
    assert caught.value.code == 2


def test_demo_runs_through_main() -> None:
    console, buffer = _console()
    assert main(["demo"], console=console) == EXIT_OK
    output = buffer.getvalue()
    assert "ALREADY_REDEEMED" in output
    assert "NOT_SOLD" in output


def test_demo_never_prints_a_full_code() -> None:
    codes = generate_codes(DEMO_CODE_COUNT)
    console, buffer = _console()
    run_demo(console, codes)
    output = buffer.getvalue()
    for code in codes:
        assert code not in output
        assert code.replace("-", "") not in output
        assert code[:-4] not in output
        assert mask_code(code) in output


def test_demo_rejects_too_few_codes() -> None:
    console, _ = _console()
    with pytest.raises(ValueError):
        run_demo(console, generate_codes(DEMO_CODE_COUNT - 1))


def test_python_dash_m_cardsvc_runs_the_cli() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cardsvc", "version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == f"cardsvc {cardsvc.__version__}"
