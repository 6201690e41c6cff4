"""The committed copy of the HTTP API's OpenAPI schema, and how to write it anew.

``tests/contracts/openapi.json`` is the schema as ``/openapi.json`` serves it, rendered with sorted
keys so a diff reads well. The contract test compares the running app's schema with it byte for
byte, so any change to the API's shapes is a deliberate, reviewed change of this file:

    python -m scripts.openapi_snapshot          # prints a unified diff, exits 1 when they differ
    python -m scripts.openapi_snapshot --write  # writes the current schema to the file
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from pathlib import Path

SNAPSHOT = Path(__file__).resolve().parent.parent / "tests" / "contracts" / "openapi.json"


def current_schema_text() -> str:
    """The app's OpenAPI schema as the snapshot stores it (sorted keys, two-space indent)."""
    from server.app import create_app
    from server.settings import Settings

    schema = create_app(Settings(data_dir=Path("unused"))).openapi()
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="write the current schema")
    args = parser.parse_args(argv)
    text = current_schema_text()
    if args.write:
        SNAPSHOT.write_text(text, encoding="utf-8")
        return 0
    old = SNAPSHOT.read_text(encoding="utf-8") if SNAPSHOT.exists() else ""
    if old == text:
        return 0
    sys.stdout.writelines(difflib.unified_diff(old.splitlines(True), text.splitlines(True),
                                               str(SNAPSHOT), "current"))
    return 1


if __name__ == "__main__":
    sys.exit(main())
