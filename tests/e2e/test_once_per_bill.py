"""Exactly once per Bill, not per Kubernetes object, through the operator as deployed (issue 18): a manifest deleted
and applied again (as a cluster rebuilt from git does), under Stripe faults."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from m3stripe.testing.stack import LocalStack, OperatorProcess, wait_for
from m3stripe.testing.stripe_emulator.faults import Fault
from tests.support.stack_world import Org, first_run, invoices_per_bill, run_now, seed

KEY = "sk_test_51oncePerBILL"


@pytest.fixture(scope="module")
def operator(stack: LocalStack) -> Iterator[OperatorProcess]:
    stack.call(lambda: stack.stripe.add_api_key(KEY))
    with stack.operator() as op:
        yield op


def test_a_manifest_deleted_and_applied_again_under_stripe_faults_invoices_nothing_twice(
    stack: LocalStack, operator: OperatorProcess, stripe: Any, org: Org
) -> None:
    bills = seed(stack, org.id, stripe, accounts=3, bills=7, prefix="rc")
    manifest = org.spec()
    stack.kube.create_integration(org.ns, "uk", manifest)
    first = first_run(stack, org.ns, "uk")
    assert first["lastSync"]["billsSent"] == 7, first["lastSync"]
    uid = stack.kube.get_integration(org.ns, "uk")["metadata"]["uid"]
    stack.kube.delete_integration(org.ns, "uk")
    wait_for(lambda: not any(i["metadata"]["name"] == "uk" for i in stack.kube.list_integrations(org.ns)))
    new_bill = org.bill(org.mapped_account(stripe), [{"line_item_type": "USAGE", "subtotal": "3.00"}])
    stack.stripe.inject_random(
        {Fault.SERVER_ERROR: 0.3, Fault.DROP_AFTER_WRITE: 0.1, Fault.RATE_LIMIT: 0.1},
        seed=18,
        path_prefix="/v1/invoice",
    )
    try:
        stack.kube.create_integration(org.ns, "uk", manifest)  # the same manifest, a new object
        again = first_run(stack, org.ns, "uk", timeout=120)
        assert stack.kube.get_integration(org.ns, "uk")["metadata"]["uid"] != uid
        for _ in range(5):
            if not (again.get("sync") or {}).get("retryBillIds"):
                break
            again = run_now(stack, org.ns, "uk", timeout=120)
    finally:
        stack.stripe.clear_faults()
    again = run_now(stack, org.ns, "uk")
    assert again["lastSync"]["billsFailed"] == 0, again["lastSync"]
    per_bill = invoices_per_bill(stack, stripe)
    assert {b: per_bill[b] for b in [*bills, new_bill]} == dict.fromkeys([*bills, new_bill], 1)
