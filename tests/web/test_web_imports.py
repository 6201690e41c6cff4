"""Goal: the web layer imports only what ARCHITECTURE.md allows: never ``api``, ``server``,
``cardsvc.engine`` or SQLAlchemy, and from ``cardsvc`` only package faces and top-level
modules (``cardsvc.sales``, ``cardsvc.runtime``, never ``cardsvc.sales.checkout``), as the
import-linter contract ``faces_only`` also checks. Method: read every module of ``web/`` with
``ast`` (function-level imports included)."""

from __future__ import annotations

import ast
from pathlib import Path

WEB = Path(__file__).resolve().parents[2] / "web"
FORBIDDEN = ("api", "server", "sqlalchemy", "cardsvc.engine", "cardsvc._core", "fastapi")


def _imports(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


def test_web_imports_nothing_forbidden() -> None:
    bad = []
    for path in sorted(WEB.rglob("*.py")):
        for name in _imports(path):
            root = name.split(".")[0]
            if any(name == f or name.startswith(f + ".") for f in FORBIDDEN) or (
                    root == "cardsvc" and name.count(".") > 1):
                bad.append(f"{path.relative_to(WEB.parent)}: {name}")
    assert bad == []
