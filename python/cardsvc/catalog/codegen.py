"""Self-issued codes: cryptographically random codes in a configurable format, with a
check character that lets a terminal reject a mistyped code without a lookup, and optional PINs.

A :class:`CodeFormat` says how a batch's codes look: the alphabet of the random characters, their
number, the prefix (which routes a code to its format), the grouping for display and whether a
check character and a PIN are added. The catalog stores it with the batch (:meth:`to_dict`) and
registers its prefix (:func:`register_prefix`), so :func:`check_typed` can recognise the codes.

**The text of a code.** Its *body* is ``prefix + random characters + check character``; the
displayed text puts ``separator`` after a non-empty prefix and between groups of ``group``
characters of the rest (the last group may be shorter): ``GC-7KQ2-M9XD-P4RT-HW3B-Z``. The core's
``normalise_code`` removes ASCII whitespace and ``-`` and uppercases letters; every alphabet
character survives it unchanged and the separator is one it removes, so the normalised text of
a typed code is exactly its body, however it was typed (any case, with or without separators).

**The check character** makes the fold of the body under a totally anti-symmetric quasigroup
``∘`` of order ``n`` (the alphabet size) end at 0: starting from ``s = 0``, ``s = s ∘ v`` for the
value ``v`` (alphabet index) of each character. Any quasigroup detects every single
substitution; total anti-symmetry, ``(c∘x)∘y = (c∘y)∘x ⇒ x = y``, detects every swap of adjacent
distinct characters, the check character included. The quasigroups, by alphabet size:

* ``n = 2^k``, 4 ≤ n ≤ 64: GF(2^k) with ``x∘y = a·x ⊕ y``, ``a`` the field element ``x``
  (written 2), which is neither 0 nor 1. A row ``y ↦ a·x ⊕ y`` is a translation and a column
  ``x ↦ a·x ⊕ y`` is multiplication by the invertible ``a`` then a translation, so both are
  permutations (a quasigroup). ``(c∘x)∘y = a²c ⊕ a·x ⊕ y``, so ``(c∘x)∘y = (c∘y)∘x`` gives
  ``a·x ⊕ y = a·y ⊕ x``, i.e. ``(a ⊕ 1)·(x ⊕ y) = 0``; ``a ≠ 1`` makes ``a ⊕ 1`` non-zero,
  hence invertible, so ``x = y``. (The same algebra shows that twin errors ``xx → yy`` and
  jump transpositions ``xzy → yzx`` are detected: ``a ⊕ 1`` and ``a² ⊕ 1 = (a ⊕ 1)²`` are
  non-zero.)
* ``n`` odd, 3 ≤ n ≤ 67: ``x∘y = 2x + y mod n``. Rows are translations, columns are
  multiplication by 2 (invertible modulo an odd n) then a translation.
  ``(c∘x)∘y = 4c + 2x + y``, so equality with ``(c∘y)∘x`` gives ``x - y = 0 mod n``.
* ``n = 10``: Damm's published table of order 10 (H. M. Damm, 2004), whose quasigroup and
  anti-symmetry properties the tests check exhaustively.

Other sizes (2, 6 and the other even sizes) have no construction here and are refused with
INVALID_ARGUMENT when ``check`` is on (no totally anti-symmetric quasigroup of order 2 or 6
exists at all). 67 is the most characters that survive normalisation.

**Generation** draws bytes from ``secrets`` (the OS CSPRNG) in bulk, maps them to alphabet
values with ``bytes.translate`` while deleting the bytes at or above the largest multiple of
``n`` below 256 (rejection sampling: the kept bytes are uniform over a multiple of ``n`` values,
so every symbol is equally likely), and folds the check character a whole column of codes at a
time, with precomputed translate tables and big-integer lane arithmetic. A million codes of the
default format take about 0.4 s on the 2-core reference machine (``python -m bench.codegen_bench``).
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any, Literal

from cardsvc.engine import CODE_LEN_MAX, PIN_LEN_MAX, normalise_code
from cardsvc.errors import CardsvcError, ErrorCode, invalid, make_error

DEFAULT_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
"""32 characters without the look-alikes 0/O and 1/I/L."""
DEFAULT_PIN_ALPHABET = "0123456789"
LENGTH_MIN = 6
LENGTH_MAX = 64
"""Random characters per code (prefix and check excluded): 64 of 64 symbols is 384 bits, more
than any use needs; the formatted code must also fit the core's CODE_LEN_MAX."""
GROUP_MAX = 16
PREFIX_LEN_MAX = 16
"""A prefix names a batch family or a shard; longer ones only cost typing."""
ALPHABET_SIZE_MIN = 2
ALPHABET_SIZE_MAX = 67
"""Printable ASCII characters that survive the core's normalisation (no space, ``-`` or
lowercase letters)."""
PIN_ALPHABET_SIZE_MAX = 94
"""Printable ASCII without the space (the core compares PINs exactly)."""
SECRET_BITS_MIN = 40
"""Random bits of a code plus its PIN: fewer would let a guesser who tries a million texts find
an issued code too often, whatever the rate limits."""
COUNT_MAX = 1_000_000
"""Codes per :func:`generate` call; about 150 MB of Python strings and tuples at the default
format."""
SPACE_PER_CODE_MIN = 1_000
"""A batch may use at most 1/1000 of its format's code space, so redrawing duplicates ends in a
round or two (and a guess hits an issued code with probability at most 1/1000)."""
GENERATE_ROUNDS_MAX = 8
"""Draws per :func:`generate` call; a second draw needs a duplicate, a third is already rarer
than one in a million at the space bound above."""
SAMPLE_ROUNDS_MAX = 64
"""Refills of rejection sampling; each keeps at least 3/4 of its bytes."""

