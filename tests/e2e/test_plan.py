"""spec.mode: Plan end to end: a dry run writes nothing to Stripe, shows its plan, and Send then sends exactly it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from m3stripe.cli import main
from m3stripe.testing.stack import LocalStack, wait_for
from tests.support.stack_world import connect

KEY = "sk_test_51planAAAA"
ORG = "org-plan"
NS = "plan"
NAME = "uk"


@pytest.fixture(scope="module")
def world(stack: LocalStack) -> Iterator[dict[str, Any]]:
    stack.call(lambda: stack.stripe.add_api_key(KEY))
    connect(stack, NS, ORG, KEY, "plan")
    sdk = stack.stripe_client(KEY)
    accounts = [
        str(stack.call(lambda n=n: stack.m3ter.add_account(ORG, name=n, code=n, currency="USD")))
        for n in ("a1", "a2", "a3")
    ]
    for account in accounts[:2]:  # a3 has no Stripe Customer: its Bill is blocked
        sdk.v1.customers.create(params={"metadata": {"m3ter_account_id": account}})

    def bill(account: str, *subtotals: str) -> str:
        lines = [{"line_item_type": "USAGE", "subtotal": s} for s in subtotals]
        return str(stack.call(lambda: stack.m3ter.add_bill(ORG, account_id=account, lines=lines)))

    bills = {"b1": bill(accounts[0], "10.00", "5.50"), "b2": bill(accounts[1], "7.25"), "b3": bill(accounts[2], "3")}
    with stack.operator() as op:
        yield {"accounts": accounts, "bills": bills, "sdk": sdk, "operator": op}


def integration(stack: LocalStack) -> dict[str, Any]:
    return dict(stack.kube.get_integration(NS, NAME))


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in obj["status"].get("conditions") or () if c["type"] == type_), {})


def writes(stack: LocalStack, since: int) -> list[str]:
    """Requests after the first `since` of the Stripe emulator's log that could change something."""
    log = stack.call(lambda: list(stack.stripe.requests))
    return [f"{r.method} {r.path}" for r in log[since:] if r.method not in ("GET", "HEAD")]


def plan_cli(stack: LocalStack, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["plan", NAME, "-n", NS, "--kubeconfig", str(stack.kubeconfig), *args])
    return code, capsys.readouterr().out


def our_invoices(stack: LocalStack, sdk: Any, integration_id: str) -> dict[str, dict[str, Any]]:
    acct = str(sdk.v1.accounts.retrieve_current().id)
    state = stack.call(lambda: stack.stripe.state(acct))
    return {
        i["metadata"]["m3ter_bill_id"]: i
        for i in state["invoices"].values()
        if i["metadata"].get("m3stripe_integration") == integration_id
    }


