from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from executor.core.money import exact_mul, format_decimal, parse_decimal, parse_optional_decimal


@pytest.mark.parametrize(("raw", "expected"), [
    ("0.00100000", Decimal("0.001")), ("60000.00000000", Decimal("60000")), ("-1.5", Decimal("-1.5")),
    ("0", Decimal(0)), (7, Decimal(7)), ("+2", Decimal(2)), (".5", Decimal("0.5")), ("5.", Decimal(5)),
])
def test_parse_accepts_wire_forms(raw: object, expected: Decimal) -> None:
    assert parse_decimal(raw, "q") == expected


@pytest.mark.parametrize("raw", [
    1.5, True, None, [], {}, "", " 1", "1 ", "1_000", "NaN", "nan", "Infinity", "-inf", "1E-5", "1e3",
    "abc", "1.2.3", "--1", "٣", "0x10", "1" * 61,
])
def test_parse_rejects_with_field_name(raw: object) -> None:
    with pytest.raises(ValueError, match=r"^price: "):
        parse_decimal(raw, "price")


def test_float_error_says_why() -> None:
    with pytest.raises(ValueError, match="inexact"):
        parse_decimal(0.1, "qty")


def test_parse_decimal_refuses_non_finite_decimal() -> None:
    with pytest.raises(ValueError, match="finite"):
        parse_decimal(Decimal("NaN"), "x")


def test_optional() -> None:
    assert parse_optional_decimal(None, "n") is None
    assert parse_optional_decimal("1.0", "n") == 1


@pytest.mark.parametrize(("value", "text"), [
    ("1E-5", "0.00001"), ("1E+2", "100"), ("0.00100000", "0.001"), ("-0", "0"), ("0E-8", "0"),
    ("60000.00000000", "60000"), ("123.45", "123.45"), ("-0.5", "-0.5"),
    ("1.00000000000000000000000000000001", "1.00000000000000000000000000000001"),
])
def test_format(value: str, text: str) -> None:
    assert format_decimal(Decimal(value)) == text


def test_format_rejects_float_and_nan() -> None:
    with pytest.raises(ValueError):
        format_decimal(1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        format_decimal(Decimal("Infinity"))


@given(st.decimals(allow_nan=False, allow_infinity=False, min_value=-10**12, max_value=10**12, places=12))
def test_format_round_trips_and_has_no_exponent(value: Decimal) -> None:
    text = format_decimal(value)
    assert "E" not in text and "e" not in text
    assert parse_decimal(text, "x") == value
    if "." in text:
        assert not text.endswith("0")


@given(st.text(max_size=20))
def test_parse_only_raises_value_error(text: str) -> None:
    try:
        result = parse_decimal(text, "f")
    except ValueError as exc:
        assert str(exc).startswith("f: ")
    else:
        assert result.is_finite()


def test_exact_mul_does_not_round() -> None:
    a = Decimal("1234567890.12345678")
    b = Decimal("9876543210.87654321")
    exact = Decimal(f"{123456789012345678 * 987654321087654321}E-16")  # exact: integer arithmetic
    assert exact_mul(a, b) == exact
    assert a * b != exact_mul(a, b)  # the default 28-digit context would have rounded
