"""The Stripe ledger: the only code that calls the stripe SDK for invoices, lines, items and customers.

Every request goes through the gateway (`call`, `iterate_json`: rate limit, retries, scrubbed errors,
the fence of a `FencedRateLimit`), and every answer comes back as a domain value (`domain.ports`).
`StripeLedgerReader` (Plan mode) offers the reads only: no method of it writes, and the gateway it
reads through is private to it.

Lists are read as plain JSON (`StripeGateway.iterate_json`): building a reply's nested `StripeObject`s
costs 25-40 times its `json.loads` (benchmarks/README.md).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

from m3stripe.adapters.stripe_gateway import StripeGateway, metadata_of
from m3stripe.domain.ports import (
    Created,
    CustomerTax,
    Failure,
    HeldCustomer,
    HeldInvoice,
    HeldLine,
    InvoiceTax,
    LedgerError,
    TaxSettings,
)


def _get(obj: Any, name: str) -> Any:
    """A field of Stripe's JSON (a dict) or of an SDK object (a StripeObject, which is no mapping)."""
    if isinstance(obj, dict):
        return obj.get(name)
    return getattr(obj, name, None)


def _created(obj: Any) -> int:
    """Stripe's creation time of an object; an invoice item calls it `date` ("Time at which the object was
    created", SDK _invoice_item.py), and invoiceitems/list's `created` filter applies to it."""
    return int(_get(obj, "created") or _get(obj, "date") or 0)


def _embedded_lines(lines: Any) -> tuple[HeldLine, ...] | None:
    """The invoice's lines when its answer holds all of them: the invoice object's `lines` is a list with `data` and
    `has_more` ("The individual line items that make up the invoice", SDK _invoice.py `lines: ListObject[
    InvoiceLineItem]`; Stripe's fixtures show it embedded with `has_more`). None: they must be listed."""
    data, more = _get(lines, "data"), _get(lines, "has_more")
    if lines is None or more is not False or not isinstance(data, list):
        return None
    return tuple(held_line(line) for line in data)


def invoice_tax(obj: Any) -> InvoiceTax:
    """The invoice's tax as Stripe computed it, at this API version: `automatic_tax` {enabled, status} and
    `total_taxes[]` {amount, tax_behavior, taxability_reason} (SDK _invoice.py `AutomaticTax`, `TotalTax`; the
    older `total_tax_amounts` is gone: https://docs.stripe.com/changelog/basil/2025-03-31/invoice-tax-configurations)."""
    automatic = _get(obj, "automatic_tax")
    exclusive = inclusive = 0
    reasons: set[str] = set()
    for tax in _get(obj, "total_taxes") or ():
        amount = int(_get(tax, "amount") or 0)
        if _get(tax, "tax_behavior") == "inclusive":
            inclusive += amount
        else:
            exclusive += amount
        reasons.add(str(_get(tax, "taxability_reason") or ""))
    return InvoiceTax(
        enabled=bool(_get(automatic, "enabled")) if automatic is not None else False,
        status=_get(automatic, "status") if automatic is not None else None,
        exclusive=exclusive,
        inclusive=inclusive,
        not_collecting=bool(reasons) and reasons == {"not_collecting"},
    )


def held_invoice(obj: Any) -> HeldInvoice:
    """An invoice (Stripe's JSON or an SDK object) as the domain holds it."""
    fields = [{"name": str(_get(f, "name")), "value": str(_get(f, "value"))} for f in _get(obj, "custom_fields") or ()]
    total = _get(obj, "total")
    return HeldInvoice(
        str(_get(obj, "id")),
        _created(obj),
        str(_get(obj, "status") or ""),
        metadata_of(obj),
        fields,
        _embedded_lines(_get(obj, "lines")),
        None if total is None else int(total),
        invoice_tax(obj),
    )


def held_line(obj: Any) -> HeldLine:
    """An invoice line or an invoice item (Stripe's JSON or an SDK object) as the domain holds it."""
    invoice = _get(obj, "invoice")
    return HeldLine(
        str(_get(obj, "id")),
        _created(obj),
        int(_get(obj, "amount") or 0),
        str(_get(obj, "description") or ""),
        metadata_of(obj),
        invoice if isinstance(invoice, str) else _get(invoice, "id"),
        bool(_get(obj, "discountable")),
    )


def customer_tax(obj: Any) -> CustomerTax | None:
    """A customer's `tax` hash (present only when expanded: "expand[]=tax"; SDK _customer.py `Tax`)."""
    tax = _get(obj, "tax")
    if tax is None:
        return None
    location = _get(tax, "location")
    return CustomerTax(_get(tax, "automatic_tax"), _get(location, "country") if location is not None else None)


def tax_settings(obj: Any) -> TaxSettings:
    """Stripe Tax settings (SDK stripe/tax/_settings.py: `status`, `status_details.pending.missing_fields`,
    `defaults.tax_behavior`, `defaults.tax_code`)."""
    defaults = _get(obj, "defaults")
    pending = _get(_get(obj, "status_details"), "pending") if _get(obj, "status_details") is not None else None
    missing = tuple(str(m) for m in (_get(pending, "missing_fields") or ())) if pending is not None else ()
    return TaxSettings(
        status=str(_get(obj, "status") or ""),
        missing=missing,
        default_behavior=_get(defaults, "tax_behavior") if defaults is not None else None,
        default_code=_get(defaults, "tax_code") if defaults is not None else None,
    )


