"""The gestures: write an annotation with a fresh token, then wait until the operator echoes it in status.

The operator handles each annotation value once and echoes it in a `lastHandled*` status field in the same
status write as its effect (kube/worker.py, kube/sync_driver.py), so the object read when the echo shows also
holds the run the gesture triggered.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from m3stripe.api import names
from m3stripe.api.gestures import HANDLED_FIELD
from m3stripe.ctl.cluster import Cluster, CtlError
from m3stripe.ctl.render import duration

POLL_SECONDS = 0.25


@dataclass(frozen=True)
class Gesture:
    annotation: str  # the annotation key the operator reads
    echo: str  # the status field where it echoes the handled value
    runs_pass: bool  # whether handling it runs a sync pass (its result then decides the exit code)


SYNC = Gesture(names.ANNOTATION_REQUESTED_AT, HANDLED_FIELD[names.ANNOTATION_REQUESTED_AT], runs_pass=True)
REPLAY = Gesture(names.ANNOTATION_REPLAY, HANDLED_FIELD[names.ANNOTATION_REPLAY], runs_pass=True)
RESOLVE = Gesture(names.ANNOTATION_RESOLVE, HANDLED_FIELD[names.ANNOTATION_RESOLVE], runs_pass=False)
REENABLE = Gesture(names.ANNOTATION_REENABLE, HANDLED_FIELD[names.ANNOTATION_REENABLE], runs_pass=False)


def new_token(now: datetime | None = None) -> str:
    """Unique per invocation and readable in `kubectl describe`: when it was asked, plus randomness."""
    return f"{(now or datetime.now(UTC)):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def with_token(targets: list[str], token: str) -> str:
    """Ids, then the re-trigger token after '#': the operator ignores what follows '#' (api/gestures.py, parse_targets)."""
    return f"{','.join(targets)} #{token}"


@dataclass(frozen=True)
class Handled:
    obj: dict[str, Any]
    seconds: float

    @property
    def status(self) -> dict[str, Any]:
        return dict(self.obj.get("status") or {})


def request(
    cluster: Cluster,
    name: str,
    gesture: Gesture,
    value: str,
    *,
    timeout: float,
    say: Callable[[str], None],
) -> Handled:
    """Annotate, then poll until the echo shows; CtlError on timeout, naming the likely causes."""
    where = f"{names.KIND} {cluster.namespace}/{name}"
    say(f"annotating {where} with {gesture.annotation}={value}")
    started = time.monotonic()
    cluster.annotate(name, gesture.annotation, value)
    say(f"waiting for the operator to handle it (timeout {duration(timeout)})")
    deadline = started + timeout
    obj: dict[str, Any] = {}
    while True:
        obj = cluster.get(name)
        if (obj.get("status") or {}).get(gesture.echo) == value:
            return Handled(obj, time.monotonic() - started)
        if time.monotonic() >= deadline:
            break
        time.sleep(min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))
    raise CtlError(timeout_message(where, gesture, value, timeout, obj))


def timeout_message(where: str, gesture: Gesture, value: str, timeout: float, obj: dict[str, Any]) -> str:
    from m3stripe.api.conditions import find
    from m3stripe.api.status import ConditionType

    status = dict(obj.get("status") or {})
    ready = find(status.get("conditions"), ConditionType.READY) or {}
    hints = []
    if gesture.runs_pass and ready.get("status") != "True":
        hints.append(
            f"it is not Ready ({ready.get('reason') or 'no status yet'}: {ready.get('message') or 'not reported'}), "
            "and the operator runs passes only when it is"
        )
    if not status:
        hints.append("it has no status at all: is the operator running and watching this namespace?")
    else:
        hints.append(
            "the operator may be busy with a long pass, stopped, or not watching this namespace "
            "(kubectl logs -n m3stripe-system deploy/m3stripe-operator)"
        )
    return (
        f"the operator did not handle {gesture.annotation}={value} on {where} within {duration(timeout)}: "
        + "; ".join(hints)
        + ". The annotation stays: the operator handles it when it can."
    )
