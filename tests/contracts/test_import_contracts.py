"""The import contracts hold, and each of them can fail: a contract nothing could break is not a
contract.

Method: ``lint-imports`` over the repository must keep every contract. Then, in a copy of the
sources in a temporary directory (put first on ``PYTHONPATH``, so the copy is what import-linter
reads), one deliberate violation per contract is added and ``lint-imports`` must report exactly
that contract broken. The real sources are never touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

VIOLATIONS = [
    ("1. The domain's floors", "python/cardsvc/catalog/skus.py",
     "from cardsvc.sales import Orders"),
    ("1. The domain's floors", "python/cardsvc/sales/orders.py",
     "from cardsvc.redemption import Terminals"),
    ("1/6. server composes", "api/routes/health.py", "import web"),
    ("3. Payment adapters import only", "python/cardsvc/payments/providers/epay.py",
     "from cardsvc.db import Database"),
    ("3. Only the payments package imports", "python/cardsvc/sales/orders.py",
     "from cardsvc.payments.providers import epay"),
    ("4. Only delivery/reveal.py opens", "python/cardsvc/catalog/batches.py",
     "from cardsvc.crypto.opening import open_code"),
    ("6. api and web import domain package faces only", "api/routes/orders.py",
     "from cardsvc.sales.orders import Orders"),
    ("6. api and web never import the engine", "api/routes/health.py", "import sqlalchemy"),
    ("1. No first-party import inside", "python/cardsvc/catalog/skus.py",
     "def _lazy() -> None:\n    from cardsvc import audit"),
    ("Only cardsvc.engine.core imports the Rust", "python/cardsvc/checks.py",
     "from cardsvc import _core"),
    ("The domain (cardsvc) never imports the HTTP", "python/cardsvc/checks.py",
     "import fastapi"),
]


def _lint(cwd: Path, pythonpath: str | None = None) -> list[str]:
    """The names of the contracts ``lint-imports`` reports broken in ``cwd``."""
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    result = subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    return [line.removesuffix(" BROKEN") for line in result.stdout.splitlines()
            if line.endswith(" BROKEN")]


def test_every_contract_is_kept() -> None:
    assert _lint(ROOT) == []


@pytest.fixture(scope="module")
def copy_of_sources(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("sources")
    ignore = shutil.ignore_patterns("__pycache__", "*.so", "translations", "static")
    for name in ("python", "api", "server", "web", "scripts"):
        shutil.copytree(ROOT / name, target / name, ignore=ignore)
    shutil.copy(ROOT / "pyproject.toml", target / "pyproject.toml")
    assert _lint(target, f"{target / 'python'}{os.pathsep}{target}") == []
    return target


@pytest.mark.parametrize(("contract", "path", "violation"), VIOLATIONS,
                         ids=[f"{c}: {p}" for c, p, _ in VIOLATIONS])
def test_a_deliberate_violation_breaks_its_contract(copy_of_sources: Path, contract: str,
                                                    path: str, violation: str) -> None:
    source = copy_of_sources / path
    original = source.read_text(encoding="utf-8")
    source.write_text(f"{original}\n{violation}\n", encoding="utf-8")
    try:
        broken = _lint(copy_of_sources, f"{copy_of_sources / 'python'}{os.pathsep}"
                                        f"{copy_of_sources}")
    finally:
        source.write_text(original, encoding="utf-8")
    assert [name for name in broken if name.startswith(contract)], broken
    assert len(broken) == 1, broken
