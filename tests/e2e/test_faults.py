"""Exactly once under faults: thousands of Bills while Stripe answers 429s, 5xx, times out and drops replies
after writing, and while the operator is killed (SIGKILL) and restarted in the middle of a pass."""

from __future__ import annotations

import random
from collections import Counter
from decimal import Decimal
from typing import Any

from m3stripe.domain.money import to_minor_units
from m3stripe.testing.stack import LocalStack, wait_for
from m3stripe.testing.stripe_emulator import Fault

KEY_INVOICES = "sk_test_51faultsINVOICE"
KEY_ITEMS = "sk_test_51faultsITEMS"
ORG = "org-faults"
BILLS = 2400
ACCOUNTS = 240


def _seed(stack: LocalStack) -> tuple[dict[str, Any], dict[str, str]]:
    """Accounts in UK (invoice mode), US (items mode) and DE (selected by nobody), with Bills of random lines."""
    rng = random.Random(20261126)
    stack.call(lambda: stack.m3ter.add_client("faults", "faults-secret", ORG))
    invoice_client = stack.stripe_client(KEY_INVOICES)
    items_client = stack.stripe_client(KEY_ITEMS)
    country_of: dict[str, str] = {}
    for i in range(ACCOUNTS):
        country = ("UK", "US", "DE")[i % 3]
        acct = stack.call(
            lambda c=country, i=i: stack.m3ter.add_account(
                ORG, name=f"A{i}", code=f"a{i}", currency="USD", address={"country": c}
            )
        )
        country_of[acct] = country
        client = invoice_client if country == "UK" else items_client
        client.v1.customers.create(params={"metadata": {"m3ter_account_id": acct}})
    expected: dict[str, Any] = {}
    accounts = list(country_of)
    for n in range(BILLS):
        acct = accounts[n % ACCOUNTS]
        lines = [
            {
                "line_item_type": rng.choice(["USAGE", "STANDING_CHARGE", "MINIMUM_SPEND"]),
                "subtotal": str(Decimal(rng.randint(1, 500_000)) / 100),
            }
            for _ in range(rng.randint(1, 6))
        ]
        if rng.random() < 0.2:
            lines.append({"line_item_type": "CREDIT_MEMO", "subtotal": str(-Decimal(rng.randint(1, 5000)) / 100)})
        bill_id = stack.call(lambda a=acct, ls=lines: stack.m3ter.add_bill(ORG, account_id=a, lines=ls))
        expected[bill_id] = {
            "country": country_of[acct],
            "account": acct,
            "amounts": sorted(to_minor_units(Decimal(x["subtotal"]), "USD") for x in lines),
        }
    return expected, country_of


