"""The writes a pass makes for a customer (creating its invoice, or a pending invoice item), concurrent or serial.

Whether Stripe locks the customer for such a write, answering a concurrent one with `lock_timeout` ("another API
request ... is currently accessing it", https://docs.stripe.com/error-codes#lock-timeout), Stripe does not say. So a
pass learns it from the account: the writes go concurrently until Stripe first answers one with lock_timeout, then one
at a time per customer for the rest of the pass, as Stripe asks of a client that sees the error ("If you see this
error frequently and are making multiple concurrent requests to a single object, make your requests serially"). A
customer's invoices are then created as fast as Stripe allows under either answer; a Stripe that locks the customer
costs the pass the writes it refused while they were concurrent (one, or as many as were in flight), each retried.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from m3stripe.domain.ports import UNLOCKED_CUSTOMER_WRITE, URGENT, LedgerError

T = TypeVar("T")


@dataclass
class _Customer:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    unlocked: int = 0  # concurrent writes still in flight
    settled: asyncio.Event = field(default_factory=asyncio.Event)  # set while none is

    def __post_init__(self) -> None:
        self.settled.set()


class CustomerWrites:
    """One pass's writes for its customers (see the module)."""

    def __init__(self) -> None:
        self._customers: dict[str, _Customer] = {}
        self.serial = False  # Stripe answered a concurrent write for a customer with lock_timeout in this pass

    async def write(self, customer: str, write: Callable[[], Awaitable[T]]) -> T:
        """Make `write` for the customer. A write refused while concurrent is retried holding the lock, as Stripe's
        SDKs retry a lock_timeout: Stripe answers it with `Stripe-Should-Retry: true` and the SDK retries such an
        answer ("advise us to retry (eg; in cases of lock timeouts)", stripe-python's _http_client.py). It goes with
        its own idempotency key, or with one derived from it where Stripe saved the refusal under that key (which the
        Ledger's implementation sees to)."""
        state = self._customers.get(customer)
        if state is None:
            state = self._customers[customer] = _Customer()
        if not self.serial:
            state.unlocked += 1
            state.settled.clear()
            unlocked = UNLOCKED_CUSTOMER_WRITE.set(True)
            try:
                return await write()
            except LedgerError as err:
                if err.code != "lock_timeout":
                    raise
                self.serial = True
            finally:
                UNLOCKED_CUSTOMER_WRITE.reset(unlocked)
                state.unlocked -= 1
                if not state.unlocked:
                    state.settled.set()
        async with state.lock:
            # The concurrent writes still in flight hold the customer at Stripe as much as the lock's holder would.
            await state.settled.wait()
            # The customer's other Bills wait for this write: it takes the account's next rate-limit slot.
            urgent = URGENT.set(True)
            try:
                return await write()
            finally:
                URGENT.reset(urgent)
