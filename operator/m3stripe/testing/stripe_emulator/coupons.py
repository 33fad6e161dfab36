"""``/v1/coupons`` and discounts: what a customer's coupon does to the invoices made for them.

As on Stripe (invoices/create, ``discounts``): "If not specified, inherits the discount from the
invoice's customer. Pass an empty string to avoid inheriting any discounts." A discount reduces the
invoice by its coupon's ``percent_off`` or ``amount_off``, applied to the ``discountable`` lines only
(lines default to discountable unless negative: invoiceitems/create, ``discountable``).

At this API version a customer's discount cannot be set through the Customers API (the SDK's
``CustomerCreateParams``/``CustomerUpdateParams`` have no ``coupon`` nor ``discounts``): it comes
from the Dashboard or a subscription. ``StripeEmulator.apply_customer_discount`` stands in for
that Dashboard gesture.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from .common import Ctx
from .errors import invalid, no_such
from .params import Currency, DecimalStr, Enum, Int, Metadata, Obj, Schema, Str
from .state import AccountState
from .state import Obj as Object

CREATE = Schema(
    {
        "amount_off": Int(1),
        "currency": Currency(),
        "duration": Enum("forever", "once", "repeating"),
        "duration_in_months": Int(1),
        "id": Str(200),
        "max_redemptions": Int(1),
        "metadata": Metadata(),
        "name": Str(40),
        "percent_off": DecimalStr(2, minimum=Decimal(0)),
        "redeem_by": Int(0),
    }
)
RETRIEVE = Schema()
# invoices/create and invoices/update: `discounts` is "" or a list of {coupon | discount | promotion_code}.
INVOICE_DISCOUNTS = Obj({"coupon": Str(), "discount": Str(), "promotion_code": Str()})


def render(ctx: Ctx, coupon: Object) -> Object:
    return coupon


def find(state: AccountState, coupon_id: str, *, param: str | None, status: int = 400) -> Object:
    coupon = state.coupons.get(coupon_id)
    if coupon is None:
        raise no_such("coupon", coupon_id, param=param, status=status)
    return coupon


def create(ctx: Ctx, params: dict[str, Any]) -> Object:
    state = ctx.state
    percent, amount = params.get("percent_off"), params.get("amount_off")
    if (percent is None) == (amount is None):
        raise invalid("You must pass exactly one of `percent_off` or `amount_off`.", param="percent_off")
    if percent is not None and not 0 < percent <= 100:
        raise invalid("Invalid percent_off: must be greater than 0 and at most 100.", param="percent_off")
    if amount is not None and params.get("currency") is None:
        raise invalid("You must pass `currency` with `amount_off`.", param="currency")
    coupon_id = params.get("id") or state.ids.new("", 8)[1:]
    if coupon_id in state.coupons:
        raise invalid(f"Coupon already exists: {coupon_id}", param="id", code="resource_already_exists")
    coupon: Object = {
        "id": coupon_id,
        "object": "coupon",
        "amount_off": amount,
        "applies_to": None,
        "created": ctx.now,
        "currency": params.get("currency"),
        "currency_options": None,
        "duration": params.get("duration", "once"),
        "duration_in_months": params.get("duration_in_months"),
        "livemode": ctx.livemode,
        "max_redemptions": params.get("max_redemptions"),
        "metadata": {k: v for k, v in (params.get("metadata") or {}).items() if v is not None},
        "name": params.get("name"),
        "percent_off": float(percent) if percent is not None else None,
        "redeem_by": params.get("redeem_by"),
        "times_redeemed": 0,
        "valid": True,
    }
    state.coupons.add(state.new_seq(), coupon)
    return coupon


def retrieve(ctx: Ctx, params: dict[str, Any]) -> Object:
    return find(ctx.state, ctx.path_args["coupon"], param="id", status=404)


def new_discount(ctx: Ctx, coupon: Object, *, customer: str | None = None, invoice: str | None = None) -> Object:
    discount: Object = {
        "id": ctx.state.new_id("di"),
        "object": "discount",
        "checkout_session": None,
        "customer": customer,
        "customer_account": None,
        "end": None,
        "invoice": invoice,
        "invoice_item": None,
        "promotion_code": None,
        "source": {"coupon": coupon["id"], "type": "coupon"},
        "start": ctx.now,
        "subscription": None,
        "subscription_item": None,
    }
    ctx.state.discounts.add(ctx.state.new_seq(), discount)
    coupon["times_redeemed"] += 1
    return discount


def apply_to_customer(ctx: Ctx, customer: Object, coupon_id: str) -> Object:
    """The Dashboard's "Apply coupon" on a customer: later invoices inherit it."""
    coupon = find(ctx.state, coupon_id, param="coupon")
    discount = new_discount(ctx, coupon, customer=customer["id"])
    customer["discount"] = discount
    return discount


def invoice_discounts(
    ctx: Ctx, invoice_id: str, customer: Object, params: dict[str, Any], *, creating: bool
) -> list[str] | None:
    """The discount ids an invoice holds after this request; None when the request leaves them alone."""
    if "discounts" not in params:
        if creating and customer.get("discount") is not None:
            return [customer["discount"]["id"]]  # inherited, as Stripe does by default
        return [] if creating else None
    ids: list[str] = []
    for i, entry in enumerate(params["discounts"] or []):  # "" (None here) means none at all
        if entry.get("coupon") is not None:
            coupon = find(ctx.state, entry["coupon"], param=f"discounts[{i}][coupon]")
            ids.append(new_discount(ctx, coupon, invoice=invoice_id)["id"])
        elif entry.get("discount") is not None:
            if ctx.state.discounts.get(entry["discount"]) is None:
                raise no_such("discount", entry["discount"], param=f"discounts[{i}][discount]")
            ids.append(entry["discount"])
        else:
            raise invalid("Promotion codes are not supported by this emulator.", param=f"discounts[{i}]")
    return ids


def discount_amount(state: AccountState, discount_id: str, base: int, currency: str) -> int:
    """What one discount takes off ``base`` (the discountable lines' sum), never more than it."""
    discount = state.discounts.get(discount_id)
    if discount is None or base <= 0:
        return 0
    coupon = state.coupons.get(discount["source"]["coupon"])
    if coupon is None:
        return 0
    if coupon["percent_off"] is not None:
        off = int((Decimal(base) * Decimal(str(coupon["percent_off"])) / 100).quantize(Decimal(1), ROUND_HALF_UP))
    elif coupon["currency"] == currency:
        off = coupon["amount_off"]
    else:
        off = 0
    return min(off, base)
