"""Two operator replicas against one API server: only one sends, the other takes over when it dies,
and every Bill still lands in Stripe exactly once (kopf peering, as deploy/overlays/high-availability)."""

from __future__ import annotations

from collections import Counter

from m3stripe.testing.stack import LocalStack, wait_for

KEY = "sk_test_51replicasAAAA"
ORG = "org-replicas"
NS = "replicas"
BILLS = 400


def test_two_replicas_send_every_bill_exactly_once(stack: LocalStack) -> None:
    acct = stack.call(lambda: stack.stripe.add_api_key(KEY))
    stack.call(lambda: stack.m3ter.add_client("replicas", "replicas-secret", ORG))
    sdk = stack.stripe_client(KEY)
    accounts = []
    for i in range(40):
        a = stack.call(lambda i=i: stack.m3ter.add_account(ORG, name=f"R{i}", code=f"r{i}", currency="USD"))
        sdk.v1.customers.create(params={"metadata": {"m3ter_account_id": a}})
        accounts.append(a)
    bills = [
        stack.call(
            lambda n=n: stack.m3ter.add_bill(
                ORG, account_id=accounts[n % 40], lines=[{"line_item_type": "USAGE", "subtotal": f"{n + 1}.00"}]
            )
        )
        for n in range(BILLS)
    ]
    stack.kube.create_cluster_object(
        "kopf.dev",
        "v1",
        "clusterkopfpeerings",
        {
            "apiVersion": "kopf.dev/v1",
            "kind": "ClusterKopfPeering",
            "metadata": {"name": "m3stripe"},
        },
    )
    stack.ensure_namespace(NS)
    stack.kube.put_secret(NS, "m3ter", {"clientId": "replicas", "clientSecret": "replicas-secret"})
    stack.kube.put_secret(NS, "stripe", {"apiKey": KEY})
    # Slow Stripe down so that the first pass is still running when the active replica dies.
    stack.call(lambda: stack.stripe.set_rate_limit(per_second=None))
    stack.stripe.latency_seconds = 0.05
    env = {"M3STRIPE_PEERING_LIFETIME": "4s", "M3STRIPE_SYNC_CONCURRENCY": "4"}
    args = ("--peering=m3stripe", "--liveness=")
    active = stack.start_operator(*args, "--priority=200", name="replica-a", **env)
    standby = stack.start_operator(*args, "--priority=100", name="replica-b", **env)
    try:
        stack.kube.create_integration(
            NS,
            "ha",
            {
                "destination": "StripeTestMode",
                "credentialRef": {"name": "stripe"},
                "m3ter": {"organizationId": ORG, "credentialsRef": {"name": "m3ter"}},
                "syncInterval": "10s",
            },
        )

        def invoices() -> int:
            return len(stack.call(lambda: stack.stripe.state(acct))["invoices"])

        wait_for(lambda: invoices() >= 60, timeout=120, what="the active replica to start sending")
        assert "sync run" not in standby.output() and "Connected" not in standby.output()
        active.kill()  # no goodbye: the standby must notice the silence and take over
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
