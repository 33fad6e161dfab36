"""The end-to-end tests' world: the local stack (m3stripe.testing.stack, the `stack` fixture of tests/conftest.py) with
the operator as a process, and what the tests do to it and read from it: credentials and Secrets, an m3ter
Organization per test, integrations, passes on request, the invoices Stripe holds per Bill, the operator's metrics."""

from __future__ import annotations

import time
import urllib.request
import uuid
from collections import Counter
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from m3stripe.testing.stack import LocalStack, wait_for


def connect(stack: LocalStack, ns: str, org: str, key: str, client: str) -> None:
    """m3ter knows the Service User `client` of `org`; `ns` holds it and the Stripe `key` as the Secrets `m3ter` and
    `stripe`. The key is the caller's to register: registering it again would give it a new Stripe account."""
    secret = f"{client}-secret"
    stack.call(lambda: stack.m3ter.add_client(client, secret, org))
    stack.ensure_namespace(ns)
    stack.kube.put_secret(ns, "m3ter", {"clientId": client, "clientSecret": secret})
    stack.kube.put_secret(ns, "stripe", {"apiKey": key})


def integration_spec(org: str, *, every: str | None = "1h", **overrides: Any) -> dict[str, Any]:
    """A spec reading `org` with the Secrets of `connect`, syncing `every` (None: the CRD's default); with the
    default of an hour, passes run on request."""
    spec: dict[str, Any] = {
        "destination": "StripeTestMode",
        "credentialRef": {"name": "stripe"},
        "m3ter": {"organizationId": org, "credentialsRef": {"name": "m3ter"}},
    }
    if every is not None:
        spec["syncInterval"] = every
    return {**spec, **overrides}


def status(stack: LocalStack, ns: str, name: str) -> dict[str, Any]:
    return dict(stack.kube.get_integration(ns, name).get("status") or {})


def first_run(stack: LocalStack, ns: str, name: str, timeout: float = 60) -> dict[str, Any]:
    return wait_for(
        lambda: (s := status(stack, ns, name)).get("lastSync") and s,
        timeout=timeout,
        what=f"the first run of {ns}/{name}",
    )


def run_now(stack: LocalStack, ns: str, name: str, timeout: float = 60) -> dict[str, Any]:
    """Ask for a pass (requested-at annotation) and wait until the operator echoes the token."""
    token = f"t{uuid.uuid4().hex[:8]}-{time.time()}"
    stack.annotate(ns, name, "m3stripe.dev/requested-at", token)
    return wait_for(
        lambda: (s := status(stack, ns, name)).get("lastHandledRequestedAt") == token and s,
        timeout=timeout,
        what=f"a sync run of {ns}/{name}",
    )


def customer(stripe: Any, account_id: str) -> str:
    """A Stripe customer for the m3ter Account, found by its metadata."""
    return str(stripe.v1.customers.create(params={"name": account_id, "metadata": {"m3ter_account_id": account_id}}).id)


class Org:
    """One m3ter organization and namespace per test, so integrations never see each other's Bills."""

    def __init__(self, stack: LocalStack, prefix: str, key: str) -> None:
        self.stack = stack
        self.ns = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self.id = f"org-{self.ns}"
        connect(stack, self.ns, self.id, key, f"client-{self.ns}")

    def spec(self, **overrides: Any) -> dict[str, Any]:
        return integration_spec(self.id, **overrides)

    def account(self, currency: str = "USD", *, country: str | None = None, **fields: Any) -> str:
        n = uuid.uuid4().hex[:8]
        if country is not None:
            fields["address"] = {"country": country}
        return str(
            self.stack.call(
                lambda: self.stack.m3ter.add_account(
                    self.id, name=f"Customer {n}", code=f"c-{n}", currency=currency, **fields
                )
            )
        )

    def mapped_account(self, stripe: Any, currency: str = "USD") -> str:
        """An Account with its Stripe customer."""
        account = self.account(currency)
        customer(stripe, account)
        return account

    def bill(self, account_id: str, lines: list[dict[str, Any]], **fields: Any) -> str:
        return str(
            self.stack.call(lambda: self.stack.m3ter.add_bill(self.id, account_id=account_id, lines=lines, **fields))
        )


def seed(stack: LocalStack, org: str, stripe: Any, *, accounts: int, bills: int, prefix: str) -> list[str]:
    """`accounts` m3ter Accounts of `org` with their Stripe customers, and `bills` Bills dealt over them in turn (the
    n-th of n + 1.00); returns the Bills' ids."""
    ids = []
    for i in range(accounts):
        account = stack.call(
            lambda i=i: stack.m3ter.add_account(org, name=f"{prefix.upper()}{i}", code=f"{prefix}{i}", currency="USD")
        )
        stripe.v1.customers.create(params={"metadata": {"m3ter_account_id": account}})
        ids.append(account)
    return [
        stack.call(
            lambda n=n: stack.m3ter.add_bill(
                org, account_id=ids[n % accounts], lines=[{"line_item_type": "USAGE", "subtotal": f"{n + 1}.00"}]
            )
        )
        for n in range(bills)
    ]


def invoices_per_bill(stack: LocalStack, stripe: Any) -> Counter[str]:
    """How many invoices Stripe holds of each Bill, on the account of the `stripe` client's key."""
    account = str(stripe.v1.accounts.retrieve_current().id)
    state = stack.call(lambda: stack.stripe.state(account))
    return Counter(str(i["metadata"].get("m3ter_bill_id")) for i in state["invoices"].values())


Metrics = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> Metrics:
    """The operator's metrics on 127.0.0.1:`port`, by name and labels."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.get((name, frozenset(labels.items())))
