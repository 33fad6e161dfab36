"""The client-side budget of a Stripe account: one bucket per account and mode, one per endpoint, and urgent
requests (made while other Bills wait for them) served first."""

from __future__ import annotations

import asyncio

import pytest

from m3stripe.adapters.stripe_rate_limit import (
    ENDPOINT_REQUESTS_PER_SECOND,
    Bucket,
    LimiterRegistry,
    StripeRateLimit,
    budget_label,
)


def test_limiter_registry_keeps_one_budget_per_account_and_mode() -> None:
    registry = LimiterRegistry()
    test = registry.get("acct_1", False, 25, owner="int-test")
    assert registry.get("acct_1", False, 25, owner="int-test-2") is test
    assert registry.get("acct_2", False, 25) is not test
    live = registry.get("acct_1", True, 100, owner="int-live")
    assert live is not test
    assert (live.per_second, test.per_second) == (100, 25)


def test_each_budget_is_labelled_by_its_mode_and_a_digest_of_its_account_never_the_account() -> None:
    registry = LimiterRegistry()
    live, test = registry.get("acct_1Abc", True, 100), registry.get("acct_1Abc", False, 25)
    assert live.budget == budget_label("acct_1Abc", True)
    assert live.budget.startswith("live.") and test.budget.startswith("test.")
    assert live.budget.split(".")[1] == test.budget.split(".")[1]  # one account, two modes
    assert registry.get("acct_2Xyz", True, 100).budget != live.budget
    assert "acct" not in live.budget and len(live.budget) == len("live.") + 12
    # The digest is the one status.sync.scope records for the account (its third part).
    from m3stripe.domain.progress import scope_id

    assert scope_id("org", live=True, stripe_account="acct_1Abc").endswith(live.budget)


def test_a_live_and_a_test_integration_on_one_account_do_not_flip_each_others_rate() -> None:
    registry = LimiterRegistry()
    for _ in range(3):
        live = registry.get("acct_1", True, 100, owner="live")
        test = registry.get("acct_1", False, 25, owner="test")
        assert (live.per_second, test.per_second) == (100, 25)


def test_integrations_sharing_an_account_and_mode_get_the_lowest_rate_any_asked_for() -> None:
    registry = LimiterRegistry()
    shared = registry.get("acct_1", True, 100, owner="a")
    assert registry.get("acct_1", True, 40, owner="b") is shared
    assert shared.per_second == 40
    registry.get("acct_1", True, 100, owner="a")  # a's next pass does not raise it back
    assert shared.per_second == 40
    registry.get("acct_1", True, 80, owner="b")  # b raised its own limit: the lowest is now 80
    assert shared.per_second == 80


@pytest.mark.looptime
async def test_each_endpoint_has_its_own_budget_of_25_per_second_within_the_accounts() -> None:
    limit = StripeRateLimit(100)
    assert limit.endpoint_per_second == ENDPOINT_REQUESTS_PER_SECOND == 25
    loop = asyncio.get_running_loop()
    started = loop.time()
    for _ in range(24):  # the 25th slot of the burst is kept for an urgent request
        await limit.acquire("invoices.create")
    for _ in range(24):
        await limit.acquire("invoices.list")  # another endpoint: no wait
    assert loop.time() - started == 0
    assert not limit.endpoint("invoices.create").has_capacity()
    assert limit.endpoint("invoices.create").has_capacity(urgent=True)
    assert limit.endpoint("invoices.add_lines").has_capacity()


def test_the_endpoint_limit_is_stripes_25_unless_the_account_was_raised_above_the_modes_default() -> None:
    registry = LimiterRegistry()
    assert registry.get("acct_1", True, 100).endpoint_per_second == 25
    assert registry.get("acct_1", False, 25).endpoint_per_second == 25
    assert registry.get("acct_2", False, 10).endpoint_per_second == 25
    assert registry.get("acct_3", True, 400).endpoint_per_second == 100  # raised 4x: 4x per endpoint too


@pytest.mark.looptime
async def test_a_bucket_lets_its_rate_less_the_urgent_slot_through_at_once_then_one_per_rate_th_of_a_second() -> None:
    bucket = Bucket(5)
    loop = asyncio.get_running_loop()
    started = loop.time()
    times = []
    for _ in range(8):
        await bucket.acquire()
        times.append(round(loop.time() - started, 3))
    assert times == [0, 0, 0, 0, 0.2, 0.4, 0.6, 0.8]


async def served_order(bucket: Bucket, waiters: list[tuple[str, bool]]) -> list[str]:
    order: list[str] = []

    async def take(name: str, urgent: bool) -> None:
        await bucket.acquire(urgent=urgent)
        order.append(name)

    tasks = []
    for name, urgent in waiters:
        tasks.append(asyncio.create_task(take(name, urgent)))
        await asyncio.sleep(0)  # each queues in turn
    await asyncio.gather(*tasks)
    return order


