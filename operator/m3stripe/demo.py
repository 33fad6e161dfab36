"""`m3stripe demo`: the whole local stack, example integrations, the operator, and what happened.

Everything runs on 127.0.0.1: the Kubernetes API (kmock), Stripe and m3ter emulators, and an SMTP
server. The operator runs as a real process against them, exactly as it would against a cluster.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

from m3stripe.testing.prometheus import Prometheus, find_binary, free_port, prometheus_rules
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


# The alerts as shipped, when the demo runs from a checkout of the repository (an installed package has no deploy/).
RULES = Path(__file__).resolve().parents[2] / "deploy" / "monitoring" / "prometheusrule.yaml"


@contextlib.contextmanager
def _prometheus(workdir: Path, metrics_port: int) -> Iterator[Prometheus]:
    """Prometheus on 127.0.0.1 scraping the operator's /metrics every second, with the shipped alerts if found."""
    rules = prometheus_rules(RULES.read_text()) if RULES.is_file() else None
    with Prometheus(workdir, targets=[f"127.0.0.1:{metrics_port}"], rules=rules) as prometheus:
        print(
            f"  Prometheus              {prometheus.url}  (scrapes the operator's {metrics_port}/metrics every second)"
        )
        if rules is None:
            print(f"  (no alert rules: {RULES} is not here; run the demo from a checkout to load them)")
        yield prometheus


def _where_to_look(prometheus: Prometheus, metrics_port: int) -> None:
    print("\nWhere to look (Prometheus on 127.0.0.1):")
    print(f"  {prometheus.url}/alerts     the shipped alerts: M3stripeIntegrationNotConnected is pending for")
    print("                                       not-connected-yet (it fires after 15 minutes)")
    print(f"  {prometheus.url}/graph?g0.expr=m3stripe_bills_total&g0.tab=0   Bills by integration and outcome")
    print(f"  {prometheus.url}/graph?g0.expr=m3stripe_stripe_requests_total&g0.tab=1   Stripe requests per budget")
    print(f"  http://127.0.0.1:{metrics_port}/metrics   the operator's own series")
    print("  The queries of deploy/monitoring/grafana-dashboard.json run there with the variables filled in")
    print("  ('$namespace', '$integration', '$budget' by .*, '$__rate_interval' by 5s).")


def main(duration: float | None = None, *, prometheus: bool = False) -> int:
    """The demo; with `prometheus`, also a real Prometheus (Debian's `prometheus`), kept up `duration` seconds."""
    if prometheus and find_binary("prometheus") is None:
        print("m3stripe demo --prometheus: prometheus is not installed (Debian: apt-get install prometheus)")
        return 2
    linger = duration if duration is not None else (600.0 if prometheus else 20.0)
    metrics_port = free_port() if prometheus else 0
    with contextlib.ExitStack() as resources:
        tmp = Path(resources.enter_context(tempfile.TemporaryDirectory(prefix="m3stripe-demo-")))
        stack = resources.enter_context(LocalStack(tmp))
        prom = resources.enter_context(_prometheus(tmp / "prometheus", metrics_port)) if prometheus else None
        return _run(stack, linger, prom, metrics_port)
    return 0


def _run(stack: LocalStack, duration: float, prometheus: Prometheus | None, metrics_port: int) -> int:
    print("Local stack on 127.0.0.1:")
    print(f"  Kubernetes API (kmock)  {stack.kube_url}\n  Stripe emulator         {stack.stripe.url}")
    print(f"  m3ter emulator          {stack.m3ter.url}\n  SMTP                    {stack.smtp.host}:{stack.smtp.port}")
    if prometheus is not None:
        print(
            f"  Prometheus              {prometheus.url} (scrapes the operator's :{metrics_port}/metrics every second)"
        )
        if prometheus.rules is None:
            print(f"  (no alert rules: {RULES} is not here; run the demo from a checkout to load them)")
    ids = _seed(stack)
    _apply(stack)
    print("\nApplied 3 StripeIntegrations in namespace billing; starting the operator (python -m m3stripe run).")
    with stack.operator(M3STRIPE_SMTP_SECURITY="none", M3STRIPE_METRICS_PORT=str(metrics_port)) as op:

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
                (stack.kube.get_integration("billing", n).get("status") or {}).get("lastHandledRequestedAt") == token
                for n in ("uk", "rest-of-world")
            ),
        )
        print("\n$ kubectl get stripeintegrations -n billing")
        _integrations(stack)
        print("\nStripe (test mode) now holds (Acme's draft was updated in place, not duplicated):")
        _stripe(stack, ids["stripe"])
        if prometheus is not None:
            _where_to_look(prometheus, metrics_port)
            print(f"\nThe operator and Prometheus stay up for {duration:.0f} s (Ctrl-C to stop sooner).")
            with contextlib.suppress(KeyboardInterrupt):
                time.sleep(duration)
        elif duration > 0:
            time.sleep(min(duration, 5))
    print(f"\nOperator log: {op.log_path} (removed with the demo's temporary directory)")
    print("Done. Next: `kubectl apply -k deploy/overlays/cluster-wide` on a real cluster (see README).")
    return 0
