"""Stripe Tax through the operator as deployed (issue 19): a GB customer taxed at 20%, a customer Stripe Tax cannot
place reported with what to add, the tax per Bill and per currency in the run, in `kubectl m3stripe runs`, and in
the metrics."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from m3stripe.ctl.views import runs_table
from m3stripe.testing.stack import LocalStack, OperatorProcess
from tests.support.ports import free_port
from tests.support.stack_world import Org, first_run, run_now, scrape, value

KEY = "sk_test_51taxEndToEndGB"
PRODUCT = "prod_E2ETaxedUsage"
GB = {"line1": "1 High Street", "city": "London", "postal_code": "SW1A 1AA", "country": "GB"}


@pytest.fixture(scope="module")
def metrics_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def operator(stack: LocalStack, metrics_port: int) -> Iterator[OperatorProcess]:
    def tax_account() -> None:
        account = stack.stripe.add_api_key(KEY, country="GB", default_currency="gbp")
        stack.stripe.set_tax_settings(account, head_office=GB)
        stack.stripe.add_tax_registration(account, "GB", "20")

    stack.call(tax_account)
    stack.stripe_client(KEY).v1.products.create(params={"id": PRODUCT, "name": "Usage", "tax_code": "txcd_10103001"})
    with stack.operator(M3STRIPE_METRICS_PORT=str(metrics_port)) as op:
        yield op


def customer(org: Org, stripe: Any, *, address: dict[str, str] | None) -> tuple[str, str]:
    account = org.account("GBP")
    params: dict[str, Any] = {"metadata": {"m3ter_account_id": account}}
    if address is not None:
        params["address"] = address
    return account, str(stripe.v1.customers.create(params=params).id)


def test_a_taxed_integration_records_the_tax_and_names_the_customer_stripe_cannot_place(
    stack: LocalStack, operator: OperatorProcess, stripe: Any, org: Org, metrics_port: int
) -> None:
    placed, _ = customer(org, stripe, address=GB)
    unplaced, nowhere = customer(org, stripe, address=None)
    lines = [
        {"line_item_type": "STANDING_CHARGE", "subtotal": "20.00", "description": "Platform fee"},
        {"line_item_type": "CREDIT_MEMO", "subtotal": "-5.00", "description": "Goodwill credit"},
    ]
    taxed = org.bill(placed, lines, currency="GBP")
    blocked = org.bill(unplaced, [{"line_item_type": "USAGE", "subtotal": "9.00"}], currency="GBP")
    spec = org.spec(automaticTax="Enabled", taxBehavior="Exclusive", priceDataProductId=PRODUCT)
    stack.kube.create_integration(org.ns, "uk", spec)
    status = first_run(stack, org.ns, "uk")
    (run,) = status["recentRuns"]
    assert (run["billsSent"], run["billsFailed"]) == (1, 1), run
    assert run["taxes"] == [{"currency": "gbp", "amount": "3.00"}]  # 20% of 20.00 - 5.00
    (sent,) = run["stripeObjects"]
    assert sent["billId"] == taxed and sent["tax"] == "3.00 GBP"
    (event,) = status["openEvents"]
    assert event["kind"] == "integration.validation.error" and event["billId"] == blocked
    assert nowhere in event["message"] and "address with a country" in event["message"]
    assert "tax 3.00 GBP" in run["message"]
    table = runs_table(status["recentRuns"], wide=False, now=datetime.now(UTC))
    assert "3.00 GBP" in table.splitlines()[1]
    labels = {"namespace": org.ns, "integration": "uk"}
    assert value(scrape(metrics_port), "m3stripe_tax_minor_units_total", currency="gbp", **labels) == 300
    # The address is added in Stripe: the next pass sends the Bill it had to leave.
    stripe.v1.customers.update(nowhere, params={"address": GB})
    status = run_now(stack, org.ns, "uk")
    assert status["lastSync"]["billsSent"] == 1, status["lastSync"]
