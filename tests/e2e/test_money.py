"""End to end: the customer owes in Stripe what the m3ter Bill says, to the minor unit (issue 8, issue 13).

m3ter emulator -> operator process -> Stripe emulator, as in test_sync.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from m3stripe.testing.stack import LocalStack, OperatorProcess
from tests.support.stack_world import Org, customer, first_run, run_now

KEY = "sk_test_51moneyAAAA"
DAY = 86_400


@pytest.fixture(scope="module")
def operator(stack: LocalStack) -> Iterator[OperatorProcess]:
    stack.call(lambda: stack.stripe.add_api_key(KEY))
    with stack.operator() as op:
        yield op


def invoice_of(stack: LocalStack, stripe: Any, bill_id: str) -> dict[str, Any]:
    acct = str(stripe.v1.accounts.retrieve_current().id)
    state = stack.call(lambda: stack.stripe.state(acct))
    [invoice] = [i for i in state["invoices"].values() if i["metadata"].get("m3ter_bill_id") == bill_id]
    return dict(invoice)


def test_forty_usage_lines_of_fractions_of_a_cent_reach_stripe_with_the_bill_total(
    stack: LocalStack, operator: OperatorProcess, stripe: Any, org: Org
) -> None:
    acc = org.mapped_account(stripe)
    # 40 x 0.0037 = 0.148 USD, which m3ter's Bill rounds to 0.15: each line alone would round to 0.00.
    lines = [{"line_item_type": "USAGE", "subtotal": "0.0037", "description": f"API calls {i}"} for i in range(40)]
    bill_id = org.bill(acc, lines, bill_total="0.15")
    stack.kube.create_integration(org.ns, "cents", org.spec())
    status = first_run(stack, org.ns, "cents")
    assert status["lastSync"]["status"] == "COMPLETE", status
    invoice = invoice_of(stack, stripe, bill_id)
    assert invoice["total"] == 15
    lines = stripe.v1.invoices.line_items.list(invoice["id"], params={"limit": 100})
    assert len(lines.data) == 40 and {li.amount for li in lines.data} <= {0, 1}


def test_a_ugx_bill_shows_the_right_amount(stack: LocalStack, operator: OperatorProcess, stripe: Any, org: Org) -> None:
    acc = org.mapped_account(stripe, "UGX")
    bill_id = org.bill(acc, [{"line_item_type": "STANDING_CHARGE", "subtotal": "185000"}], currency="UGX")
    stack.kube.create_integration(org.ns, "ugx", org.spec())
    assert first_run(stack, org.ns, "ugx")["lastSync"]["status"] == "COMPLETE"
    invoice = invoice_of(stack, stripe, bill_id)
    # Stripe represents UGX "as a two-decimal value, where the decimal amount is always 00".
    assert (invoice["currency"], invoice["total"]) == ("ugx", 18_500_000)


def test_a_customer_with_a_20_percent_coupon_gets_an_invoice_equal_to_the_bill(
    stack: LocalStack, operator: OperatorProcess, stripe: Any, org: Org
) -> None:
    acc = org.account()
    cus = customer(stripe, acc)
    coupon = stripe.v1.coupons.create(params={"percent_off": 20, "duration": "forever"})
    acct = str(stripe.v1.accounts.retrieve_current().id)
    stack.call(lambda: stack.stripe.apply_customer_discount(acct, cus, coupon.id))
    bill_id = org.bill(
        acc,
        [
            {"line_item_type": "STANDING_CHARGE", "subtotal": "100.00"},
            {"line_item_type": "USAGE", "subtotal": "23.456"},
        ],
        bill_total="123.46",
    )
    stack.kube.create_integration(org.ns, "coupon", org.spec())
    assert first_run(stack, org.ns, "coupon")["lastSync"]["status"] == "COMPLETE"
    invoice = invoice_of(stack, stripe, bill_id)
    assert (invoice["total"], invoice["discounts"]) == (12346, [])
    assert all(line["discountable"] is False for line in invoice["lines"]["data"])
    finalized = stripe.v1.invoices.finalize_invoice(invoice["id"])
    assert finalized.amount_due == 12346


def test_a_regenerated_bill_without_po_number_and_due_date_leaves_neither_on_the_invoice(
    stack: LocalStack, operator: OperatorProcess, stripe: Any, org: Org
) -> None:
    acc = org.mapped_account(stripe)
    due = date.today() + timedelta(days=45)
    bill_id = org.bill(
        acc, [{"line_item_type": "STANDING_CHARGE", "subtotal": "50.00"}], purchase_order_number="PO-1", due_date=due
    )
    spec = org.spec(collectionMethod="SendInvoice", sendDueDate=True, poNumberCustomField="PO number")
    stack.kube.create_integration(org.ns, "po", spec)
    assert first_run(stack, org.ns, "po")["lastSync"]["status"] == "COMPLETE"
    before = invoice_of(stack, stripe, bill_id)
    assert before["custom_fields"] == [{"name": "PO number", "value": "PO-1"}]
    assert before["due_date"] == int(datetime.combine(due, datetime.max.time(), UTC).timestamp())

    def drop_po_and_due_date() -> int:
        # m3ter's regeneration can leave a Bill without either; the emulator's regenerate_bill only sets them.
        record = stack.m3ter.get_bill(org.id, bill_id)
        record.purchase_order_number = None
        record.due_date = None
        return int(stack.m3ter.regenerate_bill(org.id, bill_id))

    stack.call(drop_po_and_due_date)
    status = run_now(stack, org.ns, "po")
    assert status["lastSync"]["billsSent"] == 1, status["lastSync"]
    after = invoice_of(stack, stripe, bill_id)
    assert after["id"] == before["id"]
    assert after["custom_fields"] is None
    assert after["due_date"] == after["created"] + 30 * DAY  # Stripe's days_until_due, not the old Bill date
    assert after["metadata"]["m3ter_bill_version"] == "2"


def test_m3ter_rounding_mode_decides_the_total_of_the_lines_kept(
    stack: LocalStack, operator: OperatorProcess, stripe: Any, org: Org
) -> None:
    stack.call(lambda: stack.m3ter.set_currency(org.id, "USD", max_decimal_places=2, rounding_mode="DOWN"))
    acc = org.mapped_account(stripe)
    bill_id = org.bill(
        acc,
        [
            {"line_item_type": "USAGE", "subtotal": "10.005"},
            {"line_item_type": "MINIMUM_SPEND", "subtotal": "5.00"},
        ],
        bill_total="15.01",
    )
    stack.kube.create_integration(org.ns, "down", org.spec(excludedLineItemTypes=["MINIMUM_SPEND"]))
    assert first_run(stack, org.ns, "down")["lastSync"]["status"] == "COMPLETE"
    assert invoice_of(stack, stripe, bill_id)["total"] == 1000  # 10.005 rounded DOWN, as m3ter would


def test_a_bill_over_stripes_largest_amount_is_a_validation_error_naming_the_limit(
    stack: LocalStack, operator: OperatorProcess, stripe: Any, org: Org
) -> None:
    acc = org.mapped_account(stripe)
    bill_id = org.bill(acc, [{"line_item_type": "STANDING_CHARGE", "subtotal": "1000000.00"}])
    stack.kube.create_integration(org.ns, "huge", org.spec())
    status = first_run(stack, org.ns, "huge")
    [event] = [e for e in status["openEvents"] if e["billId"] == bill_id]
    assert event["kind"] == "integration.validation.error"
    assert "999999.99 USD" in event["message"] and "99999999" in event["message"]
    acct = str(stripe.v1.accounts.retrieve_current().id)
    state = stack.call(lambda: stack.stripe.state(acct))
    assert not [i for i in state["invoices"].values() if i["metadata"].get("m3ter_bill_id") == bill_id]
