"""Dry runs (spec.mode: Plan): decide, per Bill, what a Send pass would write to Stripe, and write nothing.

Deciding is separate from doing: `decide_invoice` and `decide_items` are pure functions of a Bill's
plan and of what Stripe holds for it, and they follow the writer's rules (stripe_writer.py) for when a
Bill needs a new invoice, a changed draft, new or replaced items, nothing, or cannot be sent. The
`Planner` reads what Stripe holds through a `StripeReader`, which has no write method at all.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from m3stripe.adapters.stripe_gateway import metadata_of
from m3stripe.adapters.stripe_reader import StripeReader
from m3stripe.api.conditions import rfc3339
from m3stripe.api.status import MAX_PLAN_BILLS
from m3stripe.domain.billing import Bill, MalformedBill
from m3stripe.domain.mapping import META_VERSION, BillPlan
from m3stripe.domain.money import format_money, from_minor_units
from m3stripe.domain.runs import BillResult, Outcome, RunReport
from m3stripe.domain.stripe_writer import _diff, _ours, _wanted


class BillAction(enum.StrEnum):
    CREATE_INVOICE = "CreateInvoice"
    UPDATE_DRAFT = "UpdateDraft"
    ADD_ITEMS = "AddItems"
    NOTHING = "Nothing"
    BLOCKED = "Blocked"

    @property
    def writes(self) -> bool:
        return self in (BillAction.CREATE_INVOICE, BillAction.UPDATE_DRAFT, BillAction.ADD_ITEMS)


# Order of the Bills listed in status.plan: what would be written first, then what needs a person.
_ORDER = {
    BillAction.CREATE_INVOICE: 0,
    BillAction.UPDATE_DRAFT: 0,
    BillAction.ADD_ITEMS: 0,
    BillAction.BLOCKED: 1,
    BillAction.NOTHING: 2,
}


@dataclass(frozen=True)
class Decision:
    """What to do with one Bill in Stripe, from what Stripe holds; executing it is another step."""

    action: BillAction
    reason: str
    stripe_id: str | None = None
    stale: tuple[Any, ...] = ()  # Stripe objects to delete (lines or items of another version, duplicates)
    missing: tuple[Any, ...] = ()  # PlannedLines to add


def finalized_message(plan: BillPlan, invoice_id: str, status: str, *, items: bool = False) -> str:
    """The writer's AlreadyFinalized text: a changed Bill whose invoice Stripe no longer lets us change."""
    if items:
        return (
            f"Bill {plan.bill_id} changed (version {plan.version}) but its items are on Stripe invoice "
            f"{invoice_id}, which is already {status}; nothing was changed in Stripe. Adjust the "
            "invoice in Stripe by hand, then mark this event resolved"
        )
    return (
        f"Bill {plan.bill_id} changed (version {plan.version}) but its Stripe invoice {invoice_id} is already "
        f"{status}; nothing was changed in Stripe. Issue a credit note or a new invoice in Stripe "
        "by hand, then mark this event resolved"
    )


def decide_invoice(plan: BillPlan, invoice: Any | None, lines: list[Any]) -> Decision:
    """Invoice mode: `invoice` is the Bill's newest invoice in Stripe (None: none), `lines` its lines of this Bill."""
    n = len(plan.lines)
    if invoice is None:
        return Decision(BillAction.CREATE_INVOICE, f"new draft invoice with {n} line(s)", missing=tuple(plan.lines))
    version = str(metadata_of(invoice).get(META_VERSION, ""))
    stale, missing, _ = _diff(_wanted(plan), lines)
    same = version == str(plan.version) and not stale and not missing
    if invoice.status != "draft":
        if same:
            return Decision(
                BillAction.NOTHING, f"invoice {invoice.id} ({invoice.status}) holds this version", invoice.id
            )
        return Decision(BillAction.BLOCKED, finalized_message(plan, invoice.id, invoice.status), invoice.id)
    if same:
        return Decision(BillAction.NOTHING, f"draft {invoice.id} already holds this version", invoice.id)
    changes = [f"version {version or '?'} -> {plan.version}"] if version != str(plan.version) else []
    if stale:
        changes.append(f"remove {len(stale)} line(s)")
    if missing:
        changes.append(f"add {len(missing)} line(s)")
    return Decision(
        BillAction.UPDATE_DRAFT,
        f"draft {invoice.id}: {', '.join(changes)}",
        invoice.id,
        tuple(stale),
        tuple(missing),
    )


