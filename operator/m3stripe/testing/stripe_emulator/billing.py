"""Invoice items, their prices and their invoices: the rules both endpoints families share.

Amounts are integers in the currency's minor unit, as on the wire; ``unit_amount_decimal`` and
``quantity_decimal`` are ``Decimal`` and their product is rounded half away from zero.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from . import coupons, currencies, products, tax
from .common import EXPANDABLE, Ctx, decimal_string, merge_metadata, round_minor
from .errors import StripeError, exclusive_parameters, invalid, no_such, not_editable
from .params import Bool, Currency, DecimalStr, Enum, Int, Metadata, Obj, Param, Str
from .state import AccountState
from .state import Obj as Object

MAX_ITEMS_PER_INVOICE = 250
TAX_BEHAVIOR = Enum("exclusive", "inclusive", "unspecified")
PRICE_DATA = Obj(
    {
        "currency": Currency(),
        "product": Str(),
        "tax_behavior": TAX_BEHAVIOR,
        "unit_amount": Int(0),
        "unit_amount_decimal": DecimalStr(12, minimum=Decimal(0)),
    },
    required=("currency", "product"),
)
PERIOD = Obj({"start": Int(0), "end": Int(0)}, required=("start", "end"))

# The invoice-item fields shared by create, update and an invoice's add_lines.
ITEM_FIELDS: dict[str, Param] = {
    "amount": Int(),
    "description": Str(5000),
    "discountable": Bool(),
    "metadata": Metadata(),
    "period": PERIOD,
    "price_data": PRICE_DATA,
    "quantity": Int(0),
    "quantity_decimal": DecimalStr(12, minimum=Decimal(0)),
    "tax_behavior": TAX_BEHAVIOR,
    "tax_code": Str(emptyable=True),
    "unit_amount_decimal": DecimalStr(12),
}
_PRICING_KEYS = ("amount", "price_data", "unit_amount_decimal")


def _name(prefix: str, name: str) -> str:
    return f"{prefix}[{name}]" if prefix else name


@dataclass
class Pricing:
    """What an item costs: currency, amount and the unit price and quantity behind it."""

    currency: str
    amount: int
    quantity: int
    quantity_decimal: Decimal
    unit_amount_decimal: Decimal
    price: Object | None = None

    def as_dict(self) -> Object:
        details = None
        if self.price is not None:
            details = {"price": self.price["id"], "product": self.price["product"]}
        return {
            "type": "price_details",
            "price_details": details,
            "unit_amount_decimal": decimal_string(self.unit_amount_decimal),
        }


def price_pricing(
    ctx: Ctx,
    params: Mapping[str, Any],
    *,
    prefix: str,
    currency: str | None,
    existing: Object | None,
    fallback: str | None = None,
) -> Pricing | None:
    """Work out an item's pricing from its parameters; ``None`` when an update leaves it alone.

    ``currency`` is the currency the item must have (its invoice's), when there is one; ``fallback``
    (the customer's currency) applies before the account's default when nothing else names one.
    """
    given = [k for k in _PRICING_KEYS if params.get(k) is not None]
    if len(given) > 1:
        raise exclusive_parameters(*(_name(prefix, k) for k in given))
    if params.get("amount") is not None and params.get("quantity") is not None:
        raise exclusive_parameters(_name(prefix, "amount"), _name(prefix, "quantity"))
    if params.get("quantity") is not None and params.get("quantity_decimal") is not None:
        raise exclusive_parameters(_name(prefix, "quantity"), _name(prefix, "quantity_decimal"))
    quantity_given = params.get("quantity") is not None or params.get("quantity_decimal") is not None
    if not given and existing is None:
        raise StripeError(
            400,
            "You must specify one of `amount`, `price_data` or `unit_amount_decimal` to create an invoice item.",
            code="parameter_missing",
            param=_name(prefix, "amount"),
        )
    if not given and not quantity_given:
        return None

    quantity_decimal = Decimal(1)
    if params.get("quantity_decimal") is not None:
        quantity_decimal = params["quantity_decimal"]
    elif params.get("quantity") is not None:
        quantity_decimal = Decimal(params["quantity"])
    elif existing is not None and not given:
        quantity_decimal = Decimal(existing["quantity_decimal"])

    price: Object | None = None
    price_data = params.get("price_data")
    requested = params.get("currency")
    if price_data is not None:
        products.find(ctx.state, price_data["product"], param=_name(prefix, "price_data[product]"))
        item_currency = price_data["currency"]
        if requested is not None and requested != item_currency:
            raise invalid(
                f"The currency ({requested}) must match the price_data currency ({item_currency}).",
                param=_name(prefix, "currency"),
            )
        unit = _unit_amount(price_data, prefix)
        if price_data.get("unit_amount") is not None:
            currencies.check_amount(item_currency, price_data["unit_amount"], _name(prefix, "price_data[unit_amount]"))
        else:
            currencies.check_unit_amount(item_currency, unit, _name(prefix, "price_data[unit_amount_decimal]"))
        price = _inline_price(ctx, price_data, unit)
    elif params.get("amount") is not None:
        item_currency = requested or (existing["currency"] if existing else None) or currency or ""
        unit = Decimal(params["amount"])
    elif params.get("unit_amount_decimal") is not None:
        item_currency = requested or (existing["currency"] if existing else None) or currency or ""
        unit = params["unit_amount_decimal"]
        if item_currency:
            currencies.check_unit_amount(item_currency, unit, _name(prefix, "unit_amount_decimal"))
    else:
        assert existing is not None
        item_currency = existing["currency"]
        unit = Decimal(existing["pricing"]["unit_amount_decimal"])
        details = existing["pricing"].get("price_details")
        price = ctx.state.prices.get(details["price"]) if details else None
    if not item_currency:
        item_currency = fallback or ctx.account.default_currency
    if currency is not None and item_currency != currency:
        raise invalid(
            f"The currency of an invoice item ({item_currency}) must match the currency of its invoice ({currency}).",
            param=_name(prefix, "currency"),
        )
    amount = round_minor(unit * quantity_decimal)
    # The step and size rules hold for the amount Stripe computes, however it was given.
    currencies.check_amount(
        item_currency, amount, _name(prefix, "amount" if params.get("amount") is not None else "quantity")
    )
    return Pricing(
        currency=item_currency,
        amount=amount,
        quantity=int(quantity_decimal),
        quantity_decimal=quantity_decimal,
        unit_amount_decimal=unit,
        price=price,
    )


def _unit_amount(price_data: Mapping[str, Any], prefix: str) -> Decimal:
    has_int = price_data.get("unit_amount") is not None
    has_decimal = price_data.get("unit_amount_decimal") is not None
    if has_int and has_decimal:
        raise exclusive_parameters(
            _name(prefix, "price_data[unit_amount]"), _name(prefix, "price_data[unit_amount_decimal]")
        )
    if has_int:
        return Decimal(price_data["unit_amount"])
    if has_decimal:
        value: Decimal = price_data["unit_amount_decimal"]
        return value
    raise StripeError(
        400,
        "You must specify either `unit_amount` or `unit_amount_decimal` in `price_data`.",
        code="parameter_missing",
        param=_name(prefix, "price_data[unit_amount]"),
    )


def _inline_price(ctx: Ctx, price_data: Mapping[str, Any], unit: Decimal) -> Object:
    """The one-off Price that ``price_data`` creates (inactive, like Stripe's inline prices)."""
    return {
        "id": ctx.state.new_id("price"),
        "object": "price",
        "active": False,
        "billing_scheme": "per_unit",
        "created": ctx.now,
        "currency": price_data["currency"],
        "custom_unit_amount": None,
        "livemode": ctx.livemode,
        "lookup_key": None,
        "metadata": {},
        "nickname": None,
        "product": price_data["product"],
        "recurring": None,
        "tax_behavior": price_data.get("tax_behavior", "unspecified"),
        "tiers_mode": None,
        "transform_quantity": None,
        "type": "one_time",
        "unit_amount": int(unit) if unit == unit.to_integral_value() else None,
        "unit_amount_decimal": decimal_string(unit),
    }


def store_price(ctx: Ctx, pricing: Pricing | None) -> None:
    if pricing is not None and pricing.price is not None and pricing.price["id"] not in ctx.state.prices:
        ctx.state.prices.add(ctx.state.new_seq(), pricing.price)


def apply_pricing(item: Object, pricing: Pricing) -> None:
    item["amount"] = pricing.amount
    item["net_amount"] = pricing.amount
    item["currency"] = pricing.currency
    item["quantity"] = pricing.quantity
    item["quantity_decimal"] = decimal_string(pricing.quantity_decimal)
    item["pricing"] = pricing.as_dict()


def check_period(period: Mapping[str, int] | None, prefix: str) -> None:
    if period is not None and period["end"] < period["start"]:
        raise invalid(
            "The period end must be greater than or equal to the period start.",
            param=_name(prefix, "period[end]"),
        )


def new_item(ctx: Ctx, customer: Object, pricing: Pricing, params: Mapping[str, Any]) -> Object:
    """A fresh invoice item (not stored yet); ``discountable`` defaults to false for credits."""
    period = params.get("period") or {"start": ctx.now, "end": ctx.now}
    item: Object = {
        "id": ctx.state.new_id("ii"),
        "object": "invoiceitem",
        "amount": 0,
        "currency": pricing.currency,
        "customer": customer["id"],
        "customer_account": None,
        "date": ctx.now,
        "description": params.get("description"),
        "discountable": params.get("discountable", pricing.amount >= 0),
        "discounts": [],
        "invoice": None,
        "livemode": ctx.livemode,
        "metadata": merge_metadata({}, params.get("metadata") or {}),
        "net_amount": 0,
        "parent": None,
        "period": dict(period),
        "pricing": None,
        "proration": False,
        "proration_details": {"credited_items": None},
        "quantity": 1,
        "quantity_decimal": "1",
        "tax_rates": [],
        "test_clock": None,
    }
    apply_pricing(item, pricing)
    return item


def store_item(ctx: Ctx, item: Object, pricing: Pricing) -> None:
    state = ctx.state
    store_price(ctx, pricing)
    seq = state.new_seq()
    state.invoice_items.add(seq, item)
    state.index(state.items_by_customer, item["customer"]).add(seq, item["id"])


def update_item_fields(ctx: Ctx, item: Object, params: Mapping[str, Any], pricing: Pricing | None) -> None:
    if pricing is not None:
        store_price(ctx, pricing)
        apply_pricing(item, pricing)
    for key in ("description", "discountable"):
        if key in params:
            item[key] = params[key]
    if params.get("period") is not None:
        item["period"] = dict(params["period"])
    if "metadata" in params:
        item["metadata"] = merge_metadata(item["metadata"], params["metadata"])


# --- invoices --------------------------------------------------------------------------------------


def find_invoice(state: AccountState, invoice_id: str, *, param: str | None, status: int = 400) -> Object:
    invoice = state.invoices.get(invoice_id)
    if invoice is None:
        raise no_such("invoice", invoice_id, param=param, status=status)
    return invoice


def find_item(state: AccountState, item_id: str, *, param: str | None, status: int = 400) -> Object:
    item = state.invoice_items.get(item_id)
    if item is None:
        raise no_such("invoiceitem", item_id, param=param, status=status)
    return item


def item_count(state: AccountState, invoice_id: str) -> int:
    index = state.items_by_invoice.get(invoice_id)
    return 0 if index is None else len(index)


def check_room(state: AccountState, invoice: Object, adding: int, param: str | None) -> None:
    if item_count(state, invoice["id"]) + adding > MAX_ITEMS_PER_INVOICE:
        raise invalid(
            f"An invoice can have at most {MAX_ITEMS_PER_INVOICE} invoice items; invoice {invoice['id']} "
            f"already has {item_count(state, invoice['id'])}.",
            param=param,
        )


def require_draft_for_items(invoice: Object, param: str | None, verb: str) -> None:
    if invoice["status"] != "draft":
        raise not_editable(
            f"You can only {verb} invoice items on draft invoices. Invoice {invoice['id']} is "
            f"{invoice['status']}: its invoice items can no longer be changed.",
            param=param,
        )


def require_mutable_item(state: AccountState, item: Object, verb: str) -> None:
    """Items can change while pending or on a draft invoice, never once their invoice is finalized."""
    invoice_id = item.get("invoice")
    if invoice_id is None:
        return
    invoice = state.invoices.get(invoice_id)
    if invoice is not None and invoice["status"] != "draft":
        raise not_editable(
            f"You cannot {verb} invoice item {item['id']} because its invoice {invoice_id} is "
            f"{invoice['status']}; invoice items are only editable while pending or on a draft invoice."
        )


def attach(state: AccountState, item: Object, invoice: Object) -> None:
    item["invoice"] = invoice["id"]
    state.index(state.items_by_invoice, invoice["id"]).add(state.invoice_items.seq[item["id"]], item["id"])


def detach(state: AccountState, item: Object) -> None:
    invoice_id = item.get("invoice")
    if invoice_id is not None:
        index = state.items_by_invoice.get(invoice_id)
        if index is not None:
            index.remove(state.invoice_items.seq[item["id"]])
    item["invoice"] = None


def delete_item(state: AccountState, item: Object) -> None:
    detach(state, item)
    state.item_tax.pop(item["id"], None)
    seq = state.invoice_items.seq[item["id"]]
    customer_index = state.items_by_customer.get(item["customer"])
    if customer_index is not None:
        customer_index.remove(seq)
    state.invoice_items.remove(item["id"])


def attached_items(state: AccountState, invoice_id: str) -> list[Object]:
    index = state.items_by_invoice.get(invoice_id)
    if index is None:
        return []
    return [state.invoice_items.objects[i] for i in index]


def subtotal(state: AccountState, invoice_id: str) -> int:
    return sum(item["amount"] for item in attached_items(state, invoice_id))


@dataclass
class Breakdown:
    """An invoice's money: its lines, discounts (per invoice and per line) and taxes, and the totals."""

    subtotal: int
    discounts: list[Object]
    line_discounts: dict[str, list[Object]]
    taxes: tax.InvoiceTax
    subtotal_excluding_tax: int
    total_excluding_tax: int
    total: int


def _allocate(amount: int, weights: dict[str, int]) -> dict[str, int]:
    """Split ``amount`` over the lines in proportion to ``weights`` (largest remainder, ties to the earlier line).

    Stripe shows each invoice-level discount's share on every discountable line (a line's
    ``discount_amounts``: "The amount of discount calculated per discount for this line item", SDK
    ``InvoiceLineItem``) without saying how it splits it; proportionally to the lines is the emulator's
    choice. Each share is at most its line's weight, as ``amount`` never exceeds their sum.
    """
    positive = {key: weight for key, weight in weights.items() if weight > 0}
    whole = sum(positive.values())
    if amount <= 0 or whole <= 0:
        return {}
    shares = {key: amount * weight // whole for key, weight in positive.items()}
    left = amount - sum(shares.values())
    order = sorted(positive, key=lambda key: -((amount * positive[key]) % whole))  # stable: ties keep line order
    for key in order[:left]:
        shares[key] += 1
    return shares


def breakdown(ctx: Ctx, invoice: Object) -> Breakdown:
    """Totals as Stripe reports them (SDK ``Invoice``): ``subtotal`` is before invoice-level discounts
    and exclusive tax; ``total_excluding_tax`` includes all discounts but no tax; ``total`` is after
    discounts and taxes. Discounts apply to the discountable lines only, and tax to each line's amount
    less its share of them. A finalized invoice keeps what it was finalized with."""
    state = ctx.state
    frozen: Breakdown | None = state.invoice_breakdowns.get(invoice["id"])
    if frozen is not None:
        return frozen
    items = attached_items(state, invoice["id"])
    sub = sum(item["amount"] for item in items)
    base = sum(item["amount"] for item in items if item["discountable"])
    remaining = {item["id"]: item["amount"] for item in items if item["discountable"]}
    line_discounts: dict[str, list[Object]] = {item["id"]: [] for item in items}
    amounts: list[Object] = []
    for discount_id in invoice.get("discounts") or []:
        off = coupons.discount_amount(state, discount_id, base, invoice["currency"])
        base -= off
        amounts.append({"amount": off, "discount": discount_id})
        for item_id, share in _allocate(off, remaining).items():
            line_discounts[item_id].append({"amount": share, "discount": discount_id})
            remaining[item_id] -= share
    discounted = sub - sum(a["amount"] for a in amounts)
    bases = {item["id"]: item["amount"] - sum(d["amount"] for d in line_discounts[item["id"]]) for item in items}
    taxes = tax.compute(ctx, invoice, items, bases)
    return Breakdown(
        subtotal=sub,
        discounts=amounts,
        line_discounts=line_discounts,
        taxes=taxes,
        subtotal_excluding_tax=sub - taxes.inclusive_before_discounts,
        total_excluding_tax=discounted - taxes.inclusive,
        total=discounted + taxes.exclusive,
    )


def line_id(item_id: str) -> str:
    return "il_" + item_id.removeprefix("ii_")


def item_id_of_line(line: str) -> str:
    return "ii_" + line.removeprefix("il_")


def render_line(item: Object, money: Breakdown | None = None) -> Object:
    """A line of an invoice; its discounts and taxes come from the invoice's ``breakdown``."""
    discounts = money.line_discounts.get(item["id"], []) if money is not None else []
    taxes = money.taxes.lines.get(item["id"], []) if money is not None else []
    return {
        "id": line_id(item["id"]),
        "object": "line_item",
        "amount": item["amount"],
        "currency": item["currency"],
        "description": item["description"],
        "discount_amounts": [dict(d) for d in discounts],
        "discountable": item["discountable"],
        "discounts": [],
        "invoice": item["invoice"],
        "livemode": item["livemode"],
        "metadata": dict(item["metadata"]),
        "parent": {
            "type": "invoice_item_details",
            "invoice_item_details": {
                "invoice_item": item["id"],
                "proration": False,
                "proration_details": {"credited_items": None},
                "subscription": None,
            },
            "subscription_item_details": None,
        },
        "period": dict(item["period"]),
        "pretax_credit_amounts": [],
        "pricing": item["pricing"],
        "quantity": item["quantity"],
        "quantity_decimal": item["quantity_decimal"],
        "subscription": None,
        "subtotal": item["amount"],
        "taxes": [dict(t, tax_rate_details=dict(t["tax_rate_details"])) for t in taxes],
    }


LINES_ON_INVOICE = 10


def render_invoice(ctx: Ctx, invoice: Object) -> Object:
    """The invoice with its first lines and, while it is a draft, totals computed from its items."""
    state = ctx.state
    out = dict(invoice)
    out["automatic_tax"] = dict(invoice["automatic_tax"])
    items = attached_items(state, invoice["id"])
    money = breakdown(ctx, invoice)
    if invoice["status"] == "draft":
        amount_due = max(money.total, 0)
        out.update(
            subtotal=money.subtotal,
            subtotal_excluding_tax=money.subtotal_excluding_tax,
            total_discount_amounts=[dict(d) for d in money.discounts],
            total=money.total,
            total_excluding_tax=money.total_excluding_tax,
            total_taxes=[dict(t, tax_rate_details=dict(t["tax_rate_details"])) for t in money.taxes.totals],
            amount_due=amount_due,
            amount_remaining=amount_due,
        )
        out["automatic_tax"]["status"] = money.taxes.status
    out["lines"] = {
        "object": "list",
        "data": [render_line(item, money) for item in items[:LINES_ON_INVOICE]],
        "has_more": len(items) > LINES_ON_INVOICE,
        "url": f"/v1/invoices/{invoice['id']}/lines",
    }
    return out


def finalize(ctx: Ctx, invoice: Object) -> None:
    """Draft -> open, or straight to paid when nothing is due; freezes totals and applies the balance."""
    state = ctx.state
    tax.check_finalize(ctx, invoice)
    customer = state.customers.get(invoice["customer"])
    money = breakdown(ctx, invoice)
    total = money.total
    starting = customer["balance"] if customer is not None else 0
    applied = total + starting
    amount_due = max(applied, 0)
    ending = min(applied, 0)
    # The amount due is what gets charged, so Stripe's largest charge applies to it (currencies.py).
    currencies.check_amount(invoice["currency"], amount_due, "amount_due")
    if customer is not None:
        customer["balance"] = ending
        if invoice["number"] is None:
            invoice["number"] = f"{customer['invoice_prefix']}-{customer['next_invoice_sequence']:04d}"
            customer["next_invoice_sequence"] += 1
    elif invoice["number"] is None:
        invoice["number"] = invoice["id"][3:11].upper()
    mode = "live" if ctx.livemode else "test"
    state.invoice_breakdowns[invoice["id"]] = money
    invoice["automatic_tax"]["status"] = money.taxes.status
    invoice.update(
        subtotal=money.subtotal,
        subtotal_excluding_tax=money.subtotal_excluding_tax,
        total_discount_amounts=[dict(d) for d in money.discounts],
        total=total,
        total_excluding_tax=money.total_excluding_tax,
        total_taxes=[dict(t, tax_rate_details=dict(t["tax_rate_details"])) for t in money.taxes.totals],
        starting_balance=starting,
        ending_balance=ending,
        amount_due=amount_due,
        amount_remaining=amount_due,
        status="open",
        effective_at=invoice["effective_at"] or ctx.now,
        hosted_invoice_url=f"https://invoice.stripe.com/i/{ctx.account.id}/{mode}_{invoice['id'][3:]}",
        invoice_pdf=f"https://pay.stripe.com/invoice/{ctx.account.id}/{mode}_{invoice['id'][3:]}/pdf",
    )
    invoice["status_transitions"]["finalized_at"] = ctx.now
    if invoice["collection_method"] == "charge_automatically" and invoice["auto_advance"] and amount_due:
        invoice["next_payment_attempt"] = ctx.now + 3600
    if amount_due == 0:
        mark_paid(ctx, invoice, out_of_band=False)


def mark_paid(ctx: Ctx, invoice: Object, *, out_of_band: bool) -> None:
    amount = invoice["amount_remaining"]
    invoice.update(
        status="paid",
        amount_paid=invoice["amount_paid"] + amount,
        amount_remaining=0,
        next_payment_attempt=None,
        attempted=True,
        attempt_count=invoice["attempt_count"] + (0 if out_of_band or amount == 0 else 1),
    )
    if out_of_band:
        invoice["amount_paid_off_stripe"] = (invoice.get("amount_paid_off_stripe") or 0) + amount
    if amount and not out_of_band:
        paid = ctx.state.paid_by_currency
        paid[invoice["currency"]] = paid.get(invoice["currency"], 0) + amount
    invoice["status_transitions"]["paid_at"] = ctx.now


def _expand_invoice(ctx: Ctx, invoice_id: str) -> Object | None:
    invoice = ctx.state.invoices.get(invoice_id)
    return None if invoice is None else render_invoice(ctx, invoice)


EXPANDABLE.setdefault("invoiceitem", {})["invoice"] = ("invoice", _expand_invoice)
EXPANDABLE.setdefault("line_item", {})["invoice"] = ("invoice", _expand_invoice)
