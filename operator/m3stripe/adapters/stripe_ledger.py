"""The Stripe ledger: the only code that calls the stripe SDK for invoices, lines, items and customers.

Every request goes through the gateway (`call`, `iterate_json`: rate limit, retries, scrubbed errors,
the fence of a `FencedRateLimit`), and every answer comes back as a domain value (`domain.ports`).
`StripeLedgerReader` (Plan mode) offers the reads only: no method of it writes, and the gateway it
reads through is private to it.

Lists are read as plain JSON (`StripeGateway.iterate_json`): building a reply's nested `StripeObject`s
costs 25-40 times its `json.loads` (benchmarks/README.md).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from m3stripe.adapters.stripe_gateway import StripeGateway, metadata_of
from m3stripe.domain.ports import Created, HeldCustomer, HeldInvoice, HeldLine


def _created(obj: Any) -> int:
    """Stripe's creation time of an object; an invoice item calls it `date` ("Time at which the object was
    created", SDK _invoice_item.py), and invoiceitems/list's `created` filter applies to it."""
    if isinstance(obj, dict):
        return int(obj.get("created") or obj.get("date") or 0)
    return int(getattr(obj, "created", None) or getattr(obj, "date", None) or 0)


def _embedded_lines(lines: Any) -> tuple[HeldLine, ...] | None:
    """The invoice's lines when its answer holds all of them: the invoice object's `lines` is a list with `data` and
    `has_more` ("The individual line items that make up the invoice", SDK _invoice.py `lines: ListObject[
    InvoiceLineItem]`; Stripe's fixtures show it embedded with `has_more`). None: they must be listed."""
    if isinstance(lines, dict):
        data, more = lines.get("data"), lines.get("has_more")
    else:
        data, more = getattr(lines, "data", None), getattr(lines, "has_more", None)
    if more is not False or not isinstance(data, list):
        return None
    return tuple(held_line(line) for line in data)


def held_invoice(obj: Any) -> HeldInvoice:
    """An invoice (Stripe's JSON or an SDK object) as the domain holds it."""
    if isinstance(obj, dict):
        return HeldInvoice(
            str(obj["id"]),
            _created(obj),
            str(obj.get("status") or ""),
            metadata_of(obj),
            [{"name": str(f["name"]), "value": str(f["value"])} for f in obj.get("custom_fields") or ()],
            _embedded_lines(obj.get("lines")),
        )
    fields = [{"name": str(f.name), "value": str(f.value)} for f in (getattr(obj, "custom_fields", None) or [])]
    lines = _embedded_lines(getattr(obj, "lines", None))
    return HeldInvoice(str(obj.id), _created(obj), str(obj.status or ""), metadata_of(obj), fields, lines)


def held_line(obj: Any) -> HeldLine:
    """An invoice line or an invoice item (Stripe's JSON or an SDK object) as the domain holds it."""
    if isinstance(obj, dict):
        invoice = obj.get("invoice")
        return HeldLine(
            str(obj["id"]),
            _created(obj),
            int(obj.get("amount") or 0),
            str(obj.get("description") or ""),
            metadata_of(obj),
            invoice if isinstance(invoice, str) else None,
        )
    invoice = getattr(obj, "invoice", None)
    return HeldLine(
        str(obj.id),
        _created(obj),
        int(obj.amount),
        str(obj.description or ""),
        metadata_of(obj),
        invoice if isinstance(invoice, str) else getattr(invoice, "id", None),
    )


