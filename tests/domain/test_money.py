from __future__ import annotations

import math
import random
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal, localcontext
from fractions import Fraction
from typing import Any

import pytest

from m3stripe.domain.money import (
    MAX_MINOR_UNITS,
    THREE_DECIMAL_CURRENCIES,
    ZERO_DECIMAL_CURRENCIES,
    MoneyError,
    currency_exponent,
    format_money,
    from_minor_units,
    max_charge_minor_units,
    minor_unit_step,
    normalize_currency,
    round_steps,
    step_places,
    to_minor_units,
    to_steps_exact,
    unit_amount_decimal,
)

# Independent of the module's tables on purpose: (exponent, step) per Stripe's docs
# (docs.stripe.com/currencies: ISK and UGX are "represented as a two-decimal value, where the
# decimal amount is always 00").
REFERENCE_RULES: dict[str, tuple[int, int]] = {
    "USD": (2, 1),
    "EUR": (2, 1),
    "HUF": (2, 1),
    "TWD": (2, 1),
    "JPY": (0, 1),
    "KRW": (0, 1),
    "UGX": (2, 100),
    "KWD": (3, 10),
    "BHD": (3, 10),
    "TND": (3, 10),
    "ISK": (2, 100),
}


def round_half_up(value: Fraction) -> int:
    magnitude = abs(value)
    whole = math.floor(magnitude)
    if magnitude - whole >= Fraction(1, 2):
        whole += 1
    return whole if value >= 0 else -whole


def reference_minor_units(amount: Decimal, currency: str, *, half_even: bool = False) -> int:
    exponent, step = REFERENCE_RULES[currency]
    steps = Fraction(amount) * 10**exponent / step
    return (round(steps) if half_even else round_half_up(steps)) * step


def random_decimal(rng: random.Random) -> Decimal:
    digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 30)))
    sign = rng.choice(["", "-"])
    # Up to 30 significant digits, magnitude below 1e15 so every currency stays in range.
    return Decimal(f"{sign}{digits}E{rng.randint(-20, min(2, 15 - len(digits)))}")


# ---------------------------------------------------------------------- currencies


def test_currency_tables() -> None:
    zero = {"BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA"}
    zero |= {"PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF"}
    assert frozenset(zero) == ZERO_DECIMAL_CURRENCIES
    assert frozenset({"BHD", "JOD", "KWD", "OMR", "TND"}) == THREE_DECIMAL_CURRENCIES


@pytest.mark.parametrize(
    ("currency", "exponent", "step"),
    [
        ("usd", 2, 1),
        ("USD", 2, 1),
        ("eur", 2, 1),
        ("jpy", 0, 1),
        ("Krw", 0, 1),
        ("xpf", 0, 1),
        ("kwd", 3, 10),
        ("JOD", 3, 10),
        ("isk", 2, 100),
        ("ugx", 2, 100),
        ("UGX", 2, 100),
        ("huf", 2, 1),
        ("twd", 2, 1),
        ("xyz", 2, 1),  # unknown codes default to two decimals, as in Stripe
    ],
)
def test_currency_exponent_and_step(currency: str, exponent: int, step: int) -> None:
    assert currency_exponent(currency) == exponent
    assert minor_unit_step(currency) == step


@pytest.mark.parametrize("currency", ["", "US", "USDX", "U5D", " usd", "usd ", "ÜSD", "$$$"])
def test_invalid_currency_codes(currency: str) -> None:
    with pytest.raises(MoneyError, match="invalid currency code"):
        currency_exponent(currency)
    with pytest.raises(MoneyError):
        to_minor_units(Decimal(1), currency)


def test_non_string_currency() -> None:
    with pytest.raises(MoneyError):
        normalize_currency(None)  # type: ignore[arg-type]


def test_normalize_currency() -> None:
    assert normalize_currency("gbp") == "GBP"


