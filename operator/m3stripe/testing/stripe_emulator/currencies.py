"""Stripe's presentment currencies and their minor-unit rules (https://docs.stripe.com/currencies)."""

from __future__ import annotations

from .errors import StripeError

# Amounts are whole units: an amount of 500 JPY is ¥500.
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

# ISK is zero-decimal but, for backwards compatibility, amounts keep two decimals and must be
# evenly divisible by 100.
DIVISIBLE_BY_100 = frozenset({"isk"})

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
            f"(ISK amounts keep two zero decimals); got {amount}.",
            param=param,
        )
