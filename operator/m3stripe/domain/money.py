"""Exact conversion between m3ter's decimal amounts and Stripe's integer minor units.

Stripe amounts are integers in the currency's minor unit as *Stripe* defines it, which is
not always ISO 4217's (https://docs.stripe.com/currencies, "Minor units in API amounts",
"Zero-decimal currencies", "Three-decimal currencies" and "Special cases"):

* zero-decimal currencies (JPY, KRW, ...): 1 unit = 1 minor unit;
* three-decimal currencies (BHD, JOD, KWD, OMR, TND): 1 unit = 1000 minor units, but "the
  last digit must be 0" (Stripe's payment partners), so charged amounts are multiples of 10;
* ISK and UGX: Stripe's special cases. Each "transitioned to a zero-decimal currency, but
  backward compatibility requires you to represent it as a two-decimal value, where the
  decimal amount is always 00": the API amount is in hundredths and a multiple of 100, so
  only whole krónur / shillings can be charged (10 UGX is sent as 1000);
* HUF and TWD: two-decimal in the API (charges may carry fractions) although Stripe treats
  them as zero-decimal for *payouts*, which must be divisible by 100.  Payouts are not ours
  to make, so they keep plain two-decimal handling here.

Stripe's largest charge is eight digits of minor units, in every currency. Confirmed: the SDK's
``amount`` docs of charges and payment intents ("The amount value supports up to eight digits (e.g.,
a value of 99999999 for a USD charge of $999,999.99)"), which link to docs.stripe.com/currencies
"Minimum and maximum charge amounts" ("The only limit to the maximum amount you can charge a
customer is a technical one", quoted in stripe/stripe-php#881). Not confirmed: any currency with a
larger limit. dj-stripe#1786 claims IDR 999,999,999,998.99 (from the Dashboard), while dj-stripe#1045
reports IDR capped at 999,999.99 until Stripe raised that one account's limit on request; no Stripe
page found states an IDR exception, so IDR is held to eight digits too (the safe side: a Bill
refused with the limit named, rather than an invoice that may never be charged).

Rounding: ``ROUND_HALF_UP`` (ties away from zero, the commercial rounding invoices use).
m3ter already rounds bill subtotals to the currency precision, so rounding only bites when
an amount carries extra precision or the currency needs a coarser step (three-decimal
currencies, ISK).  Ties away from zero make credits mirror charges: -12.345 USD gives -1235.
The amount is rounded once, directly to the allowed step, never in two passes.

Floats are refused (TypeError): a float has already lost the exact decimal value.
"""

from __future__ import annotations

import decimal
import re
from decimal import MAX_EMAX, MIN_EMIN, ROUND_HALF_UP, Context, Decimal, DivisionByZero, InvalidOperation, Overflow

__all__ = [
    "MAX_MINOR_UNITS",
    "THREE_DECIMAL_CURRENCIES",
    "TWO_DECIMAL_WHOLE_UNIT_CURRENCIES",
    "UNIT_AMOUNT_DECIMAL_PLACES",
    "ZERO_DECIMAL_CURRENCIES",
    "MoneyError",
    "currency_exponent",
    "format_money",
    "from_minor_units",
    "max_charge_minor_units",
    "minor_unit_step",
    "normalize_currency",
    "round_steps",
    "step_places",
    "to_minor_units",
    "to_steps_exact",
    "unit_amount_decimal",
]

# Upper case; normalize_currency() maps Stripe's lower-case codes onto these. Stripe's
# zero-decimal list, verbatim (docs.stripe.com/currencies#zero-decimal); UGX is on it but is
# one of the special cases below, which win.
# fmt: off
ZERO_DECIMAL_CURRENCIES: frozenset[str] = frozenset({
    "BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA",
    "PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF",
})
# fmt: on
THREE_DECIMAL_CURRENCIES: frozenset[str] = frozenset({"BHD", "JOD", "KWD", "OMR", "TND"})
# docs.stripe.com/currencies, "Special cases": zero-decimal in fact, two-decimal in the API.
TWO_DECIMAL_WHOLE_UNIT_CURRENCIES: frozenset[str] = frozenset({"ISK", "UGX"})