# ------------------------------------------------------------------ to_minor_units


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [
        ("500", "JPY", 500),
        ("500.4", "jpy", 500),
        ("500.5", "jpy", 501),
        ("12.345", "USD", 1235),
        ("12.344", "USD", 1234),
        ("12.30", "usd", 1230),
        ("0.005", "USD", 1),
        ("0.0049999", "USD", 0),
        ("1.2345", "KWD", 1230),
        ("1.235", "KWD", 1240),
        ("5.124", "KWD", 5120),
        ("1.2", "bhd", 1200),
        ("1234.56", "ISK", 123500),
        ("1234.49", "ISK", 123400),
        ("1234.5", "ISK", 123500),
        ("10.45", "HUF", 1045),
        ("0", "USD", 0),
        ("-0.00", "USD", 0),
        ("1E+3", "USD", 100000),
    ],
)
def test_to_minor_units(amount: str, currency: str, minor: int) -> None:
    assert to_minor_units(Decimal(amount), currency) == minor


def test_negative_credits_round_symmetrically() -> None:
    for amount, currency in [
        ("12.345", "USD"),
        ("12.344", "USD"),
        ("500.5", "JPY"),
        ("1.2345", "KWD"),
        ("1234.5", "ISK"),
        ("0.005", "USD"),
    ]:
        assert to_minor_units(-Decimal(amount), currency) == -to_minor_units(Decimal(amount), currency)
    assert to_minor_units(Decimal("-12.345"), "USD") == -1235


def test_int_amounts() -> None:
    assert to_minor_units(12, "USD") == 1200
    assert to_minor_units(-3, "KWD") == -3000
    assert to_minor_units(7, "JPY") == 7


def test_rounding_override() -> None:
    assert to_minor_units(Decimal("12.345"), "USD", rounding=ROUND_HALF_EVEN) == 1234
    assert to_minor_units(Decimal("12.355"), "USD", rounding=ROUND_HALF_EVEN) == 1236
    assert to_minor_units(Decimal("1234.99"), "ISK", rounding=ROUND_DOWN) == 123400
    with pytest.raises(ValueError, match="rounding"):
        to_minor_units(Decimal(1), "USD", rounding="ROUND_SOMETIMES")


@pytest.mark.parametrize("amount", [1.5, 0.0, float("nan")])
def test_floats_are_rejected(amount: float) -> None:
    with pytest.raises(TypeError, match="float"):
        to_minor_units(amount, "USD")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        unit_amount_decimal(amount, "USD")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        format_money(amount, "USD")  # type: ignore[arg-type]


@pytest.mark.parametrize("amount", [True, "12.30", None, Fraction(1, 2)])
def test_other_types_are_rejected(amount: Any) -> None:
    with pytest.raises(TypeError):
        to_minor_units(amount, "USD")


@pytest.mark.parametrize("amount", ["NaN", "sNaN", "Infinity", "-Infinity"])
def test_non_finite_amounts(amount: str) -> None:
    with pytest.raises(MoneyError, match="finite"):
        to_minor_units(Decimal(amount), "USD")
    with pytest.raises(MoneyError):
        unit_amount_decimal(Decimal(amount), "USD")


def test_amounts_beyond_stripe_range() -> None:
    largest = Decimal(MAX_MINOR_UNITS).scaleb(-2)
    assert to_minor_units(largest, "USD") == MAX_MINOR_UNITS
    assert to_minor_units(-largest, "USD") == -MAX_MINOR_UNITS
    with pytest.raises(MoneyError, match="too large"):
        to_minor_units(largest + Decimal("0.01"), "USD")
    with pytest.raises(MoneyError, match="too large"):
        to_minor_units(Decimal("1E+400"), "JPY")
    with pytest.raises(MoneyError, match="too large"):
        unit_amount_decimal(Decimal("1E+30"), "USD")


def test_extreme_exponents_are_exact() -> None:
    assert to_minor_units(Decimal("1E-999999"), "USD") == 0
    assert to_minor_units(Decimal("0E+999"), "USD") == 0
    # 60 digits: a 28-digit context would round the tail away before the half-up decision.
    assert to_minor_units(Decimal("0." + "4" * 60 + "5"), "USD") == 44
    assert to_minor_units(Decimal("0.00" + "4" * 40 + "5"), "USD") == 0
    assert to_minor_units(Decimal("0.00" + "9" * 40), "USD") == 1


def test_caller_decimal_context_does_not_leak_in() -> None:
    with localcontext() as ctx:
        ctx.prec = 3
        assert to_minor_units(Decimal("123456789.125"), "USD") == 12345678913
        assert from_minor_units(12345678913, "USD") == Decimal("123456789.13")
        assert unit_amount_decimal(Decimal("123456.0000000001"), "USD") == "12345600.00000001"


