"""Two operator shards (two processes, each watching its own namespace, as two Deployments with `-n`) with
integrations over the same Bills and the same Stripe account: each Bill is invoiced once, by the older integration,
and both integrations say so; when the older one goes, the other sends what it had left to it (issue 18)."""

from __future__ import annotations

from typing import Any

from m3stripe.testing.stack import LocalStack, wait_for
from tests.support.stack_world import Org, first_run, invoices_per_bill, run_now, seed, status
from tests.support.status import condition

KEY = "sk_test_51twoShardsSameBILLS"


def test_two_operator_shards_with_integrations_over_the_same_bills_invoice_each_bill_once(
    stack: LocalStack, stripe: Any, org: Org
) -> None:
    stack.call(lambda: stack.stripe.add_api_key(KEY))
    shard_a, shard_b = f"{org.ns}-a", f"{org.ns}-b"
    for ns in (shard_a, shard_b):
        stack.ensure_namespace(ns)
        for secret, data in (
            ("m3ter", {"clientId": f"client-{org.ns}", "clientSecret": f"client-{org.ns}-secret"}),
            ("stripe", {"apiKey": KEY}),
        ):
            stack.kube.put_secret(ns, secret, data)
    bills = seed(stack, org.id, stripe, accounts=4, bills=8, prefix="sh")
    with (
        stack.operator("--standalone", "--liveness=", "-n", shard_a, name="shard-a"),
        stack.operator("--standalone", "--liveness=", "-n", shard_b, name="shard-b"),
    ):
        stack.kube.create_integration(shard_a, "invoices", org.spec())
        wait_for(lambda: status(stack, shard_a, "invoices").get("stripeAccountId"), timeout=60, what="shard a's key")
        stack.kube.create_integration(shard_b, "invoices-copy", org.spec())  # a copy left behind by a rename
        older = first_run(stack, shard_a, "invoices")
        younger = first_run(stack, shard_b, "invoices-copy")
        older, younger = run_now(stack, shard_a, "invoices"), run_now(stack, shard_b, "invoices-copy")
        per_bill = invoices_per_bill(stack, stripe)
        assert {b: per_bill[b] for b in bills} == dict.fromkeys(bills, 1)
        overlapping = condition(younger, "Overlapping")
        assert (overlapping["status"], overlapping["reason"]) == ("True", "LeavesBillsToOlder"), overlapping
        assert f"{shard_a}/invoices" in overlapping["message"]
        assert condition(older, "Overlapping")["reason"] == "SharesBillsWithYounger"
        assert younger["consecutiveErrors"] == 0 and not younger.get("openEvents")
        # The older one goes (the rename completes): the copy starts over and sends what it had left to it.
        stack.kube.delete_integration(shard_a, "invoices")
        late = org.bill(org.mapped_account(stripe), [{"line_item_type": "USAGE", "subtotal": "9.00"}])
        younger = run_now(stack, shard_b, "invoices-copy")
        assert condition(younger, "Overlapping")["status"] == "False", younger["conditions"]
        per_bill = invoices_per_bill(stack, stripe)
        assert {b: per_bill[b] for b in [*bills, late]} == dict.fromkeys([*bills, late], 1)
