"""The engine: the Rust core's typed face and the machinery that makes it durable.

* ``core.py``: the only importer of ``cardsvc._core``; ``Engine`` and the core's limits.
* ``store.py``: the durable store (journal group commit, snapshots, recovery) over a sink.
* ``sinks/``: where the journal and snapshots live (files in the data directory, or Redis).
* ``datadir.py``: the data directory's lock and the lookup-hash key.

This package knows nothing of SQL, HTTP, agents or prices. The domain packages use it through
this face; the HTTP layer never imports it (an import contract says so).
"""

from cardsvc.engine.core import (
    BATCH_ITEMS_MAX,
    CODE_LEN_MAX,
    LOOKUP_KEY_LEN,
    ORDER_QTY_MAX,
    PIN_FAILURES_DEFAULT,
    PIN_LEN_MAX,
    PIN_LOCKOUT_MAX_MS_DEFAULT,
    PIN_LOCKOUT_MS_DEFAULT,
    REDEEM_BATCH_MAX,
    REF_LEN_MAX,
    STATES,
    CodeInfo,
    Engine,
    Hold,
    RedeemBatch,
    Redemption,
    Verification,
    VerifyBatch,
    core_error_codes,
    normalise_code,
    scan_journal,
)
from cardsvc.engine.datadir import (
    CONTROL_SOCKET_NAME,
    LOOKUP_KEY_ENV,
    DataDirLock,
    instance_id,
    load_lookup_key,
)
from cardsvc.engine.sinks import SNAPSHOTS_KEPT, FileSink, Guarantee, JournalSink, RedisSink
from cardsvc.engine.store import (
    WAIT_TIMEOUT_S,
    RecoveryReport,
    Store,
    StoreConfig,
    make_sink,
    recover_check,
)

__all__ = [
    "BATCH_ITEMS_MAX",
    "CODE_LEN_MAX",
    "CONTROL_SOCKET_NAME",
    "LOOKUP_KEY_ENV",
    "LOOKUP_KEY_LEN",
    "ORDER_QTY_MAX",
    "PIN_FAILURES_DEFAULT",
    "PIN_LEN_MAX",
    "PIN_LOCKOUT_MAX_MS_DEFAULT",
    "PIN_LOCKOUT_MS_DEFAULT",
    "REDEEM_BATCH_MAX",
    "REF_LEN_MAX",
    "SNAPSHOTS_KEPT",
    "STATES",
    "WAIT_TIMEOUT_S",
    "CodeInfo",
    "DataDirLock",
    "Engine",
    "FileSink",
    "Guarantee",
    "Hold",
    "JournalSink",
    "RecoveryReport",
    "RedeemBatch",
    "Redemption",
    "RedisSink",
    "Store",
    "StoreConfig",
    "Verification",
    "VerifyBatch",
    "core_error_codes",
    "instance_id",
    "load_lookup_key",
    "make_sink",
    "normalise_code",
    "recover_check",
    "scan_journal",
]