ODD_SIZES = tuple(range(3, ALPHABET_SIZE_MAX + 1, 2))
CHECK_ALPHABET_SIZES: frozenset[int] = frozenset((4, 8, 10, 16, 32, 64, *ODD_SIZES))
"""Alphabet sizes for which a check character is available."""
SUPPORTED_SIZES_TEXT = "4, 8, 10, 16, 32, 64, or odd from 3 to 67"

# Reduction polynomials of GF(2^k), k = 2..6 (each irreducible): x²+x+1, x³+x+1, x⁴+x+1,
# x⁵+x²+1, x⁶+x+1.
_GF_MODULI = {4: 0b111, 8: 0b1011, 16: 0b10011, 32: 0b100101, 64: 0b1000011}
_DAMM_10 = (
    (0, 3, 1, 7, 5, 9, 8, 6, 4, 2),
    (7, 0, 9, 2, 1, 5, 4, 8, 6, 3),
    (4, 2, 0, 6, 8, 7, 1, 3, 5, 9),
    (1, 7, 5, 0, 9, 8, 3, 4, 2, 6),
    (6, 1, 2, 3, 0, 4, 5, 9, 7, 8),
    (3, 6, 7, 4, 2, 0, 9, 5, 8, 1),
    (5, 8, 6, 9, 7, 2, 0, 1, 3, 4),
    (8, 9, 4, 5, 3, 6, 2, 0, 1, 7),
    (9, 4, 3, 8, 6, 1, 7, 2, 0, 5),
    (2, 5, 8, 1, 4, 3, 6, 7, 9, 0),
)
_FIELD_TYPES: dict[str, type] = {
    "alphabet": str, "length": int, "group": int, "separator": str, "prefix": str, "check": bool,
    "pin_length": int, "pin_alphabet": str,
}
_FIELDS = tuple(_FIELD_TYPES)




def _mistyped(reason: str) -> CardsvcError:
    # Never the code itself: a terminal's typed text is a secret too (DESIGN.md invariant 5).
    return make_error(ErrorCode.INVALID_CODE, f"code is invalid: {reason}", {"reason": reason})


# ----- the check schemes ------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckScheme:
    """A totally anti-symmetric quasigroup of order ``size`` and the tables that fold it.

    ``table[x][y]`` is ``x∘y``; ``check_of[s]`` is the ``y`` with ``s∘y = 0``. ``kind`` says how a
    column of states steps at once: ``xor`` (GF(2^k)), ``add`` (odd n) or ``table`` (n ≤ 16:
    the byte ``s·n + v`` indexes ``step``).
    """

    name: str
    size: int
    kind: Literal["xor", "add", "table"]
    table: tuple[bytes, ...]
    check_of: bytes
    step: bytes
    """256-byte translate table: ``v ↦ 2·v`` (xor, add) or ``s·n + v ↦ s∘v`` (table)."""
    reduce: bytes
    """256-byte translate table ``v ↦ v mod n`` (add)."""


