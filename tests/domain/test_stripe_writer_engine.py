"""A Bill waiting for its customer's lock holds no concurrency slot: one customer's long queue never starves the others.

The real SyncEngine reads Bills from the m3ter emulator through the official m3ter SDK and writes them through the
official stripe SDK to the Stripe emulator (contract mode), both on the test's event loop, with Stripe latency.
"""

from __future__ import annotations

import pytest

from m3stripe.adapters.m3ter_token import M3terCredentials
from m3stripe.adapters.stripe_client import open_client
from m3stripe.domain.mapping import META_ACCOUNT, META_BILL
from m3stripe.domain.runs import ErrorBudget, RunReport
from m3stripe.testing.m3ter_emulator import M3terEmulator
from m3stripe.testing.stripe_emulator import StripeEmulator
from tests.domain.builders import engine_spec
from tests.support.engine_world import send_pass
from tests.support.world import m3ter_source

# On fake time (looptime): the emulators run on the test's event loop, so Stripe's latency takes no real time and the
# Bills' writes interleave the same way on a loaded machine.
pytestmark = pytest.mark.looptime

KEY = "sk_test_engineQueues01"
ORG = "org-queues"
BUSY_BILLS = 40
CREDS = M3terCredentials(ORG, "queues", "queues-secret")


def _busy_customer(m3ter: M3terEmulator, bills: int) -> str:
    """The busy customer's m3ter Account, with `bills` Bills; m3ter lists them first."""
    m3ter.add_client(CREDS.client_id, CREDS.client_secret, ORG)
    busy = m3ter.add_account(ORG, name="Busy", code="busy", currency="USD")
    for n in range(bills):
        m3ter.add_bill(ORG, account_id=busy, lines=[{"line_item_type": "USAGE", "subtotal": f"{n + 1}.00"}])
    return busy


async def _send(
    m3ter: M3terEmulator, stripe_url: str, key: str, *, budget: int, customers: tuple[str, ...] = ()
) -> RunReport:
    """A pass with Stripe's `key`, 4 Bills at a time, once each of the `customers` has its Stripe customer."""
    async with m3ter_source(CREDS, m3ter.url) as source, open_client(key, api_base=stripe_url) as client:
        for acct in customers:
            await client.v1.customers.create_async(params={"metadata": {META_ACCOUNT: acct}})
        return await send_pass(
            engine_spec(ORG),
            source=source,
            client=client,
            integration_id="int-queues",
            budget=ErrorBudget(budget),
            concurrency=4,
        )


async def _pass() -> tuple[list[str], str, int]:
    """(Bill ids in the order Stripe got their invoices, the quiet customer's Bill id, Bills sent)."""
    stripe_emulator = StripeEmulator(seed=3, contract_mode=True, latency_seconds=0.01)
    account = stripe_emulator.add_api_key(KEY)
    async with stripe_emulator, M3terEmulator() as m3ter:
        busy = _busy_customer(m3ter, BUSY_BILLS)
        quiet = m3ter.add_account(ORG, name="Quiet", code="quiet", currency="USD")
        # After the busy customer's Bills.
        quiet_bill = m3ter.add_bill(ORG, account_id=quiet, lines=[{"line_item_type": "USAGE", "subtotal": "9.00"}])
        report = await _send(m3ter, stripe_emulator.url, KEY, budget=10, customers=(busy, quiet))
        assert not stripe_emulator.violations, stripe_emulator.violations
        invoices = stripe_emulator.state(account)["invoices"].values()  # in the order Stripe created them
        return [str(i["metadata"][META_BILL]) for i in invoices], quiet_bill, report.sent


async def test_a_customer_with_many_bills_does_not_starve_another_customers_bill() -> None:
    order, quiet_bill, sent = await _pass()
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
        _busy_customer(m3ter, bills)
        report = await _send(m3ter, stripe_emulator.url, "sk_test_revokedKey0000", budget=1000)
        return len(report.events), stripe_emulator.request_count, report.sent + report.failed + report.skipped


async def test_once_stripe_refuses_the_key_the_queued_bills_are_not_sent_to_stripe() -> None:
    events, requests, reported = await _refused_pass(200)
    # At most the Bills already past the check when the first refusal came (one per read slot).
    assert 1 <= events <= 4 + 1, events
    assert requests <= 4 + 1, requests
    assert reported == events
