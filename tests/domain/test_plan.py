"""Plan mode's decisions: what a Send pass would do per Bill, from what Stripe holds; and a port that cannot write."""

from __future__ import annotations

import asyncio
import inspect
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
import stripe

from m3stripe.adapters.stripe_gateway import StripeGateway
from m3stripe.adapters.stripe_ledger import StripeLedger, StripeLedgerReader
from m3stripe.api.status import wire
from m3stripe.domain.billing import Bill
from m3stripe.domain.decisions import BillAction, decide_invoice, decide_items
from m3stripe.domain.mapping import META_VERSION, MappedBill, map_bill
from m3stripe.domain.plan import Planner
from m3stripe.domain.ports import HeldInvoice, HeldLine, Ledger
from m3stripe.domain.runs import BillResult, ErrorBudget, Outcome, RunReport
from m3stripe.domain.stripe_writer import CustomerIndex, StripeWriter
from m3stripe.domain.sync_engine import SyncEngine
from m3stripe.kube.planning import _plan_changed
from tests.domain.builders import make_bill, make_line, make_spec

INTEGRATION = "int-uid-1"


def bill(*subtotals: str, version: int = 2, bill_id: str = "bill-1", currency: str = "USD") -> Bill:
    lines = [make_line(f"l{i}", s, currency=currency, description=f"line {i}") for i, s in enumerate(subtotals)]
    return make_bill(
        lines,
        bill_id=bill_id,
        version=version,
        account_code=None,
        currency=currency,
        last_modified=datetime(2026, 11, 1, tzinfo=UTC),
    )


def plan_of(b: Bill) -> MappedBill:
    return map_bill(b, make_spec(), INTEGRATION)


def held_invoice(plan: MappedBill, status: str = "draft", version: int | None = None) -> HeldInvoice:
    meta = {**plan.metadata, META_VERSION: str(plan.version if version is None else version)}
    return HeldInvoice("in_1", 1, status, meta, [])


def held_lines(plan: MappedBill, prefix: str = "il") -> list[HeldLine]:
    return [HeldLine(f"{prefix}_{p.index}", 1, p.amount, p.description, dict(p.metadata)) for p in plan.lines]


def test_a_bill_stripe_does_not_hold_is_planned_as_a_new_draft_with_all_its_lines() -> None:
    plan = plan_of(bill("10", "5.5"))
    decision = decide_invoice(plan, None, [])
    assert decision.action is BillAction.CREATE_INVOICE and len(decision.missing) == 2
    assert decision.reason == "new draft invoice with 2 line(s)"


def test_a_draft_holding_exactly_this_version_needs_nothing() -> None:
    plan = plan_of(bill("10", "5.5"))
    decision = decide_invoice(plan, held_invoice(plan), held_lines(plan))
    assert (decision.action, decision.stripe_id) == (BillAction.NOTHING, "in_1")


def test_a_draft_of_an_older_version_is_planned_as_an_update_naming_what_changes() -> None:
    old = plan_of(bill("10", "5.5", version=1))
    new = plan_of(bill("11", version=2))
    decision = decide_invoice(new, held_invoice(new, version=1), held_lines(old))
    assert decision.action is BillAction.UPDATE_DRAFT and decision.stripe_id == "in_1"
    assert decision.reason == "draft in_1: version 1 -> 2, remove 2 line(s), add 1 line(s)"
    assert [li.id for li in decision.stale] == ["il_0", "il_1"] and len(decision.missing) == 1


def test_a_finalized_invoice_of_an_older_version_is_blocked_with_what_to_do() -> None:
    old = plan_of(bill("10", version=1))
    new = plan_of(bill("11", version=2))
    decision = decide_invoice(new, held_invoice(new, "open", version=1), held_lines(old))
    assert decision.action is BillAction.BLOCKED
    assert "in_1 is already open" in decision.reason and "credit note" in decision.reason
    # The same version on a finalized invoice is simply done.
    assert decide_invoice(new, held_invoice(new, "paid"), held_lines(new)).action is BillAction.NOTHING


def test_items_mode_adds_what_is_missing_and_is_blocked_when_a_stale_item_is_on_a_finalized_invoice() -> None:
    old = plan_of(bill("10", version=1))
    new = plan_of(bill("11", "2", version=2))
    assert decide_items(new, [], {}).action is BillAction.ADD_ITEMS
    assert decide_items(new, held_lines(new, "ii"), {}).action is BillAction.NOTHING
    stale = [replace(item, invoice="in_9") for item in held_lines(old, "ii")]
    replacing = decide_items(new, stale, {"in_9": "draft"})
    assert (
        replacing.action is BillAction.ADD_ITEMS
        and replacing.reason == "add 2 pending item(s), delete 1 of another version"
    )
    blocked = decide_items(new, stale, {"in_9": "open"})
    assert blocked.action is BillAction.BLOCKED and "in_9, which is already open" in blocked.reason


class _NoReads:
    """A planner's reader is only used by decide(); summary and record never touch Stripe."""


