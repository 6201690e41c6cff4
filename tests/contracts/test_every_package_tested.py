"""Every domain package has tests of its own (tests mirror the tree), not only tests over HTTP.

Goal: a package added to ``python/cardsvc/`` without a ``tests/<package>/test_*.py`` fails here,
so no area is tested only through the routes. Method: list the packages and the test modules;
``migrations`` is the one package whose tests live elsewhere (``tests/db/``: the migrations
are run and compared with the tables there).
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TESTED_ELSEWHERE = {"migrations": "db"}


def untested_packages(root: Path) -> list[str]:
    """The packages of ``root/python/cardsvc`` with no ``test_*.py`` under their test folder."""
    untested = []
    for init in sorted((root / "python" / "cardsvc").glob("*/__init__.py")):
        package = init.parent.name
        folder = root / "tests" / TESTED_ELSEWHERE.get(package, package)
        if not any(folder.rglob("test_*.py")):
            untested.append(package)
    return untested


def test_every_domain_package_has_its_own_tests() -> None:
    assert untested_packages(ROOT) == []


def test_the_check_sees_a_package_without_tests(tmp_path: Path) -> None:
    """The rule can fail: a package with only a helper module in its test folder is reported,
    one with a test module is not."""
    for package in ("tested", "newarea"):
        (tmp_path / "python" / "cardsvc" / package).mkdir(parents=True)
        (tmp_path / "python" / "cardsvc" / package / "__init__.py").write_text("")
        (tmp_path / "tests" / package).mkdir(parents=True)
    (tmp_path / "tests" / "tested" / "test_it.py").write_text("")
    (tmp_path / "tests" / "newarea" / "helpers.py").write_text("")
    assert untested_packages(tmp_path) == ["newarea"]
