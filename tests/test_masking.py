"""Goal: prove that ``mask_code`` never shows more than the last four characters of a secret.

Method: fixed examples for the boundaries (empty, 1..4 characters, 5 characters, dashed codes),
then hypothesis properties over arbitrary text: the length is kept, every character but the last
four is the mask character, and a text of at most four characters is masked completely.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cardsvc.masking import MASK_CHAR, VISIBLE_SUFFIX_LEN, mask_code


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("", ""),
        ("A", "*"),
        ("AB", "**"),
        ("ABCD", "****"),
        ("ABCDE", "*BCDE"),
        ("ABCD-EFGH-IJKL-MNOP", "***************MNOP"),
        ("1234567890123456", "************3456"),
    ],
)
def test_mask_code_keeps_only_the_last_four_characters(text: str, masked: str) -> None:
    assert mask_code(text) == masked


@given(st.text(max_size=200))
def test_mask_code_keeps_the_length_and_masks_the_prefix(text: str) -> None:
    masked = mask_code(text)
    assert len(masked) == len(text)
    visible = VISIBLE_SUFFIX_LEN if len(text) > VISIBLE_SUFFIX_LEN else 0
    hidden = len(text) - visible
    assert masked[:hidden] == MASK_CHAR * hidden
    assert masked[hidden:] == text[hidden:]


@given(st.text(min_size=0, max_size=VISIBLE_SUFFIX_LEN))
def test_short_codes_are_masked_completely(text: str) -> None:
    assert mask_code(text) == MASK_CHAR * len(text)


@given(st.text(alphabet=st.characters(exclude_characters=MASK_CHAR), min_size=1, max_size=200))
def test_masked_code_never_equals_the_code(text: str) -> None:
    assert mask_code(text) != text
