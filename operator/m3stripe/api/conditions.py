"""Condition bookkeeping per the Kubernetes API conventions, without status churn.

A condition whose status, reason, message and observedGeneration are unchanged is kept as it was,
lastTransitionTime included; lastTransitionTime moves only when `status` flips.

`merge_conditions` and `find` work on conditions as JSON, as the API server holds them (some may be incomplete);
`conditions_after` and `condition` on the typed conditions of a `StripeIntegrationStatus`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from m3stripe.api.status import REASON_PATTERN, Condition, wire

Status = Literal["True", "False", "Unknown"]
_REASON_RE = re.compile(REASON_PATTERN)
MAX_MESSAGE = 32768


@dataclass(frozen=True)
class Observation:
    """What the operator concluded about one condition type in this reconcile."""

    type: str
    status: Status
    reason: str
    message: str = ""

    def __post_init__(self) -> None:
        # The apiserver rejects the whole status patch on a bad reason; fail here, in tests, instead.
        if not _REASON_RE.fullmatch(self.reason):
            raise ValueError(f"condition reason {self.reason!r} does not match {REASON_PATTERN}")


def rfc3339(value: datetime) -> str:
    """Kubernetes' timestamp form: UTC, whole seconds, `Z`."""
    return value.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def parse_rfc3339(value: str | None) -> datetime | None:
    """The inverse of `rfc3339`, timezone-aware (any ISO 8601 form; a time without offset is UTC); None when empty.

    Raises ValueError for text that is no time: callers that read what people may have written decide."""
    if not value:
        return None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def now_rfc3339() -> str:
    return rfc3339(datetime.now(UTC))


def merge_conditions(
    existing: Sequence[Mapping[str, Any]] | None,
    observations: Iterable[Observation],
    *,
    generation: int | None,
    absent: Iterable[str] = (),
    now: str | None = None,
) -> list[dict[str, Any]]:
    """Return the new conditions list: observed types updated, `absent` types removed, others kept."""
    stamp = now or now_rfc3339()
    by_type: dict[str, dict[str, Any]] = {c["type"]: dict(c) for c in existing or () if "type" in c}
    order = [c["type"] for c in existing or () if "type" in c]
    for obs in observations:
        type_ = str(obs.type)
        old = by_type.get(type_)
        message = obs.message[:MAX_MESSAGE]
        new: dict[str, Any] = {
            "type": str(obs.type),
            "status": obs.status,
            "reason": obs.reason,
            "message": message,
            "observedGeneration": generation,
            "lastTransitionTime": stamp,
        }
        if generation is None:
            del new["observedGeneration"]
        if old is not None and old.get("status") == obs.status:
            new["lastTransitionTime"] = old.get("lastTransitionTime", stamp)
        by_type[type_] = new
        if type_ not in order:
            order.append(type_)
    for gone in absent:
        by_type.pop(str(gone), None)
    return [by_type[t] for t in order if t in by_type]


def find(conditions: Sequence[Mapping[str, Any]] | None, type_: str) -> Mapping[str, Any] | None:
    for condition in conditions or ():
        if condition.get("type") == type_:
            return condition
    return None


def conditions_after(
    existing: Sequence[Condition],
    observations: Iterable[Observation],
    *,
    generation: int | None,
    absent: Iterable[str] = (),
    now: str | None = None,
) -> list[Condition]:
    """`merge_conditions` over a status's typed conditions."""
    merged = merge_conditions([wire(c) for c in existing], observations, generation=generation, absent=absent, now=now)
    return [Condition.model_validate(c) for c in merged]


def condition(conditions: Sequence[Condition], type_: str) -> Condition | None:
    """The condition of this type, if the status has one."""
    return next((c for c in conditions if c.type == type_), None)
