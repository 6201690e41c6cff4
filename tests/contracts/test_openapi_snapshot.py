"""The API's shapes change only on purpose: the served OpenAPI schema equals the committed copy.

Method: render ``create_app(...).openapi()`` exactly as ``scripts/openapi_snapshot.py`` does and
compare it with ``tests/contracts/openapi.json`` byte for byte. A restructuring that must leave
behaviour unchanged leaves this file unchanged; a deliberate API change rewrites it with
``python -m scripts.openapi_snapshot --write`` in the same commit.
"""

from __future__ import annotations

from scripts.openapi_snapshot import SNAPSHOT, current_schema_text


def test_served_schema_equals_the_committed_snapshot() -> None:
    assert SNAPSHOT.read_text(encoding="utf-8") == current_schema_text(), (
        "the OpenAPI schema changed: run `python -m scripts.openapi_snapshot` to see how, and "
        "`--write` to accept it"
    )