@pytest.mark.looptime
async def test_an_urgent_request_takes_the_next_slot_ahead_of_those_that_waited_longer() -> None:
    bucket = Bucket(2)
    await bucket.acquire()
    await bucket.acquire()  # full: everyone below waits
    order = await served_order(bucket, [("a", False), ("b", False), ("urgent", True), ("c", False)])
    assert order == ["urgent", "a", "b", "c"]


@pytest.mark.looptime
async def test_without_urgency_waiters_are_served_in_the_order_they_came() -> None:
    bucket = Bucket(1)
    await bucket.acquire()
    assert await served_order(bucket, [(name, False) for name in "abcde"]) == list("abcde")


@pytest.mark.looptime
async def test_a_waiter_cancelled_in_line_spends_no_slot() -> None:
    bucket = Bucket(1)
    loop = asyncio.get_running_loop()
    await bucket.acquire()
    started = loop.time()
    gone = asyncio.create_task(bucket.acquire())
    await asyncio.sleep(0)
    gone.cancel()
    await bucket.acquire()  # the slot the cancelled one would have had
    assert loop.time() - started == pytest.approx(1.0)
    assert gone.cancelled()


@pytest.mark.looptime
async def test_an_urgent_request_is_first_in_line_for_the_accounts_budget() -> None:
    limit = StripeRateLimit(2)
    for _ in range(2):
        await limit.acquire("invoices.list")
    order: list[str] = []

    async def take(name: str, endpoint: str, urgent: bool = False) -> None:
        await limit.acquire(endpoint, urgent=urgent)
        order.append(name)

    tasks = []
    for name, endpoint, urgent in [
        ("list", "invoices.list", False),
        ("lines", "invoices.add_lines", False),
        ("urgent create", "invoices.create", True),
    ]:
        tasks.append(asyncio.create_task(take(name, endpoint, urgent)))
        await asyncio.sleep(0)
    await asyncio.gather(*tasks)
    assert order == ["urgent create", "list", "lines"]


async def used_up(rate: float) -> Bucket:
    """A bucket whose burst the other requests have used up: only the slot kept for urgent ones is left."""
    bucket = Bucket(rate)
    for _ in range(int(rate) - 1):
        await bucket.acquire()
    return bucket


@pytest.mark.looptime
async def test_waiters_are_let_go_in_batches_at_the_buckets_rate_and_never_sooner_than_it_allows() -> None:
    bucket = await used_up(100)
    loop = asyncio.get_running_loop()
    started = loop.time()
    served: list[float] = []

    async def take() -> None:
        await bucket.acquire()
        served.append(round(loop.time() - started, 3))

    await asyncio.gather(*(take() for _ in range(20)))
    # One wake-up per BATCH_SECONDS lets go the slots freed meanwhile, not one wake-up per slot.
    assert sorted(set(served)) == [0.05, 0.1, 0.15, 0.2]
    assert [served.count(t) for t in (0.05, 0.1, 0.15, 0.2)] == [5, 5, 5, 5]
    # Never sooner than the bucket allows: the n-th waiter goes no earlier than its slot frees (n / rate).
    assert all(t >= (n + 1) / 100 - 1e-9 for n, t in enumerate(sorted(served)))


@pytest.mark.looptime
async def test_an_urgent_request_takes_the_slot_kept_for_it_at_once_and_the_next_the_moment_one_frees() -> None:
    bucket = await used_up(100)
    loop = asyncio.get_running_loop()
    assert not bucket.has_capacity()
    started = loop.time()
    await bucket.acquire(urgent=True)  # the others left it the last slot of the burst
    assert loop.time() == started
    await bucket.acquire(urgent=True)  # not with the next batch: when the next slot frees
    assert loop.time() - started == pytest.approx(0.01)


@pytest.mark.looptime
async def test_a_bucket_too_small_to_keep_a_slot_serves_urgent_and_other_requests_alike() -> None:
    bucket = Bucket(1)
    loop = asyncio.get_running_loop()
    await bucket.acquire()
    await bucket.acquire()
    assert loop.time() == pytest.approx(1.0)


@pytest.mark.looptime
async def test_a_request_that_comes_while_others_wait_does_not_put_off_their_batch() -> None:
    bucket = await used_up(100)
    loop = asyncio.get_running_loop()
    started = loop.time()
    served: dict[str, float] = {}

    async def take(name: str) -> None:
        await bucket.acquire()
        served[name] = round(loop.time() - started, 3)

    first = asyncio.create_task(take("first"))
    await asyncio.sleep(0.005)  # no slot free yet for the next one either
    await asyncio.gather(first, take("next"))
    assert served == {"first": 0.05, "next": 0.05}
