"""Command-line subcommands over the durable store: ``snapshot``, ``recover``, ``journal stats``.

Each opens the data directory exactly as the service does (taking its lock, so they refuse to
run beside a live service) and prints what it found. ``recover --check`` reads everything and
changes nothing.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from rich.console import Console

from cardsvc.engine.store import Store, StoreConfig, make_sink, recover_check


def add_store_arguments(parser: argparse.ArgumentParser) -> None:
    """``--data-dir``, ``--journal file|redis`` and ``--redis-url`` (env defaults)."""
    parser.add_argument(
        "--data-dir", type=Path, default=Path(os.environ.get("CARDSVC_DATA_DIR", "data"))
    )
    parser.add_argument(
        "--journal", choices=("file", "redis"), default=os.environ.get("CARDSVC_JOURNAL", "file")
    )
    parser.add_argument("--redis-url", default=os.environ.get("CARDSVC_REDIS_URL"))


def store_config(args: argparse.Namespace) -> StoreConfig:
    return StoreConfig(data_dir=args.data_dir, sink=args.journal, redis_url=args.redis_url)


def add_recover_arguments(parser: argparse.ArgumentParser) -> None:
    add_store_arguments(parser)
    parser.add_argument("--check", action="store_true", help="read and report only; change nothing")


def add_journal_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("stats",))
    add_store_arguments(parser)


def run_snapshot(args: argparse.Namespace, console: Console) -> int:
    with Store.open(store_config(args)) as store:
        seq = store.snapshot_now()
        console.print(f"snapshot written at journal position {seq}", highlight=False)
        console.print(f"codes: {store.recovery.codes}", highlight=False)
    return 0


def run_recover(args: argparse.Namespace, console: Console) -> int:
    if args.check:
        report = recover_check(store_config(args))
    else:
        with Store.open(store_config(args)) as store:
            report = store.recovery
    console.print(json.dumps(report.to_dict(), indent=2), highlight=False)
    if report.torn_tail:
        verb = "was cut" if report.torn_tail["cut"] else "would be cut"
        console.print(
            f"torn tail in {report.torn_tail['source']} at byte {report.torn_tail['offset']} "
            f"({report.torn_tail['bytes_cut']} bytes) {verb}",
            highlight=False,
        )
    return 0


def run_journal(args: argparse.Namespace, console: Console) -> int:
    config = store_config(args)
    sink = make_sink(config)
    try:
        stats = sink.stats()
        out = {
            "sink": sink.name,
            "guarantee": sink.guarantee().to_dict(),
            "journal_chunks": stats.chunks,
            "journal_bytes": stats.journal_bytes,
            "snapshots": [{"seq": seq, "bytes": size} for seq, size in stats.snapshots],
        }
    finally:
        sink.close()
    console.print(json.dumps(out, indent=2), highlight=False)
    return 0
