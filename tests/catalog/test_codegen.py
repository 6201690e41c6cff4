"""Goal: prove that self-issued codes (``cardsvc.catalog.codegen``) are what issue 5 promises: every
single-character substitution and every swap of adjacent distinct characters is caught by the
check character (so a terminal rejects a mistyped code without a lookup), codes are distinct,
formatted as configured, uniformly random and survive the core's normalisation however they are
typed; PINs have their length and alphabet; bad formats and counts are refused with their stable
error codes; and no error ever contains the code.

Method: the quasigroup properties (rows and columns are permutations, total anti-symmetry)
checked exhaustively on every supported table; the vectorised fold compared with the scalar one
and both with an independent polynomial-arithmetic reference; pinned check characters (stored
batches depend on them); then, on a sample of generated codes per alphabet (3, 4, 10, 16, 31,
32, 64 and 67 symbols), every substitution at every position to every other alphabet character
and every adjacent transposition, typed through ``verify_check``. Uniformity is tested by symbol
counts within 5 sigma over 200,000 draws, for an alphabet dividing 256 and for one that needs
rejection sampling, and the same test is shown to flag a modulo-biased sampler. A broken random
source is simulated with ``monkeypatch``.
"""

from __future__ import annotations

import ast
import json
import math
import os
import re
import secrets
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from cardsvc.catalog import codegen
from cardsvc.catalog.codegen import (
    CHECK_ALPHABET_SIZES,
    COUNT_MAX,
    DEFAULT_ALPHABET,
    CodeFormat,
    check_character,
    check_typed,
    fold,
    fold_columns,
    generate,
    match_prefix,
    normalised_body,
    random_symbols,
    register_prefix,
    scheme_for,
    verify_check,
)
from cardsvc.engine import CODE_LEN_MAX, normalise_code
from cardsvc.errors import CardsvcError, ErrorCode

pytestmark = pytest.mark.timeout(60)

# Every printable ASCII character the core's normalisation keeps unchanged, and 64 of them.
ALPHABET_67 = "".join(c for c in map(chr, range(33, 127)) if c != "-" and not c.islower())
ALPHABET_64 = "".join(c for c in ALPHABET_67 if c not in "\"'`")
HEX = "0123456789ABCDEF"
DIGITS = "0123456789"

FORMATS = {
    "default-32": CodeFormat(),
    "prefixed-32-pin": CodeFormat(prefix="GC7", pin_length=4),
    "ternary-3": CodeFormat(alphabet="ABC", length=26, group=0),
    "dna-4": CodeFormat(alphabet="ACGT", length=24, group=6, separator=" "),
    "digits-10": CodeFormat(alphabet=DIGITS, length=16, prefix="77"),
    "hex-16": CodeFormat(alphabet=HEX, length=12),
    "odd-31": CodeFormat(alphabet=DEFAULT_ALPHABET[:31], length=10, group=5),
    "ascii-64": CodeFormat(alphabet=ALPHABET_64, length=10, group=5, prefix="Z9"),
    "ascii-67": CodeFormat(alphabet=ALPHABET_67, length=10, group=0),
}
SAMPLE = 12


def expect_error(code: ErrorCode, call: object, *args: object, **kwargs: object) -> CardsvcError:
    assert callable(call)
    with pytest.raises(CardsvcError) as caught:
        call(*args, **kwargs)
    assert caught.value.code is code, caught.value
    return caught.value


def body_of(fmt: CodeFormat, code: str) -> str:
    return code.replace(fmt.separator, "")


def folds_to_zero(fmt: CodeFormat, body: str) -> bool:
    scheme = scheme_for(len(fmt.alphabet))
    return fold(scheme, [fmt.alphabet.index(c) for c in body]) == 0


def substitutions(body: str, alphabet: str) -> Iterator[tuple[int, str]]:
    for i, char in enumerate(body):
        for other in alphabet:
            if other != char:
                yield i, body[:i] + other + body[i + 1 :]


def adjacent_swaps(body: str) -> Iterator[tuple[int, str]]:
    for i in range(len(body) - 1):
        if body[i] != body[i + 1]:
            yield i, body[:i] + body[i + 1] + body[i] + body[i + 2 :]


# ----- the quasigroups ---------------------------------------------------------------------------


