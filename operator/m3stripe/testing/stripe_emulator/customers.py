"""``/v1/customers``: create, retrieve, update, delete and list (with the ``email`` filter)."""

from __future__ import annotations

import re
from typing import Any

from . import tax
from .common import EXPANDABLE, Ctx, list_page, merge_metadata
from .errors import invalid, no_such
from .params import (
    PAGINATION,
    Arr,
    Bool,
    Email,
    Enum,
    Int,
    IntOrRange,
    Metadata,
    Obj,
    Param,
    Schema,
    Str,
)
from .state import AccountState
from .state import Obj as Object

_ADDRESS = Obj({k: Str(200) for k in ("city", "country", "line1", "line2", "postal_code", "state")}, emptyable=True)
CUSTOM_FIELDS = Arr(Obj({"name": Str(40), "value": Str(140)}, required=("name", "value")), max_items=4, emptyable=True)
_INVOICE_SETTINGS = Obj(
    {
        "custom_fields": CUSTOM_FIELDS,
        "default_payment_method": Str(),
        "footer": Str(5000),
        "rendering_options": Obj(
            {
                "amount_tax_display": Enum("exclude_tax", "include_inclusive_tax", emptyable=True),
                "template": Str(),
            },
            emptyable=True,
        ),
    }
)
_FIELDS: dict[str, Param] = {
    "address": _ADDRESS,
    "balance": Int(),
    "business_name": Str(150, emptyable=True),
    "description": Str(5000),
    "email": Email(),
    "individual_name": Str(150, emptyable=True),
    "invoice_prefix": Str(12),
    "invoice_settings": _INVOICE_SETTINGS,
    "metadata": Metadata(),
    "name": Str(256),
    "next_invoice_sequence": Int(1),
    "phone": Str(20),
    "preferred_locales": Arr(Str()),
    "shipping": Obj(
        {"address": _ADDRESS, "name": Str(5000), "phone": Str(20)},
        required=("address", "name"),
        emptyable=True,
    ),
    "tax_exempt": Enum("exempt", "none", "reverse", emptyable=True),
    "validate": Bool(),
}

CREATE = Schema({**_FIELDS, "tax": tax.CUSTOMER_TAX_CREATE})
UPDATE = Schema({**_FIELDS, "tax": tax.CUSTOMER_TAX_UPDATE})
RETRIEVE = Schema()
DELETE = Schema()
LIST = Schema({**PAGINATION, "email": Str(512), "created": IntOrRange()})

_PREFIX_RE = re.compile(r"^[A-Z0-9]{3,12}$")


def find(state: AccountState, customer_id: str, *, param: str | None, status: int = 400) -> Object:
    """A live customer, or the Stripe ``resource_missing`` error (deleted customers count as missing)."""
    customer = state.customers.get(customer_id)
    if customer is None:
        raise no_such("customer", customer_id, param=param, status=status)
    return customer


def render(ctx: Ctx, customer: Object) -> Object:
    return customer


def _apply(ctx: Ctx, customer: Object, params: dict[str, Any]) -> None:
    for key in (
        "address",
        "balance",
        "business_name",
        "description",
        "individual_name",
        "name",
        "next_invoice_sequence",
        "phone",
        "shipping",
    ):
        if key in params:
            customer[key] = params[key]
    if "email" in params:
        _reindex_email(ctx.state, customer, params["email"])
    if "preferred_locales" in params:
        customer["preferred_locales"] = params["preferred_locales"] or []
    if "tax_exempt" in params:
        customer["tax_exempt"] = params["tax_exempt"] or "none"
    if "metadata" in params:
        customer["metadata"] = merge_metadata(customer["metadata"], params["metadata"])
    if "invoice_prefix" in params:
        prefix = params["invoice_prefix"]
        if not _PREFIX_RE.match(prefix):
            raise invalid("Invalid invoice_prefix: must be 3-12 uppercase letters or numbers.", param="invoice_prefix")
        customer["invoice_prefix"] = prefix
    settings = params.get("invoice_settings")
    if settings is not None:
        current = customer["invoice_settings"]
        for key in ("custom_fields", "default_payment_method", "footer", "rendering_options"):
            if key in settings:
                current[key] = settings[key]


