"""Fold a sync run into the integration's status: run history, open events, error count, progress.

Pure functions over status dicts, so the rules (bounded lists, event de-duplication, resolve, the
disable threshold) are tested without an API server.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from m3stripe.api.conditions import rfc3339
from m3stripe.domain.runs import ErrorEvent, EventKind, RunReport, RunStatus, SyncState

MAX_OPEN_EVENTS = 100


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def sync_state(status: Mapping[str, Any]) -> SyncState:
    progress = status.get("sync") or {}
    return SyncState(
        watermark=parse_time(progress.get("watermark")),
        retry_bill_ids=tuple(progress.get("retryBillIds") or ()),
    )


def run_record(report: RunReport) -> dict[str, Any]:
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
            {"billId": bill, "billVersion": version, "stripeId": stripe_id}
            for bill, version, stripe_id in report.stripe_ids[:50]
        ],
    }
    return record


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
    kept = [e for e in by_id.values() if (parse_time(e.get("lastSeen")) or now) >= cutoff]
    kept.sort(key=lambda e: str(e.get("lastSeen")), reverse=True)
    return [{k: v for k, v in e.items() if v is not None} for e in kept[:MAX_OPEN_EVENTS]], fresh


_SPLIT = re.compile(r"[\s,]+")


def parse_targets(annotation: str) -> list[str]:
    """Ids in an annotation value: comma or space separated; anything after '#' is a free re-trigger token."""
    return [t for t in _SPLIT.split(annotation.split("#", 1)[0].strip()) if t]


def resolve_events(events: Iterable[Mapping[str, Any]], annotation: str) -> list[dict[str, Any]]:
    """Events left open after the person marked those named in the annotation (or `all`) as actioned."""
    targets = set(parse_targets(annotation))
    if "all" in targets:
        return []
    return [dict(e) for e in events if e.get("id") not in targets]


def replay_bills(status: Mapping[str, Any], annotation: str) -> frozenset[str]:
    """Bill ids a replay annotation asks for: `bill-id` items and `run:<runId>` items."""
    bills: set[str] = set()
    runs = {t.removeprefix("run:") for t in parse_targets(annotation) if t.startswith("run:")}
    bills.update(t for t in parse_targets(annotation) if not t.startswith("run:"))
    for run in status.get("recentRuns") or ():
        if run.get("runId") in runs:
            bills.update(str(o["billId"]) for o in run.get("stripeObjects") or ())
    for event in status.get("openEvents") or ():
        if event.get("runId") in runs and event.get("billId"):
            bills.add(str(event["billId"]))
    return frozenset(bills)


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
        "lastSync": {k: v for k, v in record.items() if k != "stripeObjects"},
        "recentRuns": runs,
        "openEvents": events,
        "consecutiveErrors": consecutive_errors,
        "sync": {
            "watermark": rfc3339(report.watermark) if report.watermark else None,
            "retryBillIds": list(report.retry_bill_ids),
        },
    }
    if out["sync"]["watermark"] is None:
        del out["sync"]["watermark"]
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
