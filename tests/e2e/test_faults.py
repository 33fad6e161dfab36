"""Exactly once under faults and crashes: the operator as deployed (its leader election on the Lease, no
--standalone) is SIGKILLed every 30 s while Stripe answers 429s, 5xx, times out and drops replies after
writing, and m3ter revokes its token mid-run. Every restart must be sending again within 20 s."""

from __future__ import annotations

import random
import time
import urllib.request
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from m3stripe.domain.money import to_minor_units
from m3stripe.testing.stack import LocalStack, wait_for
from m3stripe.testing.stripe_emulator import Fault
from tests.support.ports import free_ports

KEY_INVOICES = "sk_test_51faultsINVOICE"
KEY_ITEMS = "sk_test_51faultsITEMS"
ORG = "org-faults"
BILLS = 4200
ACCOUNTS = 300
KILLS = 6
DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


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


def _as_deployed() -> tuple[list[str], dict[str, str]]:
    """The operator's arguments and leader-election settings exactly as deploy/base ships them (read from the
    manifests, not restated here), plus the pod identity the Downward API gives it. Only the liveness port
    changes (8080 may be taken on a shared machine)."""
    deployment = yaml.safe_load((DEPLOY / "base" / "deployment.yaml").read_text(encoding="utf-8"))
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    args = [a.replace(":8080/", ":{liveness}/").replace("0.0.0.0", "127.0.0.1") for a in container["args"]]
    kustomization = yaml.safe_load((DEPLOY / "base" / "kustomization.yaml").read_text(encoding="utf-8"))
    literals = dict(
        item.split("=", 1)
        for generator in kustomization["configMapGenerator"]
        for item in generator.get("literals", ())
    )
    env = {k: v for k, v in literals.items() if k.startswith("M3STRIPE_LEASE_")}
    assert env, "deploy/base sets the leader-election settings"
    # One pod of the Deployment; each SIGKILL is a container restart in that pod (same name).
    env |= {"POD_NAME": "m3stripe-operator-6f7c9d8b5-q2x7k", "POD_NAMESPACE": "m3stripe-system"}
    return args, env


WRITES = ("create", "update", "delete", "add_lines", "remove_lines", "update_lines")


def _stripe_calls(port: int) -> tuple[int, int]:
    """(Stripe requests, Stripe writes) one operator process made so far, read from its /metrics."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as reply:
            text = reply.read().decode()
    except OSError:
        return 0, 0  # not serving yet
    calls = writes = 0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "m3stripe_stripe_requests_total":
                calls += int(sample.value)
                if sample.labels["endpoint"].rsplit(".", 1)[-1] in WRITES:
                    writes += int(sample.value)
    return calls, writes


def _holds_lease(port: int) -> bool:
    """Whether the operator process serving metrics on `port` holds its Lease (m3stripe_leader is 1)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as reply:
            text = reply.read().decode()
    except OSError:
        return False
    return any(
        s.name == "m3stripe_leader" and s.value == 1 for f in text_string_to_metric_families(text) for s in f.samples
    )


@pytest.mark.slow
def test_every_selected_bill_lands_exactly_once_under_faults_and_crashes(stack: LocalStack) -> None:
    acct_invoices = stack.call(lambda: stack.stripe.add_api_key(KEY_INVOICES))
    acct_items = stack.call(lambda: stack.stripe.add_api_key(KEY_ITEMS))
    expected, _ = _seed(stack)
    ns = "faults"
    stack.ensure_namespace(ns)
    stack.ensure_namespace("m3stripe-system")
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
    # Stripe's own latency (real round trips are ~100-300 ms) paces the work, so that it outlasts several
    # crashes however fast the machine is.
    stack.stripe.latency_seconds = 0.1
    args, env = _as_deployed()
    env |= {"M3STRIPE_STRIPE_TIMEOUT": "1s", "M3STRIPE_SYNC_CONCURRENCY": "8"}
    # The pod's emptyDir at /var/run/m3stripe (deploy/base): shared by the restarts of the one container.
    (stack.workdir / "pod-emptydir").mkdir(exist_ok=True)
    env["M3STRIPE_LEASE_LOCK_FILE"] = str(stack.workdir / "pod-emptydir" / "lease.lock")
    uk_bills = {b for b, e in expected.items() if e["country"] == "UK"}
    us_lines = sum(len(e["amounts"]) for e in expected.values() if e["country"] == "US")

    def written() -> int:
        invoices = len(stack.call(lambda: stack.stripe.state(acct_invoices))["invoices"])
        items = len(stack.call(lambda: stack.stripe.state(acct_items))["invoice_items"])
        return invoices + items

    def everything_written() -> bool:
        return written() >= len(uk_bills) + us_lines

    # SIGKILL the operator every 30 s, without warning, while it is mid-pass; the m3ter token is revoked once.
    # Each restart is timed, from its own metrics (so requests of the killed process still landing in the
    # emulator do not count), to its first Stripe request (it holds the Lease and works again) and to its
    # first Stripe write (which also pays for re-checking what the killed pass had already done).
    to_lease: list[float] = []
    to_first_request: list[float] = []
    to_first_write: list[float] = []
    revoked = False
    for n in range(KILLS):
        if everything_written():
            break
        port, liveness = free_ports(2)
        argv = [a.replace("{liveness}", str(liveness)) for a in args]
        started = time.monotonic()
        op = stack.start_operator(*argv, name=f"crash-{n}", M3STRIPE_METRICS_PORT=str(port), **env)
        wait_for(lambda p=port: _holds_lease(p), timeout=60, interval=0.1, what=f"restart {n} to hold the Lease")
        to_lease.append(time.monotonic() - started)
        wait_for(lambda p=port: _stripe_calls(p)[0] > 0, timeout=60, interval=0.1, what=f"restart {n} to call Stripe")
        to_first_request.append(time.monotonic() - started)
        wait_for(
            lambda p=port: _stripe_calls(p)[1] > 0 or everything_written(),
            timeout=120,
            interval=0.1,
            what=f"restart {n} to write to Stripe",
        )
        if _stripe_calls(port)[1] == 0:
            op.kill()
            break
        to_first_write.append(time.monotonic() - started)
        if n == 1 and not revoked:
            # m3ter answers 403 for a revoked or expired token: the operator must fetch a new one and go on.
            revoked = bool(stack.call(lambda: stack.m3ter.revoke_tokens("faults", status=403)))
        time.sleep(max(0.0, started + 30 - time.monotonic()))
        op.kill()
    print("seconds from each restart to holding the Lease:", [round(t, 1) for t in to_lease])
    print("seconds from each restart to its first Stripe request:", [round(t, 1) for t in to_first_request])
    print("seconds from each restart to its first Stripe write:", [round(t, 1) for t in to_first_write])
    assert len(to_first_write) >= 3, "the crashes came too late to interrupt the work"
    assert revoked
    assert max(to_first_request) <= 20, to_first_request
    assert max(to_first_write) <= 20, to_first_write
    op = stack.start_operator(*[a.replace("{liveness}", str(free_ports(1)[0])) for a in args], name="final", **env)
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