def _reindex_email(state: AccountState, customer: Object, email: str | None) -> None:
    seq = state.customers.seq.get(customer["id"])
    old = customer.get("email")
    if seq is not None and old is not None:
        state.index(state.customers_by_email, old).remove(seq)
    customer["email"] = email
    if seq is not None and email is not None:
        state.index(state.customers_by_email, email).add(seq, customer["id"])


def create(ctx: Ctx, params: dict[str, Any]) -> Object:
    state = ctx.state
    customer: Object = {
        "id": state.new_id("cus"),
        "object": "customer",
        "address": None,
        "balance": 0,
        "business_name": None,
        "created": ctx.now,
        "currency": None,
        "customer_account": None,
        "default_source": None,
        "delinquent": False,
        "description": None,
        "discount": None,
        "email": None,
        "individual_name": None,
        "invoice_prefix": state.ids.new("x", 8)[2:].upper(),
        "invoice_settings": {
            "custom_fields": None,
            "default_payment_method": None,
            "footer": None,
            "rendering_options": None,
        },
        "livemode": ctx.livemode,
        "metadata": {},
        "name": None,
        "next_invoice_sequence": 1,
        "phone": None,
        "preferred_locales": [],
        "shipping": None,
        "tax_exempt": "none",
        "test_clock": None,
    }
    tax_params = params.get("tax")
    tax.validate_location(
        ctx, tax_params, params.get("address"), params.get("shipping"), (tax_params or {}).get("ip_address")
    )
    email = params.pop("email", None)
    _apply(ctx, customer, params)
    state.customers.add(state.new_seq(), customer)
    tax.remember_customer_tax(state, customer["id"], tax_params)
    if email is not None:
        _reindex_email(state, customer, email)
    return customer


def retrieve(ctx: Ctx, params: dict[str, Any]) -> Object:
    customer_id = ctx.path_args["customer"]
    if customer_id in ctx.state.deleted_customers:
        return {"id": customer_id, "object": "customer", "deleted": True}
    return find(ctx.state, customer_id, param="id", status=404)


def update(ctx: Ctx, params: dict[str, Any]) -> Object:
    customer = find(ctx.state, ctx.path_args["customer"], param="id", status=404)
    tax_params = params.get("tax") or {}
    known_ip = ctx.state.customer_tax.get(customer["id"], {}).get("ip_address")
    tax.validate_location(
        ctx,
        tax_params,
        params["address"] if "address" in params else customer.get("address"),
        params["shipping"] if "shipping" in params else customer.get("shipping"),
        tax_params.get("ip_address", known_ip),
    )
    _apply(ctx, customer, params)
    tax.remember_customer_tax(ctx.state, customer["id"], tax_params)
    return customer


def delete(ctx: Ctx, params: dict[str, Any]) -> Object:
    state = ctx.state
    customer = find(state, ctx.path_args["customer"], param="id", status=404)
    if customer.get("email") is not None:
        _reindex_email(state, customer, None)
    state.customers.remove(customer["id"])
    state.customer_tax.pop(customer["id"], None)
    state.deleted_customers.add(customer["id"])
    return {"id": customer["id"], "object": "customer", "deleted": True}


def list_(ctx: Ctx, params: dict[str, Any]) -> Object:
    state = ctx.state
    email = params.get("email")
    index = state.customers.order if email is None else state.index(state.customers_by_email, email)
    return list_page(ctx, params, url="/v1/customers", collection=state.customers, index=index, render=render)


def set_currency_if_unset(customer: Object, currency: str) -> None:
    """Stripe fixes a customer's default currency with their first invoice or invoice item."""
    if customer.get("currency") is None:
        customer["currency"] = currency


def _expand_customer(ctx: Ctx, customer_id: str) -> Object | None:
    if customer_id in ctx.state.deleted_customers:
        return {"id": customer_id, "object": "customer", "deleted": True}
    return ctx.state.customers.get(customer_id)


def _register() -> None:
    for kind in ("invoice", "invoiceitem"):
        EXPANDABLE.setdefault(kind, {})["customer"] = ("customer", _expand_customer)


_register()