@pytest.mark.parametrize("size", sorted(CHECK_ALPHABET_SIZES))
def test_every_check_table_is_a_totally_anti_symmetric_quasigroup(size: int) -> None:
    scheme = scheme_for(size)
    table = [list(row) for row in scheme.table]
    everything = list(range(size))
    assert all(sorted(row) == everything for row in table), "a row is not a permutation"
    assert all(sorted(row[y] for row in table) == everything for y in range(size)), "a column"
    for c in range(size):
        after = [table[table[c][x]] for x in range(size)]
        for x in range(size):
            for y in range(x + 1, size):
                assert after[x][y] != after[y][x], (c, x, y)
    assert all(table[s][scheme.check_of[s]] == 0 for s in range(size))


@pytest.mark.parametrize("size", [2, 6, 12, 14, 20, 36, 48, 66])
def test_alphabet_size_without_a_construction_is_refused_only_when_checked(size: int) -> None:
    alphabet = ALPHABET_67[:size]
    length = math.ceil(40 / math.log2(size))
    error = expect_error(ErrorCode.INVALID_ARGUMENT, CodeFormat, alphabet=alphabet, length=length)
    assert error.details["field"] == "alphabet"
    assert "supported_sizes" in error.details
    assert CodeFormat(alphabet=alphabet, length=length, check=False).check_scheme == "none"


def test_damm_table_matches_the_published_example() -> None:
    # Damm's order-10 table: the check digit of 572 is 4 (5724 folds to 0).
    digits = CodeFormat(alphabet=DIGITS, length=14)
    assert scheme_for(10).name == "damm10"
    assert check_character(digits, "572") == "4"
    assert folds_to_zero(digits, "5724") and not folds_to_zero(digits, "5742")


def gf_multiply(a: int, b: int, modulus: int, bits: int) -> int:
    """Carry-less multiplication reduced by ``modulus``: the textbook GF(2^k) product."""
    product = 0
    for shift in range(bits):
        if b >> shift & 1:
            product ^= a << shift
    for shift in range(2 * bits - 2, bits - 1, -1):
        if product >> shift & 1:
            product ^= modulus << (shift - bits)
    return product


@pytest.mark.parametrize(
    ("size", "modulus"), [(4, 0b111), (8, 0b1011), (16, 0b10011), (32, 0b100101), (64, 0b1000011)]
)
def test_power_of_two_check_equals_the_field_reference(size: int, modulus: int) -> None:
    bits = size.bit_length() - 1
    fmt = CodeFormat(alphabet=ALPHABET_67[:size], length=math.ceil(40 / bits), check=True)
    for _ in range(200):
        values = list(random_symbols(bytes(range(size)), 20))
        state = 0
        for value in values:
            state = gf_multiply(2, state, modulus, bits) ^ value
        # The check value c satisfies 2·s ⊕ c = 0, i.e. c = 2·s.
        expected = gf_multiply(2, state, modulus, bits)
        body = "".join(fmt.alphabet[v] for v in values)
        assert check_character(fmt, body) == fmt.alphabet[expected]


@pytest.mark.parametrize("size", sorted(CHECK_ALPHABET_SIZES))
def test_column_fold_equals_the_scalar_fold(size: int) -> None:
    scheme = scheme_for(size)
    codes, length = 3_000, 20
    values = random_symbols(bytes(range(size)), codes * length)
    start = size // 2
    states = fold_columns(scheme, start, [values[i::length] for i in range(length)])
    rows = [values[j * length : (j + 1) * length] for j in range(codes)]
    assert list(states) == [fold(scheme, row, start) for row in rows]


def test_pinned_check_characters_do_not_change() -> None:
    # Stored batches were issued under these schemes: a change here breaks every stored code.
    default = CodeFormat()
    assert default.check_scheme == "gf32-mul2"
    assert check_character(default, "2222222222222222") == "2"
    assert check_character(default, "23456789ABCDEFGH") == "Q"
    assert check_character(default, "ZYXWVUTSRQPNMLKJ") == "4"
    assert check_character(CodeFormat(alphabet=HEX, length=12), "0123456789AB") == "0"
    assert check_character(CodeFormat(alphabet=ALPHABET_64, length=10), "0123456789") == "?"
    odd = CodeFormat(alphabet=DEFAULT_ALPHABET[:31], length=10)
    assert odd.check_scheme == "z31-mul2"
    assert check_character(odd, "23456789AB") == "N"


