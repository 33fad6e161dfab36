"""`m3stripe demo`: the whole local stack, example integrations, the operator, and what happened.

Everything runs on 127.0.0.1: the Kubernetes API (kmock), Stripe and m3ter emulators, and an SMTP
server. The operator runs as a real process against them, exactly as it would against a cluster.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from m3stripe.testing.stack import LocalStack, wait_for

ORG = "demo-org"
KEY = "sk_test_51DemoKeyForTheEmulator"


def _print_table(rows: list[list[str]]) -> None:
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  " + "  ".join(str(cell).ljust(widths[i]) for i, cell in enumerate(row)))


def _ready(obj: dict[str, Any]) -> dict[str, Any]:
    for cond in (obj.get("status") or {}).get("conditions") or ():
        if cond["type"] == "Ready":
            return dict(cond)
    return {}


def _integrations(stack: LocalStack) -> None:
    rows = [["NAME", "DESTINATION", "CONNECTED", "DISABLED", "ERRORS", "READY", "REASON", "LAST RUN"]]
    for obj in sorted(stack.kube.list_integrations("billing"), key=lambda o: o["metadata"]["name"]):
        status = obj.get("status") or {}
        last = status.get("lastSync") or {}
        ready = _ready(obj)
        rows.append(
            [
                obj["metadata"]["name"],
                obj["spec"]["destination"],
                str(status.get("connected", "")),
                str(status.get("disabled", "")),
                str(status.get("consecutiveErrors", "")),
                ready.get("status", ""),
                ready.get("reason", ""),
                f"{last.get('status', '-')} ({last.get('message', 'not run')})",
            ]
        )
    _print_table(rows)
    for obj in stack.kube.list_integrations("billing"):
        ready = _ready(obj)
        if ready.get("status") != "True":
            print(f"  {obj['metadata']['name']}: {ready.get('message', '')}")
        for event in (obj.get("status") or {}).get("openEvents") or ():
            print(f"  {obj['metadata']['name']}: open event {event['id']} {event['kind']}: {event['message'][:160]}")


def _stripe(stack: LocalStack, account: str) -> None:
    state = stack.call(lambda: stack.stripe.state(account))
    rows = [["INVOICE", "CUSTOMER", "STATUS", "TOTAL", "LINES", "M3TER BILL (VERSION)"]]
    for inv in state["invoices"].values():
        meta = inv.get("metadata") or {}
        total = f"{inv['total'] / (1 if inv['currency'] == 'jpy' else 100):.2f} {inv['currency'].upper()}"
        rows.append(
            [
                inv["id"],
                inv["customer"],
                inv["status"],
                total,
                str(len(inv["lines"]["data"])),
                f"{meta.get('m3ter_bill_id', '')[:13]}… (v{meta.get('m3ter_bill_version', '')})",
            ]
        )
    pending = [i for i in state["invoice_items"].values() if i["invoice"] is None]
    _print_table(rows)
    print(
        f"  pending invoice items (for Stripe Subscriptions): {len(pending)}, "
        f"totalling {sum(i['amount'] for i in pending) / 100:.2f} USD"
    )


def _seed(stack: LocalStack) -> dict[str, str]:
    stripe_account = stack.call(lambda: stack.stripe.add_api_key(KEY))
    stack.call(lambda: stack.m3ter.add_client("demo-client", "demo-secret", ORG))
    sdk = stack.stripe_client(KEY)
    ids: dict[str, str] = {"stripe": stripe_account}
    people = [("Acme Ltd", "UK"), ("Bravo plc", "UK"), ("Charlie Inc", "US"), ("Delta GmbH", "DE")]
    for name, country in people:
        acct = stack.call(
            partial(
                stack.m3ter.add_account,
                ORG,
                name=name,
                code=name.split()[0].lower(),
                currency="USD",
                address={"country": country},
            )
        )
        ids[name] = acct
        if country != "DE":  # Delta has no Stripe customer yet: a missing-mapping event shows it
            sdk.v1.customers.create(params={"name": name, "metadata": {"m3ter_account_id": acct}})
    lines: list[dict[str, str | int]] = [
        {"line_item_type": "STANDING_CHARGE", "subtotal": "49.00", "description": "Platform subscription"},
        {"line_item_type": "USAGE", "quantity": 12500, "unit_price": "0.004", "description": "API calls"},
        {"line_item_type": "CREDIT_MEMO", "subtotal": "-10.00", "description": "Onboarding credit"},
    ]
    for name in [n for n in ids if n != "stripe"]:
        ids[f"bill:{name}"] = stack.call(
            partial(
                stack.m3ter.add_bill,
                ORG,
                account_id=ids[name],
                lines=lines,
                purchase_order_number=f"PO-{name[:4].upper()}",
            )
        )
    return ids


def _apply(stack: LocalStack) -> None:
    stack.ensure_namespace("billing")
    stack.kube.put_secret("billing", "stripe-test-key", {"apiKey": KEY})
    stack.kube.put_secret("billing", "m3ter-api", {"clientId": "demo-client", "clientSecret": "demo-secret"})
    source = {"organizationId": ORG, "credentialsRef": {"name": "m3ter-api"}}
    stack.kube.create_integration(
        "billing",
        "uk",
        {
            "destination": "StripeTestMode",
            "credentialRef": {"name": "stripe-test-key"},
            "m3ter": source,
            "accountFilter": 'address.country == "UK"',
            "poNumberCustomField": "PO number",
            "syncInterval": "30s",
            "integrationDisabledNotificationUsers": ["billing-oncall@example.com"],
        },
    )
    stack.kube.create_integration(
        "billing",
        "rest-of-world",
        {
            "destination": "StripeTestMode",
            "credentialRef": {"name": "stripe-test-key"},
            "m3ter": source,
            "accountFilter": 'address.country != "UK"',
            "createStripeInvoice": False,
            "syncInterval": "30s",
        },
    )
    stack.kube.create_integration(
        "billing",
        "not-connected-yet",
        {
            "destination": "Stripe",
            "m3ter": source,
            "syncInterval": "30s",
        },
    )


def _wait(what: str, predicate: Callable[[], Any], timeout: float = 60) -> None:
    print(f"... waiting for {what}")
    wait_for(predicate, timeout=timeout, interval=0.5, what=what)


def main(duration: float = 20.0) -> int:
    with tempfile.TemporaryDirectory(prefix="m3stripe-demo-") as tmp, LocalStack(Path(tmp)) as stack:
        print("Local stack on 127.0.0.1:")
        print(f"  Kubernetes API (kmock)  {stack.kube_url}\n  Stripe emulator         {stack.stripe.url}")
        print(
            f"  m3ter emulator          {stack.m3ter.url}\n  SMTP                    {stack.smtp.host}:{stack.smtp.port}"
        )
        ids = _seed(stack)
        _apply(stack)
        print("\nApplied 3 StripeIntegrations in namespace billing; starting the operator (python -m m3stripe run).")
        with stack.operator(M3STRIPE_SMTP_SECURITY="none") as op:

            def ran(name: str) -> Callable[[], bool]:
                return lambda: bool((stack.kube.get_integration("billing", name).get("status") or {}).get("lastSync"))

            _wait("the first sync runs", lambda: ran("uk")() and ran("rest-of-world")())
            print("\n$ kubectl get stripeintegrations -n billing")
            _integrations(stack)
            print("\nStripe (test mode) now holds:")
            _stripe(stack, ids["stripe"])

            print("\nAcme's Bill is recalculated in m3ter (version 2), and Delta gets a Stripe customer;")
            print("a sync is requested with `kubectl annotate stripeintegration uk m3stripe.dev/requested-at=...`")
            stack.call(
                lambda: stack.m3ter.regenerate_bill(
                    ORG,
                    ids["bill:Acme Ltd"],
                    lines=[
                        {
                            "line_item_type": "STANDING_CHARGE",
                            "subtotal": "49.00",
                            "description": "Platform subscription",
                        },
                        {
                            "line_item_type": "USAGE",
                            "quantity": 20000,
                            "unit_price": "0.004",
                            "description": "API calls",
                        },
                    ],
                )
            )
            stack.stripe_client(KEY).v1.customers.create(
                params={"name": "Delta GmbH", "metadata": {"m3ter_account_id": ids["Delta GmbH"]}}
            )
            token = str(time.time())
            for name in ("uk", "rest-of-world"):
                stack.annotate("billing", name, "m3stripe.dev/requested-at", token)
            _wait(
                "the requested runs",
                lambda: all(
                    (stack.kube.get_integration("billing", n).get("status") or {}).get("lastHandledRequestedAt")
                    == token
                    for n in ("uk", "rest-of-world")
                ),
            )
            print("\n$ kubectl get stripeintegrations -n billing")
            _integrations(stack)
            print("\nStripe (test mode) now holds (Acme's draft was updated in place, not duplicated):")
            _stripe(stack, ids["stripe"])
            if duration > 0:
                time.sleep(min(duration, 5))
        print(f"\nOperator log: {op.log_path} (removed with the demo's temporary directory)")
        print("Done. Next: `kubectl apply -k deploy/overlays/cluster-wide` on a real cluster (see README).")
    return 0
