"""End to end: Bills from the m3ter emulator reach the Stripe emulator through the operator process."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import pytest

from m3stripe.testing.stack import LocalStack, OperatorProcess, wait_for
from tests.support.stack_world import Org, customer, first_run, run_now

KEY = "sk_test_51syncAAAA"


@pytest.fixture(scope="module")
def operator(stack: LocalStack) -> Iterator[OperatorProcess]:
    stack.call(lambda: stack.stripe.add_api_key(KEY))
    with stack.operator(M3STRIPE_SMTP_SECURITY="none", M3STRIPE_SMTP_FROM="operator@example.com") as op:
        yield op


def invoices_for(stack: LocalStack, acct: str, bill_id: str) -> list[dict[str, Any]]:
    state = stack.call(lambda: stack.stripe.state(acct))
    return [i for i in state["invoices"].values() if i["metadata"].get("m3ter_bill_id") == bill_id]


def acct_of(stripe: Any) -> str:
    return str(stripe.v1.accounts.retrieve_current().id)


def test_bills_become_draft_invoices_and_follow_regeneration(
    stack: LocalStack, operator: OperatorProcess, stripe: Any, org: Org
) -> None:
    ns = org.ns
    a1, a2, a3 = org.account(country="UK"), org.account(country="UK"), org.account(country="US")
    for a in (a1, a2):
        customer(stripe, a)
    b1 = org.bill(
        a1,
        [
            {"line_item_type": "STANDING_CHARGE", "subtotal": "20.00", "description": "Platform fee"},
            {"line_item_type": "USAGE", "quantity": 1234, "unit_price": "0.0085", "description": "API calls"},
            {"line_item_type": "CREDIT_MEMO", "subtotal": "-5.25", "description": "Goodwill credit"},
            {"line_item_type": "COMMITMENT_CONSUMED", "subtotal": "0", "description": "excluded"},
        ],
        purchase_order_number="PO-7781",
    )
    b2 = org.bill(
        a2,
        [{"line_item_type": "USAGE", "quantity": 3, "unit_price": "1500", "description": "Seats"}],
        currency="JPY",
    )
    b3 = org.bill(a3, [{"line_item_type": "USAGE", "subtotal": "9.99"}])  # restricted below
    stack.kube.create_integration(
        ns,
        "invoices",
        org.spec(
            poNumberCustomField="PO number",
            excludedLineItemTypes=["COMMITMENT_CONSUMED"],
            restrictedAccountIds=[a3],
            sortLineItemsBy="Subtotal",
        ),
    )
    status = first_run(stack, ns, "invoices")
    acct = acct_of(stripe)
    run = status["recentRuns"][0]
    assert run["status"] == "COMPLETE", status
    assert run["billsSent"] == 2 and run["billsFailed"] == 0
    sent = {o["billId"]: o["stripeId"] for o in run["stripeObjects"]}
    assert set(sent) == {b1, b2}
    [inv1] = invoices_for(stack, acct, b1)
    [inv2] = invoices_for(stack, acct, b2)
    assert inv1["id"] == sent[b1] and inv1["status"] == "draft"
    # 20.00 + 12.349 (HALF_UP per line: 10.49) - 5.25 ; the zero COMMITMENT line is excluded
    assert inv1["total"] == 2000 + 1049 - 525
    assert inv1["lines"]["data"][0]["description"] == "Goodwill credit"  # sorted by subtotal
    assert inv1["custom_fields"] == [{"name": "PO number", "value": "PO-7781"}]
    assert inv1["metadata"]["m3stripe_integration"] == status["integrationId"]
    assert inv2["currency"] == "jpy" and inv2["total"] == 4500  # zero-decimal: whole yen
    assert not invoices_for(stack, acct, b3)
    assert status["conditions"] and any(c["type"] == "Synced" and c["status"] == "True" for c in status["conditions"])

    # A regenerated Bill updates the same draft to match exactly; nothing is duplicated.
    stack.call(
        lambda: stack.m3ter.regenerate_bill(
            org.id,
            b1,
            lines=[
                {"line_item_type": "STANDING_CHARGE", "subtotal": "20.00", "description": "Platform fee"},
                {"line_item_type": "USAGE", "subtotal": "30.00", "description": "API calls"},
            ],
        )
    )
    status = run_now(stack, ns, "invoices")
    assert status["lastSync"]["billsSent"] == 1, status["lastSync"]
    [inv1b] = invoices_for(stack, acct, b1)
    assert inv1b["id"] == inv1["id"] and inv1b["total"] == 5000
    assert inv1b["metadata"]["m3ter_bill_version"] == "2"
    assert len(inv1b["lines"]["data"]) == 2

    # Nothing changed: a further pass sends nothing.
    status = run_now(stack, ns, "invoices")
    assert status["lastSync"]["billsSent"] == 0

    # Finalized in Stripe, then regenerated in m3ter: Stripe is left alone and an event says so.
    stripe.v1.invoices.finalize_invoice(inv2["id"])
    stack.call(lambda: stack.m3ter.regenerate_bill(org.id, b2, lines=[{"line_item_type": "USAGE", "subtotal": "9000"}]))
    status = run_now(stack, ns, "invoices")
    assert status["lastSync"]["status"] == "INVOICE_ALREADY_PAID"
    [inv2b] = invoices_for(stack, acct, b2)
    assert inv2b["total"] == 4500 and inv2b["status"] == "open"
    [event] = [e for e in status["openEvents"] if e["billId"] == b2]
    assert event["kind"] == "integration.perform.error" and inv2["id"] in event["message"]
    assert any(
        c["type"] == "Synced" and c["status"] == "False" and c["reason"] == "InvoiceAlreadyPaid"
        for c in status["conditions"]
    )
    wait_for(
        lambda: any(e["reason"] == "PerformError" for e in stack.kube.events(ns, "invoices")),
        what="a PerformError event",
    )

    # Resolve: the event leaves the open list.
    stack.annotate(ns, "invoices", "m3stripe.dev/resolve", event["id"])
    wait_for(
        lambda: not (stack.kube.get_integration(ns, "invoices")["status"].get("openEvents")),
        what="the event to be resolved",
    )


def test_items_mode_external_mapping_approval_and_filter(
    stack: LocalStack, operator: OperatorProcess, stripe: Any, org: Org
) -> None:
    ns = org.ns
    uk, us, unmapped = org.account(country="UK"), org.account(country="US"), org.account(country="UK")
    cus_uk = str(stripe.v1.customers.create(params={"name": "uk"}).id)
    stack.call(lambda: stack.m3ter.add_external_mapping(org.id, uk, cus_uk))
    pending = org.bill(uk, [{"line_item_type": "USAGE", "subtotal": "12.34"}])
    org.bill(us, [{"line_item_type": "USAGE", "subtotal": "1"}], status="APPROVED")
    lonely = org.bill(unmapped, [{"line_item_type": "USAGE", "subtotal": "2"}], status="APPROVED")
    stack.kube.create_integration(
        ns,
        "items",
        org.spec(
            createStripeInvoice=False,
            useExternalMappingAccountCode=True,
            onlySendBillOnApproval=True,
            accountFilter='address.country == "UK"',
        ),
    )
    status = first_run(stack, ns, "items")
    acct = acct_of(stripe)
    items = stack.call(lambda: stack.stripe.state(acct))["invoice_items"]
    assert not [i for i in items.values() if i["metadata"].get("m3ter_bill_id") == pending]
    assert status["lastSync"]["billsFailed"] == 1
    [event] = status["openEvents"]
    assert event["kind"] == "integration.missingaccountmapping.error" and event["billId"] == lonely
    assert "External Mapping" in event["message"]

    stack.call(lambda: stack.m3ter.approve_bill(org.id, pending))
    cus_lonely = str(stripe.v1.customers.create(params={"name": "lonely"}).id)
    stack.call(lambda: stack.m3ter.add_external_mapping(org.id, unmapped, cus_lonely))
    status = run_now(stack, ns, "items")
    assert status["lastSync"]["status"] == "COMPLETE", status["lastSync"]
    items = stack.call(lambda: stack.stripe.state(acct))["invoice_items"]
    sent = [i for i in items.values() if i["metadata"].get("m3ter_bill_id") in (pending, lonely)]
    assert sorted((i["customer"], i["amount"], i["invoice"]) for i in sent) == sorted(
        [(cus_uk, 1234, None), (cus_lonely, 200, None)]
    )
    assert status["consecutiveErrors"] == 0


def test_ten_successive_errors_disable_and_email_then_reenable(
    stack: LocalStack, operator: OperatorProcess, stripe: Any, org: Org
) -> None:
    ns = org.ns
    inbox_before = len(stack.smtp.messages)
    accounts = [org.account(country="DE") for _ in range(12)]
    for a in accounts:
        org.bill(a, [{"line_item_type": "USAGE", "subtotal": "1"}])
    users = ["billing-oncall@example.com", "finance@example.com"]
    stack.kube.create_integration(
        ns,
        "flaky",
        org.spec(
            accountFilter='address.country == "DE"',
            integrationDisabledNotificationUsers=users,
        ),
    )
    status = wait_for(
        lambda: (s := stack.kube.get_integration(ns, "flaky").get("status") or {}).get("disabled") and s,
        timeout=60,
        what="the integration to disable itself",
    )
    assert status["consecutiveErrors"] >= 10
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and ready["reason"] == "AutoDisabled"
    assert any(e["kind"] == "integration.disabled.error" for e in status["openEvents"])
    wait_for(lambda: len(stack.smtp.messages) - inbox_before >= 2, what="two emails")
    time.sleep(1)
    mails = stack.smtp.messages[inbox_before:]
    assert sorted(r for m in mails for r in m.recipients) == sorted(users)  # one each
    assert all("flaky" in m.subject for m in mails)
    wait_for(
        lambda: any(e["reason"] == "AutoDisabled" and e["type"] == "Warning" for e in stack.kube.events(ns, "flaky")),
        what="an AutoDisabled warning",
    )
    # Disabled: an explicit sync request sends nothing and no further mail goes out.
    runs = len(status["recentRuns"])
    stack.annotate(ns, "flaky", "m3stripe.dev/requested-at", "ignored-while-disabled")
    time.sleep(3)
    assert len(stack.kube.get_integration(ns, "flaky")["status"]["recentRuns"]) == runs
    assert len(stack.smtp.messages) - inbox_before == 2

    # Fix the cause (customers exist now) and re-enable declaratively.
    for a in accounts:
        customer(stripe, a)
    stack.annotate(ns, "flaky", "m3stripe.dev/reenable", "1")
    status = wait_for(
        lambda: (
            (s := stack.kube.get_integration(ns, "flaky")["status"]).get("lastHandledReenable") == "1"
            and not s["disabled"]
            and s["lastSync"]["status"] == "COMPLETE"
            and s
        ),
        timeout=60,
        what="re-enable and a clean run",
    )
    assert status["consecutiveErrors"] == 0
    assert status["lastSync"]["billsSent"] == 12


def test_due_date_needs_send_invoice_and_is_sent(
    stack: LocalStack, operator: OperatorProcess, stripe: Any, org: Org
) -> None:
    ns = org.ns
    a = org.account(country="FR")
    customer(stripe, a)
    due = date.today() + timedelta(days=14)
    b = org.bill(a, [{"line_item_type": "USAGE", "subtotal": "100"}], due_date=due)
    stack.kube.create_integration(
        ns, "due", org.spec(sendDueDate=True, collectionMethod="SendInvoice", accountFilter='address.country == "FR"')
    )
    status = first_run(stack, ns, "due")
    assert status["lastSync"]["status"] == "COMPLETE", status
    [inv] = invoices_for(stack, acct_of(stripe), b)
    assert inv["collection_method"] == "send_invoice"
    assert date.fromtimestamp(inv["due_date"]) == due


def test_a_failing_mail_server_is_visible_and_blocks_nothing(
    stack: LocalStack, operator: OperatorProcess, org: Org
) -> None:
    ns = org.ns
    accounts = [org.account(country="SE") for _ in range(3)]
    for a in accounts:
        org.bill(a, [{"line_item_type": "USAGE", "subtotal": "1"}])
    stack.smtp.fail_next(10)
    stack.kube.create_integration(
        ns,
        "mailfail",
        org.spec(
            accountFilter='address.country == "SE"',
            autoDisableThreshold=3,
            integrationDisabledNotificationUsers=["oncall@example.com"],
        ),
    )
    wait_for(
        lambda: (stack.kube.get_integration(ns, "mailfail").get("status") or {}).get("disabled"),
        timeout=60,
        what="the integration to disable itself",
    )
    wait_for(
        lambda: any(
            e["reason"] == "NotificationFailed" and e["type"] == "Warning" for e in stack.kube.events(ns, "mailfail")
        ),
        what="a NotificationFailed warning",
    )
    stack.smtp.fail_next(0)
    assert operator.running
    # The operator keeps working: another integration still gets its status.
    stack.kube.create_integration(ns, "still-alive", org.spec(suspend=True))
    wait_for(
        lambda: any(
            c["reason"] == "Suspended"
            for c in (stack.kube.get_integration(ns, "still-alive").get("status") or {}).get("conditions", [])
        ),
        what="the operator to keep reconciling",
    )
