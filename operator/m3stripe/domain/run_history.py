"""Fold a sync run into the integration's status: run history, open events, error count, progress.

Pure functions over status dicts, so the rules (bounded lists, event de-duplication, resolve, the
disable threshold) are tested without an API server.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from m3stripe.api import names
from m3stripe.api.conditions import parse_rfc3339, rfc3339
from m3stripe.domain.money import format_money, from_minor_units
from m3stripe.domain.runs import ErrorEvent, EventKind, RunReport, RunStatus, SyncState

MAX_OPEN_EVENTS = 100


def ledger_id(organization_id: str, *, live: bool, stripe_account: str | None, owners: str = "") -> str:
    """The source and the Stripe ledger a sync progress belongs to, as digests (no id in clear in the status), and
    `owners`, the digest of the older integrations this one leaves the Bills they also select to
    (overlap.Overlap.owners_digest; "" when none)."""

    def digest(value: str) -> str:
        return hashlib.sha256(value.encode()).hexdigest()[:12]

    account = digest(stripe_account) if stripe_account else "-"
    ledger = f"{digest(organization_id)}.{'live' if live else 'test'}.{account}"
    return f"{ledger}.{owners}" if owners else ledger


def progress_moved(status: Mapping[str, Any], ledger: str) -> str | None:
    """Why the stored progress was made against another Organization or Stripe ledger, or None if it was not.

    A watermark says which Bills *that* Stripe account already got: kept across a move from test mode to live
    (the README's rollout) it would keep every Bill already sent to test mode from ever reaching live.
    Progress written before the ledger was recorded counts as this ledger's; an account that was not known
    (a restricted key that may not read it) is no evidence of a move.
    """
    recorded = _recorded_ledger(status)
    if recorded is None:
        return None
    (old_org, old_mode, old_account), (org, mode, account) = _parts(recorded), _parts(ledger)
    if old_org != org:
        return "spec.m3ter.organizationId names another Organization than the sync progress was made for"
    if old_mode != mode:
        return f"spec.destination moved from {old_mode} to {mode} mode"
    if "-" not in (old_account, account) and old_account != account:
        return "the Stripe key now belongs to another Stripe account"
    old_owners, owners = _owners(recorded), _owners(ledger)
    if old_owners and old_owners != owners:
        # Bills left to an older integration that is gone now, or no longer selects them, may be no one's: the
        # watermark moved past them while they were its. New owners need nothing: Bills sent here stay recognised.
        return "an older integration this one left the Bills both select to is gone or selects other Bills now"
    return None


def _owners(ledger: str) -> str:
    return [*ledger.split("."), "", "", "", ""][3]


def recorded_owners(status: Mapping[str, Any]) -> str:
    """The owners' digest the stored progress was made with ("" when none or nothing recorded)."""
    recorded = _recorded_ledger(status)
    return _owners(recorded) if recorded is not None else ""


def _recorded_ledger(status: Mapping[str, Any]) -> str | None:
    recorded = (status.get("sync") or {}).get("ledger")
    return recorded if isinstance(recorded, str) and recorded else None


def _parts(ledger: str) -> tuple[str, str, str]:
    """(organization digest, mode, account digest or "-"); a malformed record has empty parts, so it moved."""
    organization, mode, account = [*ledger.split("."), "", "", ""][:3]
    return organization, mode, account


def unhandled(annotations: Mapping[str, str], status: Mapping[str, Any], annotation: str) -> str:
    """The gesture's value while the status has not echoed it back yet; "" when absent or already handled."""
    value = annotations.get(annotation, "")
    return value if value and value != status.get(names.HANDLED_FIELD[annotation]) else ""


def fresh_progress(ledger: str) -> dict[str, Any]:
    """The progress of a pass that starts over against `ledger`, as explicit nulls: a merge patch must not keep
    the old ledger's watermark or sweep under the new ledger's name."""
    return {"watermark": None, "retryBillIds": [], "lastSweep": None, "ledger": ledger}


def progress_for(status: Mapping[str, Any], ledger: str) -> tuple[Mapping[str, Any], str | None, str]:
    """`status` with the progress a pass against `ledger` starts from, why it starts over (None: it does not),
    and the ledger to record when the pass ends.

    Starting over is `fresh_progress` (a checkpoint written mid-pass carries it too). A pass that could not see
    the key's account keeps the account recorded: recording "unknown" would hide a later move to another account.
    """
    moved = progress_moved(status, ledger)
    if moved is None:
        # Not moved: the Organization and mode are the recorded ones (or nothing is recorded).
        recorded = _recorded_ledger(status)
        if recorded is not None and _parts(ledger)[2] == "-":
            kept = ".".join(_parts(recorded))
            return status, None, f"{kept}.{_owners(ledger)}" if _owners(ledger) else kept
        return status, None, ledger
    return {**status, "sync": fresh_progress(ledger)}, moved, ledger


def sync_state(status: Mapping[str, Any]) -> SyncState:
    progress = status.get("sync") or {}
    return SyncState(
        watermark=parse_rfc3339(progress.get("watermark")),
        retry_bill_ids=tuple(progress.get("retryBillIds") or ()),
        last_sweep=_last_sweep(progress.get("lastSweep")),
    )


def _last_sweep(value: Any) -> datetime | None:
    # Unreadable (a status restored from elsewhere): as if no sweep had completed, so the next pass sweeps
    # every Bill; that costs reads and can skip nothing, where refusing the pass would stop the integration.
    try:
        return parse_rfc3339(value) if isinstance(value, str) else None
    except ValueError:
        return None


def run_record(report: RunReport) -> dict[str, Any]:
    taxes = {(bill, version): (currency, amount) for bill, version, currency, amount in report.bill_taxes}
    record: dict[str, Any] = {
        "runId": report.run_id,
        "status": str(report.status),
        "startTime": rfc3339(report.started),
        "completionTime": rfc3339(report.completed or report.started),
        "billsSent": report.sent,
        "billsUnchanged": report.unchanged,
        "billsSkipped": report.skipped,
        "billsFailed": report.failed,
        "message": report.summary(),
        "stripeObjects": [
            {"billId": bill, "billVersion": version, "stripeId": stripe_id, **_tax_of(taxes, bill, version)}
            for bill, version, stripe_id in report.stripe_ids[:50]
        ],
    }
    if report.taxes:
        record["taxes"] = [
            {"currency": currency, "amount": format_money(from_minor_units(amount, currency), currency).split(" ")[0]}
            for currency, amount in sorted(report.taxes.items())
        ]
        record["message"] = f"{record['message']}; tax {tax_summary(report)}"
    return record


def tax_summary(report: RunReport) -> str:
    """The run's tax per currency, as a person reads money ("12.34 GBP, 5 JPY")."""
    return ", ".join(
        format_money(from_minor_units(amount, currency), currency) for currency, amount in sorted(report.taxes.items())
    )


def _tax_of(taxes: Mapping[tuple[str, int], tuple[str, int]], bill: str, version: int) -> dict[str, str]:
    found = taxes.get((bill, version))
    if found is None:
        return {}
    currency, amount = found
    return {"tax": format_money(from_minor_units(amount, currency), currency)}


def merge_events(
    existing: Iterable[Mapping[str, Any]], new: Iterable[ErrorEvent], *, now: datetime, retention: timedelta
) -> tuple[list[dict[str, Any]], list[ErrorEvent]]:
    """Open events after adding `new` (repeats bump count/lastSeen) and dropping expired ones.

    Also returns the events that were not open before: those deserve a Kubernetes Event.
    """
    by_id: dict[str, dict[str, Any]] = {str(e["id"]): dict(e) for e in existing if "id" in e}
    fresh: list[ErrorEvent] = []
    stamp = rfc3339(now)
    for event in new:
        current = by_id.get(event.id)
        if current is None:
            by_id[event.id] = {
                "id": event.id,
                "kind": str(event.kind),
                "message": event.message[:4096],
                "runId": event.run_id,
                "runStatus": str(event.status),
                "billId": event.bill_id,
                "accountId": event.account_id,
                "firstSeen": stamp,
                "lastSeen": stamp,
                "count": 1,
            }
            fresh.append(event)
        else:
            current.update(runId=event.run_id, lastSeen=stamp, count=int(current.get("count", 1)) + 1)
    cutoff = now - retention
    kept = [e for e in by_id.values() if (parse_rfc3339(e.get("lastSeen")) or now) >= cutoff]
    kept.sort(key=lambda e: str(e.get("lastSeen")), reverse=True)
    return [{k: v for k, v in e.items() if v is not None} for e in kept[:MAX_OPEN_EVENTS]], fresh


_SPLIT = re.compile(r"[\s,]+")

GESTURES = (
    names.ANNOTATION_REQUESTED_AT,
    names.ANNOTATION_REENABLE,
    names.ANNOTATION_REPLAY,
    names.ANNOTATION_RESOLVE,
)
# A gesture names a few Bills or events. Its value is echoed into status and each id may cost an m3ter
# request, so a value beyond these bounds is refused as a whole, never truncated into a different request.
MAX_GESTURE_LENGTH = 4096
MAX_GESTURE_IDS = 100
# m3ter's Bill ids are UUIDs (the SDK's `bills.retrieve`: "Retrieve the Bill with the given UUID",
# m3ter/resources/bills/bills.py); the emulator also takes readable ids. Either way: no '/', '%', '?', '#' or '..' segment that
# could move the request to another path once the id is put into the URL.
BILL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_:.-]{0,127}")
RUN_ID = re.compile(r"run-[A-Za-z0-9-]{1,64}")