def _scheme(name: str, kind: Literal["xor", "add", "table"], table: list[list[int]],
            step: list[int]) -> CheckScheme:
    size = len(table)
    rows = tuple(bytes(row) for row in table)
    check_of = bytes(row.index(0) for row in rows)
    reduce = bytes(v % size for v in range(256))
    return CheckScheme(name, size, kind, rows, check_of, bytes(step + [0] * (256 - len(step))),
                       reduce)


@cache
def scheme_for(size: int) -> CheckScheme:
    """The check scheme for an alphabet of ``size`` characters. Pure and cached.

    Raises INVALID_ARGUMENT (details: ``field: alphabet``, ``supported_sizes``) for a size with
    no construction here.
    """
    sizes = range(size)
    if size in _GF_MODULI:
        modulus = _GF_MODULI[size]
        twice = [v << 1 ^ modulus if v << 1 >= size else v << 1 for v in sizes]
        table = [[twice[x] ^ y for y in sizes] for x in sizes]
        return _scheme(f"gf{size}-mul2", "xor", table, twice)
    if size in ODD_SIZES:
        table = [[(2 * x + y) % size for y in sizes] for x in sizes]
        return _scheme(f"z{size}-mul2", "add", table, [2 * v % size for v in sizes])
    if size == len(_DAMM_10):
        table = [list(row) for row in _DAMM_10]
        step = [table[s][v] for s in sizes for v in sizes]
        return _scheme("damm10", "table", table, step)
    raise invalid("alphabet", f"a check character needs an alphabet of {SUPPORTED_SIZES_TEXT} "
                   "characters", supported_sizes=SUPPORTED_SIZES_TEXT)


def fold(scheme: CheckScheme, values: Sequence[int], state: int = 0) -> int:
    """The fold ``(((state∘v₀)∘v₁)∘…)`` of alphabet values (each ``< scheme.size``). Pure."""
    table = scheme.table
    for value in values:
        state = table[state][value]
    return state


def _step_xor(scheme: CheckScheme, states: bytes, values: bytes) -> bytes:
    # Each byte is one lane; XOR never carries between lanes.
    doubled = int.from_bytes(states.translate(scheme.step), "little")
    return (doubled ^ int.from_bytes(values, "little")).to_bytes(len(values), "little")


def _step_add(scheme: CheckScheme, states: bytes, values: bytes) -> bytes:
    # Lanes hold 2s mod n + v <= 2n - 2 <= 132 < 256, so the big-integer sum never carries.
    doubled = int.from_bytes(states.translate(scheme.step), "little")
    total = doubled + int.from_bytes(values, "little")
    return total.to_bytes(len(values), "little").translate(scheme.reduce)


def _step_table(scheme: CheckScheme, states: bytes, values: bytes) -> bytes:
    # Lanes hold s·n + v <= n² - 1 <= 255 (n <= 16), so neither product nor sum carries.
    pairs = int.from_bytes(states, "little") * scheme.size + int.from_bytes(values, "little")
    return pairs.to_bytes(len(values), "little").translate(scheme.step)


_STEPS: dict[str, Callable[[CheckScheme, bytes, bytes], bytes]] = {
    "xor": _step_xor, "add": _step_add, "table": _step_table,
}


def fold_columns(scheme: CheckScheme, state: int, columns: Sequence[bytes]) -> bytes:
    """The folds of many codes at once: ``columns[i][j]`` is the value of code ``j``'s ``i``-th
    character, every code starts at ``state``; returns each code's final state as a byte.
    Equal to :func:`fold` per code (the tests compare them). Pure."""
    step = _STEPS[scheme.kind]
    states = bytes((state,)) * (len(columns[0]) if columns else 0)
    for column in columns:
        states = step(scheme, states, column)
    return states


