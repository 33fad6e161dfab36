"""A customer's Bills are written several at once (issue 22), and exactly once still holds: when Stripe answers a
write with lock_timeout because something else holds the customer, the operator backs off for that request only,
and no Bill is lost or doubled."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from m3stripe.adapters.stripe_client import open_client
from m3stripe.adapters.stripe_gateway import RetryPolicy
from m3stripe.adapters.stripe_rate_limit import StripeRateLimit
from m3stripe.domain.mapping import META_ACCOUNT, META_BILL
from m3stripe.domain.runs import ErrorBudget, RunReport, SyncState
from m3stripe.domain.sync_engine import CUSTOMER_CONCURRENCY
from m3stripe.testing.stripe_emulator.locks import ObjectLocks
from tests.support.engine_world import KEY, EngineWorld, next_state, world


async def one_customer_with_bills(w: EngineWorld, count: int) -> tuple[str, list[str]]:
    account = w.m3ter_account("big")
    customer = await w.customer_for(account)
    return customer, [w.bill(account, f"{n + 1}.00") for n in range(count)]


async def run(w: EngineWorld, state: SyncState | None = None, *, concurrency: int = 8) -> RunReport:
    """A pass that backs off from Stripe's lock_timeout as the operator does, through a client of its own."""
    retry = RetryPolicy(max_attempts=8, base_delay=0.02, max_delay=0.2)
    return await w.run(state, key=KEY, retry=retry, budget=ErrorBudget(10), concurrency=concurrency)


class RecordingLimit(StripeRateLimit):
    """An ample budget that records which requests asked for a slot as urgent."""

    def __init__(self) -> None:
        super().__init__(1000, 1000)
        self.asked: Counter[tuple[str, bool]] = Counter()

    async def acquire(self, endpoint: str, *, urgent: bool = False) -> None:
        self.asked[endpoint, urgent] += 1
        await super().acquire(endpoint, urgent=urgent)


def invoices_per_bill(w: EngineWorld) -> Counter[str]:
    return Counter(i["metadata"][META_BILL] for i in w.invoices())


def creations_refused(w: EngineWorld) -> int:
    return sum(1 for r in w.stripe.requests if r.endpoint == "POST /v1/invoices" and r.status == 429)


async def test_where_stripe_does_not_lock_the_customer_its_invoices_are_created_at_once_each_exactly_once() -> None:
    async with world() as w:
        w.stripe.latency_seconds = 0.02
        w.stripe.object_locks = ObjectLocks("addressed")
        _, bills = await one_customer_with_bills(w, 12)
        invoices = RecordingLimit()
        report = await w.run(key=KEY, concurrency=8, limiter=invoices)
        assert (report.sent, report.failed) == (12, 0)
        assert invoices_per_bill(w) == Counter(dict.fromkeys(bills, 1))
        # More than one request of the one customer was in Stripe at a time (one Bill after another, it is one).
        assert 1 < w.stripe.peak_in_flight <= 2 * CUSTOMER_CONCURRENCY
        # No creation waited for another: none was made holding the customer's lock, none was refused.
        assert invoices.asked["invoices.create", False] == 12 and invoices.asked["invoices.create", True] == 0
        assert w.stripe.object_locks.refused == 0
        again = await run(w)
        assert (again.sent, again.unchanged) == (0, 12) and invoices_per_bill(w) == Counter(dict.fromkeys(bills, 1))


