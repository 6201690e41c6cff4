"""A custom import-linter contract: only the allowed modules import a compiled extension module.

Why it exists: grimp builds the import graph from ``.py`` files only, so the Rust extension
``cardsvc._core`` (a ``.so`` with a hand-kept ``.pyi`` stub) is not in the graph, and grimp records
``from cardsvc import _core`` as an import of the package ``cardsvc``. The built-in ``protected``
contract therefore cannot see who imports the extension. This contract reads the source of every
module of the root packages with ``ast``, resolves each import statement (absolute or relative) to
the full names it may refer to, and reports any importer of the extension that is not allowed.

Configured in ``pyproject.toml`` under ``[tool.importlinter]``::

    contract_types = ["extension_protected: scripts.import_contracts.ExtensionImportContract"]

    [[tool.importlinter.contracts]]
    type = "extension_protected"
    extension_module = "cardsvc._core"
    allowed_importers = ["cardsvc.engine"]

``lint-imports`` puts the current directory (the repo root) on ``sys.path``, which makes this
module importable as ``scripts.import_contracts``.
"""

from __future__ import annotations

import ast
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from grimp import ImportGraph
from importlinter import Contract, ContractCheck, fields, output


@dataclass(frozen=True)
class Violation:
    """One import statement, in a module that may not, of the protected extension module."""

    importer: str
    line_number: int
    statement: str


class ExtensionImportContract(Contract):
    """Only ``allowed_importers`` may import ``extension_module`` (or anything inside it).

    Options:
        extension_module: the dotted name of the compiled module, e.g. ``cardsvc._core``.
        allowed_importers: dotted names of the modules that may import it.
    """

    type_name = "extension_protected"

    extension_module = fields.StringField()
    allowed_importers = fields.ListField(subfield=fields.StringField())

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        # import-linter's fields parse the options into instance attributes of these types.
        extension = cast(str, self.extension_module)
        allowed = set(cast(list[str], self.allowed_importers))
        roots = _root_packages(self.session_options)
        violations: list[Violation] = []
        for module in sorted(graph.modules):
            if module in allowed or not any(_is_within(module, root) for root in roots):
                continue
            path = _module_path(module)
            if path is None:
                continue
            output.verbose_print(verbose, f"Reading {module} ({path}).")
            violations.extend(_violations_in(module, path, extension))
        return ContractCheck(
            kept=not violations,
            metadata={"violations": violations, "extension": extension},
        )

    def render_broken_contract(self, check: ContractCheck) -> None:
        extension = check.metadata["extension"]
        violations: list[Violation] = check.metadata["violations"]
        for violation in violations:
            output.print_error(
                f"{violation.importer} imports {extension} "
                f"(l.{violation.line_number}: {violation.statement})",
                bold=False,
            )
            output.new_line()


def _root_packages(session_options: dict[str, object]) -> list[str]:
    roots = session_options.get("root_packages")
    if isinstance(roots, list):
        return [str(root) for root in roots]
    root = session_options.get("root_package")
    return [str(root)] if root is not None else []


def _is_within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _module_path(module: str) -> Path | None:
    """The source file of ``module``, found from its top-level package without importing it."""
    top, _, rest = module.partition(".")
    spec = importlib.util.find_spec(top)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        base = Path(location).joinpath(*rest.split(".")) if rest else Path(location)
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate
    return None


def _violations_in(module: str, path: Path, extension: str) -> list[Violation]:
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines()
    is_package = path.name == "__init__.py"
    found: list[Violation] = []
    for node in ast.walk(ast.parse(source, filename=str(path))):
        names = _imported_names(node, module, is_package)
        if any(_is_within(name, extension) for name in names):
            statement = lines[node.lineno - 1].strip() if isinstance(node, ast.stmt) else ""
            found.append(Violation(module, getattr(node, "lineno", 0), statement))
    return found


def _imported_names(node: ast.AST, module: str, is_package: bool) -> list[str]:
    """Every full dotted name an import statement may bind or load."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level == 0:
        base = node.module or ""
    else:
        package_parts = module.split(".") if is_package else module.split(".")[:-1]
        kept = package_parts[: len(package_parts) - (node.level - 1)]
        base = ".".join([*kept, node.module] if node.module else kept)
    return [base, *(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")]