# ----- error detection ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(FORMATS))
def test_every_single_substitution_is_detected(name: str) -> None:
    fmt = FORMATS[name]
    for code, _ in generate(fmt, SAMPLE):
        body = body_of(fmt, code)
        assert verify_check(fmt, code) and folds_to_zero(fmt, body)
        for position, typo in substitutions(body, fmt.alphabet):
            assert not verify_check(fmt, typo), (name, position)
            # The check itself covers the prefix too, not only the prefix comparison.
            assert not folds_to_zero(fmt, typo), (name, position)


@pytest.mark.parametrize("name", list(FORMATS))
def test_every_adjacent_transposition_of_distinct_characters_is_detected(name: str) -> None:
    fmt = FORMATS[name]
    swaps = 0
    for code, _ in generate(fmt, SAMPLE * 4):
        body = body_of(fmt, code)
        for position, typo in adjacent_swaps(body):
            assert not verify_check(fmt, typo), (name, position)
            assert not folds_to_zero(fmt, typo), (name, position)
            swaps += 1
    assert swaps > SAMPLE * 4 * (fmt.body_length - 1) // 2  # most pairs are distinct


def test_swapping_the_check_character_with_its_neighbour_is_detected() -> None:
    fmt = CodeFormat()
    for code, _ in generate(fmt, 500):
        body = body_of(fmt, code)
        if body[-1] != body[-2]:
            assert not verify_check(fmt, body[:-2] + body[-1] + body[-2])


@pytest.mark.parametrize("size", [4, 8, 16, 32, 64])
def test_twin_and_jump_errors_are_detected_for_power_of_two_alphabets(size: int) -> None:
    scheme = scheme_for(size)
    for c in range(size):
        for x in range(size):
            for y in range(size):
                if x == y:
                    continue
                twice = fold(scheme, [x, x], c) != fold(scheme, [y, y], c)
                jump = fold(scheme, [x, 0, y], c) != fold(scheme, [y, 0, x], c)
                assert twice and jump, (c, x, y)


# ----- generated codes ---------------------------------------------------------------------------


def layout_pattern(fmt: CodeFormat) -> re.Pattern[str]:
    """The displayed form, built independently of the module's layout code."""
    char = "[" + re.escape(fmt.alphabet) + "]"
    rest = fmt.length + int(fmt.check)
    sep = re.escape(fmt.separator)
    if fmt.group:
        full, last = divmod(rest, fmt.group)
        groups = [f"{char}{{{fmt.group}}}"] * full + ([f"{char}{{{last}}}"] if last else [])
        body = sep.join(groups)
        head = re.escape(fmt.prefix) + sep if fmt.prefix else ""
    else:
        body, head = f"{char}{{{rest}}}", re.escape(fmt.prefix)
    return re.compile(head + body)


def test_generated_codes_are_distinct_formatted_and_check_valid() -> None:
    fmt = CodeFormat(prefix="GC")
    codes = [code for code, pin in generate(fmt, 100_000)]
    assert len(set(codes)) == 100_000
    pattern = layout_pattern(fmt)
    assert all(pattern.fullmatch(code) for code in codes)
    assert {len(code) for code in codes} == {fmt.formatted_length} == {len("GC-") + 4 * 5 + 1}
    assert all(folds_to_zero(fmt, body_of(fmt, code)) for code in codes)


@pytest.mark.parametrize("name", list(FORMATS))
def test_every_format_generates_its_layout_with_valid_checks(name: str) -> None:
    fmt = FORMATS[name]
    pattern = layout_pattern(fmt)
    pairs = generate(fmt, 5_000)
    assert len({code for code, _ in pairs}) == 5_000
    for code, _ in pairs:
        assert pattern.fullmatch(code), code
        assert folds_to_zero(fmt, body_of(fmt, code))
        assert normalised_body(fmt, code) == body_of(fmt, code)


