"""Stripe requests as sent, comparable across runs: each request's method, path and body with the ids and times
that differ from run to run (Stripe's object ids, m3ter's UUIDs, Unix times) replaced by stable placeholders."""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import unquote_plus

from m3stripe.testing.stripe_emulator.app import RequestRecord

_ID = re.compile(
    r"\b(?:cus|in|il|ii|price|prod|di|txr|acct)_[A-Za-z0-9]+\b"  # Stripe's object ids
    r"|\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b"  # m3ter's UUIDs
)
_TIME = re.compile(r"(?<![0-9])1[0-9]{9}(?![0-9])")  # Unix seconds of this century


def normalized(requests: Iterable[RequestRecord]) -> list[str]:
    """One line per request: "METHOD path body", ids numbered by first appearance, times as <t>."""
    names: dict[str, str] = {}

    def name(match: re.Match[str]) -> str:
        found = match.group(0)
        if found not in names:
            names[found] = f"<id{len(names)}>"
        return names[found]

    lines = []
    for record in requests:
        text = f"{record.method} {record.path} {unquote_plus(record.body or '')}"
        lines.append(_TIME.sub("<t>", _ID.sub(name, text)))
    return lines
