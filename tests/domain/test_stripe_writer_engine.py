"""A Bill waiting for its customer's lock holds no concurrency slot: one customer's long queue never starves the others.

The real SyncEngine reads Bills from the m3ter emulator through the official m3ter SDK and writes them through the
official stripe SDK to the Stripe emulator (contract mode), both on the test's event loop, with Stripe latency.
"""

from __future__ import annotations

import asyncio

from m3stripe.adapters.m3ter_source import M3terCredentials, M3terSource
from m3stripe.adapters.stripe_client import open_client
from m3stripe.adapters.stripe_gateway import StripeGateway
from m3stripe.adapters.stripe_ledger import StripeLedger
from m3stripe.api.spec import StripeIntegrationSpec
from m3stripe.domain.mapping import META_ACCOUNT, META_BILL
from m3stripe.domain.runs import ErrorBudget, SyncState
from m3stripe.domain.sync_engine import SyncEngine
from m3stripe.testing.m3ter_emulator import M3terEmulator
from m3stripe.testing.stripe_emulator import StripeEmulator

KEY = "sk_test_engineQueues01"
ORG = "org-queues"
BUSY_BILLS = 40


async def _pass() -> tuple[list[str], str, int]:
    """(Bill ids in the order Stripe got their invoices, the quiet customer's Bill id, Bills sent)."""
    stripe_emulator = StripeEmulator(seed=3, contract_mode=True, latency_seconds=0.01)
    account = stripe_emulator.add_api_key(KEY)
    async with stripe_emulator, M3terEmulator() as m3ter:
        m3ter.add_client("queues", "queues-secret", ORG)
        busy = m3ter.add_account(ORG, name="Busy", code="busy", currency="USD")
        quiet = m3ter.add_account(ORG, name="Quiet", code="quiet", currency="USD")
        # m3ter lists the busy customer's Bills first, the quiet customer's last.
        for n in range(BUSY_BILLS):
            m3ter.add_bill(ORG, account_id=busy, lines=[{"line_item_type": "USAGE", "subtotal": f"{n + 1}.00"}])
        quiet_bill = m3ter.add_bill(ORG, account_id=quiet, lines=[{"line_item_type": "USAGE", "subtotal": "9.00"}])
        spec = StripeIntegrationSpec.model_validate(
            {
                "destination": "StripeTestMode",
                "credentialRef": {"name": "stripe"},
                "m3ter": {"organizationId": ORG, "credentialsRef": {"name": "m3ter"}},
            }
        )
        source = M3terSource(M3terCredentials(ORG, "queues", "queues-secret"), base_url=m3ter.url)
        try:
            async with open_client(KEY, api_base=stripe_emulator.url) as client:
                for acct in (busy, quiet):
                    await client.v1.customers.create_async(params={"metadata": {META_ACCOUNT: acct}})
                engine = SyncEngine(
                    spec=spec,
                    account_filter=None,
                    integration_id="int-queues",
                    source=source,
                    ledger=StripeLedger(StripeGateway(client)),
                    budget=ErrorBudget(10),
                    concurrency=4,
                )
                report = await engine.run_pass(SyncState())
        finally:
            await source.aclose()
        assert not stripe_emulator.violations, stripe_emulator.violations
        invoices = stripe_emulator.state(account)["invoices"].values()  # in the order Stripe created them
        return [str(i["metadata"][META_BILL]) for i in invoices], quiet_bill, report.sent


def test_a_customer_with_many_bills_does_not_starve_another_customers_bill() -> None:
    order, quiet_bill, sent = asyncio.run(_pass())
    assert sent == BUSY_BILLS + 1
    assert sorted(order) == sorted(set(order))  # exactly once each
    # The busy customer's Bills are written one at a time; the quiet one's goes alongside, not after them all.
    # (With slots held while waiting for the busy customer's lock it came after BUSY_BILLS - 4 of them.)
    assert order.index(quiet_bill) < 5, order.index(quiet_bill)


async def _refused_pass(bills: int) -> tuple[int, int, int]:
    """(error events, Stripe requests, Bills reported) of a pass whose Stripe key Stripe refuses."""
    stripe_emulator = StripeEmulator(seed=4, contract_mode=True, latency_seconds=0.01)
    stripe_emulator.add_api_key(KEY)
    async with stripe_emulator, M3terEmulator() as m3ter:
        m3ter.add_client("queues", "queues-secret", ORG)
        busy = m3ter.add_account(ORG, name="Busy", code="busy", currency="USD")
        for n in range(bills):
            m3ter.add_bill(ORG, account_id=busy, lines=[{"line_item_type": "USAGE", "subtotal": f"{n + 1}.00"}])
        spec = StripeIntegrationSpec.model_validate(
            {
                "destination": "StripeTestMode",
                "credentialRef": {"name": "stripe"},
                "m3ter": {"organizationId": ORG, "credentialsRef": {"name": "m3ter"}},
            }
        )
        source = M3terSource(M3terCredentials(ORG, "queues", "queues-secret"), base_url=m3ter.url)
        try:
            async with open_client("sk_test_revokedKey0000", api_base=stripe_emulator.url) as client:
                engine = SyncEngine(
                    spec=spec,
                    account_filter=None,
                    integration_id="int-queues",
                    source=source,
                    ledger=StripeLedger(StripeGateway(client)),
                    budget=ErrorBudget(1000),
                    concurrency=4,
                )
                report = await engine.run_pass(SyncState())
        finally:
            await source.aclose()
        return len(report.events), stripe_emulator.request_count, report.sent + report.failed + report.skipped


def test_once_stripe_refuses_the_key_the_queued_bills_are_not_sent_to_stripe() -> None:
    events, requests, reported = asyncio.run(_refused_pass(200))
    # At most the Bills already past the check when the first refusal came (one per read slot).
    assert 1 <= events <= 4 + 1, events
    assert requests <= 4 + 1, requests
    assert reported == events
