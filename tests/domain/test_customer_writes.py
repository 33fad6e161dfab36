"""CustomerWrites: a pass's writes for a customer go concurrently until Stripe answers one with lock_timeout, then one
at a time per customer, each refused write retried holding the lock."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from m3stripe.domain.customer_writes import CustomerWrites
from m3stripe.domain.ports import UNLOCKED_CUSTOMER_WRITE, URGENT, Failure, LedgerError


class Stripe:
    """Writes that wait for `release`, record how many were in flight at once and how each was made."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.in_flight = 0
        self.peak = 0
        self.made: list[tuple[str, bool, bool]] = []  # (name, unlocked, urgent)
        self.refuse: set[str] = set()  # names answered lock_timeout on their first try

    def write(self, name: str) -> Callable[[], Awaitable[str]]:
        async def made() -> str:
            self.made.append((name, UNLOCKED_CUSTOMER_WRITE.get(), URGENT.get()))
            if name in self.refuse:
                self.refuse.discard(name)
                raise LedgerError(Failure.TRANSIENT, "locked", status=429, code="lock_timeout")
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            try:
                await self.release.wait()
            finally:
                self.in_flight -= 1
            return name

        return made


async def test_a_customers_writes_go_at_once_while_stripe_accepts_them() -> None:
    stripe, writes = Stripe(), CustomerWrites()
    tasks = [asyncio.create_task(writes.write("cus_1", stripe.write(f"w{n}"))) for n in range(3)]
    await asyncio.sleep(0.01)
    assert stripe.in_flight == 3
    stripe.release.set()
    assert await asyncio.gather(*tasks) == ["w0", "w1", "w2"]
    assert stripe.made == [(f"w{n}", True, False) for n in range(3)]
    assert not writes.serial


async def test_after_a_lock_timeout_the_writes_wait_for_those_in_flight_then_go_one_at_a_time_urgent() -> None:
    stripe, writes = Stripe(), CustomerWrites()
    first = asyncio.create_task(writes.write("cus_1", stripe.write("first")))
    await asyncio.sleep(0.01)
    stripe.refuse.add("refused")
    refused = asyncio.create_task(writes.write("cus_1", stripe.write("refused")))
    later = asyncio.create_task(writes.write("cus_1", stripe.write("later")))
    await asyncio.sleep(0.01)
    assert writes.serial
    # The refused write's retry waits for the concurrent write Stripe still holds the customer for.
    assert [name for name, *_ in stripe.made] == ["first", "refused"]
    stripe.release.set()
    assert list(await asyncio.gather(first, refused, later)) == ["first", "refused", "later"]
    assert stripe.made == [
        ("first", True, False),
        ("refused", True, False),
        ("refused", False, True),
        ("later", False, True),
    ]
    assert stripe.peak == 1


async def test_another_failure_of_a_concurrent_write_is_its_own_and_keeps_the_pass_concurrent() -> None:
    writes = CustomerWrites()

    async def invalid() -> str:
        raise LedgerError(Failure.INVALID, "No such customer", status=400, code="resource_missing")

    with pytest.raises(LedgerError, match="No such customer"):
        await writes.write("cus_1", invalid)
    assert not writes.serial
