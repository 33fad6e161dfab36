"""``/v1/invoices``: the draft -> open -> paid | void | uncollectible lifecycle and the lines list.

Draft invoices are fully editable; once finalized, monetary fields and the items are frozen, and
only presentation fields (and metadata, after payment or voiding) can change.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from . import billing, coupons, customers, tax
from .common import Ctx, list_object, list_page, merge_metadata
from .customers import CUSTOM_FIELDS
from .errors import exclusive_parameters, invalid, no_such, not_editable
from .params import (
    PAGINATION,
    Arr,
    Bool,
    Currency,
    DecimalStr,
    Enum,
    Int,
    IntOrRange,
    Metadata,
    Obj,
    Param,
    Schema,
    Str,
    matches_range,
)
from .state import Obj as Object

DAY = 86_400
DEFAULT_DAYS_UNTIL_DUE = 30

_EDITABLE: dict[str, Param] = {
    "auto_advance": Bool(),
    "collection_method": Enum("charge_automatically", "send_invoice"),
    "custom_fields": CUSTOM_FIELDS,
    "days_until_due": Int(0),
    "default_payment_method": Str(),
    "description": Str(1500),
    # "" on create: do not inherit the customer's discount; on update: remove every discount.
    "discounts": Arr(coupons.INVOICE_DISCOUNTS, emptyable=True),
    "due_date": Int(0),
    "footer": Str(5000),
    "metadata": Metadata(),
    "statement_descriptor": Str(22),
}
CREATE = Schema(
    {
        **_EDITABLE,
        "automatic_tax": tax.AUTOMATIC_TAX,
        "currency": Currency(),
        "customer": Str(),
        "effective_at": Int(0),
        "number": Str(26),
        "pending_invoice_items_behavior": Enum("exclude", "include"),
    },
    required=("customer",),
)
UPDATE = Schema(
    {
        **_EDITABLE,
        "automatic_tax": tax.AUTOMATIC_TAX,
        "effective_at": Int(0, emptyable=True),
        "number": Str(26, emptyable=True),
    }
)
RETRIEVE = Schema()
DELETE = Schema()
LIST = Schema(
    {
        **PAGINATION,
        "collection_method": Enum("charge_automatically", "send_invoice"),
        "created": IntOrRange(),
        "customer": Str(),
        "due_date": IntOrRange(),
        "status": Enum("draft", "open", "paid", "uncollectible", "void"),
    }
)
FINALIZE = Schema({"auto_advance": Bool()})
PAY = Schema({"forgive": Bool(), "paid_out_of_band": Bool(), "off_session": Bool(), "payment_method": Str()})
VOID = Schema()
MARK_UNCOLLECTIBLE = Schema()
SEND = Schema()
LINES = Schema(PAGINATION)

_LINE_PRICE_DATA = Obj(
    {
        "currency": Currency(),
        "product": Str(),
        "tax_behavior": billing.TAX_BEHAVIOR,
        "unit_amount": Int(0),
        "unit_amount_decimal": DecimalStr(12, minimum=Decimal(0)),
    },
    required=("currency", "product"),
)
_ADD_LINE = Obj(
    {
        **{
            k: v for k, v in billing.ITEM_FIELDS.items() if k not in ("tax_behavior", "tax_code", "unit_amount_decimal")
        },
        "price_data": _LINE_PRICE_DATA,
        "invoice_item": Str(),
    }
)
ADD_LINES = Schema(
    {"lines": Arr(_ADD_LINE, max_items=billing.MAX_ITEMS_PER_INVOICE), "invoice_metadata": Metadata()},
    required=("lines",),
)
REMOVE_LINES = Schema(
    {
        "lines": Arr(Obj({"id": Str(), "behavior": Enum("delete", "unassign")}, required=("id", "behavior"))),
        "invoice_metadata": Metadata(),
    },
    required=("lines",),
)

# Fields that stay editable on an open or uncollectible invoice (the rest are frozen at finalization).
_OPEN_EDITABLE = {
    "auto_advance",
    "custom_fields",
    "days_until_due",
    "default_payment_method",
    "description",
    "due_date",
    "footer",
    "metadata",
    "statement_descriptor",
}
_CLOSED_EDITABLE = {"metadata"}


def render(ctx: Ctx, invoice: Object) -> Object:
    return billing.render_invoice(ctx, invoice)


def _invoice(ctx: Ctx) -> Object:
    return billing.find_invoice(ctx.state, ctx.path_args["invoice"], param="invoice", status=404)


def _due_rules(params: dict[str, Any], collection_method: str) -> None:
    if params.get("days_until_due") is not None and params.get("due_date") is not None:
        raise exclusive_parameters("days_until_due", "due_date")
    if collection_method != "send_invoice":
        for key in ("days_until_due", "due_date"):
            if params.get(key) is not None:
                raise invalid(
                    f"You can only set `{key}` on invoices with `collection_method=send_invoice`; this "
                    f"invoice's collection method is `{collection_method}`.",
                    param=key,
                )


def _apply(ctx: Ctx, invoice: Object, params: dict[str, Any]) -> None:
    for key in (
        "auto_advance",
        "collection_method",
        "custom_fields",
        "default_payment_method",
        "description",
        "effective_at",
        "footer",
        "number",
        "statement_descriptor",
    ):
        if key in params:
            invoice[key] = params[key]
    if "metadata" in params:
        invoice["metadata"] = merge_metadata(invoice["metadata"], params["metadata"])
    if params.get("due_date") is not None:
        invoice["due_date"] = params["due_date"]
    elif params.get("days_until_due") is not None:
        invoice["due_date"] = invoice["created"] + params["days_until_due"] * DAY
    if invoice["collection_method"] == "charge_automatically":
        invoice["due_date"] = None
    elif invoice["due_date"] is None:
        invoice["due_date"] = invoice["created"] + DEFAULT_DAYS_UNTIL_DUE * DAY


def create(ctx: Ctx, params: dict[str, Any]) -> Object:
    state = ctx.state
    customer = customers.find(state, params["customer"], param="customer")
    collection_method = params.get("collection_method", "charge_automatically")
    _due_rules(params, collection_method)
    currency = params.get("currency") or customer.get("currency") or ctx.account.default_currency
    pending: list[Object] = []
    if params.get("pending_invoice_items_behavior") == "include":
        index = state.items_by_customer.get(customer["id"])
        for item_id in index or ():
            item = state.invoice_items.objects[item_id]
            if item["invoice"] is None and item["currency"] == currency:
                pending.append(item)
        if len(pending) > billing.MAX_ITEMS_PER_INVOICE:
            raise invalid(
                f"Customer {customer['id']} has {len(pending)} pending invoice items in {currency}, but an "
                f"invoice can have at most {billing.MAX_ITEMS_PER_INVOICE}.",
                param="pending_invoice_items_behavior",
            )
    # Automatic tax as asked for, else the account's default for invoices that omit it (tax.py).
    enabled = tax.requested(ctx, params)
    if enabled:
        tax.require_location(ctx, customer, param="automatic_tax[enabled]")
        tax.check_lines(ctx, ((tax.facts_of(state, item), "pending_invoice_items_behavior") for item in pending))
    elif enabled is None:
        enabled = tax.enabled_by_default(ctx, customer, pending)
    settings = customer["invoice_settings"]
    invoice: Object = {
        "id": state.new_id("in"),
        "object": "invoice",
        "account_country": ctx.account.country,
        "account_name": ctx.account.business_name,
        "account_tax_ids": None,
        "amount_due": 0,
        "amount_overpaid": 0,
        "amount_paid": 0,
        "amount_paid_off_stripe": 0,
        "amount_remaining": 0,
        "amount_shipping": 0,
        "application": None,
        "attempt_count": 0,
        "attempted": False,
        "auto_advance": False,
        "automatic_tax": tax.automatic_tax_object(enabled),
        "automatically_finalizes_at": None,
        "billing_reason": "manual",
        "collection_method": collection_method,
        "confirmation_secret": None,
        "created": ctx.now,
        "currency": currency,
        "custom_fields": settings.get("custom_fields"),
        "customer": customer["id"],
        "customer_account": None,
        "customer_address": customer.get("address"),
        "customer_email": customer.get("email"),
        "customer_name": customer.get("name"),
        "customer_phone": customer.get("phone"),
        "customer_shipping": customer.get("shipping"),
        "customer_tax_exempt": customer.get("tax_exempt"),
        "customer_tax_ids": [],
        "default_payment_method": None,
        "default_source": None,
        "default_tax_rates": [],
        "description": None,
        "discounts": [],
        "due_date": None,
        "effective_at": None,
        "ending_balance": None,
        "footer": settings.get("footer"),
        "from_invoice": None,
        "hosted_invoice_url": None,
        "invoice_pdf": None,
        "issuer": {"type": "self"},
        "last_finalization_error": None,
        "latest_revision": None,
        "livemode": ctx.livemode,
        "metadata": {},
        "next_payment_attempt": None,
        "number": None,
        "on_behalf_of": None,
        "parent": None,
        "payment_settings": {
            "default_mandate": None,
            "payment_method_options": None,
            "payment_method_types": None,
        },
        "period_end": ctx.now,
        "period_start": ctx.now,
        "post_payment_credit_notes_amount": 0,
        "pre_payment_credit_notes_amount": 0,
        "receipt_number": None,
        "rendering": None,
        "shipping_cost": None,
        "shipping_details": None,
        "starting_balance": 0,
        "statement_descriptor": None,
        "status": "draft",
        "status_transitions": {
            "finalized_at": None,
            "marked_uncollectible_at": None,
            "paid_at": None,
            "voided_at": None,
        },
        "subtotal": 0,
        "subtotal_excluding_tax": 0,
        "test_clock": None,
        "total": 0,
        "total_discount_amounts": [],
        "total_excluding_tax": 0,
        "total_pretax_credit_amounts": [],
        "total_taxes": [],
        "webhooks_delivered_at": None,
    }
    _apply(ctx, invoice, params)
    invoice["discounts"] = coupons.invoice_discounts(ctx, invoice["id"], customer, params, creating=True)
    seq = state.new_seq()
    state.invoices.add(seq, invoice)
    state.index(state.invoices_by_customer, customer["id"]).add(seq, invoice["id"])
    for item in pending:
        billing.attach(state, item, invoice)
    customers.set_currency_if_unset(customer, currency)
    return render(ctx, invoice)


def retrieve(ctx: Ctx, params: dict[str, Any]) -> Object:
    return render(ctx, _invoice(ctx))


def update(ctx: Ctx, params: dict[str, Any]) -> Object:
    invoice = _invoice(ctx)
    status = invoice["status"]
    if status != "draft":
        allowed = _OPEN_EDITABLE if status in ("open", "uncollectible") else _CLOSED_EDITABLE
        frozen = sorted(set(params) - allowed - {"expand"})
        if frozen:
            raise not_editable(
                f"You can't change `{frozen[0]}` of an invoice that is {status}; once an invoice is "
                "finalized its monetary fields, collection method and number are frozen.",
                param=frozen[0],
            )
    _due_rules(params, params.get("collection_method") or invoice["collection_method"])
    enabled = tax.requested(ctx, params)
    if enabled:
        # Turning automatic tax on: the customer must be placeable and the items the draft holds
        # compatible with it (tax.refusal).
        tax.require_location(ctx, ctx.state.customers.get(invoice["customer"]), param="automatic_tax[enabled]")
        items = billing.attached_items(ctx.state, invoice["id"])
        tax.check_lines(ctx, ((tax.facts_of(ctx.state, item), "automatic_tax[enabled]") for item in items))
    owner = ctx.state.customers.get(invoice["customer"]) or {}
    discounts = coupons.invoice_discounts(ctx, invoice["id"], owner, params, creating=False)
    _apply(ctx, invoice, params)
    if discounts is not None:
        invoice["discounts"] = discounts
    if enabled is not None:
        invoice["automatic_tax"] = tax.automatic_tax_object(enabled)
    return render(ctx, invoice)


def delete(ctx: Ctx, params: dict[str, Any]) -> Object:
    state = ctx.state
    invoice = _invoice(ctx)
    if invoice["status"] != "draft":
        raise invalid(
            f"You can only delete draft invoices. Invoice {invoice['id']} is {invoice['status']}; an "
            "invoice that has been finalized must be voided instead.",
        )
    # The draft's items go with it, as its lines do on Stripe.
    for item in billing.attached_items(state, invoice["id"]):
        billing.delete_item(state, item)
    state.items_by_invoice.pop(invoice["id"], None)
    seq = state.invoices.seq[invoice["id"]]
    customer_index = state.invoices_by_customer.get(invoice["customer"])
    if customer_index is not None:
        customer_index.remove(seq)
    state.invoices.remove(invoice["id"])
    return {"id": invoice["id"], "object": "invoice", "deleted": True}


def list_(ctx: Ctx, params: dict[str, Any]) -> Object:
    state = ctx.state
    customer_id = params.get("customer")
    index = state.invoices.order if customer_id is None else state.index(state.invoices_by_customer, customer_id)
    due = params.get("due_date")

    def keep(invoice: Object) -> bool:
        if params.get("status") is not None and invoice["status"] != params["status"]:
            return False
        if params.get("collection_method") is not None and invoice["collection_method"] != params["collection_method"]:
            return False
        return due is None or matches_range(invoice["due_date"], due)

    return list_page(ctx, params, url="/v1/invoices", collection=state.invoices, index=index, render=render, keep=keep)


def finalize(ctx: Ctx, params: dict[str, Any]) -> Object:
    invoice = _invoice(ctx)
    if invoice["status"] != "draft":
        raise invalid("This invoice is already finalized, you can't re-finalize a non-draft invoice.")
    tax.check_finalize(ctx, invoice)
    if "auto_advance" in params:
        invoice["auto_advance"] = params["auto_advance"]
    billing.finalize(ctx, invoice)
    return render(ctx, invoice)


def pay(ctx: Ctx, params: dict[str, Any]) -> Object:
    invoice = _invoice(ctx)
    status = invoice["status"]
    if status == "paid":
        raise invalid("Invoice is already paid.")
    if status == "void":
        raise invalid("This invoice has been voided and can no longer be paid.")
    if status == "draft":
        raise invalid(
            f"You can only pay an invoice that is open or uncollectible. Invoice {invoice['id']} is a draft: "
            "finalize it first."
        )
    if params.get("paid_out_of_band") and params.get("forgive"):
        raise exclusive_parameters("forgive", "paid_out_of_band")
    billing.mark_paid(ctx, invoice, out_of_band=bool(params.get("paid_out_of_band")))
    return render(ctx, invoice)


def void(ctx: Ctx, params: dict[str, Any]) -> Object:
    invoice = _invoice(ctx)
    if invoice["status"] not in ("open", "uncollectible"):
        raise invalid(
            f"You can only void invoices that are open or uncollectible. Invoice {invoice['id']} is "
            f"{invoice['status']}." + (" Delete a draft invoice instead." if invoice["status"] == "draft" else "")
        )
    invoice.update(status="void", amount_remaining=0, next_payment_attempt=None)
    invoice["status_transitions"]["voided_at"] = ctx.now
    return render(ctx, invoice)


def mark_uncollectible(ctx: Ctx, params: dict[str, Any]) -> Object:
    invoice = _invoice(ctx)
    if invoice["status"] != "open":
        raise invalid(
            f"You can only mark open invoices as uncollectible. Invoice {invoice['id']} is {invoice['status']}."
        )
    invoice.update(status="uncollectible", next_payment_attempt=None)
    invoice["status_transitions"]["marked_uncollectible_at"] = ctx.now
    return render(ctx, invoice)


def send(ctx: Ctx, params: dict[str, Any]) -> Object:
    invoice = _invoice(ctx)
    if invoice["collection_method"] != "send_invoice":
        raise invalid("You can only manually send an invoice if its collection method is 'send_invoice'.")
    if invoice["status"] != "open":
        raise invalid(f"You can only send open invoices. Invoice {invoice['id']} is {invoice['status']}.")
    return render(ctx, invoice)


def lines(ctx: Ctx, params: dict[str, Any]) -> Object:
    """An invoice's lines in the order they were added (oldest first), with cursor paging."""
    state = ctx.state
    invoice = _invoice(ctx)
    if params.get("starting_after") is not None and params.get("ending_before") is not None:
        raise exclusive_parameters("ending_before", "starting_after")
    index = state.index(state.items_by_invoice, invoice["id"])
    cursors: dict[str, int | None] = {}
    for param in ("starting_after", "ending_before"):
        line = params.get(param)
        seq = None
        if line is not None:
            item = state.invoice_items.get(billing.item_id_of_line(line))
            if item is None or item["invoice"] != invoice["id"]:
                raise no_such("line_item", line, param=param)
            seq = state.invoice_items.seq[item["id"]]
        cursors[param] = seq
    ids, has_more = index.page(
        limit=params.get("limit") or 10,
        newest_first=False,
        after=cursors["starting_after"],
        before=cursors["ending_before"],
    )
    money = billing.breakdown(ctx, invoice)
    data = [billing.render_line(state.invoice_items.objects[i], money) for i in ids]
    return list_object(f"/v1/invoices/{invoice['id']}/lines", data, has_more)