_REFUSED = re.compile(r"#refused-[0-9a-f]{16}")


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


def resolve_events(events: Iterable[Mapping[str, Any]], annotation: str) -> list[dict[str, Any]]:
    """Events left open after the person marked those named in the annotation (or `all`, any case) as actioned."""
    targets = set(parse_targets(annotation))
    if any(t.lower() == "all" for t in targets):
        return []
    return [dict(e) for e in events if e.get("id") not in targets]


def unknown_event_ids(events: Iterable[Mapping[str, Any]], annotation: str) -> list[str]:
    """Ids in a resolve annotation that name no open event (a typo, or already resolved)."""
    targets = parse_targets(annotation)
    if any(t.lower() == "all" for t in targets):
        return []
    open_ids = {str(e.get("id")) for e in events}
    return [t for t in dict.fromkeys(targets) if t not in open_ids]


@dataclass(frozen=True)
class ReplayRequest:
    """What a replay annotation asks for, and what in it cannot be done (each naming the id)."""

    bills: frozenset[str]
    problems: list[str] = field(default_factory=list)
    # Bills taken from the run history (already read from m3ter and sent once): no existence check needed.
    from_history: frozenset[str] = frozenset()


def replay_request(status: Mapping[str, Any], annotation: str) -> ReplayRequest:
    """Bill ids a replay annotation asks for: `bill-id` items and `run:<runId>` items."""
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
    for run in status.get("recentRuns") or ():
        if run.get("runId") in runs:
            found.add(str(run.get("runId")))
            history.update(str(o["billId"]) for o in run.get("stripeObjects") or ())
    for event in status.get("openEvents") or ():
        if event.get("runId") in runs:
            found.add(str(event.get("runId")))
            if event.get("billId"):
                history.add(str(event["billId"]))
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


