"""What the read commands show: rows built from a StripeIntegration's status (pure, tested without a cluster)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from m3stripe.api.conditions import find
from m3stripe.api.status import ConditionType
from m3stripe.ctl.render import NONE, age, duration, parse_time, shorten, table

DEFAULT_THRESHOLD = 10  # spec.autoDisableThreshold's default (api/spec.py)
MESSAGE_WIDTH = 72


def status_of(obj: Mapping[str, Any]) -> dict[str, Any]:
    return dict(obj.get("status") or {})


def integrations_table(items: Sequence[Mapping[str, Any]], *, wide: bool, namespaces: bool, now: datetime) -> str:
    headers = ["NAME", "READY", "REASON", "LAST RUN", "RUN AGE", "SENT", "FAILED", "OPEN EVENTS", "OVERLAP", "ERRORS"]
    if namespaces:
        headers.insert(0, "NAMESPACE")
    if wide:
        headers += ["DESTINATION", "STRIPE ACCOUNT", "RUN ID", "MESSAGE"]
    rows = []
    for obj in items:
        status, spec, meta = status_of(obj), dict(obj.get("spec") or {}), obj.get("metadata") or {}
        ready = find(status.get("conditions"), ConditionType.READY) or {}
        last = dict(status.get("lastSync") or {})
        threshold = int(spec.get("autoDisableThreshold") or DEFAULT_THRESHOLD)
        errors = f"{int(status.get('consecutiveErrors') or 0)}/{threshold}"
        row = [
            str(meta.get("name")),
            str(ready.get("status") or "Unknown"),
            "Disabled" if status.get("disabled") else str(ready.get("reason") or NONE),
            str(last.get("status") or "never"),
            age(last.get("completionTime"), now),
            str(last.get("billsSent", NONE)) if last else NONE,
            str(last.get("billsFailed", NONE)) if last else NONE,
            str(len(status.get("openEvents") or ())),
            overlap_of(status),
            errors,
        ]
        if namespaces:
            row.insert(0, str(meta.get("namespace")))
        if wide:
            row += [
                str(spec.get("destination") or NONE),
                str(status.get("stripeAccountId") or NONE),
                str(last.get("runId") or NONE),
                " ".join(str(ready.get("message") or "").split()),
            ]
        rows.append(row)
    return table(headers, rows)


def overlap_of(status: Mapping[str, Any]) -> str:
    """Which other integrations select some of the same Bills for the same Stripe account and mode, and who sends
    them: "left to NS/NAME" (the older one sends them), "shared with NS/NAME" (this one sends them)."""
    records = status.get("overlaps") or ()
    older = [str(r.get("integration")) for r in records if r.get("sends")]
    younger = [str(r.get("integration")) for r in records if not r.get("sends")]
    parts = ([f"left to {','.join(older)}"] if older else []) + (
        [f"shared with {','.join(younger)}"] if younger else []
    )
    if parts:
        return "; ".join(parts)
    overlapping = find(status.get("conditions"), ConditionType.OVERLAPPING) or {}
    return "unknown" if overlapping.get("status") == "Unknown" else NONE


def runs_table(runs: Sequence[Mapping[str, Any]], *, wide: bool, now: datetime) -> str:
    headers = ["RUN", "STATUS", "AGE", "DURATION", "SENT", "UNCHANGED", "SKIPPED", "FAILED", "TAX"]
    if wide:
        headers.append("MESSAGE")
    rows = []
    for run in runs:
        row = [
            str(run.get("runId") or NONE),
            str(run.get("status") or NONE),
            age(run.get("startTime"), now),
            run_duration(run),
            str(run.get("billsSent", 0)),
            str(run.get("billsUnchanged", 0)),
            str(run.get("billsSkipped", 0)),
            str(run.get("billsFailed", 0)),
            ",".join(f"{t.get('amount')} {str(t.get('currency')).upper()}" for t in run.get("taxes") or ()) or NONE,
        ]
        if wide:
            row.append(str(run.get("message") or ""))
        rows.append(row)
    return table(headers, rows)


def tax_line(spec: Mapping[str, Any]) -> str | None:
    """The integration's tax settings in a line, when any is set (spec.automaticTax, taxBehavior, taxCode)."""
    parts = [f"{field} {spec[field]}" for field in ("automaticTax", "taxBehavior", "taxCode") if spec.get(field)]
    return f"tax: {', '.join(parts)}" if parts else None