# ---------------------------------------------------------------- from_minor_units


@pytest.mark.parametrize(
    ("minor", "currency", "text"),
    [
        (1230, "USD", "12.30"),
        (5, "usd", "0.05"),
        (-1235, "USD", "-12.35"),
        (500, "JPY", "500"),
        (1230, "KWD", "1.230"),
        (123500, "ISK", "1235.00"),
        (0, "EUR", "0.00"),
    ],
)
def test_from_minor_units(minor: int, currency: str, text: str) -> None:
    value = from_minor_units(minor, currency)
    assert str(value) == text
    assert value == Decimal(text)


def test_from_minor_units_type_checks() -> None:
    with pytest.raises(TypeError):
        from_minor_units(12.0, "USD")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        from_minor_units(True, "USD")
    with pytest.raises(TypeError):
        from_minor_units(Decimal(1), "USD")  # type: ignore[arg-type]


def test_round_trip() -> None:
    for currency in REFERENCE_RULES:
        step = minor_unit_step(currency)
        for minor in (0, step, -step, 123 * step, 10**15 * step):
            assert to_minor_units(from_minor_units(minor, currency), currency) == minor


def test_sums_of_many_lines_stay_exact() -> None:
    rng = random.Random(20240501)
    lines = [Decimal(rng.randint(-(10**9), 10**9)).scaleb(-2) for _ in range(5000)]
    total = sum(lines, Decimal(0))
    # Lines already at currency precision: converting each and summing equals converting the sum.
    assert sum(to_minor_units(line, "USD") for line in lines) == to_minor_units(total, "USD")
    minors = [to_minor_units(line, "USD") for line in lines]
    assert sum((from_minor_units(m, "USD") for m in minors), Decimal(0)) == total
    # The classic float trap: ten dimes make exactly one dollar.
    assert to_minor_units(sum([Decimal("0.10")] * 10, Decimal(0)), "USD") == 100
    assert sum(to_minor_units(Decimal("0.10"), "USD") for _ in range(10)) == 100


def test_matches_reference_for_random_amounts() -> None:
    rng = random.Random(1234567)
    for _ in range(3000):
        amount = random_decimal(rng)
        currency = rng.choice(list(REFERENCE_RULES))
        assert to_minor_units(amount, currency) == reference_minor_units(amount, currency), (amount, currency)
        assert to_minor_units(amount, currency, rounding=ROUND_HALF_EVEN) == reference_minor_units(
            amount, currency, half_even=True
        ), (amount, currency)


def test_exact_ties_match_reference() -> None:
    # Random amounts rarely hit ties; enumerate them for every rule.
    for currency, (exponent, step) in REFERENCE_RULES.items():
        for n in range(-50, 51):
            amount = (Decimal(n) + Decimal("0.5")) * step / Decimal(10) ** exponent
            assert to_minor_units(amount, currency) == reference_minor_units(amount, currency)


# -------------------------------------------------------------- unit_amount_decimal


@pytest.mark.parametrize(
    ("unit_price", "currency", "text"),
    [
        ("0.0012345", "USD", "0.12345"),
        ("1E-7", "USD", "0.00001"),
        ("12", "USD", "1200"),
        ("12.50", "USD", "1250"),
        ("1.5E+3", "JPY", "1500"),
        ("0.5", "JPY", "0.5"),
        ("0.0001", "KWD", "0.1"),
        ("1234.56", "ISK", "123456"),
        ("-0.0012345", "usd", "-0.12345"),
        ("0", "USD", "0"),
        ("0E-20", "USD", "0"),
        ("0.00000000000005", "USD", "0.000000000005"),
        ("0.000000000000005", "USD", "0.000000000001"),
        ("0.0000000000000049", "USD", "0"),
        ("-0.0000000000000049", "USD", "0"),
        ("0.123456789012345678", "USD", "12.345678901235"),
        ("-0.123456789012345", "USD", "-12.345678901235"),
        ("123456789.123456789", "USD", "12345678912.3456789"),
    ],
)
def test_unit_amount_decimal(unit_price: str, currency: str, text: str) -> None:
    assert unit_amount_decimal(Decimal(unit_price), currency) == text


