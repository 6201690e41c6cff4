"""Goal: a reconciliation run is computed on request, stored (so pages read the latest without
re-reading every order) and audited. Method: domain calls on the shop Runtime
(tests/fixtures/runtime.py), on SQLite and PostgreSQL."""

from __future__ import annotations

from cardsvc import audit
from cardsvc.runtime import Runtime


def test_a_run_is_stored_audited_and_read_back_as_the_latest(shop: Runtime) -> None:
    assert shop.reconciliations.latest() is None
    first = shop.reconciliations.run(actor="user:fin")
    second = shop.reconciliations.run(actor="user:fin")
    assert first["ok"] and first["differences"] == 0
    latest = shop.reconciliations.latest()
    assert latest is not None and latest["run_id"] == second["run_id"] > first["run_id"]
    assert latest["report"]["ok"] is True
    runs = audit.list_entries(shop.db, action="reconciliation.run")
    assert [entry.object_id for entry in runs] == [str(first["run_id"]), str(second["run_id"])]
