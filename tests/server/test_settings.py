"""Goal: ``Settings`` take the embedded defaults, read the ``CARDSVC_*`` variables, let explicit
values override them, and refuse bad values at start-up with ``INVALID_ARGUMENT`` naming the
field.

Method: ``Settings.from_env`` with explicit environment mappings (never the process's own).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from cardsvc.engine import Store
from cardsvc.errors import BadInput, ErrorCode
from server.cli import cli_command, print_banner, proxy_options
from server.settings import DEFAULT_HOST, DEFAULT_PORT, REQUEST_BODY_BYTES_MAX, Settings


def test_defaults_are_embedded_and_need_no_server() -> None:
    settings = Settings.from_env({})
    assert settings.data_dir == Path("data")
    assert settings.journal == "file"
    assert settings.redis_url is None
    assert (settings.host, settings.port) == (DEFAULT_HOST, DEFAULT_PORT)
    assert settings.request_body_bytes_max == REQUEST_BODY_BYTES_MAX
    assert settings.base_url == "http://127.0.0.1:8000"


def test_environment_is_read_and_overrides_win() -> None:
    env = {
        "CARDSVC_DATA_DIR": "/srv/cardsvc",
        "CARDSVC_JOURNAL": "redis",
        "CARDSVC_REDIS_URL": "redis://127.0.0.1:6379/0",
        "CARDSVC_PORT": "9000",
    }
    settings = Settings.from_env(env, port=9100, host=None)
    assert settings.data_dir == Path("/srv/cardsvc")
    assert settings.journal == "redis"
    assert settings.port == 9100
    assert settings.host == DEFAULT_HOST
    assert settings.store_config().sink == "redis"


@pytest.mark.parametrize(
    ("env", "field"),
    [
        ({"CARDSVC_JOURNAL": "tape"}, "journal"),
        ({"CARDSVC_JOURNAL": "redis"}, "redis_url"),
        ({"CARDSVC_PORT": "eighty"}, "port"),
        ({"CARDSVC_PORT": "70000"}, "port"),
        ({"CARDSVC_REQUEST_BODY_BYTES_MAX": "0"}, "request_body_bytes_max"),
        ({"CARDSVC_TRUSTED_PROXIES": "*"}, "trusted_proxies"),
        ({"CARDSVC_TRUSTED_PROXIES": "10.0.0.1, proxy.example"}, "trusted_proxies"),
        ({"CARDSVC_TRUSTED_PROXIES": "10.0.0.0/33"}, "trusted_proxies"),
    ],
)
def test_bad_values_are_invalid_argument_naming_the_field(env: dict[str, str], field: str) -> None:
    with pytest.raises(BadInput) as caught:
        Settings.from_env(env)
    assert caught.value.code is ErrorCode.INVALID_ARGUMENT
    assert caught.value.details["field"] == field


def test_no_proxy_is_trusted_unless_named() -> None:
    assert Settings.from_env({}).trusted_proxies == ()
    assert proxy_options(Settings.from_env({})) == {"proxy_headers": False,
                                                    "forwarded_allow_ips": []}
    named = Settings.from_env({"CARDSVC_TRUSTED_PROXIES": " 10.1.2.3, 192.168.0.0/16,,::1 "})
    assert named.trusted_proxies == ("10.1.2.3/32", "192.168.0.0/16", "::1/128")
    assert proxy_options(named) == {"proxy_headers": True,
                                    "forwarded_allow_ips": list(named.trusted_proxies)}


def test_the_banner_names_a_cardsvc_command_that_works_from_here(tmp_path: Path) -> None:
    venv = tmp_path / "repo" / ".venv" / "bin"
    venv.mkdir(parents=True)
    (venv / "cardsvc").write_text("#!/bin/sh\n")
    python = str(venv / "python")
    assert cli_command(python, which=lambda name: None, cwd=tmp_path / "repo") == (
        ".venv/bin/cardsvc")
    assert cli_command(python, which=lambda name: None, cwd=tmp_path) == (
        "repo/.venv/bin/cardsvc")
    assert cli_command(python, which=lambda name: None, cwd=tmp_path / "elsewhere") == str(
        venv / "cardsvc")
    assert cli_command(python, which=lambda name: str(venv / "cardsvc"), cwd=tmp_path) == (
        "cardsvc")  # on PATH (an activated venv): the short name works
    elsewhere = tmp_path / "other" / "cardsvc"
    assert cli_command(python, which=lambda name: str(elsewhere), cwd=tmp_path / "repo") == (
        ".venv/bin/cardsvc")  # another cardsvc on PATH is not this server's
    bare = str(tmp_path / "python3")
    assert cli_command(bare, which=lambda name: None) == f"{bare} -m cardsvc"


def test_the_banner_prints_that_command(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    with Store.open(settings.store_config()) as store:
        console = Console(record=True, width=60)
        print_banner(console, settings, store, cli=".venv/bin/cardsvc")
    text = console.export_text()
    assert f".venv/bin/cardsvc keys create --data-dir {settings.data_dir} --role admin" in text