def test_every_selected_bill_lands_exactly_once_under_faults(stack: LocalStack) -> None:
    acct_invoices = stack.call(lambda: stack.stripe.add_api_key(KEY_INVOICES))
    acct_items = stack.call(lambda: stack.stripe.add_api_key(KEY_ITEMS))
    expected, _ = _seed(stack)
    ns = "faults"
    stack.ensure_namespace(ns)
    stack.kube.put_secret(ns, "m3ter", {"clientId": "faults", "clientSecret": "faults-secret"})
    stack.kube.put_secret(ns, "invoices", {"apiKey": KEY_INVOICES})
    stack.kube.put_secret(ns, "items", {"apiKey": KEY_ITEMS})
    common = {
        "destination": "StripeTestMode",
        "m3ter": {"organizationId": ORG, "credentialsRef": {"name": "m3ter"}},
        "syncInterval": "10s",
        "requestsPerSecond": 2000,
        "autoDisableThreshold": 1000,
    }
    stack.kube.create_integration(
        ns, "uk", {**common, "credentialRef": {"name": "invoices"}, "accountFilter": 'address.country == "UK"'}
    )
    stack.kube.create_integration(
        ns,
        "us",
        {
            **common,
            "credentialRef": {"name": "items"},
            "accountFilter": 'address.country == "US"',
            "createStripeInvoice": False,
        },
    )
    stack.call(
        lambda: stack.stripe.inject_random(
            {
                Fault.RATE_LIMIT: 0.03,
                Fault.SERVER_ERROR: 0.03,
                Fault.SERVER_ERROR_SAVED: 0.01,
                Fault.TIMEOUT: 0.005,
                Fault.DROP_BEFORE_WRITE: 0.01,
                Fault.DROP_AFTER_WRITE: 0.03,
            },
            seed=11,
            delay_seconds=2.5,
        )
    )
    env = {"M3STRIPE_STRIPE_TIMEOUT": "1s", "M3STRIPE_SYNC_CONCURRENCY": "16"}

    def written() -> int:
        state = stack.call(lambda: stack.stripe.state(acct_invoices))
        return len(state["invoices"])

    # Kill the operator twice in the middle of its first pass, without warning.
    for name, threshold in (("first", 150), ("second", 450)):
        op = stack.start_operator(name=name, **env)
        wait_for(lambda t=threshold: written() >= t, timeout=300, interval=0.5, what=f"{threshold} invoices")
        op.kill()
    op = stack.start_operator(name="final", **env)
    try:

        def settled() -> bool:
            for integration in ("uk", "us"):
                status = stack.kube.get_integration(ns, integration).get("status") or {}
                last = status.get("lastSync") or {}
                if last.get("status") != "COMPLETE" or status.get("sync", {}).get("retryBillIds"):
                    return False
            return True

        wait_for(settled, timeout=600, interval=1, what="both integrations to complete a clean pass")
        fired = stack.call(lambda: dict(stack.stripe.faults.fired))
        assert all(fired.get(f, 0) > 0 for f in (Fault.RATE_LIMIT, Fault.SERVER_ERROR, Fault.DROP_AFTER_WRITE)), fired
        stack.call(lambda: stack.stripe.clear_faults())
        # One more clean pass must find nothing to do: Stripe already holds everything exactly.
        stack.annotate(ns, "uk", "m3stripe.dev/requested-at", "final-check")
        status = wait_for(
            lambda: (
                (s := stack.kube.get_integration(ns, "uk")["status"]).get("lastHandledRequestedAt") == "final-check"
                and s
            ),
            timeout=300,
            what="the final check pass",
        )
        assert status["lastSync"]["billsSent"] == 0 and status["lastSync"]["status"] == "COMPLETE"
    finally:
        op.stop()

    invoices = stack.call(lambda: stack.stripe.state(acct_invoices))
    per_bill = Counter(inv["metadata"]["m3ter_bill_id"] for inv in invoices["invoices"].values())
    uk_bills = {b for b, e in expected.items() if e["country"] == "UK"}
    assert set(per_bill) == uk_bills, "every UK Bill has an invoice, and nothing else does"
    assert max(per_bill.values()) == 1, [b for b, n in per_bill.items() if n > 1][:5]
    lines_by_invoice: dict[str, list[int]] = {}
    for item in invoices["invoice_items"].values():
        lines_by_invoice.setdefault(item["invoice"], []).append(item["amount"])
    for inv in invoices["invoices"].values():
        bill = inv["metadata"]["m3ter_bill_id"]
        assert sorted(lines_by_invoice[inv["id"]]) == expected[bill]["amounts"], bill
        assert inv["total"] == sum(expected[bill]["amounts"]), bill

    items = stack.call(lambda: stack.stripe.state(acct_items))["invoice_items"]
    by_bill: dict[str, list[int]] = {}
    for item in items.values():
        by_bill.setdefault(item["metadata"]["m3ter_bill_id"], []).append(item["amount"])
    us_bills = {b for b, e in expected.items() if e["country"] == "US"}
    assert set(by_bill) == us_bills
    for bill, amounts in by_bill.items():
        assert sorted(amounts) == expected[bill]["amounts"], bill
    assert not items or all(i["invoice"] is None for i in items.values())