# ----- the format -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CodeFormat:
    """How a batch's self-issued codes look; immutable, hashable, validated on construction.

    Raises INVALID_ARGUMENT (details: ``field``) when a field has the wrong type, the alphabet is
    not 2..67 distinct characters that the core's normalisation keeps unchanged (or, with
    ``check``, has no check scheme), the separator is not one character the normalisation
    removes (``-`` or space), ``length`` is outside LENGTH_MIN..LENGTH_MAX, ``group`` outside
    0..GROUP_MAX, the prefix is not up to PREFIX_LEN_MAX ASCII letters or digits of the alphabet,
    ``pin_length`` is outside 0..PIN_LEN_MAX, the PIN alphabet is not 2..94 distinct printable
    non-space ASCII characters, the formatted code is longer than CODE_LEN_MAX, or code and PIN
    together carry fewer than SECRET_BITS_MIN random bits.
    """

    alphabet: str = DEFAULT_ALPHABET
    length: int = 16
    group: int = 4
    separator: str = "-"
    prefix: str = ""
    check: bool = True
    pin_length: int = 0
    pin_alphabet: str = DEFAULT_PIN_ALPHABET

    def __post_init__(self) -> None:
        _validate_types(self)
        _validate_alphabet(self.alphabet)
        _validate_separator(self.separator)
        _validate_bounds(self)
        _validate_prefix(self.prefix, self.alphabet)
        if self.check:
            scheme_for(len(self.alphabet))
        _validate_pin_alphabet(self.pin_alphabet)
        if self.formatted_length > CODE_LEN_MAX:
            raise invalid("length", f"the formatted code must be at most {CODE_LEN_MAX} "
                           "characters", formatted_length=self.formatted_length)
        bits = (self.length * math.log2(len(self.alphabet))
                + self.pin_length * math.log2(len(self.pin_alphabet)))
        if bits < SECRET_BITS_MIN:
            raise invalid("length", f"code and PIN must carry at least {SECRET_BITS_MIN} random "
                           "bits", bits=round(bits, 1))

    @property
    def body_length(self) -> int:
        """Characters of the normalised code: prefix, random characters and check character."""
        return len(self.prefix) + self.length + int(self.check)

    @property
    def formatted_length(self) -> int:
        """Characters of the displayed code, separators included."""
        return len(_layout(self)[0]) - 1

    @property
    def check_scheme(self) -> str:
        """The name of the check scheme (``"none"`` without a check), stored with the format so
        that a change of scheme cannot silently invalidate stored batches."""
        return scheme_for(len(self.alphabet)).name if self.check else "none"

    @property
    def code_space(self) -> int:
        """How many distinct codes the format has."""
        return int(len(self.alphabet) ** self.length)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict of every field plus ``check_scheme``; :meth:`from_dict` reverses it."""
        return {**{name: getattr(self, name) for name in _FIELDS},
                "check_scheme": self.check_scheme}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CodeFormat:
        """The format :meth:`to_dict` stored. Every field is required (a later change of a
        default must not change a stored format). Raises INVALID_ARGUMENT (details: ``field``)
        for a missing or unknown key, a bad value, or a ``check_scheme`` other than the one this
        code computes for the format."""
        for key in data:
            if key not in _FIELDS and key != "check_scheme":
                raise invalid(key, "unknown code format field")
        for key in (*_FIELDS, "check_scheme"):
            if key not in data:
                raise invalid(key, "missing code format field")
        fmt = cls(**{name: data[name] for name in _FIELDS})
        if data["check_scheme"] != fmt.check_scheme:
            raise invalid("check_scheme", "the stored check scheme is not this format's",
                           expected=fmt.check_scheme)
        return fmt


def _validate_types(fmt: CodeFormat) -> None:
    for name, expected in _FIELD_TYPES.items():
        value = getattr(fmt, name)
        # bool is an int subclass: a JSON true must not pass as a length.
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise invalid(name, f"{name} must be of type {expected.__name__}")


def _validate_alphabet(alphabet: str) -> None:
    if not ALPHABET_SIZE_MIN <= len(alphabet) <= ALPHABET_SIZE_MAX:
        raise invalid("alphabet", f"the alphabet must have {ALPHABET_SIZE_MIN}.."
                       f"{ALPHABET_SIZE_MAX} characters")
    if len(set(alphabet)) != len(alphabet):
        raise invalid("alphabet", "the alphabet's characters must be distinct")
    if not (alphabet.isascii() and alphabet.isprintable()) or _normalised(alphabet) != alphabet:
        raise invalid("alphabet", "the alphabet must be printable ASCII that code normalisation "
                       "keeps unchanged (no lowercase letters, space or '-')")


def _validate_separator(separator: str) -> None:
    if not (len(separator) == 1 and separator.isascii() and separator.isprintable()
            and _normalised("0" + separator + "0") == "00"):
        raise invalid("separator", "the separator must be one character that code "
                       "normalisation removes ('-' or space)")


def _validate_bounds(fmt: CodeFormat) -> None:
    if not LENGTH_MIN <= fmt.length <= LENGTH_MAX:
        raise invalid("length", f"length must be {LENGTH_MIN}..{LENGTH_MAX}")
    if not 0 <= fmt.group <= GROUP_MAX:
        raise invalid("group", f"group must be 0..{GROUP_MAX}")
    if not 0 <= fmt.pin_length <= PIN_LEN_MAX:
        raise invalid("pin_length", f"pin_length must be 0..{PIN_LEN_MAX}")


def _validate_prefix(prefix: str, alphabet: str) -> None:
    if len(prefix) > PREFIX_LEN_MAX or not (prefix == "" or (prefix.isascii() and prefix.isalnum()
                                                             and set(prefix) <= set(alphabet))):
        raise invalid("prefix", f"the prefix must be up to {PREFIX_LEN_MAX} letters or digits "
                       "of the alphabet")


def _validate_pin_alphabet(pin_alphabet: str) -> None:
    if not (ALPHABET_SIZE_MIN <= len(pin_alphabet) <= PIN_ALPHABET_SIZE_MAX
            and len(set(pin_alphabet)) == len(pin_alphabet)
            and all(" " < char <= "~" for char in pin_alphabet)):
        raise invalid("pin_alphabet", f"the PIN alphabet must be {ALPHABET_SIZE_MIN}.."
                       f"{PIN_ALPHABET_SIZE_MAX} distinct printable ASCII characters, no space")


def _normalised(text: str) -> str | None:
    """The core's normalisation of ``text``, or None where the core refuses it."""
    try:
        return normalise_code(text)
    except CardsvcError:
        return None


