"""Reading a StripeIntegration's status as the tests do."""

from __future__ import annotations

from typing import Any


def condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    """The condition of `type_` in `status` (there must be one)."""
    return next(c for c in status.get("conditions") or () if c["type"] == type_)
