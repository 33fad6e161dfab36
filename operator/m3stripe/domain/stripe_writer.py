"""Make Stripe hold exactly one Bill version: find what earlier attempts wrote, then add or fix the rest.

Invoice mode: one draft invoice per Bill (`pending_invoice_items_behavior=exclude`, so it never sweeps
up other pending items), its lines added in bulk. Items mode: pending invoice items on the customer.
Either way every write has a deterministic idempotency key, and before writing we list what exists
(list endpoints are read-after-write consistent; the Search API is not).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

from m3stripe.adapters.stripe_gateway import Failure, StripeCallError, StripeGateway, metadata_of
from m3stripe.domain.keys import idempotency_key
from m3stripe.domain.mapping import (
    META_BILL,
    META_INTEGRATION,
    META_LINE,
    META_LINE_INDEX,
    META_VERSION,
    BillPlan,
    PlannedLine,
)

ADD_LINES_CHUNK = 50


class AlreadyFinalized(Exception):
    """The Bill's Stripe invoice can no longer be changed (m3ter's INVOICE_ALREADY_PAID)."""

    def __init__(self, message: str, stripe_id: str) -> None:
        super().__init__(message)
        self.stripe_id = stripe_id


@dataclass(frozen=True)
class WriteResult:
    stripe_id: str
    changed: bool  # False when Stripe already held exactly this version


def _ours(obj: Any, integration_id: str, bill_id: str) -> bool:
    meta = metadata_of(obj)
    return meta.get(META_INTEGRATION) == integration_id and meta.get(META_BILL) == bill_id


Signature = tuple[str, str, int, str, str]


def _wanted(plan: BillPlan) -> dict[Signature, PlannedLine]:
    # The position makes every line of a version unique: m3ter line ids and contents can repeat.
    return {(p.line_id, str(p.index), p.amount, p.description, str(plan.version)): p for p in plan.lines}


def _held_signature(obj: Any) -> Signature:
    meta = metadata_of(obj)
    return (
        str(meta.get(META_LINE, "")),
        str(meta.get(META_LINE_INDEX, "")),
        int(obj.amount),
        str(obj.description or ""),
        str(meta.get(META_VERSION, "")),
    )


def _diff(wanted: dict[Signature, PlannedLine], held: list[Any]) -> tuple[list[Any], list[PlannedLine], list[Any]]:
    """(stale objects, missing lines, matched objects): each wanted line matches at most one object.

    A second object with the signature of a wanted line (a duplicate left by an earlier bug or by
    hand) is stale, so Stripe ends holding each line exactly once.
    """
    stale: list[Any] = []
    matched: dict[Signature, Any] = {}
    for obj in held:
        sig = _held_signature(obj)
        if sig in wanted and sig not in matched:
            matched[sig] = obj
        else:
            stale.append(obj)
    missing = [line for sig, line in wanted.items() if sig not in matched]
    return stale, missing, list(matched.values())


def _custom_fields(invoice: Any) -> list[dict[str, str]]:
    return [{"name": str(f.name), "value": str(f.value)} for f in (getattr(invoice, "custom_fields", None) or [])]


class StripeWriter:
    def __init__(self, gateway: StripeGateway, integration_id: str, *, key_salt: str | None = None) -> None:
        self._g = gateway
        self._integration = integration_id
        self._salt = key_salt

    def _key(self, plan: BillPlan, step: str, params: Any = None) -> dict[str, str]:
        material = params if self._salt is None else [self._salt, params]
        return {"idempotency_key": idempotency_key(self._integration, plan.bill_id, plan.version, step, material)}

    # Invoice mode
    async def write_invoice(self, plan: BillPlan, customer: str) -> WriteResult:
        invoice = await self._find_invoice(plan, customer)
        if invoice is None:
            params = plan.invoice_create_params(customer)
            created: Any = await self._g.call(
                "invoices.create",
                lambda: self._g.v1.invoices.create_async(params=params, options=self._key(plan, "invoice", params)),
            )
            await self._add_lines(plan, created.id, list(plan.lines))
            return WriteResult(created.id, True)
        version = str(metadata_of(invoice).get(META_VERSION, ""))
        lines = await self._invoice_lines(plan, invoice.id)
        stale, missing, _ = _diff(_wanted(plan), lines)
        if invoice.status != "draft":
            if version == str(plan.version) and not stale and not missing:
                return WriteResult(invoice.id, False)
            raise AlreadyFinalized(
                f"Bill {plan.bill_id} changed (version {plan.version}) but its Stripe invoice {invoice.id} is already "
                f"{invoice.status}; nothing was changed in Stripe. Issue a credit note or a new invoice in Stripe "
                "by hand, then mark this event resolved",
                invoice.id,
            )
        if not stale and not missing and version == str(plan.version):
            return WriteResult(invoice.id, False)
        if stale:
            remove = {"lines": [{"id": li.id, "behavior": "delete"} for li in stale]}
            await self._g.call(
                "invoices.remove_lines",
                lambda: self._g.v1.invoices.remove_lines_async(
                    invoice.id, params=remove, options=self._key(plan, "remove", remove)
                ),
            )
        if missing:
            await self._add_lines(plan, invoice.id, missing)
        update = plan.invoice_update_params(_custom_fields(invoice), metadata_of(invoice))
        if version != str(plan.version) or stale or missing:
            await self._g.call(
                "invoices.update",
                lambda: self._g.v1.invoices.update_async(
                    invoice.id, params=update, options=self._key(plan, "update", update)
                ),
            )
        return WriteResult(invoice.id, True)

    async def _add_lines(self, plan: BillPlan, invoice_id: str, lines: list[PlannedLine]) -> None:
        for start in range(0, len(lines), ADD_LINES_CHUNK):
            chunk = {"lines": [line.line_params() for line in lines[start : start + ADD_LINES_CHUNK]]}
            await self._g.call(
                "invoices.add_lines",
                lambda c=chunk: self._g.v1.invoices.add_lines_async(  # type: ignore[misc]
                    invoice_id, params=c, options=self._key(plan, "lines", c)
                ),
            )

    async def _find_invoice(self, plan: BillPlan, customer: str) -> Any | None:
        found = None
        async for invoice in self._g.iterate(
            "invoices.list", lambda p: self._g.v1.invoices.list_async(params=p), {"customer": customer}
        ):
            # Several would mean an earlier bug or a hand-made copy; the newest one is the live one.
            if _ours(invoice, self._integration, plan.bill_id) and (found is None or invoice.created > found.created):
                found = invoice
                if invoice.status == "draft":
                    break
        return found

    async def _invoice_lines(self, plan: BillPlan, invoice_id: str) -> list[Any]:
        return [
            li
            async for li in self._g.iterate(
                "invoices.lines.list",
                lambda p: self._g.v1.invoices.line_items.list_async(invoice_id, params=p),
                {},
            )
            if _ours(li, self._integration, plan.bill_id)
        ]

    # Invoice-items mode
    async def write_items(self, plan: BillPlan, customer: str) -> WriteResult:
        items = [
            ii
            async for ii in self._g.iterate(
                "invoiceitems.list",
                lambda p: self._g.v1.invoice_items.list_async(params=p),
                {"customer": customer},
            )
            if _ours(ii, self._integration, plan.bill_id)
        ]
        stale, missing, matched = _diff(_wanted(plan), items)
        if not stale and not missing:
            first = matched[0] if matched else None
            return WriteResult(first.id if first is not None else "", False)
        for ii in stale:
            if ii.invoice:
                invoice: Any = await self._g.call(
                    "invoices.retrieve", partial(self._g.v1.invoices.retrieve_async, ii.invoice)
                )
                if invoice.status != "draft":
                    raise AlreadyFinalized(
                        f"Bill {plan.bill_id} changed (version {plan.version}) but its items are on Stripe invoice "
                        f"{invoice.id}, which is already {invoice.status}; nothing was changed in Stripe. Adjust the "
                        "invoice in Stripe by hand, then mark this event resolved",
                        invoice.id,
                    )
        created: list[str] = []
        for ii in stale:
            await self._delete_item(ii.id)
        for line in missing:
            params = line.invoice_item_params(customer, plan.currency)
            options = self._key(plan, f"item-{line.index}-{line.line_id}", params)
            item: Any = await self._g.call(
                "invoiceitems.create", partial(self._g.v1.invoice_items.create_async, params=params, options=options)
            )
            created.append(item.id)
        return WriteResult(created[0] if created else matched[0].id if matched else "", True)

    async def _delete_item(self, item_id: str) -> None:
        try:
            await self._g.call("invoiceitems.delete", lambda: self._g.v1.invoice_items.delete_async(item_id))
        except StripeCallError as err:
            if err.failure is not Failure.NOT_FOUND:  # deleted by an earlier attempt whose reply was lost
                raise