class StripeLedgerReader:
    """What Stripe holds, read through the gateway; owns no write, never exposes the gateway."""

    def __init__(self, gateway: StripeGateway) -> None:
        self.__gateway = gateway

    @property
    def requests(self) -> int:
        return self.__gateway.requests

    async def _list(self, endpoint: str, path: str, params: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        async for obj in self.__gateway.iterate_json(endpoint, path, params):
            yield obj

    async def invoices(self, customer: str, created: Created | None) -> AsyncIterator[HeldInvoice]:
        """The customer's invoices, newest first; `created` as invoices/list takes it (gte/lt, Unix seconds:
        https://docs.stripe.com/api/invoices/list; SDK params/_invoice_list_params.py)."""
        params: dict[str, Any] = {"customer": customer}
        if created:
            params["created"] = dict(created)
        async for obj in self._list("invoices.list", "/v1/invoices", params):
            yield held_invoice(obj)

    async def items(self, customer: str, created: Created | None) -> AsyncIterator[HeldLine]:
        """The customer's invoice items, newest first (https://docs.stripe.com/api/invoiceitems/list)."""
        params: dict[str, Any] = {"customer": customer}
        if created:
            params["created"] = dict(created)
        async for obj in self._list("invoiceitems.list", "/v1/invoiceitems", params):
            yield held_line(obj)

    async def invoice_lines(self, invoice_id: str) -> AsyncIterator[HeldLine]:
        async for obj in self._list("invoices.lines.list", f"/v1/invoices/{invoice_id}/lines", {}):
            yield held_line(obj)

    async def invoice(self, invoice_id: str) -> HeldInvoice:
        client = self.__gateway.client
        found: Any = await self.__gateway.call(
            "invoices.retrieve", lambda: client.v1.invoices.retrieve_async(invoice_id)
        )
        return held_invoice(found)

    async def customers(self) -> AsyncIterator[HeldCustomer]:
        # Stripe's list endpoint cannot filter by metadata and its Search API lags behind writes
        # (https://docs.stripe.com/search#data-freshness), so callers list them all.
        client = self.__gateway.client
        async for obj in self.__gateway.iterate(
            "customers.list",
            lambda p: client.v1.customers.list_async(params=p),  # type: ignore[arg-type]
            {},
        ):
            yield HeldCustomer(str(obj.id), metadata_of(obj))


class StripeLedger(StripeLedgerReader):
    """The reads and the writes the operator makes: invoices, their lines, invoice items."""

    def __init__(self, gateway: StripeGateway) -> None:
        super().__init__(gateway)
        self._g = gateway

    async def _write(
        self, endpoint: str, method: Callable[..., Awaitable[Any]], *ids: str, params: Any, key: str
    ) -> Any:
        """One write with idempotency key `key`, through the gateway: `method(*ids, params=params, options=...)`."""
        options = {"idempotency_key": key}
        return await self._g.call(endpoint, lambda: method(*ids, params=params, options=options))

    async def create_invoice(self, params: dict[str, Any], *, idempotency_key: str) -> HeldInvoice:
        invoices = self._g.client.v1.invoices
        created = await self._write("invoices.create", invoices.create_async, params=params, key=idempotency_key)
        return held_invoice(created)

    async def add_lines(self, invoice_id: str, params: dict[str, Any], *, idempotency_key: str) -> None:
        invoices = self._g.client.v1.invoices
        await self._write(
            "invoices.add_lines", invoices.add_lines_async, invoice_id, params=params, key=idempotency_key
        )

    async def remove_lines(self, invoice_id: str, params: dict[str, Any], *, idempotency_key: str) -> None:
        invoices = self._g.client.v1.invoices
        await self._write(
            "invoices.remove_lines", invoices.remove_lines_async, invoice_id, params=params, key=idempotency_key
        )

    async def update_invoice(self, invoice_id: str, params: dict[str, Any], *, idempotency_key: str) -> HeldInvoice:
        invoices = self._g.client.v1.invoices
        updated = await self._write(
            "invoices.update", invoices.update_async, invoice_id, params=params, key=idempotency_key
        )
        return held_invoice(updated)

    async def create_item(self, params: dict[str, Any], *, idempotency_key: str) -> HeldLine:
        items = self._g.client.v1.invoice_items
        item = await self._write("invoiceitems.create", items.create_async, params=params, key=idempotency_key)
        return held_line(item)

    async def delete_item(self, item_id: str) -> None:
        v1 = self._g.client.v1
        await self._g.call("invoiceitems.delete", lambda: v1.invoice_items.delete_async(item_id))
