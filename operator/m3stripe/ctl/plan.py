"""`m3stripe plan NAME`: the last dry run (spec.mode: Plan) of an integration, as a table (pure rendering)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from m3stripe.ctl.render import NONE, age, shorten, table

REASON_WIDTH = 60


def plan_of(obj: Mapping[str, Any]) -> dict[str, Any]:
    return dict((obj.get("status") or {}).get("plan") or {})


def plan_header(obj: Mapping[str, Any], plan: Mapping[str, Any], *, now: datetime) -> list[str]:
    """What the plan is of (run, generation, age), its counts and totals, and whether it is still current."""
    meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    name = f"{meta.get('namespace')}/{meta.get('name')}"
    lines = [
        f"{name}: plan {plan.get('runId')} of generation {plan.get('observedGeneration', NONE)}, "
        f"{age(plan.get('time'), now)} ago; nothing was written to Stripe",
        f"  {plan.get('bills', 0)} Bill(s): {plan.get('createInvoice', 0)} create invoice, "
        f"{plan.get('updateDraft', 0)} update draft, {plan.get('addItems', 0)} add items, "
        f"{plan.get('nothing', 0)} nothing, {plan.get('blocked', 0)} blocked",
    ]
    totals = [
        f"{t.get('amount')} {str(t.get('currency')).upper()} ({t.get('bills')} Bill(s))" for t in plan_totals(plan)
    ]
    lines.append(f"  a Send pass would write: {', '.join(totals) or 'nothing'}")
    if plan.get("tax"):
        lines.append(f"  tax: {plan.get('tax')}")
    if (spec.get("mode") or "Send") != "Plan":
        lines.append("  spec.mode is Send now: this is the last plan, and Bills are being sent")
    elif meta.get("generation") is not None and meta.get("generation") != plan.get("observedGeneration"):
        lines.append(f"  the spec changed since (generation {meta.get('generation')}): a new plan is on its way")
    return lines


def plan_totals(plan: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [t for t in plan.get("totals") or () if isinstance(t, Mapping)]


def plan_table(items: Sequence[Mapping[str, Any]], *, wide: bool) -> str:
    headers = ["BILL", "VERSION", "ACTION", "LINES", "TOTAL", "ACCOUNT", "REASON"]
    if wide:
        headers[6:6] = ["CUSTOMER", "STRIPE ID"]
    rows = []
    for item in items:
        total = f"{item['total']} {str(item.get('currency') or '').upper()}" if item.get("total") else NONE
        reason = str(item.get("reason") or "")
        row = [
            str(item.get("billId") or NONE),
            str(item.get("billVersion", NONE)),
            str(item.get("action") or NONE),
            str(item.get("lines", 0)),
            total.strip(),
            str(item.get("accountId") or NONE),
            " ".join(reason.split()) if wide else shorten(reason, REASON_WIDTH),
        ]
        if wide:
            row[6:6] = [str(item.get("customer") or NONE), str(item.get("stripeId") or NONE)]
        rows.append(row)
    return table(headers, rows)


def truncation_note(plan: Mapping[str, Any]) -> str | None:
    """How the listed Bills fall short of the plan, when they do (status.plan is bounded)."""
    more = int(plan.get("truncated") or 0)
    if not more:
        return None
    listed = len(plan.get("items") or ())
    return (
        f"... and {more} more Bill(s) not listed: status.plan keeps the first {listed} (writes first, then blocked, "
        "then the rest, each by Bill id); the counts and totals above cover every Bill"
    )