@lru_cache(maxsize=256)
def _layout(fmt: CodeFormat) -> tuple[bytes, tuple[int, ...], int | None]:
    """The displayed code as a template ending in ``\\n`` (random and check places hold ``?``),
    the template positions of the random characters, and that of the check character."""
    rest = ["?"] * (fmt.length + int(fmt.check))
    text = fmt.prefix + (fmt.separator if fmt.prefix and fmt.group else "")
    for start in range(0, len(rest), fmt.group or len(rest)):
        if start:
            text += fmt.separator
        text += "".join(rest[start : start + (fmt.group or len(rest))])
    places = tuple(i for i, char in enumerate(text) if char == "?" and i >= len(fmt.prefix))
    randoms = places[: fmt.length]
    return (text + "\n").encode("ascii"), randoms, places[-1] if fmt.check else None


# ----- generation -------------------------------------------------------------------------------


@lru_cache(maxsize=64)
def _sampling_tables(symbols: bytes) -> tuple[bytes, bytes]:
    """``bytes.translate`` arguments that map a uniform random byte to a uniform symbol: bytes
    below the largest multiple of ``len(symbols)`` that fits in 256 map to ``symbols[b % n]``,
    the others are deleted (rejection sampling)."""
    size = len(symbols)
    limit = 256 - 256 % size
    table = bytes(symbols[b % size] if b < limit else 0 for b in range(256))
    return table, bytes(range(limit, 256))


def random_symbols(symbols: bytes, total: int) -> bytes:
    """``total`` independent, uniformly distributed picks from ``symbols`` (1..256 distinct
    bytes), from the OS CSPRNG. Raises INTERNAL_ERROR if the random source keeps failing
    rejection (SAMPLE_ROUNDS_MAX refills: not a thing a working CSPRNG does)."""
    table, rejected = _sampling_tables(symbols)
    keep = (256 - len(rejected)) / 256
    out = b""
    for _ in range(SAMPLE_ROUNDS_MAX):
        missing = total - len(out)
        if missing <= 0:
            return out if missing == 0 else out[:total]
        draw = missing if not rejected else int(missing / keep * 1.01) + 64
        out += secrets.token_bytes(draw).translate(table, rejected)
    raise make_error(ErrorCode.INTERNAL_ERROR, "the random source failed rejection sampling")