def test_a_plan_reads_as_usual_writes_nothing_to_stripe_and_is_shown_where_people_look(
    stack: LocalStack, world: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    before = stack.call(lambda: len(stack.stripe.requests))
    stack.kube.create_integration(
        NS,
        NAME,
        {
            "destination": "StripeTestMode",
            "mode": "Plan",
            "credentialRef": {"name": "stripe"},
            "m3ter": {"organizationId": ORG, "credentialsRef": {"name": "m3ter"}},
            "syncInterval": "1h",
        },
    )
    obj = wait_for(
        lambda: (o := integration(stack)).get("status", {}).get("plan") and condition(o, "Planned") and o,
        timeout=90,
        what="the first plan",
    )
    plan, bills = obj["status"]["plan"], world["bills"]
    assert (plan["bills"], plan["createInvoice"], plan["blocked"], plan["updateDraft"]) == (3, 2, 1, 0)
    assert plan["totals"] == [{"currency": "usd", "bills": 2, "amount": "22.75"}]
    by_bill = {i["billId"]: i for i in plan["items"]}
    assert by_bill[bills["b1"]]["action"] == "CreateInvoice" and by_bill[bills["b1"]]["lines"] == 2
    assert by_bill[bills["b1"]]["total"] == "15.50"
    assert by_bill[bills["b3"]]["action"] == "Blocked" and "m3ter_account_id" in by_bill[bills["b3"]]["reason"]
    assert plan["truncated"] == 0

    # Healthy for kstatus and Argo CD (health.lua): current generation, Ready True saying it is a plan, no Stalled.
    ready = condition(obj, "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "PlanOnly")
    assert "nothing is written to Stripe" in ready["message"]
    assert condition(obj, "Planned")["status"] == "True" and not condition(obj, "Stalled")
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
    # A plan is no run: no history, no error events, no progress, nothing toward auto-disable.
    assert not obj["status"].get("recentRuns") and not obj["status"].get("openEvents")
    assert not obj["status"].get("sync") and not obj["status"].get("consecutiveErrors")

    assert writes(stack, before) == []  # the Stripe emulator received no POST and no DELETE

    code, out = plan_cli(stack, capsys)
    assert code == 0 and "nothing was written to Stripe" in out and "22.75 USD (2 Bill(s))" in out
    rows = {
        line.split()[0]: line.split() for line in out.splitlines() if line.split()[:1] and line.split()[0] in by_bill
    }
    assert rows[bills["b1"]][2:5] == ["CreateInvoice", "2", "15.50"] and rows[bills["b3"]][2] == "Blocked"
    code, out = plan_cli(stack, capsys, "-o", "json")
    assert code == 0 and json.loads(out) == plan

    # `sync` plans again at once and answers with the new plan; still nothing reaches Stripe.
    capsys.readouterr()
    code = main(["sync", NAME, "-n", NS, "--kubeconfig", str(stack.kubeconfig), "-o", "json"])
    answer = json.loads(capsys.readouterr().out)
    assert code == 0 and answer["ok"] and answer["plan"]["runId"] != plan["runId"]
    assert answer["plan"]["createInvoice"] == 2 and "Nothing was written to Stripe" in answer["message"]
    assert writes(stack, before) == []


def test_switching_to_send_sends_exactly_what_the_last_plan_showed(
    stack: LocalStack, world: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    obj = integration(stack)
    plan, integration_id = obj["status"]["plan"], obj["status"]["integrationId"]
    stack.kube.patch_integration(NS, NAME, {"spec": {"mode": "Send"}})
    wait_for(lambda: integration(stack)["status"].get("lastSync"), timeout=90, what="the first Send pass")

    held = our_invoices(stack, world["sdk"], integration_id)
    planned = {i["billId"]: i for i in plan["items"] if i["action"] == "CreateInvoice"}
    assert set(held) == set(planned)
    for bill_id, item in planned.items():
        assert Decimal(held[bill_id]["total"]) / 100 == Decimal(item["total"])
        lines = world["sdk"].v1.invoices.line_items.list(held[bill_id]["id"], params={"limit": 100})
        assert len(lines.data) == item["lines"]
    assert sum(Decimal(i["total"]) for i in held.values()) / 100 == Decimal(plan["totals"][0]["amount"])
    obj = integration(stack)
    assert condition(obj, "Ready")["reason"] == "Ready" and not condition(obj, "Planned")

    # Back to Plan after a Bill changed: the plan updates that draft and leaves the other alone.
    bills = world["bills"]
    stack.call(
        lambda: stack.m3ter.regenerate_bill(ORG, bills["b1"], lines=[{"line_item_type": "USAGE", "subtotal": "11"}])
    )
    before = stack.call(lambda: len(stack.stripe.requests))
    stack.kube.patch_integration(NS, NAME, {"spec": {"mode": "Plan"}})
    obj = wait_for(
        lambda: (
            (o := integration(stack))["status"].get("plan", {}).get("observedGeneration") == o["metadata"]["generation"]
            and o
        ),
        timeout=90,
        what="the plan of the new generation",
    )
    by_bill = {i["billId"]: i for i in obj["status"]["plan"]["items"]}
    assert by_bill[bills["b1"]]["action"] == "UpdateDraft" and by_bill[bills["b1"]]["total"] == "11.00"
    assert by_bill[bills["b1"]]["stripeId"] == held[bills["b1"]]["id"]
    assert by_bill[bills["b2"]]["action"] == "Nothing"
    time.sleep(1)
    assert writes(stack, before) == []