def test_status_plan_lists_writes_first_counts_every_bill_and_says_how_many_are_left_out() -> None:
    planner = Planner(_NoReads())  # type: ignore[arg-type]
    report = RunReport(run_id="run-1", started=datetime(2026, 12, 1, tzinfo=UTC))
    for i, (action, subtotal) in enumerate([(BillAction.NOTHING, "1"), (BillAction.CREATE_INVOICE, "0.10")] * 3):
        b = bill(subtotal, bill_id=f"b{i}", currency="JPY" if i == 5 else "USD")
        plan = plan_of(b)
        planner.mapped(plan)
        planner._decisions[b.id] = (
            decide_invoice(plan, None, [])
            if action.writes
            else decide_invoice(plan, held_invoice(plan), held_lines(plan))
        )
        planner.record(b, BillResult(b.id, b.version, Outcome.SENT))
    planner.record(bill("1", bill_id="b9"), BillResult("b9", 2, Outcome.FAILED, detail="no Stripe Customer"))
    status = wire(planner.summary(report, generation=4, limit=3))
    assert (status["bills"], status["createInvoice"], status["nothing"], status["blocked"]) == (7, 3, 3, 1)
    assert [i["action"] for i in status["items"]] == ["CreateInvoice"] * 3 and status["truncated"] == 4
    # Minor units back to the currency's units exactly: JPY has no decimals, 0.10 JPY rounds to 0.
    assert status["totals"] == [
        {"currency": "jpy", "bills": 1, "amount": "0"},
        {"currency": "usd", "bills": 2, "amount": "0.20"},
    ]
    assert status["observedGeneration"] == 4 and "Nothing was written to Stripe" in status["message"]


WRITES = {"create", "update", "delete", "del", "add_lines", "remove_lines", "finalize_invoice", "pay", "void_invoice"}


def test_the_read_only_stripe_port_offers_no_method_that_writes() -> None:
    client = stripe.StripeClient("sk_test_51planAAAA", base_addresses={"api": "http://127.0.0.1:9"})
    reader = StripeLedgerReader(StripeGateway(client))
    offered = {n for n, v in inspect.getmembers(reader) if callable(v) and not n.startswith("_")}
    assert offered == {"customers", "invoices", "items", "invoice_lines", "invoice", "customer_tax", "tax_settings"}
    assert not any(write in name for name in offered for write in WRITES)
    public = {n for n, _ in inspect.getmembers(reader) if not n.startswith("_")}
    assert public == offered | {"requests"}
    assert not isinstance(reader, Ledger) and isinstance(StripeLedger(StripeGateway(client)), Ledger)


def test_a_writer_on_the_read_only_port_decides_but_has_nothing_to_execute_with() -> None:
    client = stripe.StripeClient("sk_test_51planAAAA", base_addresses={"api": "http://127.0.0.1:9"})
    writer = StripeWriter(StripeLedgerReader(StripeGateway(client)))
    plan = plan_of(bill("10"))
    index = CustomerIndex("invoice", None)
    with pytest.raises(RuntimeError, match="read-only Stripe port"):
        asyncio.run(writer._execute_invoice(plan, "cus_1", index, decide_invoice(plan, None, [])))
    with pytest.raises(RuntimeError, match="read-only Stripe port"):
        asyncio.run(writer._execute_items(plan, "cus_1", index, decide_items(plan, [], {})))


def test_an_engine_takes_a_gateway_to_send_or_a_planner_to_plan_never_both() -> None:
    client = stripe.StripeClient("sk_test_51planAAAA", base_addresses={"api": "http://127.0.0.1:9"})
    gateway = StripeGateway(client)
    planner = Planner(StripeLedgerReader(gateway))
    common: dict[str, Any] = {
        "spec": make_spec(),
        "account_filter": None,
        "integration_id": INTEGRATION,
        "source": None,
        "budget": ErrorBudget(10),
    }
    with pytest.raises(ValueError, match="not both"):
        SyncEngine(ledger=StripeLedger(gateway), planner=planner, **common)
    with pytest.raises(ValueError, match="not both"):
        SyncEngine(ledger=None, **common)
    assert SyncEngine(ledger=None, planner=planner, **common).planner is planner


def test_in_items_mode_a_plan_counts_only_the_items_a_send_pass_would_add() -> None:
    planner = Planner(_NoReads())  # type: ignore[arg-type]
    b = bill("10", "2.50")
    plan = plan_of(b)
    planner.mapped(plan)
    # The 10.00 item is already pending: only the 2.50 one is missing.
    planner._decisions[b.id] = decide_items(plan, held_lines(plan, "ii")[:1], {})
    planner.record(b, BillResult(b.id, b.version, Outcome.SENT))
    summary = planner.summary(RunReport(run_id="run-1", started=datetime(2026, 12, 1, tzinfo=UTC)), generation=1)
    status = wire(summary)
    assert status["addItems"] == 1
    assert status["totals"] == [{"currency": "usd", "bills": 1, "amount": "2.50"}]
    assert status["items"][0]["total"] == "2.50"


def test_a_planned_event_is_sent_only_when_the_plans_outcome_changes() -> None:
    first = {"runId": "run-1", "time": "t1", "observedGeneration": 1, "bills": 2, "createInvoice": 1, "totals": []}
    assert _plan_changed(None, first)
    assert not _plan_changed(first, {**first, "runId": "run-2", "time": "t2", "message": "plan run-2: ..."})
    assert _plan_changed(first, {**first, "createInvoice": 2})
    assert _plan_changed(first, {**first, "observedGeneration": 2})
    assert _plan_changed(first, {**first, "totals": [{"currency": "usd", "bills": 1, "amount": "1.00"}]})
