"""Two operator replicas against one API server: only the Lease holder sends, the other takes over when it
dies, and every Bill still lands in Stripe exactly once (as deploy/overlays/high-availability)."""

from __future__ import annotations

from collections import Counter

import pytest

from m3stripe.testing.stack import LocalStack, wait_for
from tests.support.stack_world import connect, integration_spec, seed

KEY = "sk_test_51replicasAAAA"
ORG = "org-replicas"
NS = "replicas"
BILLS = 400


@pytest.mark.slow
def test_two_replicas_send_every_bill_exactly_once(stack: LocalStack) -> None:
    acct = stack.call(lambda: stack.stripe.add_api_key(KEY))
    connect(stack, NS, ORG, KEY, "replicas")
    bills = seed(stack, ORG, stack.stripe_client(KEY), accounts=40, bills=BILLS, prefix="r")
    # Slow Stripe down so that the first pass is still running when the active replica dies.
    stack.call(lambda: stack.stripe.set_rate_limit(per_second=None))
    stack.stripe.latency_seconds = 0.05
    env = {
        "M3STRIPE_SYNC_CONCURRENCY": "4",
        "M3STRIPE_LEASE_NAMESPACE": "m3stripe-system",
        "M3STRIPE_LEASE_DURATION": "6s",
        "M3STRIPE_LEASE_RENEW_DEADLINE": "3s",
        "M3STRIPE_LEASE_RETRY_PERIOD": "1s",
    }
    stack.ensure_namespace("m3stripe-system")
    args = ("--liveness=",)
    active = stack.start_operator(*args, name="replica-a", POD_NAME="replica-a", **env)
    wait_for(
        lambda: (stack.kube.lease_holder("m3stripe-system", "m3stripe") or "").startswith("replica-a_"),
        timeout=60,
        what="replica-a to take the Lease",
    )
    standby = stack.start_operator(*args, name="replica-b", POD_NAME="replica-b", **env)
    try:
        stack.kube.create_integration(NS, "ha", integration_spec(ORG, every="10s"))

        def invoices() -> int:
            return len(stack.call(lambda: stack.stripe.state(acct))["invoices"])

        wait_for(lambda: invoices() >= 60, timeout=120, what="the active replica to start sending")
        assert "sync run" not in standby.output() and "Connected" not in standby.output()
        active.kill()  # no goodbye: the standby must wait out the Lease and take over
        wait_for(
            lambda: (
                (stack.kube.get_integration(NS, "ha").get("status") or {}).get("lastSync", {}).get("status")
                == "COMPLETE"
            ),
            timeout=180,
            interval=1,
            what="the standby to finish the work",
        )
        assert "sync run" in standby.output()
    finally:
        standby.stop()
        active.kill()
    state = stack.call(lambda: stack.stripe.state(acct))
    per_bill = Counter(inv["metadata"]["m3ter_bill_id"] for inv in state["invoices"].values())
    assert set(per_bill) == set(bills)
    assert max(per_bill.values()) == 1
    totals = {inv["metadata"]["m3ter_bill_id"]: inv["total"] for inv in state["invoices"].values()}
    assert totals == {b: (n + 1) * 100 for n, b in enumerate(bills)}
