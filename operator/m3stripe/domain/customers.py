"""Find the Stripe Customer of an m3ter Account, per m3ter's rules, once per pass and account."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from m3stripe.domain.mapping import META_ACCOUNT
from m3stripe.domain.ports import BillSource, CustomerTax, LedgerReader

T = TypeVar("T")


@dataclass(frozen=True)
class Unmapped:
    """No usable Stripe Customer: the message says how to create the mapping."""

    message: str


class CustomerResolver:
    """Maps m3ter Accounts to Stripe Customers for one pass; reads only, never writes to Stripe."""

    def __init__(
        self, ledger: LedgerReader, source: BillSource, *, use_external_mapping: bool, with_tax: bool = False
    ) -> None:
        """`with_tax`: also learn each customer's tax location (automatic tax), in the same listing."""
        self._ledger = ledger
        self._source = source
        self._external = use_external_mapping
        self._with_tax = with_tax
        self._index: dict[str, list[str]] | None = None
        self._index_lock = asyncio.Lock()
        # Several Bills of one customer are prepared at once: the first asks, the others wait for its answer.
        self._cache: dict[str, asyncio.Future[str | Unmapped]] = {}
        self._taxes: dict[str, asyncio.Future[CustomerTax]] = {}

    async def tax_of(self, customer: str) -> CustomerTax:
        """The customer's tax location, read once per pass: from the customers' listing (expand[]=data.tax), or,
        with External Mappings (no listing), from the customer itself (expand[]=tax)."""
        return await _once(self._taxes, customer, lambda: self._ledger.customer_tax(customer))

    async def resolve(self, account_id: str) -> str | Unmapped:
        return await _once(
            self._cache,
            account_id,
            lambda: self._by_external_mapping(account_id) if self._external else self._by_metadata(account_id),
        )

    async def _by_external_mapping(self, account_id: str) -> str | Unmapped:
        customer = await self._source.find_stripe_customer_mapping(account_id)
        if customer:
            return customer
        return Unmapped(
            f"m3ter Account {account_id} has no External Mapping to a Stripe Customer. In m3ter, create an External "
            f"Mapping (m3ter entity Account, id {account_id}; external system Stripe, table Customer, id cus_...). "
            "The Bill is sent on the next pass once the mapping exists"
        )

    async def _by_metadata(self, account_id: str) -> str | Unmapped:
        async with self._index_lock:
            if self._index is None:
                # Stripe's list endpoint cannot filter by metadata and its Search API lags behind writes,
                # so the customers are listed once per pass and indexed here.
                index: dict[str, list[str]] = {}
                async for customer in self._ledger.customers(with_tax=self._with_tax):
                    if customer.tax is not None:
                        self._taxes[customer.id] = _known(customer.tax)
                    account = customer.metadata.get(META_ACCOUNT)
                    if account:
                        index.setdefault(str(account), []).append(customer.id)
                self._index = index
        found = self._index.get(account_id, [])
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            return Unmapped(
                f"several Stripe Customers ({', '.join(sorted(found))}) carry metadata {META_ACCOUNT}={account_id}; "
                "keep it on exactly one of them"
            )
        return Unmapped(
            f"no Stripe Customer carries metadata {META_ACCOUNT}={account_id}. Add that metadata to the account's "
            "Customer in Stripe, or set spec.useExternalMappingAccountCode: true and create an External Mapping in "
            "m3ter. The Bill is sent on the next pass once the mapping exists"
        )


async def _once(answers: dict[str, asyncio.Future[T]], key: str, ask: Callable[[], Awaitable[T]]) -> T:
    """`ask()`'s answer for `key`, asked once however many wait for it; a failure is not kept (the next asks again)."""
    found = answers.get(key)
    if found is None:
        found = answers[key] = asyncio.get_running_loop().create_future()
        try:
            found.set_result(await ask())
        except asyncio.CancelledError:
            del answers[key]
            found.cancel()
            raise
        except Exception as err:
            del answers[key]
            found.set_exception(err)
            found.exception()  # retrieved: a failure no one else awaited is not logged as never retrieved
            raise
    return await asyncio.shield(found)


def _known(value: T) -> asyncio.Future[T]:
    future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
    future.set_result(value)
    return future
