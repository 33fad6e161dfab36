"""Dry runs (spec.mode: Plan): decide, per Bill, what a Send pass would write to Stripe, and write nothing.

Deciding is separate from doing in the writer itself (stripe_writer.py): `StripeWriter.decide` reads what
Stripe holds and returns a `Decision` (CreateInvoice, UpdateDraft, AddItems, Nothing, Blocked), which a Send
pass then executes. A plan makes the same decisions with a writer built on a `ports.LedgerReader` (no write
method at all, and no ledger to execute with), records them and executes none.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from m3stripe.api.conditions import rfc3339
from m3stripe.api.status import MAX_PLAN_BILLS, PlannedBillRecord, PlanSummary, PlanTotal
from m3stripe.domain.billing import Bill, MalformedBill
from m3stripe.domain.decisions import BillAction, Decision
from m3stripe.domain.mapping import MappedBill, lines_total
from m3stripe.domain.money import format_money, from_minor_units
from m3stripe.domain.ports import LedgerReader
from m3stripe.domain.runs import BillResult, Outcome, RunReport
from m3stripe.domain.stripe_writer import Kind, StripeWriter

# Order of the Bills listed in status.plan: what would be written first, then what needs a person.
_ORDER = {
    BillAction.CREATE_INVOICE: 0,
    BillAction.UPDATE_DRAFT: 0,
    BillAction.ADD_ITEMS: 0,
    BillAction.BLOCKED: 1,
    BillAction.NOTHING: 2,
}


def money(minor: int, currency: str) -> str:
    """A total as a decimal string in the currency's units ("12.30"), never through float."""
    return format_money(from_minor_units(minor, currency), currency).rsplit(" ", 1)[0]


@dataclass
class PlannedBill:
    """One Bill in a Plan-mode pass: what a Send pass would do to Stripe for it, and why."""

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

    def record(self) -> PlannedBillRecord:
        """status.plan.items[]."""
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
        return PlannedBillRecord.model_validate({k: v for k, v in out.items() if v is not None})


@dataclass
class Planner:
    """Collects a dry run's decisions; reads Stripe only through a LedgerReader (it has no write method)."""

    reader: LedgerReader
    tax_mode: str = ""  # the spec's tax settings in a sentence (domain.tax_checks.tax_mode)
    bills: dict[str, PlannedBill] = field(default_factory=dict)
    _mapped: dict[str, tuple[MappedBill, str | None]] = field(default_factory=dict)
    _decisions: dict[str, Decision] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # A writer over the read-only port: it can decide, and has no ledger to execute with.
        self._writer = StripeWriter(self.reader)

    def mapped(self, mapped: MappedBill) -> None:
        self._mapped[mapped.bill_id] = (mapped, None)

    async def decide(
        self, mapped: MappedBill, customer: str, *, invoice_mode: bool, not_before: datetime | None = None
    ) -> Decision:
        """The writer's own decision (StripeWriter.decide), made through the read-only port; never executed."""
        self._mapped[mapped.bill_id] = (mapped, customer)
        kind: Kind = "invoice" if invoice_mode else "item"
        decision = await self._writer.decide(kind, mapped, customer, not_before=not_before)
        self._decisions[mapped.bill_id] = decision
        return decision

    def result(self, bill: Bill, decision: Decision) -> BillResult:
        """The pass's BillResult for a decision (the report's counts then mean 'would send')."""
        outcome = Outcome.SENT if decision.action.writes else Outcome.UNCHANGED
        if decision.action is BillAction.BLOCKED:
            outcome = Outcome.FAILED
        return BillResult(bill.id, bill.version, outcome, stripe_id=decision.stripe_id, detail=decision.reason)

    def record(self, bill: Bill | MalformedBill, result: BillResult) -> None:
        decision = self._decisions.get(bill.id)
        mapped, customer = self._mapped.get(bill.id, (None, None))
        if decision is not None:
            action, reason, stripe_id = decision.action, decision.reason, decision.stripe_id
        elif result.outcome is Outcome.FAILED:
            action, reason, stripe_id = BillAction.BLOCKED, result.detail, None
        else:
            action, reason, stripe_id = BillAction.NOTHING, result.detail or str(result.outcome), None
        planned = PlannedBill(bill.id, bill.version, bill.account_id, action, reason, customer, stripe_id)
        if mapped is not None:
            planned.lines, planned.currency, planned.total = len(mapped.lines), mapped.currency, mapped.total
        if decision is not None and decision.action is BillAction.ADD_ITEMS:
            # Items already pending stay as they are: a Send pass would add only the missing ones.
            planned.total = lines_total(decision.missing_lines)
        self.bills[bill.id] = planned

    def summary(self, report: RunReport, *, generation: int | None, limit: int = MAX_PLAN_BILLS) -> PlanSummary:
        """status.plan: counts and totals over every Bill, and the first `limit` Bills (writes first)."""
        counts = Counter(b.action for b in self.bills.values())
        amounts: dict[str, int] = {}
        per_currency: Counter[str] = Counter()
        for b in self.bills.values():
            if b.action.writes and b.currency is not None and b.total is not None:
                amounts[b.currency] = amounts.get(b.currency, 0) + b.total
                per_currency[b.currency] += 1
        ordered = sorted(self.bills.values(), key=lambda b: (_ORDER[b.action], b.bill_id))
        totals = [PlanTotal(currency=c, bills=per_currency[c], amount=money(amounts[c], c)) for c in sorted(amounts)]
        writing = ", ".join(f"{t.amount} {t.currency.upper()}" for t in totals) or "nothing"
        message = (
            f"plan {report.run_id}: {len(self.bills)} Bill(s): {counts[BillAction.CREATE_INVOICE]} create invoice, "
            f"{counts[BillAction.UPDATE_DRAFT]} update draft, {counts[BillAction.ADD_ITEMS]} add items, "
            f"{counts[BillAction.NOTHING]} nothing, {counts[BillAction.BLOCKED]} blocked; a Send pass would write "
            f"{writing}. Nothing was written to Stripe"
        )
        if len(ordered) > limit:
            message += f"; status lists the first {limit} Bills (writes first), `m3stripe plan` says how many more"
        if self.tax_mode:
            message += f"; {self.tax_mode}"
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
            "tax": self.tax_mode or None,
            "message": message[:4096],
        }
        return PlanSummary.model_validate({k: v for k, v in out.items() if v is not None})
