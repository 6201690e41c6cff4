"""Goal: public ids map back to their number, and the batch form gives exactly the one-by-one
ids (it encrypts and encodes all of them at once).

Method: random keys; edge numbers (0, 2^64-1) and a run of consecutive ones, as a batch makes.
"""

from __future__ import annotations

import os
import threading

from cardsvc.crypto import PublicIds


def test_encode_many_is_encode_of_each_and_decodes_back() -> None:
    ids = PublicIds(os.urandom(32))
    numbers = [0, 1, 2**64 - 1, *range(1000, 1300)]
    many = ids.encode_many("rdm", numbers)
    assert many == [ids.encode("rdm", n) for n in numbers]
    assert [ids.decode("rdm", text) for text in many] == numbers
    assert all(text.startswith("rdm_") and len(text) == 30 for text in many)
    assert ids.encode_many("rdm", []) == []


def test_threads_each_get_the_same_ids() -> None:
    ids = PublicIds(os.urandom(32))
    expected = ids.encode_many("rdm", range(200))
    seen: list[list[str]] = []

    def work() -> None:
        seen.append([ids.encode("rdm", n) for n in range(200)])

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == [expected] * 4
