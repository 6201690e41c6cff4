"""The sample import files in ``docs/samples/`` (docs/import.md), and how to write them anew.

``codes.csv`` (English header, UTF-8), ``codes-zh.csv`` (Chinese header, UTF-8 with a byte order
mark, as Excel's "CSV UTF-8" saves it) and ``codes.xlsx`` (text cells in the shared-strings
table, a date cell, as Excel saves them; written by ``bench.xlsx_files`` with fixed timestamps,
so the bytes are reproducible). ``tests/catalog/test_import_samples.py`` checks that the committed
files equal these and that each imports.

    python -m scripts.import_samples          # exits 1 and names the files that differ
    python -m scripts.import_samples --write  # writes them
"""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path

from bench.xlsx_files import write_xlsx

SAMPLES = Path(__file__).resolve().parent.parent / "docs" / "samples"
ROWS = [
    ("DEMO-0001-ABCD", "20250001", "2030-12-31"),
    ("DEMO-0002-EFGH", "20250002", "2030-12-31"),
    ("DEMO-0003-JKLM", "", "2031-06-30T12:00:00+08:00"),
    ("DEMO-0004-NPQR", "20250004", ""),
]


def sample_bytes(tmp_dir: Path) -> dict[str, bytes]:
    """The name and bytes of each sample (``tmp_dir`` holds the XLSX while it is written)."""
    english = "code,pin,valid_until,note\r\n" + "".join(
        f"{code},{pin},{until},sample\r\n" for code, pin, until in ROWS)
    chinese = "卡号,卡密,有效期,备注\r\n" + "".join(
        f"{code},{pin},{until},示例\r\n" for code, pin, until in ROWS)
    xlsx = tmp_dir / "codes.xlsx"
    write_xlsx(xlsx, [["Card Number", "PIN", "Expiry"],
                      *[[code, pin or None, date(2030, 12, 31)] for code, pin, _ in ROWS]])
    return {
        "codes.csv": english.encode("utf-8"),
        "codes-zh.csv": "\ufeff".encode() + chinese.encode("utf-8"),
        "codes.xlsx": xlsx.read_bytes(),
    }


def main(argv: list[str] | None = None) -> int:
    import tempfile

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--write", action="store_true", help="write the samples")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        samples = sample_bytes(Path(tmp))
    if args.write:
        SAMPLES.mkdir(parents=True, exist_ok=True)
        for name, data in samples.items():
            (SAMPLES / name).write_bytes(data)
        return 0
    stale = [name for name, data in samples.items()
             if not (SAMPLES / name).is_file() or (SAMPLES / name).read_bytes() != data]
    for name in stale:
        print(f"docs/samples/{name} differs from what scripts/import_samples.py writes",
              file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
