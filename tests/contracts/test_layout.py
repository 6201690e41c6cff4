"""Tests mirror the tree (ARCHITECTURE.md rule 7): a package's tests are in ``tests/<package>/``,
the routes' in ``tests/api/routes/``, the cross-cutting checks in ``tests/contracts/``, shared
fixtures in ``tests/fixtures/``.

Method: list the test modules and the packages of the source tree; every test module's folder
must name a package (or one of the few folders that are not one).
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
DOMAIN = ROOT / "python" / "cardsvc"
NOT_PACKAGES = {"contracts", "fixtures", "loadtest"}
"""Test folders that are not a package of the tree: cross-cutting checks, shared fixtures, and
the locust files' own tests (``loadtest/`` is a top-level folder of the repository)."""
TOP_LEVEL = {"api", "server", "web", "cli"}
"""Folders for the packages beside the domain (``cli`` is the domain's ``cardsvc.cli``)."""


def _domain_packages() -> set[str]:
    return {path.parent.name for path in DOMAIN.glob("*/__init__.py")}


def test_every_test_module_sits_in_the_folder_of_what_it_tests() -> None:
    known = _domain_packages() | TOP_LEVEL | NOT_PACKAGES
    misplaced = []
    for module in TESTS.rglob("test_*.py"):
        parts = module.relative_to(TESTS).parts
        if len(parts) == 1:
            # Floor 0's single modules (cardsvc/masking.py, ...) and the shared fixtures.
            continue
        if parts[0] not in known:
            misplaced.append(str(module.relative_to(ROOT)))
    assert misplaced == []