def replay_bills(status: Mapping[str, Any], annotation: str) -> frozenset[str]:
    """Bill ids a replay annotation asks for (see `replay_request` for what it cannot do)."""
    return replay_request(status, annotation).bills


def fold_report(
    status: Mapping[str, Any],
    report: RunReport,
    *,
    history: int,
    retention: timedelta,
    consecutive_errors: int,
    now: datetime | None = None,
) -> tuple[dict[str, Any], list[ErrorEvent]]:
    """Status fields after a run, and the error events that are new."""
    now = now or datetime.now(UTC)
    record = run_record(report)
    runs = [record, *[dict(r) for r in status.get("recentRuns") or ()]][:history]
    events, fresh = merge_events(status.get("openEvents") or (), report.events, now=now, retention=retention)
    out: dict[str, Any] = {
        "lastSync": {k: v for k, v in record.items() if k not in ("stripeObjects", "taxes")},
        "recentRuns": runs,
        "openEvents": events,
        "consecutiveErrors": consecutive_errors,
        "sync": {
            "watermark": rfc3339(report.watermark) if report.watermark else None,
            "retryBillIds": list(report.retry_bill_ids),
            "lastSweep": rfc3339(report.last_sweep) if report.last_sweep else None,
        },
    }
    if out["sync"]["watermark"] is None:
        del out["sync"]["watermark"]
    if out["sync"]["lastSweep"] is None:
        del out["sync"]["lastSweep"]
    if report.status is RunStatus.COMPLETE:
        out["lastSuccessfulSyncTime"] = record["completionTime"]
    return out, fresh


def disabled_event(run_id: str, threshold: int, now: datetime, last: ErrorEvent | None) -> ErrorEvent:
    cause = f" The last one: {last.message}" if last is not None else ""
    return ErrorEvent(
        kind=EventKind.DISABLED,
        message=(
            f"the integration disabled itself after {threshold} successive error events; no Bills are sent until "
            f"it is re-enabled. Fix the cause, then annotate the StripeIntegration with "
            f"m3stripe.dev/reenable=<any new value>.{cause}"
        )[:4096],
        run_id=run_id,
        time=now,
        status=RunStatus.DISABLED,
    )
