"""The gesture grammar: what a person's annotation asks for, and how the operator says it handled it.

A gesture is an annotation (`api.names`) whose value is handled once and echoed in a `lastHandled*` status field
(HANDLED_FIELD). Its value names ids (Bills, runs, events), comma or space separated; anything after '#' is a free
token that makes a new request of the same ids. The operator (kube/) handles gestures; the kubectl plugin (ctl/)
writes them and checks them first by the same rules, on the status it reads from the API server.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from m3stripe.api import names
from m3stripe.api.status import IntegrationEvent, StripeIntegrationStatus, read_status

# The status field where each gesture is echoed once handled.
HANDLED_FIELD: Final = {
    names.ANNOTATION_REQUESTED_AT: "lastHandledRequestedAt",
    names.ANNOTATION_REENABLE: "lastHandledReenable",
    names.ANNOTATION_REPLAY: "lastHandledReplay",
    names.ANNOTATION_RESOLVE: "lastHandledResolve",
}
GESTURES = tuple(HANDLED_FIELD)
# A gesture names a few Bills or events. Its value is echoed into status and each id may cost an m3ter
# request, so a value beyond these bounds is refused as a whole, never truncated into a different request.
MAX_GESTURE_LENGTH = 4096
MAX_GESTURE_IDS = 100
# m3ter's Bill ids are UUIDs (the SDK's `bills.retrieve`: "Retrieve the Bill with the given UUID",
# m3ter/resources/bills/bills.py); the emulator also takes readable ids. Either way: no '/', '%', '?', '#' or '..' segment that
# could move the request to another path once the id is put into the URL.
BILL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_:.-]{0,127}")
RUN_ID = re.compile(r"run-[A-Za-z0-9-]{1,64}")

_SPLIT = re.compile(r"[\s,]+")
_REFUSED = re.compile(r"#refused-[0-9a-f]{16}")

# The status a gesture is checked against: as the operator holds it, or as the API server returns it (the kubectl
# plugin), which is then read as the operator reads it (read_status).
StatusLike = StripeIntegrationStatus | Mapping[str, Any]
# Open events, as either holds them.
Event = TypeVar("Event", IntegrationEvent, Mapping[str, Any])


def _status(status: StatusLike) -> StripeIntegrationStatus:
    return status if isinstance(status, StripeIntegrationStatus) else read_status(status)


def unhandled(annotations: Mapping[str, str], status: StatusLike, annotation: str) -> str:
    """The gesture's value while the status has not echoed it back yet; "" when absent or already handled."""
    value = annotations.get(annotation, "")
    return value if value and value != getattr(_status(status), HANDLED_FIELD[annotation]) else ""


def echo(annotation: str, value: str) -> StripeIntegrationStatus:
    """The status change that says the gesture's value was handled (written with its effect)."""
    return StripeIntegrationStatus.model_validate({HANDLED_FIELD[annotation]: value})


def refused_marker(value: str) -> str:
    """What stands in for a refused gesture value: short, stable, and acting on nothing (all after '#')."""
    return "#refused-" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def gesture_annotations(raw: object) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """The object's annotations with every unusable gesture value replaced by a refusal marker.

    Returns the annotations and, per refused gesture, (annotation key, why). A real API server only
    stores string values, but an object restored from elsewhere may carry anything.
    """
    if not isinstance(raw, Mapping):
        return {}, ([("metadata.annotations", "must be a map of strings")] if raw is not None else [])
    out: dict[str, str] = {}
    problems: list[tuple[str, str]] = []
    for key, value in raw.items():
        if not isinstance(key, str):
            continue
        if key not in GESTURES:
            if isinstance(value, str):
                out[key] = value
            continue
        if not isinstance(value, str):
            problems.append((key, f"the value must be a string, not {type(value).__name__}; nothing was done"))
            out[key] = refused_marker(repr(value))
        elif len(value) > MAX_GESTURE_LENGTH:
            problems.append(
                (key, f"the value is {len(value)} characters long (at most {MAX_GESTURE_LENGTH}); nothing was done")
            )
            out[key] = refused_marker(value)
        elif key in (names.ANNOTATION_REPLAY, names.ANNOTATION_RESOLVE) and len(parse_targets(value)) > MAX_GESTURE_IDS:
            problems.append(
                (
                    key,
                    f"the value names {len(parse_targets(value))} ids (at most {MAX_GESTURE_IDS} per request); "
                    "nothing was done: split it into several requests",
                )
            )
            out[key] = refused_marker(value)
        else:
            out[key] = value
    return out, problems