def typed_variants(code: str) -> list[str]:
    bare = code.replace("-", "").replace(" ", "")
    return [code.lower(), bare, bare.lower(), code.replace("-", " "), f"  {code} \t",
            "-".join(bare[i : i + 3] for i in range(0, len(bare), 3))]


def test_codes_survive_normalisation_however_they_are_typed() -> None:
    fmt = CodeFormat(prefix="GC")
    for code, _ in generate(fmt, 500):
        body = body_of(fmt, code)
        assert normalise_code(code) == body
        for typed in typed_variants(code):
            assert normalise_code(typed) == body
            assert normalised_body(fmt, typed) == body
            assert verify_check(fmt, typed)
            check_typed(typed, {"GC": fmt})


def assert_uniform(draws: bytes | list[int], size: int) -> None:
    """Each symbol's count within 5 sigma of its binomial expectation."""
    counts = Counter(draws)
    assert set(counts) <= set(range(size))
    expected = len(draws) / size
    sigma = math.sqrt(len(draws) * (1 / size) * (1 - 1 / size))
    worst = max(abs(counts[symbol] - expected) for symbol in range(size))
    assert worst <= 5 * sigma, f"a symbol is {worst / sigma:.1f} sigma off"


@pytest.mark.parametrize("alphabet", [DEFAULT_ALPHABET, ALPHABET_67], ids=["32", "67"])
def test_random_characters_are_uniform_overall_and_per_position(alphabet: str) -> None:
    fmt = CodeFormat(alphabet=alphabet, length=16, group=0)
    codes = [code for code, _ in generate(fmt, 12_500)]  # 200,000 random characters
    index = {char: i for i, char in enumerate(alphabet)}
    values = [index[char] for code in codes for char in code[:16]]
    assert_uniform(values, len(alphabet))
    for position in range(16):
        assert_uniform(values[position::16], len(alphabet))
    # The check character is a bijective function of the last random one: uniform too.
    assert_uniform([index[code[16]] for code in codes], len(alphabet))


def test_uniformity_check_flags_a_modulo_biased_sampler() -> None:
    # Without rejection, byte % 67 makes 55 symbols 4/3 as likely as the other 12 (~12 sigma).
    biased = [b % 67 for b in os.urandom(200_000)]
    with pytest.raises(AssertionError, match="sigma off"):
        assert_uniform(biased, 67)
    assert_uniform(random_symbols(bytes(range(67)), 200_000), 67)


def test_pins_have_pin_length_characters_of_the_pin_alphabet() -> None:
    fmt = CodeFormat(pin_length=6)
    pins = [pin for _, pin in generate(fmt, 20_000)]
    assert all(pin is not None and len(pin) == 6 and pin.isdigit() for pin in pins)
    assert_uniform([int(char) for pin in pins if pin for char in pin], 10)
    letters = CodeFormat(pin_length=8, pin_alphabet="ABCDEFGH")
    assert all(pin and re.fullmatch("[A-H]{8}", pin) for _, pin in generate(letters, 100))
    assert {pin for _, pin in generate(CodeFormat(), 100)} == {None}


