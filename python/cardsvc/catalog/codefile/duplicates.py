"""Duplicates within one file, found with 21 bytes a row (a keyed digest, the line, the length
and the last four characters)."""

from __future__ import annotations

import hashlib
import heapq
import itertools
import os
import struct
from collections.abc import Iterator
from operator import attrgetter

from cardsvc.catalog.codefile.values import DuplicateReason, DuplicateRow
from cardsvc.masking import MASK_CHAR, VISIBLE_SUFFIX_LEN

# --- in-file duplicates ------------------------------------------------------------------------

_DIGEST_LEN = 12
_RECORD = struct.Struct(f"<{_DIGEST_LEN}sIB{VISIBLE_SUFFIX_LEN}s")
"""One valid row in the duplicate table: digest, line, normalised length, last characters."""
_BUCKETS = 256


class DuplicateFinder:
    """Finds rows whose normalised codes are equal, in 21 bytes per row.

    Each row's record goes to one of 256 byte arrays by the digest's first byte; ``finish``
    then checks one bucket at a time with a set of its digests (a dict only for a bucket that
    holds a duplicate), so the transient memory is one bucket's. Digests are BLAKE2b keyed
    with a random per-scan key, 96 bits: the chance that two different codes collide in a
    10M-row file is about 10**-15, and the digests mean nothing outside this scan.
    """

    def __init__(self) -> None:
        self._hasher = hashlib.blake2b(digest_size=_DIGEST_LEN, key=os.urandom(16))
        self._buckets = [bytearray() for _ in range(_BUCKETS)]
        self._copy = self._hasher.copy
        self._pack = _RECORD.pack

    def add(self, line: int, normalised: str) -> None:
        """Records the valid row at ``line`` (lines must be added in ascending order)."""
        hasher = self._copy()
        encoded = normalised.encode("ascii")
        hasher.update(encoded)
        digest = hasher.digest()
        self._buckets[digest[0]] += self._pack(
            digest, line, len(encoded), encoded[-VISIBLE_SUFFIX_LEN:]
        )

    def finish(self, listed_max: int) -> tuple[tuple[DuplicateRow, ...], int]:
        """The first ``listed_max`` duplicates in line order and the total count. Frees the
        table."""
        found: list[Iterator[DuplicateRow]] = []
        total = 0
        for index, bucket in enumerate(self._buckets):
            self._buckets[index] = bytearray()
            pairs = _bucket_duplicates(bytes(bucket))
            total += len(pairs) // 2
            if pairs:
                found.append(_duplicate_rows(pairs))
        listed = tuple(itertools.islice(heapq.merge(*found, key=attrgetter("line")), listed_max))
        return listed, total


def _bucket_duplicates(table: bytes) -> list[bytes]:
    """Flat pairs (duplicate record, first record) of one bucket, in the duplicates' line
    order; empty when the bucket has none (the common case, decided by one set)."""
    size = _RECORD.size
    digests = [table[start : start + _DIGEST_LEN] for start in range(0, len(table), size)]
    if len(set(digests)) == len(digests):
        return []
    first: dict[bytes, int] = {}
    pairs: list[bytes] = []
    for start, digest in zip(range(0, len(table), size), digests, strict=True):
        earlier = first.setdefault(digest, start)
        if earlier != start:
            pairs += (table[start : start + size], table[earlier : earlier + size])
    return pairs


def _duplicate_rows(pairs: list[bytes]) -> Iterator[DuplicateRow]:
    for i in range(0, len(pairs), 2):
        _, line, length, tail = _RECORD.unpack(pairs[i])
        first_line = _RECORD.unpack(pairs[i + 1])[1]
        visible = tail.decode("ascii") if length > VISIBLE_SUFFIX_LEN else ""
        masked = MASK_CHAR * (length - len(visible)) + visible
        yield DuplicateRow(line, masked, DuplicateReason.DUPLICATE_IN_FILE, first_line)
