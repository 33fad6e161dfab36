"""Go-style durations ("90s", "5m", "1h30m"), the form Kubernetes users write in manifests."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal, InvalidOperation

_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": Decimal("0.001"), "s": Decimal(1), "m": Decimal(60), "h": Decimal(3600)}
# Go's time.Duration (and so CEL's duration(), which the CRD's rules use) is an int64 of nanoseconds:
# about 2,562,047 hours. Nothing the operator schedules is anywhere near; beyond it is a typo.
MAX_DURATION = timedelta(hours=2_562_047)
MAX_DURATION_TEXT = 32


def parse_duration(text: str, *, maximum: timedelta = MAX_DURATION) -> timedelta:
    """Parse a duration such as "1h30m"; raise ValueError naming the bad input (also when above `maximum`)."""
    if len(text) > MAX_DURATION_TEXT:
        raise ValueError(f"{text[:MAX_DURATION_TEXT]!r}... is too long for a duration; write it like 30s, 5m or 1h30m")
    pos = 0
    total = Decimal(0)
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        try:
            total += Decimal(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        except InvalidOperation:  # pragma: no cover - the regex admits only plain decimals
            break
        pos = match.end()
    if pos == 0 or pos != len(text):
        raise ValueError(f"{text!r} is not a duration; write it like 30s, 5m or 1h30m")
    # Decimal, not float: a float sum of huge parts becomes inf and timedelta() then raises OverflowError.
    if total > Decimal(int(maximum.total_seconds())):
        raise ValueError(f"{text!r} is longer than the maximum of {format_duration(maximum)}")
    return timedelta(seconds=float(total))


def format_duration(value: timedelta) -> str:
    """The shortest Go-style text of a whole number of seconds ("90s" -> "1m30s")."""
    seconds = int(value.total_seconds())
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    text = "".join(f"{n}{unit}" for n, unit in ((hours, "h"), (minutes, "m"), (secs, "s")) if n)
    return text or "0s"