def add_lines(ctx: Ctx, params: dict[str, Any]) -> Object:
    """Add up to 250 lines at once: all are validated before any is stored."""
    state = ctx.state
    invoice = _invoice(ctx)
    billing.require_draft_for_items(invoice, None, "add")
    customer = customers.find(state, invoice["customer"], param=None)
    billing.check_room(state, invoice, len(params["lines"]), "lines")
    planned: list[tuple[Object, bool, dict[str, Any], billing.Pricing | None]] = []
    for i, line in enumerate(params["lines"]):
        prefix = f"lines[{i}]"
        billing.check_period(line.get("period"), prefix)
        if line.get("invoice_item") is not None:
            item = billing.find_item(state, line["invoice_item"], param=f"{prefix}[invoice_item]")
            if item["invoice"] is not None or item["customer"] != invoice["customer"]:
                raise invalid(
                    f"Invoice item {item['id']} must be a pending invoice item of customer "
                    f"{invoice['customer']} to be added to this invoice.",
                    param=f"{prefix}[invoice_item]",
                )
            pricing = billing.price_pricing(ctx, line, prefix=prefix, currency=invoice["currency"], existing=item)
            if pricing is None and item["currency"] != invoice["currency"]:
                raise invalid(
                    f"The currency of an invoice item ({item['currency']}) must match the currency of its "
                    f"invoice ({invoice['currency']}).",
                    param=f"{prefix}[invoice_item]",
                )
            planned.append((item, True, line, pricing))
        else:
            pricing = billing.price_pricing(ctx, line, prefix=prefix, currency=invoice["currency"], existing=None)
            assert pricing is not None
            planned.append((billing.new_item(ctx, customer, pricing, line), False, line, pricing))
    if invoice["automatic_tax"]["enabled"]:
        tax.check_lines(
            ctx,
            ((_line_facts(state, item, pricing), f"lines[{i}]") for i, (item, _, _, pricing) in enumerate(planned)),
        )
    for item, existing, line, pricing in planned:
        if existing:
            billing.update_item_fields(ctx, item, line, pricing)
        else:
            assert pricing is not None
            billing.store_item(ctx, item, pricing)
        billing.attach(state, item, invoice)
    if "invoice_metadata" in params:
        invoice["metadata"] = merge_metadata(invoice["metadata"], params["invoice_metadata"])
    return render(ctx, invoice)