def test_generate_redraws_duplicates_until_the_codes_are_distinct(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    draw = codegen._draw_codes
    calls: list[int] = []

    def with_a_duplicate(fmt: CodeFormat, count: int) -> list[str]:
        codes = draw(fmt, count)
        calls.append(count)
        if len(calls) == 1:
            codes[1] = codes[0]
        return codes

    monkeypatch.setattr(codegen, "_draw_codes", with_a_duplicate)
    pairs = generate(CodeFormat(pin_length=4), 1_000)
    assert calls == [1_000, 1]
    assert len({code for code, _ in pairs}) == 1_000
    assert all(pin is not None and len(pin) == 4 for _, pin in pairs)


def test_a_random_source_that_repeats_itself_is_an_internal_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(secrets, "token_bytes", lambda n: bytes(n))
    expect_error(ErrorCode.INTERNAL_ERROR, generate, CodeFormat(), 10)


def test_generate_refuses_bad_counts() -> None:
    fmt = CodeFormat()
    expect_error(ErrorCode.QUANTITY_MUST_BE_POSITIVE, generate, fmt, 0)
    error = expect_error(ErrorCode.LIMIT_EXCEEDED, generate, fmt, COUNT_MAX + 1)
    assert error.details == {"field": "count", "max": COUNT_MAX}
    expect_error(ErrorCode.INVALID_ARGUMENT, generate, fmt, True)
    expect_error(ErrorCode.INVALID_ARGUMENT, generate, fmt, 1.0)
    # 8 digits: a space of 10^8 codes allows 10^5 per batch.
    small = CodeFormat(alphabet=DIGITS, length=8, pin_length=6)
    error = expect_error(ErrorCode.LIMIT_EXCEEDED, generate, small, 100_001)
    assert error.details == {"field": "count", "max": 100_000}


def test_codegen_draws_only_from_the_os_random_source() -> None:
    tree = ast.parse(Path(codegen.__file__).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert "random" not in imported and "secrets" in imported


# ----- formats -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"alphabet": "23456789abcdefgh"}, "alphabet"),
        ({"alphabet": "ABCDEFGHA"}, "alphabet"),
        ({"alphabet": "ABCD-EFGH"}, "alphabet"),
        ({"alphabet": "ABCD EFGH"}, "alphabet"),
        ({"alphabet": "ABCDÄÖÜ"}, "alphabet"),
        ({"alphabet": "ABCDEFG\x01"}, "alphabet"),
        ({"alphabet": "A"}, "alphabet"),
        ({"alphabet": ALPHABET_67 + "a"}, "alphabet"),
        ({"separator": "_"}, "separator"),
        ({"separator": "--"}, "separator"),
        ({"separator": "\t"}, "separator"),
        ({"separator": "A"}, "separator"),
        ({"length": 5}, "length"),
        ({"length": 65}, "length"),
        ({"group": -1}, "group"),
        ({"group": 17}, "group"),
        ({"prefix": "gc"}, "prefix"),
        ({"prefix": "G1"}, "prefix"),
        ({"prefix": "G-C"}, "prefix"),
        ({"prefix": "G" * 17}, "prefix"),
        ({"pin_length": -1}, "pin_length"),
        ({"pin_length": 33}, "pin_length"),
        ({"pin_length": 4, "pin_alphabet": "0 1"}, "pin_alphabet"),
        ({"pin_length": 4, "pin_alphabet": "0012"}, "pin_alphabet"),
        ({"pin_alphabet": "7"}, "pin_alphabet"),
        ({"length": "16"}, "length"),
        ({"length": True}, "length"),
        ({"check": 1}, "check"),
        ({"alphabet": None}, "alphabet"),
        ({"length": 64, "group": 1}, "length"),  # 129 characters with separators
        ({"alphabet": DIGITS, "length": 11}, "length"),  # 36.5 random bits
        ({"alphabet": HEX, "length": 6, "pin_length": 3}, "length"),  # 34 bits
    ],
)
def test_invalid_formats_are_refused_with_invalid_argument(
    fields: dict[str, object], field: str
) -> None:
    error = expect_error(ErrorCode.INVALID_ARGUMENT, CodeFormat, **fields)
    assert error.details["field"] == field


def test_limits_are_accepted_at_their_edges() -> None:
    longest = CodeFormat(length=64, group=2)
    assert longest.formatted_length <= CODE_LEN_MAX
    code, _ = generate(longest, 1)[0]
    assert len(code) == longest.formatted_length and verify_check(longest, code)
    assert CodeFormat(length=8, prefix="G" * 16, group=0).body_length == 25
    assert CodeFormat(alphabet=DIGITS, length=6, pin_length=32).pin_length == 32
    assert CodeFormat(separator=" ").separator == " "


def test_format_round_trips_through_json() -> None:
    for fmt in FORMATS.values():
        stored = json.loads(json.dumps(fmt.to_dict()))
        assert CodeFormat.from_dict(stored) == fmt
        assert stored["check_scheme"] == fmt.check_scheme


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"colour": "red"}, "colour"),
        ({"length": None}, "length"),
        ({"check_scheme": "gf32-mul3"}, "check_scheme"),
        ({"check": False}, "check_scheme"),
    ],
)
def test_from_dict_refuses_unknown_bad_or_inconsistent_fields(
    change: dict[str, object], field: str
) -> None:
    data = CodeFormat().to_dict() | change
    error = expect_error(ErrorCode.INVALID_ARGUMENT, CodeFormat.from_dict, data)
    assert error.details["field"] == field


