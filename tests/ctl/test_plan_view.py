"""`m3stripe plan NAME`'s rendering: header, table and how a bounded plan says it is truncated (no cluster)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from m3stripe.ctl.plan import plan_header, plan_table, truncation_note

NOW = datetime(2026, 12, 1, 10, 0, 40, tzinfo=UTC)
PLAN: dict[str, Any] = {
    "runId": "run-1",
    "observedGeneration": 3,
    "time": "2026-12-01T10:00:00Z",
    "bills": 120,
    "createInvoice": 100,
    "blocked": 20,
    "totals": [{"currency": "usd", "bills": 100, "amount": "1234.50"}],
    "items": [
        {"billId": "b-1", "billVersion": 1, "action": "CreateInvoice", "lines": 2, "currency": "usd", "total": "15.50"},
        {"billId": "b-2", "billVersion": 4, "action": "Blocked", "reason": "no Stripe Customer " * 10},
    ],
    "truncated": 118,
}


def obj(mode: str = "Plan", generation: int = 3) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "billing", "name": "uk", "generation": generation},
        "spec": {"mode": mode},
        "status": {"plan": PLAN},
    }


def test_the_header_names_the_plan_its_counts_and_what_a_send_pass_would_write() -> None:
    lines = plan_header(obj(), PLAN, now=NOW)
    assert lines[0] == "billing/uk: plan run-1 of generation 3, 40s ago; nothing was written to Stripe"
    assert "100 create invoice" in lines[1] and "20 blocked" in lines[1]
    assert lines[2] == "  a Send pass would write: 1234.50 USD (100 Bill(s))"
    assert len(lines) == 3


def test_the_header_says_when_the_plan_is_no_longer_current() -> None:
    assert "a new plan is on its way" in plan_header(obj(generation=4), PLAN, now=NOW)[-1]
    assert "spec.mode is Send now" in plan_header(obj(mode="Send"), PLAN, now=NOW)[-1]


def test_each_bill_is_a_row_with_its_action_lines_and_total_and_long_reasons_are_shortened() -> None:
    header, first, second = plan_table(PLAN["items"], wide=False).splitlines()
    assert header.split() == ["BILL", "VERSION", "ACTION", "LINES", "TOTAL", "ACCOUNT", "REASON"]
    assert first.split()[:6] == ["b-1", "1", "CreateInvoice", "2", "15.50", "USD"]
    assert second.split()[:4] == ["b-2", "4", "Blocked", "0"] and second.endswith("…")
    assert "CUSTOMER" in plan_table(PLAN["items"], wide=True).splitlines()[0]


def test_a_truncated_plan_says_how_many_bills_are_not_listed_and_that_the_counts_cover_all() -> None:
    note = truncation_note(PLAN)
    assert note is not None and "118 more Bill(s) not listed" in note and "keeps the first 2" in note
    assert "cover every Bill" in note
    assert truncation_note({**PLAN, "truncated": 0}) is None