def _draw_codes(fmt: CodeFormat, count: int) -> list[str]:
    """``count`` random codes of ``fmt``, formatted (duplicates possible)."""
    size, length = len(fmt.alphabet), fmt.length
    values = random_symbols(bytes(range(size)), count * length)
    to_char = fmt.alphabet.encode("ascii") + bytes(256 - size)
    template, randoms, check_at = _layout(fmt)
    width = len(template)
    chars = values.translate(to_char)
    out = bytearray(template * count)
    for i, place in enumerate(randoms):
        out[place::width] = chars[i::length]
    if check_at is not None:
        scheme = scheme_for(size)
        start = fold(scheme, [fmt.alphabet.index(char) for char in fmt.prefix])
        states = fold_columns(scheme, start, [values[i::length] for i in range(length)])
        check_chars = bytes(to_char[scheme.check_of[s]] for s in range(size))
        out[check_at::width] = states.translate(check_chars + bytes(256 - size))
    codes = out.decode("ascii").split("\n")
    codes.pop()  # The text after the last newline is empty.
    return codes


def _draw_pins(fmt: CodeFormat, count: int) -> Sequence[str | None]:
    if fmt.pin_length == 0:
        return [None] * count
    pins = random_symbols(fmt.pin_alphabet.encode("ascii"), count * fmt.pin_length).decode("ascii")
    step = fmt.pin_length
    return [pins[i : i + step] for i in range(0, len(pins), step)]