def decide_items(plan: BillPlan, items: list[Any], invoiced: Mapping[str, str]) -> Decision:
    """Items mode: `items` are the customer's invoice items of this Bill; `invoiced` maps the invoice
    of each stale item that is already on one to that invoice's status."""
    stale, missing, matched = _diff(_wanted(plan), items)
    held = matched[0].id if matched else None
    if not stale and not missing:
        return Decision(BillAction.NOTHING, f"{len(matched)} pending item(s) already hold this version", held)
    for item in stale:
        invoice = getattr(item, "invoice", None)
        invoice_id = invoice if isinstance(invoice, str) else getattr(invoice, "id", None)
        if invoice_id and invoiced.get(invoice_id, "draft") != "draft":
            return Decision(
                BillAction.BLOCKED, finalized_message(plan, invoice_id, invoiced[invoice_id], items=True), invoice_id
            )
    reason = f"add {len(missing)} pending item(s)"
    if stale:
        reason += f", delete {len(stale)} of another version"
    return Decision(BillAction.ADD_ITEMS, reason, held, tuple(stale), tuple(missing))


def money(minor: int, currency: str) -> str:
    """A total as a decimal string in the currency's units ("12.30"), never through float."""
    return format_money(from_minor_units(minor, currency), currency).rsplit(" ", 1)[0]


@dataclass
class PlannedBill:
    bill_id: str
    version: int
    account_id: str | None
    action: BillAction
    reason: str
    customer: str | None = None
    stripe_id: str | None = None
    lines: int = 0
    currency: str | None = None
    total: int | None = None  # minor units

    def record(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "billId": self.bill_id,
            "billVersion": self.version,
            "accountId": self.account_id,
            "action": str(self.action),
            "reason": self.reason[:1024],
            "customer": self.customer,
            "stripeId": self.stripe_id,
            "lines": self.lines,
            "currency": self.currency,
            "total": money(self.total, self.currency) if self.total is not None and self.currency else None,
        }
        return {k: v for k, v in out.items() if v is not None}


