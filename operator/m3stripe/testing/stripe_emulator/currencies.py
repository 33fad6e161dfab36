"""Stripe's presentment currencies and their minor-unit rules (https://docs.stripe.com/currencies).

Written from Stripe's page, not from the operator's money module: this table is the oracle the
operator is tested against, so it must not share the operator's assumptions.
"""

from __future__ import annotations

from decimal import Decimal

from .errors import StripeError

# Amounts are whole units: an amount of 500 JPY is ¥500. Stripe's zero-decimal list
# (docs.stripe.com/currencies#zero-decimal) includes UGX, but UGX is a special case (below).
ZERO_DECIMAL = frozenset(
    (
        "bif",
        "clp",
        "djf",
        "gnf",
        "jpy",
        "kmf",
        "krw",
        "mga",
        "pyg",
        "rwf",
        "ugx",
        "vnd",
        "vuv",
        "xaf",
        "xof",
        "xpf",
    )
)

# Amounts are in thousandths, but card acquirers need the last digit to be 0 (5.124 KWD -> 5120).
THREE_DECIMAL = frozenset(("bhd", "jod", "kwd", "omr", "tnd"))

# docs.stripe.com/currencies, "Special cases": ISK and UGX each "transitioned to a zero-decimal
# currency, but backward compatibility requires you to represent it as a two-decimal value, where
# the decimal amount is always 00". So 10 UGX is amount=1000, and amounts must be divisible by 100.
DIVISIBLE_BY_100 = frozenset({"isk", "ugx"})

# docs.stripe.com/currencies, "Minimum and maximum charge amounts": "The amount value supports up
# to eight digits (e.g., a value of 99999999 for a USD charge of $999,999.99)" (the SDK's `amount`
# docs of charges and payment intents). That is a charge limit: Stripe is silent on invoice line and
# invoice item amounts (their `amount` docs in the SDK state no limit), so the emulator applies it to
# those too, as strict as Stripe could be. No currency exception is documented (an IDR one is only
# reported by third parties, dj-stripe#1786, and contradicted by dj-stripe#1045), so none is made.
# `amount_too_large` is one of the error codes the SDK declares (stripe/_invoice.py, last_finalization_error).
MAX_AMOUNT = 99_999_999
MAX_AMOUNT_BY_CURRENCY: dict[str, int] = {}

SUPPORTED = frozenset(
    (
        "usd",
        "aed",
        "afn",
        "all",
        "amd",
        "ang",
        "aoa",
        "ars",
        "aud",
        "awg",
        "azn",
        "bam",
        "bbd",
        "bdt",
        "bgn",
        "bhd",
        "bif",
        "bmd",
        "bnd",
        "bob",
        "brl",
        "bsd",
        "bwp",
        "byn",
        "bzd",
        "cad",
        "cdf",
        "chf",
        "clp",
        "cny",
        "cop",
        "crc",
        "cve",
        "czk",
        "djf",
        "dkk",
        "dop",
        "dzd",
        "egp",
        "etb",
        "eur",
        "fjd",
        "fkp",
        "gbp",
        "gel",
        "gip",
        "gmd",
        "gnf",
        "gtq",
        "gyd",
        "hkd",
        "hnl",
        "htg",
        "huf",
        "idr",
        "ils",
        "inr",
        "isk",
        "jmd",
        "jod",
        "jpy",
        "kes",
        "kgs",
        "khr",
        "kmf",
        "krw",
        "kwd",
        "kyd",
        "kzt",
        "lak",
        "lbp",
        "lkr",
        "lrd",
        "lsl",
        "mad",
        "mdl",
        "mga",
        "mkd",
        "mmk",
        "mnt",
        "mop",
        "mur",
        "mvr",
        "mwk",
        "mxn",
        "myr",
        "mzn",
        "nad",
        "ngn",
        "nio",
        "nok",
        "npr",
        "nzd",
        "omr",
        "pab",
        "pen",
        "pgk",
        "php",
        "pkr",
        "pln",
        "pyg",
        "qar",
        "ron",
        "rsd",
        "rub",
        "rwf",
        "sar",
        "sbd",
        "scr",
        "sek",
        "sgd",
        "shp",
        "sle",
        "sos",
        "srd",
        "std",
        "szl",
        "thb",
        "tjs",
        "tnd",
        "top",
        "try",
        "ttd",
        "twd",
        "tzs",
        "uah",
        "ugx",
        "uyu",
        "uzs",
        "vnd",
        "vuv",
        "wst",
        "xaf",
        "xcd",
        "xof",
        "xpf",
        "yer",
        "zar",
        "zmw",
    )
)


def decimals(currency: str) -> int:
    if currency in DIVISIBLE_BY_100:
        return 2
    if currency in ZERO_DECIMAL:
        return 0
    if currency in THREE_DECIMAL:
        return 3
    return 2


def check_amount(currency: str, amount: int, param: str) -> None:
    """Reject integer amounts that Stripe refuses for this currency's minor-unit rules."""
    if currency in THREE_DECIMAL and amount % 10 != 0:
        raise StripeError(
            400,
            f"Invalid {param}: amounts in {currency.upper()} are in thousandths and must end in 0 "
            f"(for example 5120 rather than 5124); got {amount}.",
            param=param,
        )
    if currency in DIVISIBLE_BY_100 and amount % 100 != 0:
        raise StripeError(
            400,
            f"Invalid {param}: amounts in {currency.upper()} must be evenly divisible by 100 "
            f"({currency.upper()} amounts keep two zero decimals); got {amount}.",
            param=param,
        )
    limit = MAX_AMOUNT_BY_CURRENCY.get(currency, MAX_AMOUNT)
    if abs(amount) > limit:
        raise StripeError(
            400,
            f"Amount must be no more than {limit} {currency.upper()} minor units (Stripe's largest amount in "
            f"{currency.upper()}); got {amount}.",
            code="amount_too_large",
            param=param,
        )


def step(currency: str) -> int:
    if currency in THREE_DECIMAL:
        return 10
    if currency in DIVISIBLE_BY_100:
        return 100
    return 1


def check_unit_amount(currency: str, unit: Decimal, param: str) -> None:
    """A unit price in a step currency must be a whole step itself.

    Stripe's page states the step rules for amounts; it is silent on fractional unit prices in
    those currencies, so the emulator is strict: 0.50 ISK a unit is refused, as an amount would be.
    """
    size = step(currency)
    if size > 1 and unit % size != 0:
        raise StripeError(
            400,
            f"Invalid {param}: unit amounts in {currency.upper()} must be multiples of {size} minor units; got {unit}.",
            param=param,
        )