# Minor units Stripe accepts per charged amount, where it is coarser than 1.
_STEP_OVERRIDES: dict[str, int] = dict.fromkeys(TWO_DECIMAL_WHOLE_UNIT_CURRENCIES, 100) | dict.fromkeys(
    THREE_DECIMAL_CURRENCIES, 10
)
# Decimals shown to humans where they differ from the API exponent (whole krónur and shillings).
_DISPLAY_EXPONENT_OVERRIDES: dict[str, int] = dict.fromkeys(TWO_DECIMAL_WHOLE_UNIT_CURRENCIES, 0)

# Stripe stores amounts as signed 64-bit integers.
MAX_MINOR_UNITS = 2**63 - 1
# Largest chargeable amount (see the module docstring): eight digits. No per-currency exception is
# documented; an account whose limit Stripe raised on request would need a configurable override.
_MAX_CHARGE_DEFAULT = 99_999_999
_MAX_CHARGE_OVERRIDES: dict[str, int] = {}
# Stripe's documented limit for price_data.unit_amount_decimal.
UNIT_AMOUNT_DECIMAL_PLACES = 12

_CURRENCY_CODE = re.compile(r"[A-Za-z]{3}")
_ROUNDING_MODES = frozenset(
    {
        decimal.ROUND_05UP,
        decimal.ROUND_CEILING,
        decimal.ROUND_DOWN,
        decimal.ROUND_FLOOR,
        decimal.ROUND_HALF_DOWN,
        decimal.ROUND_HALF_EVEN,
        decimal.ROUND_HALF_UP,
        decimal.ROUND_UP,
    }
)


class MoneyError(ValueError):
    """A currency code or amount that cannot be turned into a Stripe amount."""


def normalize_currency(currency: str) -> str:
    """Upper-case ISO 4217 code; m3ter and Stripe disagree on case, so compare normalised."""
    if not isinstance(currency, str) or not _CURRENCY_CODE.fullmatch(currency):
        raise MoneyError(f"invalid currency code {currency!r}: expected three letters such as 'USD'")
    return currency.upper()


def currency_exponent(currency: str) -> int:
    """Decimal places of the currency's minor unit in Stripe's API: 0, 2 or 3."""
    code = normalize_currency(currency)
    if code in TWO_DECIMAL_WHOLE_UNIT_CURRENCIES:
        return 2
    if code in ZERO_DECIMAL_CURRENCIES:
        return 0
    if code in THREE_DECIMAL_CURRENCIES:
        return 3
    return 2


def minor_unit_step(currency: str) -> int:
    """Granularity of charged amounts in minor units: 1, 10 (three-decimal) or 100 (ISK, UGX)."""
    return _STEP_OVERRIDES.get(normalize_currency(currency), 1)


def max_charge_minor_units(currency: str) -> int:
    """Stripe's largest charge in minor units: 99999999 (eight digits; see the module docstring)."""
    return _MAX_CHARGE_OVERRIDES.get(normalize_currency(currency), _MAX_CHARGE_DEFAULT)


def _exact_context(digits: int) -> Context:
    # A private context: the caller's may have a low precision that would round silently.
    return Context(
        prec=max(28, digits + UNIT_AMOUNT_DECIMAL_PLACES + 10),
        rounding=ROUND_HALF_UP,
        Emax=MAX_EMAX,
        Emin=MIN_EMIN,
        traps=[InvalidOperation, DivisionByZero, Overflow],
    )


def _require_amount(amount: Decimal | int, what: str = "amount") -> Decimal:
    if isinstance(amount, bool):
        raise TypeError(f"{what} must be a Decimal or int, not bool")
    if isinstance(amount, float):
        raise TypeError(f"{what} must be a Decimal or int, not float: floats cannot hold money exactly")
    if isinstance(amount, int):
        return Decimal(amount)
    if not isinstance(amount, Decimal):
        raise TypeError(f"{what} must be a Decimal or int, not {type(amount).__name__}")
    if not amount.is_finite():
        raise MoneyError(f"{what} must be a finite number, not {amount}")
    # Far beyond int64 minor units; rejecting early also keeps scaleb() clear of huge exponents.
    if not amount.is_zero() and amount.adjusted() > 25:
        raise MoneyError(f"{what} {amount} is too large to represent in Stripe")
    return amount


def _check_range(minor: int, amount: Decimal, currency: str) -> int:
    if abs(minor) > MAX_MINOR_UNITS:
        raise MoneyError(f"{amount} {currency} is too large to represent in Stripe minor units")
    return minor


