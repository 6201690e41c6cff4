"""The one plaintext exit: the only code that opens sealed code payloads (DESIGN.md invariant 5).

Codes and PINs are stored sealed (``cardsvc.crypto``); they leave in the clear only through
:class:`Revealer`, called by the order's delivery to its owner and by audited exports. An import
contract (pyproject.toml) lets no other module import ``cardsvc.crypto.opening``, so a new path
to plaintext cannot appear without changing this file and that contract in the same review.

Every reveal reads the payloads and the batches' wrapped data keys in one query per chunk and
unwraps each batch's data key once (a bounded cache). Failures raise PAYLOAD_CORRUPT (a payload
or data key failed authentication) or INTERNAL_ERROR (a payload is missing); neither message nor
details ever holds code text.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from cardsvc.catalog import Batch, CodePayload
from cardsvc.crypto import MasterKeys
from cardsvc.crypto.envelope import DataKeyCache
from cardsvc.crypto.opening import open_code
from cardsvc.db import Database
from cardsvc.errors import ErrorCode, make_error
from cardsvc.masking import mask_code

CHUNK_CODES = 10_000
"""Codes read and opened per query: memory stays flat for any number of codes."""


@dataclass(frozen=True, slots=True)
class RevealedCode:
    """One code in the clear, with where it came from."""

    code_id: int
    sku: str
    batch_id: int
    code: str
    pin: str | None


class Revealer:
    """Opens sealed codes for the callers entitled to plaintext. Thread-safe."""

    def __init__(self, db: Database, keyring: MasterKeys) -> None:
        self.db = db
        self.keyring = keyring
        self.data_keys = DataKeyCache()

    def reveal(self, code_ids: Sequence[int],
               session: Session | None = None) -> list[tuple[str, str | None]]:
        """The plaintext ``(code, pin)`` of each code id, in the order given, read in
        ``session`` when given (the order saga delivers from inside its step-3 unit, so an order
        costs no read session of its own), else in a read session of its own. Raises
        PAYLOAD_CORRUPT, INTERNAL_ERROR (a payload missing)."""
        opened: dict[int, RevealedCode] = {}
        for start in range(0, len(code_ids), CHUNK_CODES):
            for item in self._open(code_ids[start:start + CHUNK_CODES], session):
                opened[item.code_id] = item
        out: list[tuple[str, str | None]] = []
        for code_id in code_ids:
            found = opened.get(code_id)
            if found is None:
                raise make_error(ErrorCode.INTERNAL_ERROR, "a code's payload is missing",
                                 {"code_id": code_id})
            out.append((found.code, found.pin))
        return out

    def masked(self, code_ids: Sequence[int]) -> dict[int, str]:
        """The masked form of each code (``cardsvc.masking``), opened and masked here so that
        no plaintext leaves: for lists that show which code is which (support's search).
        Not audited (nothing is revealed). Codes without a payload are left out. Raises
        PAYLOAD_CORRUPT."""
        out: dict[int, str] = {}
        for start in range(0, len(code_ids), CHUNK_CODES):
            for item in self._open(code_ids[start:start + CHUNK_CODES]):
                out[item.code_id] = mask_code(item.code)
        return out

    def stream(self, code_ids: Sequence[int],
               chunk_codes: int = CHUNK_CODES) -> Iterator[list[RevealedCode]]:
        """The codes in chunks of at most ``chunk_codes``, each chunk by code id, opened lazily
        (for exports of any size). Raises PAYLOAD_CORRUPT while iterating."""
        for start in range(0, len(code_ids), chunk_codes):
            yield self._open(code_ids[start:start + chunk_codes])

    def _open(self, ids: Sequence[int], session: Session | None = None) -> list[RevealedCode]:
        statement = (
            select(CodePayload.code_id, CodePayload.batch_id, CodePayload.sealed, Batch.sku,
                   Batch.master_key_id, Batch.data_key_wrapped)
            .join(Batch, Batch.batch_id == CodePayload.batch_id)
            .where(CodePayload.code_id.in_(list(ids))).order_by(CodePayload.code_id))
        if session is None:
            with self.db.read() as own:
                rows = own.execute(statement).all()
        else:
            rows = session.execute(statement).all()
        out = []
        for code_id, batch_id, sealed, sku, master_key_id, wrapped in rows:
            data_key = self.data_keys.get_or_unwrap(batch_id, self.keyring, master_key_id,
                                                    wrapped)
            code, pin = open_code(data_key, code_id, sealed)
            out.append(RevealedCode(code_id, sku, batch_id, code, pin))
        return out
