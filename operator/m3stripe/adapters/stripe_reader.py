"""A read-only Stripe port for dry runs (spec.mode: Plan): the only requests it can make are GETs.

It exposes the gateway's rate limit and retries (`call`, `iterate`, `iterate_json`) and a `v1` that
offers only the list and retrieve methods the operator reads with; there is no create, update,
delete, add_lines or remove_lines to call, so code given a StripeReader cannot write to Stripe.
The gateway and its client stay private to this object.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from m3stripe.adapters.stripe_gateway import StripeGateway

T = TypeVar("T")


class _Reads:
    """Named read methods of one SDK service (e.g. `client.v1.invoices`), and nothing else."""

    def __init__(self, service: Any, methods: tuple[str, ...], **children: _Reads) -> None:
        for name in methods:
            setattr(self, name, getattr(service, name))
        for name, child in children.items():
            setattr(self, name, child)


class ReadOnlyV1:
    """The subset of `StripeClient.v1` the operator reads: customers, invoices, their lines, invoice items."""

    def __init__(self, v1: Any) -> None:
        self.customers: Any = _Reads(v1.customers, ("list_async", "retrieve_async"))
        self.invoices: Any = _Reads(
            v1.invoices,
            ("list_async", "retrieve_async"),
            line_items=_Reads(v1.invoices.line_items, ("list_async",)),
        )
        self.invoice_items: Any = _Reads(v1.invoice_items, ("list_async", "retrieve_async"))


class StripeReader:
    def __init__(self, gateway: StripeGateway) -> None:
        self.__gateway = gateway
        self.v1 = ReadOnlyV1(gateway.v1)

    @property
    def requests(self) -> int:
        return self.__gateway.requests

    async def call(self, endpoint: str, fn: Callable[[], Awaitable[T]]) -> T:
        """Rate limit and retries of the gateway around a read built from `v1`."""
        return await self.__gateway.call(endpoint, fn)

    def iterate(
        self, endpoint: str, list_fn: Callable[[dict[str, Any]], Awaitable[Any]], params: dict[str, Any]
    ) -> AsyncIterator[Any]:
        return self.__gateway.iterate(endpoint, list_fn, params)

    def iterate_json(self, endpoint: str, path: str, params: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """A list endpoint as plain JSON; `StripeGateway.iterate_json` only ever sends GET."""
        return self.__gateway.iterate_json(endpoint, path, params)