def parse_targets(annotation: str) -> list[str]:
    """Ids in an annotation value: comma or space separated; anything after '#' is a free re-trigger token."""
    return [t for t in _SPLIT.split(annotation.split("#", 1)[0].strip()) if t]


def _event_id(event: IntegrationEvent | Mapping[str, Any]) -> str:
    return event.id if isinstance(event, IntegrationEvent) else str(event.get("id"))


def resolve_events(events: Iterable[Event], annotation: str) -> list[Event]:
    """Events left open after the person marked those named in the annotation (or `all`, any case) as actioned."""
    targets = set(parse_targets(annotation))
    if any(t.lower() == "all" for t in targets):
        return []
    return [e for e in events if _event_id(e) not in targets]


def unknown_event_ids(events: Iterable[Event], annotation: str) -> list[str]:
    """Ids in a resolve annotation that name no open event (a typo, or already resolved)."""
    targets = parse_targets(annotation)
    if any(t.lower() == "all" for t in targets):
        return []
    open_ids = {_event_id(e) for e in events}
    return [t for t in dict.fromkeys(targets) if t not in open_ids]


@dataclass(frozen=True)
class ReplayRequest:
    """What a replay annotation asks for, and what in it cannot be done (each naming the id)."""

    bills: frozenset[str]
    problems: list[str] = field(default_factory=list)
    # Bills taken from the run history (already read from m3ter and sent once): no existence check needed.
    from_history: frozenset[str] = frozenset()


def replay_request(status: StatusLike, annotation: str) -> ReplayRequest:
    """Bill ids a replay annotation asks for: `bill-id` items and `run:<runId>` items.

    Run references are expanded from status.recentRuns and status.openEvents: the caller requires both readable.
    """
    bills: set[str] = set()
    problems: list[str] = []
    runs: set[str] = set()
    targets = parse_targets(annotation)
    if not targets and not _REFUSED.fullmatch(annotation):  # a refused value was reported when refused
        problems.append(
            f"{annotation[:140]!r} names no Bill id (anything after '#' is only a re-trigger token); "
            "write Bill ids or run:<runId>, comma or space separated"
        )
    for target in targets:
        if target.startswith("run:"):
            run = target.removeprefix("run:")
            if not RUN_ID.fullmatch(run):
                problems.append(
                    f"{target!r} is not a run reference; write run:<runId> with an id from status.recentRuns"
                )
            else:
                runs.add(run)
        elif BILL_ID.fullmatch(target):
            bills.add(target)
        else:
            problems.append(
                f"{target[:140]!r} is not an m3ter Bill id (letters, digits, '-', '_', '.', ':'; at most 128); "
                "it was not read"
            )
    found: set[str] = set()
    history: set[str] = set()
    typed = _status(status)
    for record in typed.recentRuns:
        if record.runId is not None and record.runId in runs:
            found.add(record.runId)
            history.update(o.billId for o in record.stripeObjects)
    for event in typed.openEvents:
        if event.runId is not None and event.runId in runs:
            found.add(event.runId)
            if event.billId:
                history.add(event.billId)
    problems.extend(
        f"run {run!r} is not in status.recentRuns or status.openEvents (only the last runs are kept); "
        "name its Bills instead"
        for run in sorted(runs - found)
    )
    bills |= history
    if len(bills) > MAX_GESTURE_IDS:
        # The same bound as for ids named one by one: refused as a whole, never cut into a different request.
        problems.append(
            f"the replay names {len(bills)} Bills once its run references are expanded (at most {MAX_GESTURE_IDS} "
            "per replay); nothing was replayed: split them into several requests (fewer runs, or the Bills by id)"
        )
        return ReplayRequest(frozenset(), problems)
    return ReplayRequest(frozenset(bills), problems, frozenset(history))


def replay_bills(status: StatusLike, annotation: str) -> frozenset[str]:
    """Bill ids a replay annotation asks for (see `replay_request` for what it cannot do)."""
    return replay_request(status, annotation).bills