def test_from_dict_requires_every_field() -> None:
    for key in CodeFormat().to_dict():
        data = CodeFormat().to_dict()
        del data[key]
        error = expect_error(ErrorCode.INVALID_ARGUMENT, CodeFormat.from_dict, data)
        assert error.details["field"] == key


# ----- typed codes at a terminal -----------------------------------------------------------------


def registry_of(*formats: CodeFormat) -> dict[str, CodeFormat]:
    registry: dict[str, CodeFormat] = {}
    for fmt in formats:
        register_prefix(registry, fmt)
    return registry


def assert_secret_free(error: CardsvcError, *hidden: str) -> None:
    shown = error.message + repr(error.details) + repr(error) + str(error)
    for secret in hidden:
        assert secret not in shown and secret.lower() not in shown


def test_mistyped_code_with_a_registered_prefix_is_invalid_code_without_the_code() -> None:
    fmt = CodeFormat(prefix="GC")
    registry = registry_of(fmt, CodeFormat(prefix="90", alphabet=DIGITS, length=16))
    for code, _ in generate(fmt, 50):
        body = body_of(fmt, code)
        check_typed(code, registry)
        for _, typo in [*substitutions(body, fmt.alphabet), *adjacent_swaps(body)]:
            if not typo.startswith("GC"):
                continue  # Another prefix: not ours to judge, the lookup decides.
            error = expect_error(ErrorCode.INVALID_CODE, check_typed, typo.lower(), registry)
            assert error.details == {"reason": "check_character"}
            assert_secret_free(error, typo, body, body[2:])


def test_wrong_length_or_alphabet_with_a_registered_prefix_is_invalid_code() -> None:
    fmt = CodeFormat(prefix="GC")
    registry = registry_of(fmt)
    code, _ = generate(fmt, 1)[0]
    for typo in [code[:-1], code + "2", code.replace("-", "-0", 1)]:
        error = expect_error(ErrorCode.INVALID_CODE, check_typed, typo, registry)
        assert error.details == {"reason": "format"}
        assert_secret_free(error, typo, body_of(fmt, code))
    assert not verify_check(fmt, code[:-1]) and not verify_check(fmt, "")


def test_codes_without_a_registered_checked_prefix_pass() -> None:
    registry = registry_of(CodeFormat(prefix="GC"), CodeFormat(prefix="NC", check=False))
    check_typed("IMPORTED-0001-XYZ", registry)  # no registered prefix: imported codes
    check_typed("G", registry)
    check_typed("nc-2222-2222-2222-2222", registry)  # a format without a check
    check_typed("ZZ99-ABCD", {})
    expect_error(ErrorCode.INVALID_CODE, check_typed, "---", registry)  # the core's refusal


def test_register_prefix_keeps_the_registry_prefix_free() -> None:
    registry = registry_of(CodeFormat(prefix="GC"))
    register_prefix(registry, CodeFormat(prefix="GC", pin_length=6, group=0))  # same check
    assert list(registry) == ["GC"]
    for fmt, conflict in [
        (CodeFormat(prefix="G"), "GC"),
        (CodeFormat(prefix="GCX"), "GC"),
        (CodeFormat(prefix="GC", length=20), "GC"),
    ]:
        error = expect_error(ErrorCode.INVALID_ARGUMENT, register_prefix, registry, fmt)
        assert error.details == {"field": "prefix", "conflicts_with": conflict}
    error = expect_error(ErrorCode.INVALID_ARGUMENT, register_prefix, registry, CodeFormat())
    assert error.details["field"] == "prefix"
    assert list(registry) == ["GC"]


def test_match_prefix_takes_the_longest_registered_prefix() -> None:
    short, long = CodeFormat(prefix="GC"), CodeFormat(prefix="GC7")
    mapping = {"GC": short, "GC7": long}  # not prefix-free: built by hand, not registrable
    assert match_prefix("GC7ABC", mapping) is long
    assert match_prefix("GC8ABC", mapping) is short
    assert match_prefix("GX", mapping) is None
    error = expect_error(ErrorCode.INVALID_ARGUMENT, match_prefix, "GC7", {"GC": long})
    assert error.details["field"] == "formats_by_prefix"
