"""Runs, the remaining error event kinds, replay, and the metrics endpoint, end to end."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from m3stripe.adapters.stripe_rate_limit import budget_label
from m3stripe.testing.stack import LocalStack, OperatorProcess, wait_for
from tests.support import stack_world
from tests.support.ports import free_port
from tests.support.stack_world import connect, integration_spec, scrape, value

KEY = "sk_test_51runsAAAA"
ORG = "org-runs"
NS = "runs"


@pytest.fixture(scope="module")
def metrics_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def operator(stack: LocalStack, metrics_port: int) -> Iterator[OperatorProcess]:
    stack.call(lambda: stack.stripe.add_api_key(KEY))
    connect(stack, NS, ORG, KEY, "runs")
    with stack.operator(M3STRIPE_METRICS_PORT=str(metrics_port)) as op:
        yield op


def integration(stack: LocalStack, name: str, **spec: Any) -> None:
    stack.kube.create_integration(NS, name, integration_spec(ORG, **spec))


def status(stack: LocalStack, name: str) -> dict[str, Any]:
    return stack_world.status(stack, NS, name)


def run_now(stack: LocalStack, name: str, token: str) -> dict[str, Any]:
    stack.annotate(NS, name, "m3stripe.dev/requested-at", token)
    return wait_for(
        lambda: (s := status(stack, name)).get("lastHandledRequestedAt") == token and s,
        timeout=60,
        what=f"run {token} of {name}",
    )


def test_runs_events_replay_and_metrics(stack: LocalStack, operator: OperatorProcess, metrics_port: int) -> None:
    sdk = stack.stripe_client(KEY)
    good = stack.call(
        lambda: stack.m3ter.add_account(ORG, name="Good", code="good", currency="USD", address={"country": "NL"})
    )
    sdk.v1.customers.create(params={"metadata": {"m3ter_account_id": good}})
    sent_bill = stack.call(
        lambda: stack.m3ter.add_bill(ORG, account_id=good, lines=[{"line_item_type": "USAGE", "subtotal": "10.00"}])
    )
    broken = stack.call(
        lambda: stack.m3ter.add_bill(
            ORG, account_id=good, bill_total="99.00", lines=[{"line_item_type": "USAGE", "subtotal": "10.00"}]
        )
    )
    integration(stack, "main")
    first = wait_for(lambda: (s := status(stack, "main")).get("lastSync") and s, timeout=60, what="the first run")

    # The run is recorded with its counts and the Stripe id of the Bill it sent.
    run = first["recentRuns"][0]
    assert (run["billsSent"], run["billsFailed"]) == (1, 1)
    [obj] = run["stripeObjects"]
    assert obj["billId"] == sent_bill and obj["stripeId"].startswith("in_")
    # A Bill whose lines do not add up to its total: a validation event with the numbers, nothing in Stripe.
    [validation] = [e for e in first["openEvents"] if e["billId"] == broken]
    assert validation["kind"] == "integration.validation.error"
    assert "99.00 USD" in validation["message"] and "10.00 USD" in validation["message"]

    # Replay: the invoice is deleted by hand in Stripe, then the Bill is asked for again; it is re-sent once.
    sdk.v1.invoices.delete(obj["stripeId"])
    stack.annotate(NS, "main", "m3stripe.dev/replay", f"{sent_bill} #1")
    replayed = wait_for(
        lambda: (s := status(stack, "main")).get("lastHandledReplay") == f"{sent_bill} #1" and s,
        timeout=60,
        what="the replay",
    )
    assert replayed["lastSync"]["billsSent"] == 1
    acct = str(sdk.v1.accounts.retrieve_current().id)
    invoices = [
        i
        for i in stack.call(lambda: stack.stripe.state(acct))["invoices"].values()
        if i["metadata"]["m3ter_bill_id"] == sent_bill
    ]
    assert len(invoices) == 1 and invoices[0]["id"] != obj["stripeId"] and invoices[0]["total"] == 1000
    # Replaying a whole run whose Bills Stripe already holds sends nothing twice.
    run_id = replayed["recentRuns"][0]["runId"]
    stack.annotate(NS, "main", "m3stripe.dev/replay", f"run:{run_id}")
    again = wait_for(
        lambda: (s := status(stack, "main")).get("lastHandledReplay") == f"run:{run_id}" and s,
        timeout=60,
        what="the run replay",
    )
    assert again["lastSync"]["billsSent"] == 0 and again["lastSync"]["billsUnchanged"] >= 1

    # Authentication: the key is revoked in Stripe; the next run fails with AUTH_FAILED and the
    # integration shows as not connected.
    stack.call(lambda: stack.stripe.add_api_key(KEY))  # no-op re-add keeps it valid for the SDK below
    stack.call(
        lambda: stack.m3ter.regenerate_bill(ORG, sent_bill, lines=[{"line_item_type": "USAGE", "subtotal": "11"}])
    )
    stack.call(lambda: stack.stripe.revoke_api_key(KEY))
    failed = run_now(stack, "main", "after-revoke")
    assert failed["lastSync"]["status"] == "AUTH_FAILED"
    assert any(e["kind"] == "integration.authentication.error" for e in failed["openEvents"])
    wait_for(lambda: status(stack, "main").get("connected") is False, what="connected=false after the 401")

    # Metrics: scraped from the operator's endpoint, with the values this scenario implies.
    metrics = scrape(metrics_port)
    labels = {"namespace": NS, "integration": "main"}
    assert value(metrics, "m3stripe_bills_total", outcome="sent", **labels) == 2  # first run + replay
    assert value(metrics, "m3stripe_error_events_total", kind="integration.validation.error", **labels) >= 1
    assert value(metrics, "m3stripe_error_events_total", kind="integration.authentication.error", **labels) >= 1
    assert value(metrics, "m3stripe_sync_runs_total", status="AUTH_FAILED", **labels) == 1
    assert value(metrics, "m3stripe_integration_connected", **labels) == 0
    assert value(metrics, "m3stripe_integration_sync_interval_seconds", **labels) == 3600
    assert value(metrics, "m3stripe_integration_open_events", **labels) >= 2
    # The Stripe series belong to the budget of the key's account in test mode, named by a digest, never the id.
    budget = budget_label(acct, False)
    assert (
        value(metrics, "m3stripe_stripe_requests_total", budget=budget, endpoint="invoices.create", code="200") or 0
    ) >= 2
    assert value(metrics, "m3stripe_stripe_rate_limit_requests_per_second", budget=budget) == 25
    assert not any(acct in v for _, labelset in metrics for _, v in labelset)

    # Deleting the integration removes its series.
    stack.kube.delete_integration(NS, "main")
    wait_for(
        lambda: not any(dict(k[1]).get("integration") == "main" for k in scrape(metrics_port)),
        timeout=30,
        what="the deleted integration's series to disappear",
    )
