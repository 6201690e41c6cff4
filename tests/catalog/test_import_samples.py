"""Goal: the sample files docs/import.md points suppliers to are what ``scripts/import_samples``
writes, and each imports whole: every row a sellable code with its PIN and validity.

Method: compare the committed bytes with freshly generated ones, then import each sample with
``import_file`` into a fresh ``Services`` and read the batch, the stock and one decrypted code.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cardsvc.catalog.batches import BatchMeta
from cardsvc.catalog.file_import import import_file
from cardsvc.engine.store import StoreConfig
from cardsvc.runtime import Runtime, ServiceConfig
from scripts import import_samples


def test_the_committed_samples_are_what_the_script_writes(tmp_path: Path) -> None:
    assert import_samples.main([]) == 0
    assert set(import_samples.sample_bytes(tmp_path)) == {
        path.name for path in import_samples.SAMPLES.iterdir() if path.suffix != ".py"}


@pytest.mark.parametrize("name", ["codes.csv", "codes-zh.csv", "codes.xlsx"])
def test_each_sample_imports_every_row(tmp_path: Path, name: str) -> None:
    services = Runtime.open(ServiceConfig(store=StoreConfig(data_dir=tmp_path / "data")))
    try:
        services.catalog.create_sku("DEMO", "demo", actor="test")
        result = import_file(services.batches, import_samples.SAMPLES / name,
                             BatchMeta(sku="DEMO"), actor="test")
        batch = services.batches.get(result.batch_id)
        assert (batch["status"], batch["imported"], batch["error_details"]) == ("ready", 4, None)
        assert services.catalog.stock("DEMO")["available"] == 4
        assert list(services.batches.report(result.batch_id)) == []
    finally:
        services.close()
