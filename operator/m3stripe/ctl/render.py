"""Output: aligned tables as kubectl prints them, ages, and JSON/YAML for scripts."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import yaml

from m3stripe.api.conditions import parse_rfc3339

NONE = "-"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell, three spaces apart (kubectl's layout); no trailing blanks."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = []
    for row in [list(headers), *[list(r) for r in rows]]:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row)]
        lines.append("   ".join(cells).rstrip())
    return "\n".join(lines)


def dump(data: Any, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(data, indent=2, sort_keys=False)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True).rstrip("\n")


def parse_time(value: Any) -> datetime | None:
    """A status timestamp for display: None when absent or not a time (a table never fails on a bad status)."""
    try:
        return parse_rfc3339(str(value)) if value else None
    except ValueError:
        return None


def age(value: Any, now: datetime | None = None) -> str:
    """How long ago, in kubectl's style: 45s, 5m30s, 3h, 2d."""
    when = parse_time(value)
    if when is None:
        return NONE
    seconds = max(0, int(((now or datetime.now(UTC)) - when).total_seconds()))
    return duration(seconds)


def duration(seconds: float) -> str:
    total = max(0, int(seconds))
    if total < 120:
        return f"{total}s"
    minutes = total // 60
    if minutes < 10:
        return f"{minutes}m{total % 60}s" if total % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 48:
        return f"{hours}h"
    return f"{hours // 24}d"


def shorten(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