def to_minor_units(amount: Decimal | int, currency: str, *, rounding: str = ROUND_HALF_UP) -> int:
    """Convert to Stripe's integer minor units, rounded once to what Stripe accepts.

    >>> to_minor_units(Decimal("12.345"), "usd")
    1235
    """
    value = _require_amount(amount)
    if rounding not in _ROUNDING_MODES:
        raise ValueError(f"unknown decimal rounding mode {rounding!r}")
    code = normalize_currency(currency)
    step = minor_unit_step(code)
    # step is 1, 10 or 100: dividing by it is a shift of len(str(step)) - 1 places.
    shift = currency_exponent(code) - (len(str(step)) - 1)
    ctx = _exact_context(len(value.as_tuple().digits))
    steps = value.scaleb(shift, ctx).to_integral_value(rounding=rounding, context=ctx)
    return _check_range(int(steps) * step, value, code)


def step_places(currency: str) -> int:
    """Decimal places of one chargeable step in major units: USD 2, JPY 0, KWD 2, ISK and UGX 0."""
    code = normalize_currency(currency)
    return currency_exponent(code) - (len(str(minor_unit_step(code))) - 1)


def to_steps_exact(amount: Decimal | int, currency: str) -> Decimal:
    """The amount counted in chargeable steps, exactly (12.345 USD -> 1234.5; 12.345 KWD -> 1234.5)."""
    value = _require_amount(amount)
    ctx = _exact_context(len(value.as_tuple().digits))
    return value.scaleb(step_places(currency), ctx)


def round_steps(steps: Decimal, rounding: str = ROUND_HALF_UP) -> int:
    """An exact count of steps rounded to an integer with a ``decimal`` rounding mode."""
    if rounding not in _ROUNDING_MODES:
        raise ValueError(f"unknown decimal rounding mode {rounding!r}")
    ctx = _exact_context(len(steps.as_tuple().digits))
    return int(steps.to_integral_value(rounding=rounding, context=ctx))


def from_minor_units(minor: int, currency: str) -> Decimal:
    """Stripe minor units back to a Decimal with the currency's API precision (1230 USD -> 12.30)."""
    if isinstance(minor, bool) or not isinstance(minor, int):
        raise TypeError(f"minor units must be an int, not {type(minor).__name__}")
    exponent = currency_exponent(currency)
    return Decimal(minor).scaleb(-exponent, _exact_context(len(str(abs(minor)))))


def unit_amount_decimal(unit_price: Decimal | int, currency: str) -> str:
    """Unit price in minor units for ``price_data.unit_amount_decimal``.

    At most 12 decimal places (rounded half-up), plain notation, no trailing zeros:
    ``Decimal("0.0012345")`` USD gives ``"0.12345"``.  No step rounding applies here: callers
    with a step currency (ISK, UGX, three-decimal) must send unit prices that are whole steps
    (mapping.py falls back to quantity 1 otherwise).
    """
    value = _require_amount(unit_price, "unit price")
    code = normalize_currency(currency)
    ctx = _exact_context(len(value.as_tuple().digits))
    minor = value.scaleb(currency_exponent(code), ctx).quantize(
        Decimal(1).scaleb(-UNIT_AMOUNT_DECIMAL_PLACES), rounding=ROUND_HALF_UP, context=ctx
    )
    if abs(minor) > MAX_MINOR_UNITS:
        raise MoneyError(f"unit price {value} {code} is too large to represent in Stripe minor units")
    return _plain(minor)


def _plain(value: Decimal) -> str:
    if value.is_zero():
        return "0"  # also turns "-0E-12" into "0"
    text = format(value, "f")  # "f" never switches to exponent notation
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def format_money(amount: Decimal | int, currency: str) -> str:
    """Human-readable amount for messages: ``"12.30 USD"``, ``"500 JPY"``.

    Shows at least the currency's usual decimals and never hides extra precision
    (``"0.0012 USD"``), so a message cannot disagree with the value it reports.
    """
    value = _require_amount(amount)
    code = normalize_currency(currency)
    places = _DISPLAY_EXPONENT_OVERRIDES.get(code, currency_exponent(code))
    if value.is_zero():
        value = abs(value)
    whole, _, fraction = format(value, "f").partition(".")
    fraction = fraction.rstrip("0").ljust(places, "0")
    return f"{whole}.{fraction} {code}" if fraction else f"{whole} {code}"
