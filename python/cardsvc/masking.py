"""The masked form of secrets, the only form in which codes and PINs may be shown or logged.

DESIGN.md invariant 5: messages, details, logs and CLI output never contain a full code or PIN.
Everything that displays a code passes it through :func:`mask_code` first.
"""

from __future__ import annotations

MASK_CHAR = "*"
# How many trailing characters stay readable: enough for a person to tell codes apart on a
# receipt or in a support ticket, too few to redeem or guess the code from.
VISIBLE_SUFFIX_LEN = 4


def mask_code(text: str) -> str:
    """``text`` with every character but the last four replaced by ``*``.

    A text of four characters or fewer is masked completely, since showing all of it would reveal
    the whole secret. The length is kept. Pure; raises nothing.

    >>> mask_code("ABCD-EFGH-1234")
    '**********1234'
    >>> mask_code("1234")
    '****'
    """
    if len(text) <= VISIBLE_SUFFIX_LEN:
        return MASK_CHAR * len(text)
    return MASK_CHAR * (len(text) - VISIBLE_SUFFIX_LEN) + text[-VISIBLE_SUFFIX_LEN:]
