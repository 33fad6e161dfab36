"""One writer per shard, elected on a Lease: a paused holder is fenced out before a standby takes over, and a
restarted operator resumes sending within seconds (real operator processes, as the overlays run them)."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest

from m3stripe.testing.stack import LocalStack, OperatorProcess, wait_for
from tests.support.stack_world import seed

NS = "lease"
LEASE_NS = "m3stripe-system"
LEASE = "m3stripe"
BILLS = 300
# Shorter than the defaults (15/10/2 s) so that the hand-over test waits less; same proportions.
FAST_LEASE = {
    "M3STRIPE_LEASE_DURATION": "6s",
    "M3STRIPE_LEASE_RENEW_DEADLINE": "3s",
    "M3STRIPE_LEASE_RETRY_PERIOD": "1s",
    "M3STRIPE_LEASE_NAMESPACE": LEASE_NS,
    "M3STRIPE_SYNC_CONCURRENCY": "4",
}


def _seed(stack: LocalStack, name: str, bills: int) -> tuple[str, list[str]]:
    """An org, a Stripe account and a StripeIntegration `name` (not yet created) of their own."""
    key, org = f"sk_test_51{name}AAAAAA", f"org-{name}"
    acct = stack.call(lambda: stack.stripe.add_api_key(key))
    stack.call(lambda: stack.m3ter.add_client(name, f"{name}-secret", org))
    ids = seed(stack, org, stack.stripe_client(key), accounts=30, bills=bills, prefix="l")
    stack.ensure_namespace(NS)
    stack.ensure_namespace(LEASE_NS)
    stack.kube.put_secret(NS, f"{name}-m3ter", {"clientId": name, "clientSecret": f"{name}-secret"})
    stack.kube.put_secret(NS, f"{name}-stripe", {"apiKey": key})
    return acct, ids


def _integration(stack: LocalStack, name: str) -> None:
    stack.kube.create_integration(
        NS,
        name,
        {
            "destination": "StripeTestMode",
            "credentialRef": {"name": f"{name}-stripe"},
            "m3ter": {"organizationId": f"org-{name}", "credentialsRef": {"name": f"{name}-m3ter"}},
            "syncInterval": "10s",
        },
    )


def _invoices(stack: LocalStack, acct: str) -> int:
    return len(stack.call(lambda: stack.stripe.state(acct))["invoices"])


def _assert_exactly_once(stack: LocalStack, acct: str, bills: list[str]) -> None:
    state = stack.call(lambda: stack.stripe.state(acct))
    per_bill = Counter(inv["metadata"]["m3ter_bill_id"] for inv in state["invoices"].values())
    assert set(per_bill) == set(bills), "every Bill has an invoice"
    assert max(per_bill.values()) == 1, [b for b, n in per_bill.items() if n > 1][:5]
    lines = Counter(item["invoice"] for item in state["invoice_items"].values())
    assert set(lines.values()) == {1}, "no invoice got its line twice"
    totals = {inv["metadata"]["m3ter_bill_id"]: inv["total"] for inv in state["invoices"].values()}
    assert totals == {b: (n + 1) * 100 for n, b in enumerate(bills)}


def _complete(stack: LocalStack, name: str) -> bool:
    status = stack.kube.get_integration(NS, name).get("status") or {}
    return (status.get("lastSync") or {}).get("status") == "COMPLETE" and not (status.get("sync") or {}).get(
        "retryBillIds"
    )


def _status(stack: LocalStack, name: str) -> dict[str, Any]:
    return dict(stack.kube.get_integration(NS, name).get("status") or {})


def _holder(stack: LocalStack) -> str:
    return stack.kube.lease_holder(LEASE_NS, LEASE) or ""


@pytest.mark.slow
def test_a_paused_holder_is_fenced_out_and_the_standby_finishes_every_bill_exactly_once(stack: LocalStack) -> None:
    acct, bills = _seed(stack, "fenced", BILLS)
    # Slow Stripe down so that the first pass is still running when the holder freezes.
    stack.call(lambda: stack.stripe.set_rate_limit(per_second=None))
    stack.stripe.latency_seconds = 0.05
    args = ("--liveness=",)
    a = stack.start_operator(*args, name="replica-a", POD_NAME="replica-a", **FAST_LEASE)
    wait_for(lambda: _holder(stack).startswith("replica-a_"), timeout=60, what="replica-a to take the Lease")
    b = stack.start_operator(*args, name="replica-b", POD_NAME="replica-b", **FAST_LEASE)
    try:
        _integration(stack, "fenced")
        wait_for(lambda: _invoices(stack, acct) >= 60, timeout=120, what="the holder to start sending")
        assert "sync run" not in b.output() and "now holds Lease" not in b.output()
        a.pause()  # SIGSTOP: it still "holds" the Lease, mid-pass, with requests in flight
        paused = time.monotonic()
        wait_for(lambda: _holder(stack).startswith("replica-b_"), timeout=60, what="the standby to take the Lease")
        # Not before the Lease expired: the standby waits a lease duration (6 s) from the last renew it saw,
        # which was at most a retry period (1 s) before the pause. A lower bound, not a speed requirement.
        assert time.monotonic() - paused >= 6 - 1 - 0.5
        sent_by_b = _invoices(stack, acct)
        wait_for(lambda: _invoices(stack, acct) > sent_by_b, timeout=60, what="the standby to send")
        a.resume()  # SIGCONT: its fence is long past; it must not write anything
        wait_for(
            lambda: "stopped writing" in a.output() or "lost Lease" in a.output(),
            timeout=60,
            what="the resumed replica to notice it lost the Lease",
        )
        wait_for(lambda: _complete(stack, "fenced"), timeout=240, interval=1, what="the standby to finish the pass")
        assert _holder(stack).startswith("replica-b_")
        assert "now holds Lease" in b.output()
    finally:
        b.stop()
        a.kill()
    _assert_exactly_once(stack, acct, bills)
    # The resumed replica never counted an error against the integration.
    status = stack.kube.get_integration(NS, "fenced")["status"]
    assert not status.get("openEvents"), status.get("openEvents")


def _seconds_to_first_write(stack: LocalStack, acct: str, op: OperatorProcess, started: float) -> float:
    before = _invoices(stack, acct)
    wait_for(lambda: _invoices(stack, acct) > before, timeout=60, interval=0.1, what="a restarted operator to send")
    assert op.running
    return time.monotonic() - started


@pytest.mark.slow
def test_a_restarted_operator_resumes_sending_within_seconds(stack: LocalStack) -> None:
    """Default Lease timings (15/10/2 s). A crashed container restarts in the same pod: its dead predecessor's
    Lease is taken at once. A gracefully stopped replica released the Lease: the next one takes it at once."""
    acct, _ = _seed(stack, "restarted", BILLS)
    env = {"M3STRIPE_LEASE_NAMESPACE": LEASE_NS, "M3STRIPE_SYNC_CONCURRENCY": "2"}
    args = ("--liveness=",)
    stack.stripe.latency_seconds = 0.1
    # Each pod's emptyDir (deploy/base mounts one at /var/run/m3stripe for the Lease lock file).
    for pod in ("abc-11111", "abc-22222"):
        (stack.workdir / pod).mkdir(exist_ok=True)
    first_pod = {
        "POD_NAME": "m3stripe-operator-abc-11111",
        "M3STRIPE_LEASE_LOCK_FILE": str(stack.workdir / "abc-11111" / "l"),
    }
    second_pod = {
        "POD_NAME": "m3stripe-operator-abc-22222",
        "M3STRIPE_LEASE_LOCK_FILE": str(stack.workdir / "abc-22222" / "l"),
    }
    op = stack.start_operator(*args, name="restart-1", **first_pod, **env)
    _integration(stack, "restarted")
    wait_for(lambda: _invoices(stack, acct) >= 20, timeout=120, what="the first operator to send")
    # The pass in flight persists what it completed (status.sync.checkpoint) every few seconds...
    done = wait_for(
        lambda: (
            len(((_status(stack, "restarted").get("sync") or {}).get("checkpoint")) or ()) >= 10
            and _status(stack, "restarted")["sync"]["checkpoint"]
        ),
        timeout=60,
        what="a checkpoint of the pass in flight",
    )
    assert all("@" in key for key in done)
    op.kill()  # SIGKILL: the Lease stays held by the dead process
    started = time.monotonic()
    op = stack.start_operator(*args, name="restart-2", **first_pod, **env)
    after_crash = _seconds_to_first_write(stack, acct, op, started)
    op.stop()  # SIGTERM: releases the Lease
    started = time.monotonic()
    op = stack.start_operator(*args, name="restart-3", **second_pod, **env)
    try:
        after_release = _seconds_to_first_write(stack, acct, op, started)
        print(f"first Stripe write after a crash: {after_crash:.1f}s, after a graceful hand-over: {after_release:.1f}s")
        assert after_crash <= 20 and after_release <= 20
        # ...and once a pass completes, the watermark moves and the checkpoint is spent.
        wait_for(lambda: _complete(stack, "restarted"), timeout=240, interval=1, what="a complete pass")
        assert not (_status(stack, "restarted").get("sync") or {}).get("checkpoint")
    finally:
        op.stop()