def _line_facts(state: Any, item: Object, pricing: billing.Pricing | None) -> tax.LineFacts:
    """What a line about to be added is taxed on: its new pricing, or the item's own when unchanged."""
    if pricing is None:
        return tax.facts_of(state, item)
    meta = state.item_tax.get(item["id"], {})
    return tax.LineFacts(item["id"], pricing.amount, pricing.price, meta.get("tax_behavior"), meta.get("tax_code"))


def remove_lines(ctx: Ctx, params: dict[str, Any]) -> Object:
    state = ctx.state
    invoice = _invoice(ctx)
    billing.require_draft_for_items(invoice, None, "remove")
    planned: list[tuple[Object, str]] = []
    for i, line in enumerate(params["lines"]):
        item = state.invoice_items.get(billing.item_id_of_line(line["id"]))
        if item is None or item["invoice"] != invoice["id"]:
            raise no_such("line_item", line["id"], param=f"lines[{i}][id]")
        planned.append((item, line["behavior"]))
    for item, behavior in planned:
        if behavior == "delete":
            billing.delete_item(state, item)
        else:
            billing.detach(state, item)
    if "invoice_metadata" in params:
        invoice["metadata"] = merge_metadata(invoice["metadata"], params["invoice_metadata"])
    return render(ctx, invoice)