@pytest.mark.parametrize("refusals_saved", [True, False], ids=["refusals-saved-under-the-key", "refusals-not-saved"])
async def test_where_stripe_locks_the_customer_the_pass_goes_one_creation_at_a_time_after_the_first_refusal(
    refusals_saved: bool,
) -> None:
    async with world() as w:
        w.stripe.latency_seconds = 0.02
        w.stripe.object_locks = ObjectLocks("strict", refusals_saved=refusals_saved)
        _, bills = await one_customer_with_bills(w, 12)
        report = await run(w)
        assert (report.sent, report.failed) == (12, 0)
        assert invoices_per_bill(w) == Counter(dict.fromkeys(bills, 1))
        # Refused only while the creations were concurrent: at most the customer's Bills in flight, less the one
        # Stripe let through, and every refused creation was made again holding the lock.
        assert 1 <= creations_refused(w) < CUSTOMER_CONCURRENCY
        assert w.stripe.object_locks.refused == creations_refused(w)
        # Each refused creation was made again once, and answered: with its own idempotency key (one per Bill and
        # pass), or, where Stripe saved the refusal under that key, with the key derived from it (a retry with the
        # key itself would only get the 429 back).
        creations = [r for r in w.stripe.requests if r.endpoint == "POST /v1/invoices"]
        for n, refused in enumerate(creations):
            if refused.status == 429:
                retry_key = f"{refused.idempotency_key}-r1" if refusals_saved else refused.idempotency_key
                later = creations[n + 1 :]
                assert [(r.status, r.replayed) for r in later if r.idempotency_key == retry_key] == [(200, False)]
                assert not [r for r in later if r.idempotency_key == refused.idempotency_key and refusals_saved]
        again = await run(w)
        assert (again.sent, again.unchanged) == (0, 12) and invoices_per_bill(w) == Counter(dict.fromkeys(bills, 1))


async def test_lock_timeouts_from_another_writer_on_the_customer_lose_and_double_no_bill() -> None:
    async with world() as w:
        w.stripe.latency_seconds = 0.02
        customer, bills = await one_customer_with_bills(w, 16)
        stop = asyncio.Event()

        async def crm_sync() -> None:
            """Another system writing to the same Stripe Customer all the time (it holds the customer's lock)."""
            async with open_client(KEY, api_base=w.stripe.url) as other:
                n = 0
                while not stop.is_set():
                    n += 1
                    try:
                        await other.v1.customers.update_async(customer, params={"metadata": {"crm_sync": str(n)}})
                    except Exception:  # the operator holds it now: the other system retries later
                        await asyncio.sleep(0.005)

        contender = asyncio.create_task(crm_sync())
        try:
            report = await run(w)
            state = next_state(report)
            for _ in range(5):
                if not state.retry_bill_ids:
                    break
                report = await run(w, state)
                state = next_state(report)
        finally:
            stop.set()
            await contender
        assert w.stripe.object_locks.refused > 0, "the test meant Stripe to answer lock_timeout"
        assert invoices_per_bill(w) == Counter(dict.fromkeys(bills, 1))
        for invoice in w.invoices():
            assert invoice["customer"] == customer and len(invoice["lines"]["data"]) == 1
        customer_meta = w.stripe.state(w.account)["customers"][customer]["metadata"]
        assert customer_meta[META_ACCOUNT] and customer_meta["crm_sync"]


async def test_only_the_write_a_customers_other_bills_wait_for_asks_for_its_rate_limit_slot_as_urgent() -> None:
    async with world() as w:
        w.stripe.latency_seconds = 0.02  # so that the creations overlap
        await one_customer_with_bills(w, 6)
        invoices = RecordingLimit()
        report = await w.run(key=KEY, concurrency=8, limiter=invoices)
        assert report.sent == 6
        # The first creations go at once and are not urgent; once Stripe refused one, they wait for each other.
        assert invoices.asked["invoices.create", False] >= 2
        let_through = invoices.asked["invoices.create", False] - creations_refused(w)
        assert invoices.asked["invoices.create", True] == 6 - let_through
        assert invoices.asked["invoices.list", False] and invoices.asked["invoices.add_lines", False]
        assert not [key for key in invoices.asked if key[1] and key[0] != "invoices.create"]

        items = RecordingLimit()
        account = w.m3ter_account("items")
        await w.customer_for(account)
        for amount in ("5.00", "6.00", "7.00"):
            w.bill(account, amount)
        await w.run(key=KEY, limiter=items, createStripeInvoice=False)
        assert items.asked["invoiceitems.create", True] > 0
        assert not [key for key in items.asked if key[1] and key[0] != "invoiceitems.create"]
