"""A suite-wide watch for leaked codes and PINs (DESIGN.md invariant 5), as a pytest plugin.

Goal: no full code or PIN appears in any log line or any error body that the whole test run
produces, whatever test produced it.

Method: for the whole session, every code and PIN that is sealed for storage
(``cardsvc.crypto.seal_code``: every imported or generated code passes through it) is
remembered as a secret; every log record (root logger, DEBUG) and every error envelope the HTTP
layer renders (``api.errors.error_response``, also as the middleware imported it) is kept as
text. At the end of the session, each text is split into code-like tokens and each token (and
its normalised form) is looked up among the secrets. A hit fails the run, naming the test, the
place and the secret's last four characters. Short secrets (under ``SECRET_LEN_MIN``) are not
watched: they are as likely to appear by chance as by leaking. Texts of the test's own client
(``httpx``) and of test-only loggers are not watched: they show what the test sent.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

SECRET_LEN_MIN = 8
TEXTS_MAX = 500_000
"""Texts kept (about 200 bytes each): the suite produces far fewer; beyond this the watch stops
collecting and says so rather than grow without bound."""
TOKEN = re.compile(rf"[A-Za-z0-9][A-Za-z0-9_-]{{{SECRET_LEN_MIN - 1},}}")
IGNORED_LOGGERS = ("httpx", "httpcore", "hpack", "faker", "hypothesis")


def _normal(text: str) -> str:
    return text.replace("-", "").replace(" ", "").upper()


@dataclass
class LeakWatch:
    secrets: set[str] = field(default_factory=set)
    texts: list[tuple[str, str, str]] = field(default_factory=list)  # (test, place, text)
    dropped: int = 0
    current_test: str = "session"

    def secret(self, value: str | None) -> None:
        if value is not None and len(value) >= SECRET_LEN_MIN:
            self.secrets.add(value)
            self.secrets.add(_normal(value))

    def text(self, place: str, value: str) -> None:
        if len(self.texts) >= TEXTS_MAX:
            self.dropped += 1
            return
        self.texts.append((self.current_test, place, value))

    def leaks(self) -> Iterator[str]:
        for test, place, text in self.texts:
            for token in TOKEN.findall(text):
                if token in self.secrets or _normal(token) in self.secrets:
                    yield f"{test}: {place} shows a secret ending {token[-4:]}"


class _Handler(logging.Handler):
    def __init__(self, watch: LeakWatch) -> None:
        super().__init__(logging.DEBUG)
        self.watch = watch

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(IGNORED_LOGGERS):
            return
        try:
            text = record.getMessage()
        except Exception:  # a record whose arguments do not format: keep the template
            text = str(record.msg)
        if record.exc_info and record.exc_info[1] is not None:
            text += " " + repr(record.exc_info[1])
        self.watch.text(f"log {record.name}", text)


WATCH = LeakWatch()


def _install(monkeypatch: pytest.MonkeyPatch) -> None:
    from cardsvc import crypto

    seal = crypto.seal_code

    def watched_seal(data_key: bytes, code_id: int, code: str, pin: str | None) -> bytes:
        WATCH.secret(code)
        WATCH.secret(pin)
        return seal(data_key, code_id, code, pin)

    monkeypatch.setattr(crypto, "seal_code", watched_seal)
    try:
        import api.errors
        import server.middleware
    except ImportError:  # the HTTP layer is not importable in this environment
        return
    render = api.errors.error_response

    def watched_render(*args: Any, **kwargs: Any) -> Any:
        response = render(*args, **kwargs)
        WATCH.text("error body", bytes(response.body).decode("utf-8", "replace"))
        return response

    monkeypatch.setattr(api.errors, "error_response", watched_render)
    monkeypatch.setattr(server.middleware, "error_response", watched_render)


@pytest.fixture(scope="session", autouse=True)
def leak_watch() -> Iterator[LeakWatch]:
    """Installs the watch for the session (see the module docstring)."""
    patcher = pytest.MonkeyPatch()
    handler = _Handler(WATCH)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    _install(patcher)
    try:
        yield WATCH
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        patcher.undo()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    WATCH.current_test = item.nodeid
    yield
    WATCH.current_test = "session"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    leaks = list(WATCH.leaks())
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    summary = (f"leak watch: {len(WATCH.texts)} log lines and error bodies checked against "
               f"{len(WATCH.secrets) // 2} codes and PINs")
    if WATCH.dropped:
        summary += f" ({WATCH.dropped} texts beyond the bound were not kept)"
    if reporter is not None:
        reporter.write_line(summary)
    if leaks:
        if reporter is not None:
            reporter.write_line(f"LEAKED SECRETS ({len(leaks)}):", red=True)
            for leak in leaks[:50]:
                reporter.write_line("  " + leak, red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
