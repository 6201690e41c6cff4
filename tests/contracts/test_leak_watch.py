"""Goal: the suite-wide leak watch (tests/fixtures/leak_watch.py) would catch a leak: a watched
secret in a log line or error body is reported, typed with or without separators or in another
case, and texts without secrets pass.

Method: a fresh ``LeakWatch`` fed secrets and texts directly, and the real handler and the
real error renderer (as the plugin installed them for this session) fed a fabricated leak.
"""

from __future__ import annotations

import logging

from tests.fixtures.leak_watch import WATCH, LeakWatch, _Handler


def test_a_secret_in_a_text_is_reported_in_any_spelling() -> None:
    watch = LeakWatch()
    watch.secret("ABCD-EFGH-JKLM-2345")
    watch.secret("87654321")
    watch.secret("short")
    watch.text("log x", "redeemed abcdefghjklm2345 at till 3")
    watch.text("error body", '{"details": {"pin": "87654321"}}')
    watch.text("log y", "the code ****2345 was redeemed; short is fine")
    leaks = list(watch.leaks())
    assert len(leaks) == 2
    assert all(leak.endswith(("2345", "4321")) for leak in leaks)


def test_the_installed_handler_sees_log_records() -> None:
    watch = LeakWatch()
    handler = _Handler(watch)
    record = logging.LogRecord("cardsvc.x", logging.INFO, __file__, 1, "code %s",
                               ("ZZZZ-9999-QQQQ",), None)
    handler.emit(record)
    watch.secret("ZZZZ-9999-QQQQ")
    assert len(list(watch.leaks())) == 1


def test_the_session_watch_is_collecting() -> None:
    from cardsvc import crypto

    before = len(WATCH.secrets)
    crypto.seal_code(crypto.new_data_key(), 1, "WATCHED-CODE-0001", "99887766")
    assert len(WATCH.secrets) > before


def test_the_session_watch_sees_the_reveal_and_export_paths() -> None:
    """What the Revealer opens is watched as a secret, and audit entries and errors
    raised out of the reveal and export paths are watched as text (the watch is installed on
    the classes, so these are the wrappers a Runtime's objects call)."""
    from cardsvc import audit
    from cardsvc.audit import chain
    from cardsvc.delivery import Exports, Revealer
    from cardsvc.sales import Orders

    assert audit.append is chain.append and chain.append.__name__ == "watched_append"
    assert Revealer._open.__name__ == "watched_open"
    for owner, name in ((Revealer, "reveal"), (Revealer, "stream"), (Exports, "export_stream"),
                        (Exports, "restore"), (Exports, "_chunks"), (Orders, "reveal")):
        assert getattr(owner, name).__name__ in ("call", "generate", "acall"), (owner, name)
    watch = LeakWatch()
    watch.secret("REVEALED-CODE-7777")
    watch.text("audit order.reveal", '{"codes": 1, "reason": "revealed-code-7777"}')
    assert len(list(watch.leaks())) == 1