def run_duration(run: Mapping[str, Any]) -> str:
    start, end = parse_time(run.get("startTime")), parse_time(run.get("completionTime"))
    if start is None or end is None:
        return NONE
    return duration((end - start).total_seconds())


def short_kind(kind: str) -> str:
    """`integration.validation.error` -> `validation`: m3ter's five kinds differ only in the middle."""
    return kind.removeprefix("integration.").removesuffix(".error") or NONE


def events_table(events: Sequence[Mapping[str, Any]], *, wide: bool, now: datetime) -> str:
    headers = ["ID", "KIND", "BILL", "COUNT", "LAST SEEN", "MESSAGE"]
    if wide:
        headers[3:3] = ["ACCOUNT", "RUN"]
    rows = []
    for e in events:
        message = str(e.get("message") or "")
        row = [
            str(e.get("id") or NONE),
            short_kind(str(e.get("kind") or "")),
            str(e.get("billId") or NONE),
            str(e.get("count", 1)),
            age(e.get("lastSeen"), now),
            " ".join(message.split()) if wide else shorten(message, MESSAGE_WIDTH),
        ]
        if wide:
            row[3:3] = [str(e.get("accountId") or NONE), str(e.get("runId") or NONE)]
        rows.append(row)
    return table(headers, rows)


def kube_events_table(events: Sequence[Mapping[str, Any]], *, wide: bool, now: datetime) -> str:
    headers = ["LAST SEEN", "TYPE", "REASON", "COUNT", "MESSAGE"]
    rows = []
    for e in events:
        when = e.get("lastTimestamp") or e.get("eventTime") or e.get("firstTimestamp")
        when = when or (e.get("metadata") or {}).get("creationTimestamp")
        message = str(e.get("message") or "")
        rows.append(
            [
                age(when, now),
                str(e.get("type") or NONE),
                str(e.get("reason") or NONE),
                str(e.get("count") or 1),
                " ".join(message.split()) if wide else shorten(message, MESSAGE_WIDTH + 20),
            ]
        )
    return table(headers, rows)


def known_bills(status: Mapping[str, Any]) -> set[str]:
    """Bill ids the status mentions: sent in a recent run, or named by an open event."""
    bills = {str(o["billId"]) for r in status.get("recentRuns") or () for o in r.get("stripeObjects") or ()}
    bills.update(str(e["billId"]) for e in status.get("openEvents") or () if e.get("billId"))
    return bills


def known_runs(status: Mapping[str, Any]) -> list[str]:
    runs = [str(r["runId"]) for r in status.get("recentRuns") or () if r.get("runId")]
    runs += [str(e["runId"]) for e in status.get("openEvents") or () if e.get("runId") and e["runId"] not in runs]
    return runs


def run_of(status: Mapping[str, Any], run_id: str | None) -> dict[str, Any]:
    for run in status.get("recentRuns") or ():
        if run.get("runId") == run_id:
            return dict(run)
    last = dict(status.get("lastSync") or {})
    return last if last.get("runId") == run_id else {}


def run_line(run: Mapping[str, Any]) -> str:
    took = run_duration(run)
    return (
        f"run {run.get('runId')} {run.get('status')}"
        + (f" in {took}" if took != NONE else "")
        + f": {run.get('message') or ''}"
    )


def events_of_run(status: Mapping[str, Any], run_id: str | None) -> list[dict[str, Any]]:
    return [dict(e) for e in status.get("openEvents") or () if e.get("runId") == run_id]