def test_unit_amount_decimal_int_input() -> None:
    assert unit_amount_decimal(3, "USD") == "300"


def test_unit_amount_decimal_random_against_reference() -> None:
    rng = random.Random(42)
    for _ in range(2000):
        price = random_decimal(rng)
        currency = rng.choice(list(REFERENCE_RULES))
        exponent, _ = REFERENCE_RULES[currency]
        text = unit_amount_decimal(price, currency)
        assert "E" not in text and "e" not in text
        whole, _, fraction = text.lstrip("-").partition(".")
        assert len(fraction) <= 12
        assert not fraction.endswith("0")
        assert whole == "0" or not whole.startswith("0")
        expected = round_half_up(Fraction(price) * 10 ** (exponent + 12))
        assert Fraction(Decimal(text)) == Fraction(expected, 10**12), (price, currency, text)


# --------------------------------------------------------------------- format_money


@pytest.mark.parametrize(
    ("amount", "currency", "text"),
    [
        (Decimal("12.3"), "usd", "12.30 USD"),
        (Decimal("12.30"), "USD", "12.30 USD"),
        (Decimal("12.3000"), "USD", "12.30 USD"),
        (Decimal("12.345"), "USD", "12.345 USD"),
        (Decimal("0.0012"), "USD", "0.0012 USD"),
        (Decimal("500"), "JPY", "500 JPY"),
        (Decimal("500.00"), "jpy", "500 JPY"),
        (Decimal("500.5"), "JPY", "500.5 JPY"),
        (Decimal("1.2"), "KWD", "1.200 KWD"),
        (Decimal("1235.00"), "ISK", "1235 ISK"),
        (Decimal("-12.3"), "USD", "-12.30 USD"),
        (Decimal("-0"), "USD", "0.00 USD"),
        (Decimal("1E+3"), "EUR", "1000.00 EUR"),
        (Decimal("1E-7"), "USD", "0.0000001 USD"),
        (7, "USD", "7.00 USD"),
    ],
)
def test_format_money(amount: Decimal | int, currency: str, text: str) -> None:
    assert format_money(amount, currency) == text


def test_format_money_rejects_bad_input() -> None:
    with pytest.raises(MoneyError):
        format_money(Decimal("NaN"), "USD")
    with pytest.raises(MoneyError):
        format_money(Decimal(1), "dollars")


def test_money_error_is_value_error() -> None:
    assert issubclass(MoneyError, ValueError)


# ------------------------------------------------------- Stripe's special cases and limits


def test_ugx_reaches_stripe_as_a_two_decimal_amount_in_whole_shillings() -> None:
    # 10 UGX is amount=1000 at Stripe; sending 10 would charge 0.10 UGX (100 times too little).
    assert to_minor_units(Decimal("10"), "UGX") == 1000
    assert to_minor_units(Decimal("12345.5"), "ugx") == 1234600
    assert from_minor_units(1000, "UGX") == Decimal("10.00")
    assert format_money(Decimal("10"), "UGX") == "10 UGX"


def test_three_decimal_isk_and_ugx_steps() -> None:
    assert [minor_unit_step(c) for c in ("BHD", "JOD", "KWD", "OMR", "TND")] == [10] * 5
    assert (minor_unit_step("ISK"), minor_unit_step("UGX")) == (100, 100)
    assert (step_places("USD"), step_places("JPY"), step_places("KWD"), step_places("ISK"), step_places("UGX")) == (
        2,
        0,
        2,
        0,
        0,
    )
    assert to_steps_exact(Decimal("12.345"), "USD") == Decimal("1234.5")
    assert to_steps_exact(Decimal("12.345"), "KWD") == Decimal("1234.5")
    assert to_steps_exact(Decimal("2.5"), "ISK") == Decimal("2.5")
    assert round_steps(Decimal("2.5")) == 3
    assert round_steps(Decimal("2.5"), ROUND_HALF_EVEN) == 2
    assert round_steps(Decimal("-2.5")) == -3


def test_stripe_largest_charge_is_eight_digits_in_every_currency_idr_included() -> None:
    assert max_charge_minor_units("usd") == 99_999_999
    assert max_charge_minor_units("JPY") == 99_999_999
    assert max_charge_minor_units("IDR") == 99_999_999  # no Stripe page documents an IDR exception