def generate(fmt: CodeFormat, count: int) -> list[tuple[str, str | None]]:
    """``count`` distinct random codes of ``fmt`` as ``(formatted code, PIN or None)``.

    Every random character and PIN character is an independent uniform pick from its alphabet
    (OS CSPRNG, rejection sampling); the check character, when on, makes :func:`verify_check`
    true. Codes are distinct within the call; distinctness from codes already stored is the
    caller's concern (the core reports duplicates at import). Pure apart from the randomness.

    Raises QUANTITY_MUST_BE_POSITIVE (count < 1), LIMIT_EXCEEDED (details: ``field: count``,
    ``max``) above COUNT_MAX or above 1/SPACE_PER_CODE_MIN of the format's code space,
    INVALID_ARGUMENT for a non-integer count, INTERNAL_ERROR if GENERATE_ROUNDS_MAX draws did
    not give enough distinct codes (a broken random source).
    """
    if not isinstance(count, int) or isinstance(count, bool):
        raise invalid("count", "count must be an integer")
    if count < 1:
        raise make_error(ErrorCode.QUANTITY_MUST_BE_POSITIVE, "count must be positive",
                         {"field": "count"})
    count_max = min(COUNT_MAX, fmt.code_space // SPACE_PER_CODE_MIN)
    if count > count_max:
        raise make_error(ErrorCode.LIMIT_EXCEEDED, "too many codes for one call or this format",
                         {"field": "count", "max": count_max})
    found: dict[str, str | None] = {}
    for _ in range(GENERATE_ROUNDS_MAX):
        codes = _draw_codes(fmt, count - len(found))
        pins = _draw_pins(fmt, len(codes))
        if not found and len(set(codes)) == count:
            return list(zip(codes, pins, strict=True))
        for code, pin in zip(codes, pins, strict=True):
            found.setdefault(code, pin)
        if len(found) == count:
            return list(found.items())
    raise make_error(ErrorCode.INTERNAL_ERROR, "could not draw enough distinct codes",
                     {"count": count})


# ----- checking typed codes ---------------------------------------------------------------------


def normalised_body(fmt: CodeFormat, text: str) -> str:
    """What ``fmt``'s check covers: the core's normalisation of ``text`` (ASCII whitespace and
    ``-`` removed, letters uppercased), i.e. prefix, random characters and check character.

    Raises INVALID_CODE: with the core's reason (``empty``, ``not printable ASCII``,
    ``too long``) when the core refuses the text, with reason ``format`` when it is not
    ``fmt``'s length, prefix and alphabet. Never puts the text in the error.
    """
    body = normalise_code(text)
    if (len(body) != fmt.body_length or not body.startswith(fmt.prefix)
            or not set(body) <= set(fmt.alphabet)):
        raise _mistyped("format")
    return body


def check_character(fmt: CodeFormat, body: str) -> str:
    """The check character completing ``body`` (alphabet characters: normally the prefix and
    random characters of a code, but any length works). Raises INVALID_ARGUMENT when ``fmt`` has
    no check or ``body`` has a character outside the alphabet."""
    if not fmt.check:
        raise invalid("check", "the format has no check character")
    if not set(body) <= set(fmt.alphabet):
        raise invalid("body", "the body has characters outside the alphabet")
    scheme = scheme_for(len(fmt.alphabet))
    state = fold(scheme, [fmt.alphabet.index(char) for char in body])
    return fmt.alphabet[scheme.check_of[state]]


def _check_folds_to_zero(fmt: CodeFormat, body: str) -> bool:
    scheme = scheme_for(len(fmt.alphabet))
    return fold(scheme, [fmt.alphabet.index(char) for char in body]) == 0


def verify_check(fmt: CodeFormat, text: str) -> bool:
    """True when ``text``, typed in any case with or without separators, is a code of ``fmt``:
    its normalised form has ``fmt``'s length, prefix and alphabet and, with ``check``, its check
    character is right. Pure; raises nothing."""
    try:
        body = normalised_body(fmt, text)
    except CardsvcError:
        return False
    return not fmt.check or _check_folds_to_zero(fmt, body)


def register_prefix(registry: dict[str, CodeFormat], fmt: CodeFormat) -> None:
    """Adds ``fmt`` to ``registry`` (prefix → format), the mapping :func:`check_typed` reads.

    The registry stays prefix-free, so at most one registered prefix matches a code and the
    longest-match rule of :func:`match_prefix` never picks a format a code does not belong to.
    Registering a format whose prefix, alphabet, length and check equal a registered one's is a
    no-op (grouping and PINs do not change what is checked). Raises INVALID_ARGUMENT (details:
    ``field: prefix``, ``conflicts_with``) for an empty prefix (such codes cannot be recognised
    from their text), a prefix registered with a different format, or a prefix that starts or
    extends another registered prefix.
    """
    if not fmt.prefix:
        raise invalid("prefix", "only a format with a prefix can be registered")
    existing = registry.get(fmt.prefix)
    if existing is not None:
        if _check_key(existing) != _check_key(fmt):
            raise invalid("prefix", "the prefix is registered with another format",
                           conflicts_with=fmt.prefix)
        return
    for other in registry:
        if other.startswith(fmt.prefix) or fmt.prefix.startswith(other):
            raise invalid("prefix", "the prefix overlaps a registered prefix",
                           conflicts_with=other)
    registry[fmt.prefix] = fmt


def _check_key(fmt: CodeFormat) -> tuple[str, str, int, bool]:
    return fmt.prefix, fmt.alphabet, fmt.length, fmt.check


def match_prefix(body: str, formats_by_prefix: Mapping[str, CodeFormat]) -> CodeFormat | None:
    """The format of the longest registered prefix that the normalised ``body`` starts with, or
    None. Raises INVALID_ARGUMENT (``field: formats_by_prefix``) when a key is not its format's
    prefix (a mapping not built by :func:`register_prefix`)."""
    for size in range(min(len(body), PREFIX_LEN_MAX), 0, -1):
        fmt = formats_by_prefix.get(body[:size])
        if fmt is not None:
            if fmt.prefix != body[:size]:
                raise invalid("formats_by_prefix", "a key is not its format's prefix")
            return fmt
    return None


def check_typed(text: str, formats_by_prefix: Mapping[str, CodeFormat]) -> None:
    """Rejects a typed code that cannot be one of ours, without a lookup.

    The text is normalised as the core does; when it starts with a registered prefix (the
    longest, see :func:`match_prefix`) whose format has a check character, it must have that
    format's length, alphabet and check character. Codes with no registered prefix (imported
    codes carry no check character) and formats without a check pass. Returns None; the caller
    goes on to the lookup.

    Raises INVALID_CODE (details: ``reason``: the core's reason for text it refuses, ``format``
    or ``check_character``), never containing the text; INVALID_ARGUMENT as
    :func:`match_prefix`.
    """
    body = normalise_code(text)
    fmt = match_prefix(body, formats_by_prefix)
    if fmt is None or not fmt.check:
        return
    body = normalised_body(fmt, body)
    if not _check_folds_to_zero(fmt, body):
        raise _mistyped("check_character")
