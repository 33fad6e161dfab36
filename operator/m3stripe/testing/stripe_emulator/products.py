"""``/v1/products``: create (optionally with a caller-chosen id), retrieve, update and list."""

from __future__ import annotations

from typing import Any

from .common import Ctx, list_page, merge_metadata
from .errors import StripeError, no_such
from .params import PAGINATION, Arr, Bool, Enum, IntOrRange, Metadata, Param, Schema, Str
from .state import AccountState, Obj

_COMMON: dict[str, Param] = {
    "active": Bool(),
    "description": Str(40000),
    "images": Arr(Str(2048), max_items=8),
    "metadata": Metadata(),
    "name": Str(5000),
    "shippable": Bool(),
    "statement_descriptor": Str(22),
    "tax_code": Str(),
    "unit_label": Str(12),
    "url": Str(5000),
}

CREATE = Schema({**_COMMON, "id": Str(5000), "type": Enum("good", "service")}, required=("name",))
UPDATE = Schema(
    {
        **_COMMON,
        "description": Str(40000, emptyable=True),
        "images": Arr(Str(2048), max_items=8, emptyable=True),
        "tax_code": Str(emptyable=True),
        "unit_label": Str(12, emptyable=True),
        "url": Str(5000, emptyable=True),
    }
)
RETRIEVE = Schema()
LIST = Schema(
    {
        **PAGINATION,
        "active": Bool(),
        "created": IntOrRange(),
        "ids": Arr(Str()),
        "shippable": Bool(),
        "type": Enum("good", "service"),
        "url": Str(),
    }
)


def find(state: AccountState, product_id: str, *, param: str | None, status: int = 400) -> Obj:
    product = state.products.get(product_id)
    if product is None:
        raise no_such("product", product_id, param=param, status=status)
    return product


def render(ctx: Ctx, product: Obj) -> Obj:
    return product


def _apply(product: Obj, params: dict[str, Any]) -> None:
    for key in (
        "active",
        "description",
        "name",
        "shippable",
        "statement_descriptor",
        "tax_code",
        "unit_label",
        "url",
    ):
        if key in params:
            product[key] = params[key]
    if "images" in params:
        product["images"] = params["images"] or []
    if "metadata" in params:
        product["metadata"] = merge_metadata(product["metadata"], params["metadata"])


def create(ctx: Ctx, params: dict[str, Any]) -> Obj:
    state = ctx.state
    product_id = params.get("id") or state.new_id("prod")
    if product_id in state.products:
        raise StripeError(400, "Product already exists.", code="resource_already_exists", param="id")
    product: Obj = {
        "id": product_id,
        "object": "product",
        "active": True,
        "created": ctx.now,
        "default_price": None,
        "description": None,
        "images": [],
        "livemode": ctx.livemode,
        "marketing_features": [],
        "metadata": {},
        "name": "",
        "package_dimensions": None,
        "shippable": None,
        "statement_descriptor": None,
        "tax_code": None,
        "type": params.get("type", "service"),
        "unit_label": None,
        "updated": ctx.now,
        "url": None,
    }
    _apply(product, params)
    state.products.add(state.new_seq(), product)
    return product


def retrieve(ctx: Ctx, params: dict[str, Any]) -> Obj:
    return find(ctx.state, ctx.path_args["id"], param="id", status=404)


def update(ctx: Ctx, params: dict[str, Any]) -> Obj:
    product = find(ctx.state, ctx.path_args["id"], param="id", status=404)
    _apply(product, params)
    product["updated"] = ctx.now
    return product


def list_(ctx: Ctx, params: dict[str, Any]) -> Obj:
    ids = set(params["ids"]) if params.get("ids") is not None else None

    def keep(product: Obj) -> bool:
        return (ids is None or product["id"] in ids) and all(
            product.get(k) == params[k] for k in ("active", "shippable", "type", "url") if k in params
        )

    state = ctx.state
    return list_page(
        ctx,
        params,
        url="/v1/products",
        collection=state.products,
        index=state.products.order,
        render=render,
        keep=keep,
    )
