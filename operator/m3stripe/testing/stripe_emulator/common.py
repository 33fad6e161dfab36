"""What every endpoint handler shares: the request context, lists, expansion and metadata merging."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from .errors import StripeError, no_such
from .params import matches_range
from .state import AccountState, Collection, Obj, SeqIndex


@dataclass
class AccountProfile:
    """The Stripe account behind one or more API keys."""

    id: str
    created: int
    country: str = "US"
    default_currency: str = "usd"
    email: str | None = None
    business_name: str | None = None
    modes: dict[bool, AccountState] = field(default_factory=dict)


@dataclass
class World:
    """What is true for every account: facts Stripe holds that are not API data.

    ``tax_rates``: the rate of each taxing jurisdiction, ``(country, state or None)`` -> percent
    (Stripe Tax maintains rates itself, "Stripe maintains current rate and taxability information",
    https://docs.stripe.com/tax/products-prices-tax-codes-tax-behavior; no API lists them, so tests set
    them). ``ip_locations``: where an IP address geolocates, ``ip`` -> ``(country, state or None)``
    (Stripe Tax's last resort for a customer's location, https://docs.stripe.com/tax/customer-locations).
    """

    tax_rates: dict[tuple[str, str | None], Decimal] = field(default_factory=dict)
    ip_locations: dict[str, tuple[str, str | None]] = field(default_factory=dict)


@dataclass
class Ctx:
    """One request's view: the account, its mode's objects, the clock and the URL's ids."""

    account: AccountProfile
    state: AccountState
    now: int
    path_args: dict[str, str] = field(default_factory=dict)
    world: World = field(default_factory=World)

    @property
    def livemode(self) -> bool:
        return self.state.livemode


Handler = Callable[[Ctx, dict[str, Any]], Obj]


def round_minor(value: Decimal) -> int:
    """Round a computed minor-unit amount to an integer; halves go away from zero."""
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def decimal_string(value: Decimal) -> str:
    """Render a Decimal the way Stripe prints ``*_decimal`` fields: no exponent, no trailing zeros."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


def merge_metadata(current: dict[str, str], update: Mapping[str, str | None] | None) -> dict[str, str]:
    """Apply a metadata update: ``None`` (the whole hash posted as "") clears, ``""`` values delete keys."""
    if update is None:
        return {}
    merged = dict(current)
    for key, value in update.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def cursor_seq(collection: Collection, object_id: str | None, param: str) -> int | None:
    if object_id is None:
        return None
    seq = collection.seq.get(object_id)
    if seq is None:
        raise no_such(collection.kind, object_id, param=param)
    return seq


def list_page(
    ctx: Ctx,
    params: Mapping[str, Any],
    *,
    url: str,
    collection: Collection,
    index: SeqIndex,
    render: Callable[[Ctx, Obj], Obj],
    keep: Callable[[Obj], bool] | None = None,
) -> Obj:
    """A Stripe list object (newest first) for ``limit``/``starting_after``/``ending_before``/``created``."""
    if params.get("starting_after") is not None and params.get("ending_before") is not None:
        raise StripeError(
            400,
            "You may only specify one of these parameters: ending_before, starting_after.",
            code="parameters_exclusive",
            param="ending_before",
        )
    after = cursor_seq(collection, params.get("starting_after"), "starting_after")
    before = cursor_seq(collection, params.get("ending_before"), "ending_before")
    created = params.get("created")
    objects = collection.objects

    def accept(object_id: str) -> bool:
        obj = objects.get(object_id)
        if obj is None:
            return False
        # An invoice item's creation time is its `date` ("Time at which the object was created", SDK
        # _invoice_item.py), which invoiceitems/list's `created` filters ("Only return invoice items that were
        # created during the given date interval", SDK params/_invoice_item_list_params.py).
        stamp = obj.get("created", obj.get("date"))
        if created is not None and not matches_range(stamp, created):
            return False
        return keep is None or keep(obj)

    ids, has_more = index.page(limit=params.get("limit") or 10, after=after, before=before, keep=accept)
    return list_object(url, [render(ctx, objects[i]) for i in ids], has_more)


def list_object(url: str, data: list[Obj], has_more: bool) -> Obj:
    return {"object": "list", "data": data, "has_more": has_more, "url": url}


# Expansion: for each object type, the fields holding an id that can be swapped for an object,
# with the type of that object and how to fetch it.
Expander = Callable[[Ctx, str], Obj | None]
EXPANDABLE: dict[str, dict[str, tuple[str, Expander]]] = {}
# Fields "that aren't included by default" and are requested "the same way" (expand[]=tax on a
# customer; https://docs.stripe.com/api/expanding_objects): for each object type, the field and how
# to compute it from the object. They end a path: nothing inside them expands further.
Includer = Callable[[Ctx, Obj], Any]
INCLUDABLE: dict[str, dict[str, Includer]] = {}


def check_expand(returns: str, paths: list[str]) -> None:
    """Reject ``expand[]`` paths the response cannot expand, before the endpoint runs."""
    for path in paths:
        parts = path.split(".")
        if len(parts) > 4:
            raise StripeError(
                400, f"You cannot expand more than 4 levels of a property. Property: {path}", param="expand"
            )
        kind = returns
        if kind.startswith("list:"):
            if parts[0] != "data" or len(parts) == 1:
                raise _not_expandable(path)
            kind, parts = kind.removeprefix("list:"), parts[1:]
        for position, part in enumerate(parts):
            if part in INCLUDABLE.get(kind, {}) and position == len(parts) - 1:
                break
            target = EXPANDABLE.get(kind, {}).get(part)
            if target is None:
                raise _not_expandable(path)
            kind = target[0]


def expand(ctx: Ctx, obj: Obj, paths: list[str]) -> Obj:
    """Replace ids by objects along each (already checked) dotted ``expand[]`` path."""
    for path in paths:
        _expand_path(ctx, obj, path.split("."))
    return obj


def _expand_path(ctx: Ctx, obj: Obj, parts: list[str]) -> None:
    head, rest = parts[0], parts[1:]
    if obj.get("object") == "list" and head == "data":
        for item in obj["data"]:
            _expand_path(ctx, item, rest)
        return
    kind = str(obj.get("object"))
    include = INCLUDABLE.get(kind, {}).get(head)
    if include is not None and not rest:
        if not obj.get("deleted"):
            obj[head] = include(ctx, obj)
        return
    target = EXPANDABLE.get(kind, {}).get(head)
    if target is None:
        return
    value = obj.get(head)
    if isinstance(value, str):
        # A copy: the expander hands out the stored object, and a deeper path may add to it.
        value = copy.deepcopy(target[1](ctx, value))
        obj[head] = value
    if rest and isinstance(value, dict):
        _expand_path(ctx, value, rest)


def _not_expandable(path: str) -> StripeError:
    return StripeError(400, f"This property cannot be expanded ({path}).", param="expand")