@dataclass
class Planner:
    """Collects a dry run's decisions; reads Stripe only through a StripeReader."""

    reader: StripeReader
    integration_id: str
    bills: dict[str, PlannedBill] = field(default_factory=dict)
    _mapped: dict[str, tuple[BillPlan, str | None]] = field(default_factory=dict)
    _decisions: dict[str, Decision] = field(default_factory=dict)

    def mapped(self, plan: BillPlan) -> None:
        self._mapped[plan.bill_id] = (plan, None)

    async def decide(self, plan: BillPlan, customer: str, *, invoice_mode: bool) -> Decision:
        self._mapped[plan.bill_id] = (plan, customer)
        if invoice_mode:
            invoice = await self._find_invoice(plan, customer)
            lines = [] if invoice is None else await self._invoice_lines(plan, invoice.id)
            decision = decide_invoice(plan, invoice, lines)
        else:
            items = [
                ii
                async for ii in self.reader.iterate(
                    "invoiceitems.list",
                    lambda p: self.reader.v1.invoice_items.list_async(params=p),
                    {"customer": customer},
                )
                if _ours(ii, self.integration_id, plan.bill_id)
            ]
            invoiced: dict[str, str] = {}
            stale, _, _ = _diff(_wanted(plan), items)
            for ii in stale:
                invoice_id = ii.invoice if isinstance(ii.invoice, str) else getattr(ii.invoice, "id", None)
                if invoice_id and invoice_id not in invoiced:
                    found: Any = await self.reader.call(
                        "invoices.retrieve", partial(self.reader.v1.invoices.retrieve_async, invoice_id)
                    )
                    invoiced[invoice_id] = str(found.status)
            decision = decide_items(plan, items, invoiced)
        self._decisions[plan.bill_id] = decision
        return decision

    def result(self, bill: Bill, decision: Decision) -> BillResult:
        """The pass's BillResult for a decision (the report's counts then mean 'would send')."""
        outcome = Outcome.SENT if decision.action.writes else Outcome.UNCHANGED
        if decision.action is BillAction.BLOCKED:
            outcome = Outcome.FAILED
        return BillResult(bill.id, bill.version, outcome, stripe_id=decision.stripe_id, detail=decision.reason)

    def record(self, bill: Bill | MalformedBill, result: BillResult) -> None:
        decision = self._decisions.get(bill.id)
        plan, customer = self._mapped.get(bill.id, (None, None))
        if decision is not None:
            action, reason, stripe_id = decision.action, decision.reason, decision.stripe_id
        elif result.outcome is Outcome.FAILED:
            action, reason, stripe_id = BillAction.BLOCKED, result.detail, None
        else:
            action, reason, stripe_id = BillAction.NOTHING, result.detail or str(result.outcome), None
        self.bills[bill.id] = PlannedBill(
            bill_id=bill.id,
            version=bill.version,
            account_id=bill.account_id,
            action=action,
            reason=reason,
            customer=customer,
            stripe_id=stripe_id,
            lines=len(plan.lines) if plan is not None else 0,
            currency=plan.currency if plan is not None else None,
            total=plan.total if plan is not None else None,
        )

    def summary(self, report: RunReport, *, generation: int | None, limit: int = MAX_PLAN_BILLS) -> dict[str, Any]:
        """status.plan: counts and totals over every Bill, and the first `limit` Bills (writes first)."""
        counts = Counter(b.action for b in self.bills.values())
        amounts: dict[str, int] = {}
        per_currency: Counter[str] = Counter()
        for b in self.bills.values():
            if b.action.writes and b.currency is not None and b.total is not None:
                amounts[b.currency] = amounts.get(b.currency, 0) + b.total
                per_currency[b.currency] += 1
        ordered = sorted(self.bills.values(), key=lambda b: (_ORDER[b.action], b.bill_id))
        totals = [{"currency": c, "bills": per_currency[c], "amount": money(amounts[c], c)} for c in sorted(amounts)]
        writing = ", ".join(f"{t['amount']} {str(t['currency']).upper()}" for t in totals) or "nothing"
        message = (
            f"plan {report.run_id}: {len(self.bills)} Bill(s): {counts[BillAction.CREATE_INVOICE]} create invoice, "
            f"{counts[BillAction.UPDATE_DRAFT]} update draft, {counts[BillAction.ADD_ITEMS]} add items, "
            f"{counts[BillAction.NOTHING]} nothing, {counts[BillAction.BLOCKED]} blocked; a Send pass would write "
            f"{writing}. Nothing was written to Stripe"
        )
        if len(ordered) > limit:
            message += f"; status lists the first {limit} Bills (writes first), `m3stripe plan` says how many more"
        if report.stopped_early:
            message += f"; stopped early: {report.stopped_early}"
        out: dict[str, Any] = {
            "runId": report.run_id,
            "observedGeneration": generation,
            "time": rfc3339(report.completed or report.started),
            "bills": len(self.bills),
            "createInvoice": counts[BillAction.CREATE_INVOICE],
            "updateDraft": counts[BillAction.UPDATE_DRAFT],
            "addItems": counts[BillAction.ADD_ITEMS],
            "nothing": counts[BillAction.NOTHING],
            "blocked": counts[BillAction.BLOCKED],
            "totals": totals[:50],
            "items": [b.record() for b in ordered[:limit]],
            "truncated": max(0, len(ordered) - limit),
            "message": message[:4096],
        }
        return {k: v for k, v in out.items() if v is not None}

    # What Stripe holds, read as the writer reads it (list endpoints, never the lagging Search API).
    async def _find_invoice(self, plan: BillPlan, customer: str) -> Any | None:
        found = None
        async for invoice in self.reader.iterate(
            "invoices.list", lambda p: self.reader.v1.invoices.list_async(params=p), {"customer": customer}
        ):
            # The writer's rule: several would mean an earlier bug or a hand-made copy; the newest is the live one.
            if _ours(invoice, self.integration_id, plan.bill_id) and (found is None or invoice.created > found.created):
                found = invoice
                if invoice.status == "draft":
                    break
        return found

    async def _invoice_lines(self, plan: BillPlan, invoice_id: str) -> list[Any]:
        return [
            li
            async for li in self.reader.iterate(
                "invoices.lines.list",
                lambda p: self.reader.v1.invoices.line_items.list_async(invoice_id, params=p),
                {},
            )
            if _ours(li, self.integration_id, plan.bill_id)
        ]
