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


# ---------------------------------------------------------------------------------------------
# Faces only: the HTTP and web layers import a domain package through its face.


@dataclass(frozen=True)
class FaceViolation:
    importer: str
    imported: str
    line_numbers: tuple[int, ...]


class FacesOnlyContract(Contract):
    """``importers`` (and their descendants) import modules of ``package`` only at depth one:
    ``cardsvc.sales`` (a package's face, its ``__init__``) or ``cardsvc.errors`` (a top-level
    module), never ``cardsvc.sales.orders``. A package's inside can then change without touching
    its callers, and the face says what it offers.

    Options:
        package: the domain's root package, e.g. ``cardsvc``.
        importers: the packages held to faces, e.g. ``api`` and ``web``.
    """

    type_name = "faces_only"

    package = fields.StringField()
    importers = fields.ListField(subfield=fields.StringField())

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        package = cast(str, self.package)
        importers = cast(list[str], self.importers)
        violations: list[FaceViolation] = []
        for importer in sorted(graph.modules):
            if not any(_is_within(importer, root) for root in importers):
                continue
            for imported in sorted(graph.find_modules_directly_imported_by(importer)):
                if not _is_within(imported, package) or imported.count(".") < 2:
                    continue
                details = graph.get_import_details(importer=importer, imported=imported)
                lines = tuple(sorted(detail["line_number"] for detail in details))
                violations.append(FaceViolation(importer, imported, lines))
        return ContractCheck(kept=not violations, metadata={"violations": violations})

    def render_broken_contract(self, check: ContractCheck) -> None:
        violations: list[FaceViolation] = check.metadata["violations"]
        for violation in violations:
            face = ".".join(violation.imported.split(".")[:2])
            lines = ", ".join(f"l.{line}" for line in violation.line_numbers)
            output.print_error(f"{violation.importer} imports {violation.imported} ({lines}): "
                               f"import it from its face {face}", bold=False)
            output.new_line()


# ---------------------------------------------------------------------------------------------
# No deferred imports: a first-party import inside a function or under ``if TYPE_CHECKING`` hides
# a dependency from whoever reads the module's head (and from the layers, if they were blind to
# it); the modules that load commands lazily to keep start-up cheap are named as exceptions.


@dataclass(frozen=True)
class DeferredImport:
    module: str
    line_number: int
    statement: str
    reason: str


class NoDeferredImportsContract(Contract):
    """No module of the root packages imports a first-party module inside a function or class
    body, or under ``if TYPE_CHECKING:``, except the modules in ``allowed`` (command lines that
    import a command's module only when it runs).

    Options:
        allowed: dotted names of the modules allowed to defer imports.
    """

    type_name = "no_deferred_imports"

    allowed = fields.ListField(subfield=fields.StringField(), required=False)

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        allowed = set(cast(list[str], self.allowed or []))
        roots = _root_packages(self.session_options)
        found: list[DeferredImport] = []
        for module in sorted(graph.modules):
            if module in allowed or not any(_is_within(module, root) for root in roots):
                continue
            path = _module_path(module)
            if path is not None:
                found.extend(_deferred_in(module, path, roots))
        return ContractCheck(kept=not found, metadata={"found": found})

    def render_broken_contract(self, check: ContractCheck) -> None:
        found: list[DeferredImport] = check.metadata["found"]
        for item in found:
            output.print_error(f"{item.module} l.{item.line_number} imports {item.reason}: "
                               f"{item.statement}", bold=False)
            output.new_line()


def _deferred_in(module: str, path: Path, roots: list[str]) -> list[DeferredImport]:
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines()
    is_package = path.name == "__init__.py"
    found: list[DeferredImport] = []

    def visit(node: ast.AST, reason: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            inner = reason
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                inner = inner or "inside a function or class"
            elif isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                inner = inner or "under TYPE_CHECKING"
            if inner is not None and isinstance(child, ast.Import | ast.ImportFrom):
                names = _imported_names(child, module, is_package)
                if any(_is_within(name, root) for name in names for root in roots):
                    found.append(DeferredImport(module, child.lineno,
                                                lines[child.lineno - 1].strip(), inner))
            visit(child, inner)

    visit(ast.parse(source, filename=str(path)), None)
    return found
