"""``/v1/invoiceitems``: create, retrieve, update, delete and list (``customer``/``invoice``/``pending``)."""

from __future__ import annotations

from typing import Any

from . import billing, customers, tax
from .common import Ctx, list_page
from .errors import invalid
from .params import PAGINATION, Bool, Currency, IntOrRange, Schema, Str
from .state import Obj

CREATE = Schema(
    {**billing.ITEM_FIELDS, "customer": Str(), "currency": Currency(), "invoice": Str()},
    required=("customer",),
)
UPDATE = Schema(billing.ITEM_FIELDS)
RETRIEVE = Schema()
DELETE = Schema()
LIST = Schema({**PAGINATION, "created": IntOrRange(), "customer": Str(), "invoice": Str(), "pending": Bool()})


def render(ctx: Ctx, item: Obj) -> Obj:
    return item


def create(ctx: Ctx, params: dict[str, Any]) -> Obj:
    state = ctx.state
    customer = customers.find(state, params["customer"], param="customer")
    invoice = None
    if params.get("invoice") is not None:
        invoice = billing.find_invoice(state, params["invoice"], param="invoice")
        billing.require_draft_for_items(invoice, "invoice", "add")
        if invoice["customer"] != customer["id"]:
            raise invalid(
                f"The invoice {invoice['id']} belongs to customer {invoice['customer']}, not to "
                f"{customer['id']}; an invoice item can only be added to its own customer's invoices.",
                param="invoice",
            )
        billing.check_room(state, invoice, 1, "invoice")
    billing.check_period(params.get("period"), "")
    pricing = billing.price_pricing(
        ctx,
        params,
        prefix="",
        currency=invoice["currency"] if invoice else None,
        existing=None,
        fallback=customer.get("currency"),
    )
    assert pricing is not None
    item = billing.new_item(ctx, customer, pricing, params)
    own = tax.item_tax_params(params, item_id=item["id"], existing=None)
    if invoice is not None and invoice["automatic_tax"]["enabled"]:
        facts = tax.LineFacts(item["id"], pricing.amount, pricing.price, own.get("tax_behavior"), own.get("tax_code"))
        tax.check_lines(ctx, [(facts, None)])
    billing.store_item(ctx, item, pricing)
    if any(value is not None for value in own.values()):
        state.item_tax[item["id"]] = own
    if invoice is not None:
        billing.attach(state, item, invoice)
    customers.set_currency_if_unset(customer, pricing.currency)
    return item


def retrieve(ctx: Ctx, params: dict[str, Any]) -> Obj:
    return billing.find_item(ctx.state, ctx.path_args["invoiceitem"], param="id", status=404)


def update(ctx: Ctx, params: dict[str, Any]) -> Obj:
    state = ctx.state
    item = billing.find_item(state, ctx.path_args["invoiceitem"], param="id", status=404)
    billing.require_mutable_item(state, item, "update")
    billing.check_period(params.get("period"), "")
    invoice = state.invoices.get(item["invoice"]) if item.get("invoice") else None
    pricing = billing.price_pricing(
        ctx, params, prefix="", currency=invoice["currency"] if invoice else None, existing=item
    )
    own = tax.item_tax_params(params, item_id=item["id"], existing=state.item_tax.get(item["id"]))
    if invoice is not None and invoice["automatic_tax"]["enabled"]:
        facts = tax.LineFacts(
            item["id"],
            pricing.amount if pricing is not None else item["amount"],
            pricing.price if pricing is not None else tax.price_of(state, item),
            own.get("tax_behavior"),
            own.get("tax_code"),
        )
        tax.check_lines(ctx, [(facts, None)])
    billing.update_item_fields(ctx, item, params, pricing)
    state.item_tax[item["id"]] = own
    return item


def delete(ctx: Ctx, params: dict[str, Any]) -> Obj:
    state = ctx.state
    item = billing.find_item(state, ctx.path_args["invoiceitem"], param="id", status=404)
    billing.require_mutable_item(state, item, "delete")
    billing.delete_item(state, item)
    return {"id": item["id"], "object": "invoiceitem", "deleted": True}


def list_(ctx: Ctx, params: dict[str, Any]) -> Obj:
    state = ctx.state
    customer_id = params.get("customer")
    invoice_id = params.get("invoice")
    pending = params.get("pending")
    if customer_id is not None:
        index = state.index(state.items_by_customer, customer_id)
    elif invoice_id is not None:
        index = state.index(state.items_by_invoice, invoice_id)
    else:
        index = state.invoice_items.order

    def keep(item: Obj) -> bool:
        if invoice_id is not None and item["invoice"] != invoice_id:
            return False
        return pending is None or (item["invoice"] is None) == pending

    return list_page(
        ctx,
        params,
        url="/v1/invoiceitems",
        collection=state.invoice_items,
        index=index,
        render=render,
        keep=keep,
    )