def _id(value: str) -> str:
    """An object id in a path, quoted as the SDK quotes it (`sanitize_id`)."""
    return quote(value, safe="")


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

    async def _get(self, endpoint: str, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self.__gateway.json(endpoint, "get", path, params or {})

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
        async for obj in self._list("invoices.lines.list", f"/v1/invoices/{_id(invoice_id)}/lines", {}):
            yield held_line(obj)

    async def invoice(self, invoice_id: str) -> HeldInvoice:
        return held_invoice(await self._get("invoices.retrieve", f"/v1/invoices/{_id(invoice_id)}"))

    async def customers(self, *, with_tax: bool = False) -> AsyncIterator[HeldCustomer]:
        """Every customer. `with_tax`: with each one's `tax` (whether Stripe Tax can place it), in the same pages:
        "Expansions on list requests start with the data property" (https://docs.stripe.com/api/expanding_objects),
        and `tax` is returned only when expanded (SDK _customer.py)."""
        # Stripe's list endpoint cannot filter by metadata and its Search API lags behind writes
        # (https://docs.stripe.com/search#data-freshness), so callers list them all.
        params: dict[str, Any] = {"expand": ["data.tax"]} if with_tax else {}
        async for obj in self._list("customers.list", "/v1/customers", params):
            yield HeldCustomer(str(obj["id"]), metadata_of(obj), customer_tax(obj))

    async def customer_tax(self, customer_id: str) -> CustomerTax:
        """One customer's `tax` (customers/retrieve with expand[]=tax)."""
        found = await self._get("customers.retrieve", f"/v1/customers/{_id(customer_id)}", {"expand": ["tax"]})
        return customer_tax(found) or CustomerTax(None)

    async def tax_settings(self) -> TaxSettings:
        """The account's Stripe Tax settings (GET /v1/tax/settings, https://docs.stripe.com/api/tax/settings/retrieve)."""
        return tax_settings(await self._get("tax.settings.retrieve", "/v1/tax/settings"))


class StripeLedger(StripeLedgerReader):
    """The reads and the writes the operator makes: invoices, their lines, invoice items, the credits' coupons.

    Every call is the SDK's raw request (`StripeClient.raw_request_async`: the client's key, API version, transport
    and errors), answered as Stripe's plain JSON: building an answer's nested StripeObjects cost more CPU than the
    rest of a request together (benchmarks/README.md, issue 22)."""

    def __init__(self, gateway: StripeGateway) -> None:
        super().__init__(gateway)
        self._g = gateway

    async def _write(self, endpoint: str, path: str, params: dict[str, Any], key: str) -> dict[str, Any]:
        """One POST with idempotency key `key`, through the gateway."""
        return await self._g.json(endpoint, "post", path, params, idempotency_key=key)

    async def create_invoice(self, params: dict[str, Any], *, idempotency_key: str) -> HeldInvoice:
        return held_invoice(await self._write("invoices.create", "/v1/invoices", params, idempotency_key))

    async def add_lines(self, invoice_id: str, params: dict[str, Any], *, idempotency_key: str) -> HeldInvoice:
        path = f"/v1/invoices/{_id(invoice_id)}/add_lines"
        return held_invoice(await self._write("invoices.add_lines", path, params, idempotency_key))

    async def remove_lines(self, invoice_id: str, params: dict[str, Any], *, idempotency_key: str) -> None:
        await self._write(
            "invoices.remove_lines", f"/v1/invoices/{_id(invoice_id)}/remove_lines", params, idempotency_key
        )

    async def update_invoice(self, invoice_id: str, params: dict[str, Any], *, idempotency_key: str) -> HeldInvoice:
        return held_invoice(
            await self._write("invoices.update", f"/v1/invoices/{_id(invoice_id)}", params, idempotency_key)
        )

    async def create_item(self, params: dict[str, Any], *, idempotency_key: str) -> HeldLine:
        return held_line(await self._write("invoiceitems.create", "/v1/invoiceitems", params, idempotency_key))

    async def create_coupon(self, params: dict[str, Any], *, idempotency_key: str) -> None:
        """A coupon with the caller's own `id`. An earlier attempt may have made it (its reply lost, in another
        pass with another key): Stripe then answers `resource_already_exists` ("Coupon already exists"), which means
        it is there, as asked, since the id derives from what the coupon holds."""
        try:
            await self._write("coupons.create", "/v1/coupons", params, idempotency_key)
        except LedgerError as err:
            if err.failure is not Failure.INVALID or err.code != "resource_already_exists":
                raise

    async def delete_item(self, item_id: str) -> None:
        await self._g.json("invoiceitems.delete", "delete", f"/v1/invoiceitems/{_id(item_id)}", {})

    async def delete_invoice(self, invoice_id: str) -> None:
        """A draft, deleted ("Permanently deletes a one-off invoice draft. This cannot be undone", DELETE
        /v1/invoices/:id, https://docs.stripe.com/api/invoices/delete); a finalized invoice is refused."""
        await self._g.json("invoices.delete", "delete", f"/v1/invoices/{_id(invoice_id)}", {})
