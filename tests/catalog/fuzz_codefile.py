"""The atheris (libFuzzer) harness of the code-file reader.

    python -m tests.catalog.fuzz_codefile [libFuzzer options] NEW_DIR tests/catalog/fuzz_corpus

runs ``tests.catalog.fuzz_target.run_one`` on mutated inputs with the reader's modules
instrumented for coverage. A finding (an exception other than a CardsvcError, a MemoryError
under the address-space limit below, an allocation over ``-malloc_limit_mb``, an input over
``-timeout``) stops the run and writes ``crash-*``/``oom-*``/``timeout-*`` under
``-artifact_prefix``: copy it into ``tests/catalog/fuzz_corpus/`` (the replay test then keeps
it fixed). ``tests/catalog/test_codefile_fuzz.py`` runs this briefly in every test run and for
longer with ``--run-slow``.

Memory is bounded by ``RLIMIT_AS`` (``$CARDSVC_FUZZ_ADDRESS_SPACE_MB``, 2048 by default) rather
than by libFuzzer's ``-rss_limit_mb``: that one reads ``ru_maxrss``, which Linux carries over
``execve`` from the forking parent, so a harness started by a large pytest process starts "over"
the limit (pass ``-rss_limit_mb=0``).
"""

from __future__ import annotations

import os
import resource
import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["cardsvc.catalog.codefile"]):
    from cardsvc.catalog import codefile  # noqa: F401  (instrumented before the target uses it)

from tests.catalog.fuzz_target import run_one

_FOLDER = Path(tempfile.mkdtemp(prefix="codefile-fuzz-"))


def test_one_input(data: bytes) -> None:
    run_one(data, _FOLDER)


def main() -> None:
    limit = int(os.environ.get("CARDSVC_FUZZ_ADDRESS_SPACE_MB", "2048")) << 20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
