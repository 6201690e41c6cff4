"""Goal: the process's wiring (issue 10, items 5, 6 and 13): the timer's real round releases due
commissions in bounded batches (it asked for 10,000 against a bound of 1,000 and failed every
round), the cooling period and the PIN lockout come from the server's settings, and every file
of the data directory is private from the start, a loosened key file refusing the start.

Method: ``Runtime`` over a temporary data directory on SQLite and PostgreSQL, the engine's manual
clock moved past the cooling period, ``Runtime.recover_pending`` run as the server's timer runs
it; file modes read with ``os.stat``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from pathlib import Path

import pytest

from cardsvc.access import RiskLimits
from cardsvc.errors import CardsvcError, ErrorCode
from cardsvc.money import settlement
from cardsvc.runtime import Runtime
from cardsvc.sales import OrderRequest
from server.settings import Settings
from tests.fixtures.runtime import (
    PRICE_MINOR,
    TOP_PRICE_MINOR,
    balances,
    open_runtime,
    stock_shop,
)


def orders(services: Runtime, count: int) -> None:
    for index in range(count):
        asyncio.run(services.orders.place(OrderRequest("A1", f"o-{index}", "VIP", 1),
                                          actor="t", limits=RiskLimits(enabled=False)))


def test_the_timer_round_releases_due_commissions_in_bounded_batches(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    services = open_runtime(tmp_path / "data", database_url, commission_cooling_ms=60_000)
    try:
        stock_shop(services)
        orders(services, 5)
        assert asyncio.run(services.recover_pending())["commissions_released"] == 0
        services.engine.set_clock_ms(services.engine.now_ms() + 60_001)
        # A batch bound of 2 makes the round loop three times over 5 commissions.
        monkeypatch.setattr(settlement, "RELEASE_BATCH_MAX", 2)
        counts = asyncio.run(services.recover_pending())
        assert counts["commissions_released"] == 5
        assert balances(services, "T")["available"] == 5 * (PRICE_MINOR - TOP_PRICE_MINOR)
        assert asyncio.run(services.recover_pending())["commissions_released"] == 0
    finally:
        services.close()


def test_the_default_round_is_within_the_settlement_bound(tmp_path: Path) -> None:
    services = open_runtime(tmp_path / "data", commission_cooling_ms=0)
    try:
        stock_shop(services)
        orders(services, 1)
        services.engine.set_clock_ms(services.engine.now_ms() + 1)
        assert asyncio.run(services.recover_pending())["commissions_released"] == 1
    finally:
        services.close()


def test_settings_carry_the_cooling_period_and_the_pin_policy(tmp_path: Path) -> None:
    settings = Settings.from_env({"CARDSVC_DATA_DIR": str(tmp_path / "data"),
                                  "CARDSVC_COMMISSION_COOLING_MS": "1234",
                                  "CARDSVC_PIN_FAILURES_MAX": "4",
                                  "CARDSVC_PIN_LOCKOUT_S": "30",
                                  "CARDSVC_PIN_LOCKOUT_MAX_S": "600"})
    config = settings.service_config()
    assert (config.commission_cooling_ms, config.pin_failures_max, config.pin_lockout_ms,
            config.pin_lockout_max_ms) == (1234, 4, 30_000, 600_000)
    services = Runtime.open(config)
    try:
        assert services.engine.pin_policy() == (4, 30_000, 600_000)
        assert services.orders.cooling_ms == 1234
    finally:
        services.close()
    for env, value in (("CARDSVC_PIN_FAILURES_MAX", "0"), ("CARDSVC_PIN_LOCKOUT_S", "0"),
                       ("CARDSVC_COMMISSION_COOLING_MS", "-1")):
        with pytest.raises(CardsvcError) as refused:
            Settings.from_env({"CARDSVC_DATA_DIR": str(tmp_path), env: value})
        assert refused.value.code is ErrorCode.INVALID_ARGUMENT


def modes(root: Path) -> dict[str, int]:
    return {str(path.relative_to(root)): stat.S_IMODE(path.stat().st_mode)
            for path in [root, *root.rglob("*")]}


def test_every_state_file_is_private_from_the_start(tmp_path: Path) -> None:
    data = tmp_path / "data"
    previous = os.umask(0o022)  # a permissive umask: the modes must not depend on it
    try:
        services = open_runtime(data)
        stock_shop(services)
        services.store.snapshot_now()
        services.close()
    finally:
        os.umask(previous)
    found = modes(data)
    for name in ("cardsvc.db", "cardsvc.db-wal", "lookup.key", "master.key", "public-ids.key",
                 "instance.id"):
        if name in found:
            assert found[name] == 0o600, (name, oct(found[name]))
    assert "cardsvc.db" in found and "lookup.key" in found
    loose = {name: oct(mode) for name, mode in found.items() if mode & 0o077}
    assert loose == {}


def test_a_loosened_key_file_refuses_the_start_and_other_files_warn(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    data = tmp_path / "data"
    open_runtime(data).close()
    os.chmod(data / "cardsvc.db", 0o644)
    with caplog.at_level(logging.WARNING, logger="cardsvc.services"):
        open_runtime(data).close()
    assert any("cardsvc.db" in record.getMessage() for record in caplog.records)
    os.chmod(data / "lookup.key", 0o644)
    with pytest.raises(CardsvcError) as refused:
        open_runtime(data)
    assert refused.value.code is ErrorCode.FILE_MODE_INSECURE
    assert refused.value.details["path"].endswith("lookup.key")


@pytest.mark.parametrize("name", ["link-secret.key", "public-ids.key", "master.key"])
def test_every_key_file_refuses_the_start_when_loosened(tmp_path: Path, name: str) -> None:
    """The link key derives every order and claim link (whoever reads it can open orders), so
    it is a key file like the others: a readable copy refuses the start, not just a warning."""
    data = tmp_path / "data"
    open_runtime(data).close()
    assert (data / name).exists()
    os.chmod(data / name, 0o644)
    with pytest.raises(CardsvcError) as refused:
        open_runtime(data)
    assert refused.value.code is ErrorCode.FILE_MODE_INSECURE
    assert refused.value.details["path"].endswith(name)
