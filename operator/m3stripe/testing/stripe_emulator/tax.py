"""Stripe Tax: the account's tax settings and registrations, a customer's tax location, and the tax on
invoices that ask for it (``automatic_tax[enabled]=true``).

Each rule names its source. "SDK" is the installed stripe SDK's generated types for its API version
(``stripe/_invoice.py``, ``stripe/params/...``), which stand in for Stripe's OpenAPI spec.

Settings (``GET/POST /v1/tax/settings``, SDK ``stripe/tax/_settings.py``): ``status`` is ``active``
when "Tax Settings have the required information and ready for tax calculations", else ``pending``
("A required setting is missing, such as the head office address, so tax calculations fail",
https://docs.stripe.com/api/tax/settings/object), with ``status_details.pending.missing_fields``
holding ``head_office``. "An account is ready to use Stripe Tax if the response tax.settings object
... returns "active" for status. The defaults.tax_code and defaults.tax_behavior settings are only
required if not provided in the product or price on each API call" (https://docs.stripe.com/tax/settings-api).
"All parameters are editable but none can be removed once set" (SDK, ``Settings.modify``).

Registrations (``/v1/tax/registrations``, SDK ``stripe/tax/_registration.py``): ``active``,
``scheduled`` (``active_from`` in the future) or ``expired`` (``expires_at`` past). Tax is collected
only where a registration is active: with none, Stripe returns zero tax and ``taxability_reason:
not_collecting`` (https://docs.stripe.com/tax/zero-tax; "Stripe won't collect tax until at least one
registration is active", stripe/ai ``skills/stripe-best-practices/references/tax.md``). A registration
here covers its country, and for ``US`` only its ``country_options[us][state]``; an EU OSS
registration covering other member states is not modelled. Rates are no API data: each
jurisdiction's rate is an emulator setting (``StripeEmulator.set_tax_rate``).

Customer location (https://docs.stripe.com/tax/customer-locations): "We use your customer's shipping
address if it's non-empty. Using an address that isn't precise enough to calculate tax returns a
status of requires_location_inputs", then the billing address likewise, then (no payment methods
here) the IP address's geolocation. An address is precise enough when it has a country; "Customers in
the US require a 5-digit postal code. Customers in Canada require either the province or postal
code" (https://docs.stripe.com/tax/invoicing). ``customer.tax.automatic_tax`` (SDK ``Customer.Tax``)
is ``supported`` (a registration covers the location), ``not_collecting`` (none does),
``unrecognized_location`` or ``failed`` ("usually ... temporary", forced here by
``StripeEmulator.fail_customer_tax``); it is returned only when asked for with ``expand[]=tax``
(``tax`` is "Expandable" on the customer object; "Expansions on list requests start with the data
property", https://docs.stripe.com/api/expanding_objects). ``tax[validate_location]=immediately``
refuses a location that is not recognized (code ``customer_tax_location_invalid``; message as
reported in mozilla/fxa#20458).

Invoices: see ``refusal`` (what cannot be added to an automatic-tax invoice), ``compute`` (the tax on
each line) and ``check_finalize`` (the finalization errors).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from . import currencies
from .common import INCLUDABLE, Ctx, World, list_page
from .errors import StripeError, exclusive_parameters, invalid, missing_parameter, no_such
from .forms import FormValue
from .params import PAGINATION, Bool, Enum, Int, Obj, Param, Schema, Str
from .state import AccountState
from .state import Obj as Object

# Where a line's tax behaviour is missing, Stripe's own words (a subscription's price,
# stripe-samples/firebase-subscription-payments#48); the emulator says the same of an invoice item
# without a price (an `amount` line), naming it instead.
TAX_BEHAVIOR_DOCS = "https://stripe.com/docs/tax/products-prices-tax-categories-tax-behavior#tax-behavior"
# "inferred_by_currency: Stripe will use the price currency to define whether the tax should be added
# on top of the price (excluded) or included in the price" (https://docs.stripe.com/api/tax/settings/object).
# Which currencies go which way is not in any stored copy of Stripe's pages; accounts using it report
# "USD/CAD exclusive", "EUR inclusive" (practitioners' notes found through the code index), so USD and
# CAD are exclusive here and every other currency inclusive.
EXCLUSIVE_CURRENCIES = frozenset({"usd", "cad"})
# docs.stripe.com/tax/tax-codes: txcd_00000000 is "Nontaxable".
NONTAXABLE_CODE = "txcd_00000000"
_TAX_CODE_RE = re.compile(r"^txcd_\d{8}$")
_COUNTRY_RE = re.compile(r"^[A-Z]{2}$")
_US_POSTAL_RE = re.compile(r"^\d{5}(-\d{4})?$")

_ADDRESS = Obj({k: Str(200) for k in ("city", "country", "line1", "line2", "postal_code", "state")})
SETTINGS_RETRIEVE = Schema()
SETTINGS_UPDATE = Schema(
    {
        "defaults": Obj(
            {"tax_behavior": Enum("exclusive", "inclusive", "inferred_by_currency"), "tax_code": Str()},
        ),
        "head_office": Obj({"address": _ADDRESS}, required=("address",)),
    }
)


class NowOrTimestamp(Param):
    """``active_from``/``expires_at`` of a registration: ``now`` or a Unix timestamp ("" unsets, where allowed)."""

    def __init__(self, *, emptyable: bool = False) -> None:
        self.emptyable = emptyable

    def coerce(self, value: FormValue, name: str) -> str | int:
        if value == "now":
            return "now"
        number: int = Int(0).coerce(value, name)
        return number


class CountryOptions(Param):
    """``country_options``: the options of the registration's country, under its lower-case code.

    The SDK types each country's options (``RegistrationCreateParamsCountryOptionsGb``: ``type``,
    ``standard[place_of_supply_scheme]``; ``...Us``: ``state``, ``type``, ...); the contract checker
    holds requests to them, so here only their outline is checked and the hash is kept as sent.
    """

    def coerce(self, value: FormValue, name: str) -> dict[str, Any]:
        if not isinstance(value, dict) or not value:
            raise invalid(f"Invalid object: {name} must be a hash keyed by a country code", param=name)
        for code, options in value.items():
            where = f"{name}[{code}]"
            if not isinstance(options, dict):
                raise invalid(f"Invalid object: {where} must be a hash", param=where)
            if "type" not in options:
                raise missing_parameter(f"{where}[type]")
        return dict(value)


REGISTRATION_CREATE = Schema(
    {
        "active_from": NowOrTimestamp(),
        "country": Str(2),
        "country_options": CountryOptions(),
        "expires_at": Int(0),
    },
    required=("active_from", "country", "country_options"),
)
REGISTRATION_UPDATE = Schema({"active_from": NowOrTimestamp(), "expires_at": NowOrTimestamp(emptyable=True)})
REGISTRATION_RETRIEVE = Schema()
REGISTRATION_LIST = Schema({**PAGINATION, "status": Enum("active", "all", "expired", "scheduled")})

# invoices/create and invoices/update (SDK InvoiceCreateParamsAutomaticTax): `enabled` is required.
AUTOMATIC_TAX = Obj(
    {
        "enabled": Bool(),
        "liability": Obj({"account": Str(), "type": Enum("account", "self")}, required=("type",)),
    },
    required=("enabled",),
)
# customers/create and customers/update (SDK CustomerCreateParamsTax, CustomerUpdateParamsTax).
CUSTOMER_TAX_CREATE = Obj({"ip_address": Str(45, emptyable=True), "validate_location": Enum("deferred", "immediately")})
CUSTOMER_TAX_UPDATE = Obj(
    {"ip_address": Str(45, emptyable=True), "validate_location": Enum("auto", "deferred", "immediately")}
)


# --- settings ----------------------------------------------------------------------------------------


def settings(state: AccountState) -> Object:
    """The account's tax settings in this mode; a new account's are ``pending`` (no head office)."""
    if not state.tax_settings:
        state.tax_settings.update(
            {
                "object": "tax.settings",
                "defaults": {"provider": "stripe", "tax_behavior": None, "tax_code": None},
                "head_office": None,
                "livemode": state.livemode,
                "status": "pending",
                "status_details": {"pending": {"missing_fields": ["head_office"]}},
            }
        )
    return state.tax_settings


def is_active(state: AccountState) -> bool:
    return bool(settings(state)["status"] == "active")


def _refresh_status(current: Object) -> None:
    office = current.get("head_office")
    if office is not None and office["address"].get("country"):
        current["status"] = "active"
        current["status_details"] = {"active": {}}
    else:
        current["status"] = "pending"
        current["status_details"] = {"pending": {"missing_fields": ["head_office"]}}


def check_tax_code(code: str, param: str) -> None:
    # Tax codes are Stripe's list (https://docs.stripe.com/tax/tax-codes), all of the form txcd_ + 8 digits.
    if not _TAX_CODE_RE.match(code):
        raise invalid(f"Invalid tax code: {code}. Tax codes look like txcd_10000000.", param=param)


def apply_settings(state: AccountState, params: Mapping[str, Any]) -> Object:
    """Update the settings (what ``POST /v1/tax/settings`` does, also used by the admin helper)."""
    current = settings(state)
    defaults = params.get("defaults") or {}
    if defaults.get("tax_code") is not None:
        check_tax_code(defaults["tax_code"], "defaults[tax_code]")
    office = params.get("head_office")
    if office is not None:
        country = (office["address"].get("country") or "").upper()
        if not _COUNTRY_RE.match(country):
            raise invalid(
                "Invalid head_office[address][country]: must be a two-letter country code (ISO 3166-1 alpha-2).",
                param="head_office[address][country]",
            )
    for key in ("tax_behavior", "tax_code"):
        if defaults.get(key) is not None:
            current["defaults"][key] = defaults[key]
    if office is not None:
        address = {k: office["address"].get(k) for k in ("city", "country", "line1", "line2", "postal_code", "state")}
        address["country"] = str(address["country"]).upper()
        current["head_office"] = {"address": address}
    _refresh_status(current)
    return current


def retrieve_settings(ctx: Ctx, params: dict[str, Any]) -> Object:
    return settings(ctx.state)


def update_settings(ctx: Ctx, params: dict[str, Any]) -> Object:
    return apply_settings(ctx.state, params)


# --- registrations -----------------------------------------------------------------------------------


def registration_status(registration: Object, now: int) -> str:
    if registration["active_from"] > now:
        return "scheduled"
    if registration["expires_at"] is not None and registration["expires_at"] <= now:
        return "expired"
    return "active"


def render_registration(ctx: Ctx, registration: Object) -> Object:
    return {**registration, "status": registration_status(registration, ctx.now)}


def rate_for(world: World, country: str, state: str | None) -> Decimal | None:
    found = world.tax_rates.get((country, state))
    return found if found is not None else world.tax_rates.get((country, None))


def _timestamp(value: str | int | None, now: int) -> int | None:
    return now if value == "now" else value if value is None else int(value)


def create_registration(ctx: Ctx, params: dict[str, Any]) -> Object:
    country = params["country"].upper()
    if not _COUNTRY_RE.match(country):
        raise invalid("Invalid country: must be a two-letter country code (ISO 3166-1 alpha-2).", param="country")
    options = params["country_options"]
    key = country.lower()
    if set(options) != {key}:
        raise invalid(
            f"country_options must hold the options of {country} (country_options[{key}]), and only those.",
            param="country_options",
        )
    us_state = None
    if country == "US":
        if not isinstance(options[key].get("state"), str):
            raise missing_parameter("country_options[us][state]")
        us_state = options[key]["state"].upper()
    active_from = _timestamp(params["active_from"], ctx.now)
    assert active_from is not None
    if params["active_from"] != "now" and active_from < ctx.now:
        # "either `now` to indicate the current time, or a future timestamp" (SDK RegistrationCreateParams).
        raise invalid("active_from must be `now` or a timestamp in the future.", param="active_from")
    expires_at = params.get("expires_at")
    if expires_at is not None and expires_at <= active_from:
        raise invalid("expires_at must be later than active_from.", param="expires_at")
    if rate_for(ctx.world, country, us_state) is None:
        # Not Stripe's check: rates are Stripe's data, and the emulator has none for this jurisdiction.
        raise invalid(
            f"The Stripe emulator has no tax rate for {country}{'-' + us_state if us_state else ''}: set one "
            "with StripeEmulator.set_tax_rate before registering there.",
            param="country",
        )
    registration: Object = {
        "id": ctx.state.new_id("taxreg"),
        "object": "tax.registration",
        "active_from": active_from,
        "country": country,
        "country_options": options,
        "created": ctx.now,
        "expires_at": expires_at,
        "livemode": ctx.livemode,
    }
    ctx.state.tax_registrations.add(ctx.state.new_seq(), registration)
    return render_registration(ctx, registration)


def _registration(ctx: Ctx) -> Object:
    found = ctx.state.tax_registrations.get(ctx.path_args["id"])
    if found is None:
        raise no_such("tax.registration", ctx.path_args["id"], param="id", status=404)
    return found


def retrieve_registration(ctx: Ctx, params: dict[str, Any]) -> Object:
    return render_registration(ctx, _registration(ctx))


def update_registration(ctx: Ctx, params: dict[str, Any]) -> Object:
    registration = _registration(ctx)
    if "active_from" in params:
        registration["active_from"] = _timestamp(params["active_from"], ctx.now)
    if "expires_at" in params:
        registration["expires_at"] = _timestamp(params["expires_at"], ctx.now)
    return render_registration(ctx, registration)


def list_registrations(ctx: Ctx, params: dict[str, Any]) -> Object:
    wanted = params.get("status") or "all"

    def keep(registration: Object) -> bool:
        return wanted == "all" or registration_status(registration, ctx.now) == wanted

    state = ctx.state
    return list_page(
        ctx,
        params,
        url="/v1/tax/registrations",
        collection=state.tax_registrations,
        index=state.tax_registrations.order,
        render=render_registration,
        keep=keep,
    )


def registration_for(ctx: Ctx, location: Location) -> Object | None:
    """The active registration covering ``location``, if any."""
    for registration in ctx.state.tax_registrations.objects.values():
        if registration["country"] != location.country:
            continue
        if registration_status(registration, ctx.now) != "active":
            continue
        if location.country == "US":
            us = registration["country_options"].get("us") or {}
            if str(us.get("state", "")).upper() != (location.state or ""):
                continue
        return registration
    return None


# --- customers ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Location:
    country: str
    state: str | None
    source: str


def _non_empty(address: Mapping[str, Any] | None) -> bool:
    return address is not None and any(address.get(k) for k in address)


def _recognized(address: Mapping[str, Any], source: str) -> Location | None:
    country = str(address.get("country") or "").strip().upper()
    if not _COUNTRY_RE.match(country):
        return None
    postal = str(address.get("postal_code") or "").strip()
    state = str(address.get("state") or "").strip().upper() or None
    if country == "US" and not _US_POSTAL_RE.match(postal):
        return None
    if country == "CA" and not (state or postal):
        return None
    return Location(country, state, source)


def location_of(
    world: World, address: Mapping[str, Any] | None, shipping: Mapping[str, Any] | None, ip_address: str | None
) -> Location | None:
    """The customer's tax location: the first non-empty source decides, recognized or not."""
    shipping_address: Mapping[str, Any] | None = (shipping or {}).get("address")
    if shipping_address is not None and _non_empty(shipping_address):
        return _recognized(shipping_address, "shipping_destination")
    if _non_empty(address):
        assert address is not None
        return _recognized(address, "billing_address")
    if ip_address:
        found = world.ip_locations.get(ip_address)
        return None if found is None else Location(found[0], found[1], "ip_address")
    return None


def customer_location(ctx: Ctx, customer: Object) -> Location | None:
    meta = ctx.state.customer_tax.get(customer["id"], {})
    return location_of(ctx.world, customer.get("address"), customer.get("shipping"), meta.get("ip_address"))


def customer_tax(ctx: Ctx, customer: Object) -> Object:
    """The customer's ``tax`` hash (``expand[]=tax``)."""
    meta = ctx.state.customer_tax.get(customer["id"], {})
    location = customer_location(ctx, customer)
    if meta.get("failed"):
        status = "failed"
    elif location is None:
        status = "unrecognized_location"
    elif registration_for(ctx, location) is not None:
        status = "supported"
    else:
        status = "not_collecting"
    return {
        "automatic_tax": status,
        "ip_address": meta.get("ip_address"),
        "location": None
        if location is None
        else {"country": location.country, "source": location.source, "state": location.state},
        "provider": "stripe",
    }


def validate_location(
    ctx: Ctx, tax_params: Mapping[str, Any] | None, address: Any, shipping: Any, ip_address: str | None
) -> None:
    """``tax[validate_location]=immediately``: refuse a customer whose location is not recognized."""
    if not tax_params or tax_params.get("validate_location") != "immediately":
        return
    if location_of(ctx.world, address, shipping, ip_address) is None:
        raise StripeError(
            400,
            "The customer's location isn't recognized. Set a valid customer address in order to automatically "
            "calculate tax.",
            code="customer_tax_location_invalid",
        )


def remember_customer_tax(state: AccountState, customer_id: str, tax_params: Mapping[str, Any] | None) -> None:
    if tax_params and "ip_address" in tax_params:
        state.customer_tax.setdefault(customer_id, {})["ip_address"] = tax_params["ip_address"]


def _include_customer_tax(ctx: Ctx, customer: Object) -> Object:
    return customer_tax(ctx, customer)


INCLUDABLE.setdefault("customer", {})["tax"] = _include_customer_tax


# --- lines and items ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class LineFacts:
    """What decides a line's tax: its amount, its price (if any) and the item's own tax parameters."""

    item_id: str
    amount: int
    price: Object | None
    tax_behavior: str | None = None
    tax_code: str | None = None


def price_of(state: AccountState, item: Object) -> Object | None:
    details = (item.get("pricing") or {}).get("price_details")
    return state.prices.get(details["price"]) if details else None


def facts_of(state: AccountState, item: Object) -> LineFacts:
    meta = state.item_tax.get(item["id"], {})
    return LineFacts(item["id"], item["amount"], price_of(state, item), meta.get("tax_behavior"), meta.get("tax_code"))


def effective_behavior(state: AccountState, facts: LineFacts) -> str | None:
    """The line's tax behaviour: its price's, else the item's own, else the account's default.

    "If the item's price has a tax behavior set, it will take precedence over the default tax behavior"
    (SDK ``Settings.Defaults.tax_behavior``); the default is "used when the item's price has unspecified
    tax behavior" (SDK ``SettingsUpdateParamsDefaults``).
    """
    for candidate in ((facts.price or {}).get("tax_behavior"), facts.tax_behavior):
        if candidate in ("exclusive", "inclusive"):
            return str(candidate)
    default: str | None = settings(state)["defaults"]["tax_behavior"]
    return default


def concrete_behavior(behavior: str, currency: str) -> str:
    if behavior == "inferred_by_currency":
        return "exclusive" if currency in EXCLUSIVE_CURRENCIES else "inclusive"
    return behavior


def effective_tax_code(state: AccountState, facts: LineFacts) -> str | None:
    """The item's own ``tax_code``, else its product's, else the preset (``defaults.tax_code``).

    "We use the preset if you don't explicitly specify a tax_code on your products or in product_data"
    (https://docs.stripe.com/tax/products-prices-tax-codes-tax-behavior).
    """
    if facts.tax_code:
        return facts.tax_code
    if facts.price is not None:
        product = state.products.get(facts.price["product"])
        if product is not None and product.get("tax_code"):
            return str(product["tax_code"])
    default: str | None = settings(state)["defaults"]["tax_code"]
    return default


def refusal(ctx: Ctx, facts: LineFacts, *, param: str | None) -> StripeError | None:
    """Why ``facts`` cannot go on an automatic-tax invoice, or None.

    "Note that incompatible invoice items (invoice items with manually specified tax rates, negative
    amounts, or `tax_behavior=unspecified`) cannot be added to automatic tax invoices" (SDK
    ``InvoiceCreateParamsAutomaticTax.enabled``, ``Invoice.AutomaticTax.enabled``, for this API version).

    - A negative amount is refused. The docstring above says so; OpenMeter has sent negative invoice
      items with ``tax_behavior``/``tax_code`` to automatic-tax invoices since December 2024
      (openmeterio/openmeter#1978, ``openmeter/app/stripe/invoicesync/planner.go``), so Stripe may
      accept them; where the sources disagree the emulator refuses what Stripe might refuse, unless
      ``StripeEmulator.allow_negative_lines_with_automatic_tax`` says this account accepts them.
    - A tax behaviour is required: "Only required if a default tax behavior was not provided in the
      Stripe Tax settings" (SDK ``price_data[tax_behavior]``, ``tax_behavior`` of invoiceitems/create);
      so ``unspecified`` (or none) is refused only without an account default.
    - A tax code is required likewise: "The defaults.tax_code and defaults.tax_behavior settings are
      only required if not provided in the product or price on each API call"
      (https://docs.stripe.com/tax/settings-api); accounts without one report "You must specify a tax
      code in all line items... or set a default" (a practitioner's measurement, found through the
      code index; the rest of Stripe's sentence is the emulator's).
    Stripe's `param` for these is not known; the emulator names the line.
    """
    if facts.amount < 0 and not ctx.state.negative_lines_with_automatic_tax:
        return invalid(
            f"Invoice item {facts.item_id} has a negative amount ({facts.amount}): invoice items with negative "
            "amounts cannot be added to automatic tax invoices (`automatic_tax[enabled]=true`).",
            param=param,
        )
    if effective_behavior(ctx.state, facts) is None:
        what = f"The price `{facts.price['id']}`" if facts.price is not None else f"The invoice item `{facts.item_id}`"
        return invalid(
            f"{what} does not have a `tax_behavior` set which is required for automatic tax computation. "
            f"Please visit {TAX_BEHAVIOR_DOCS} for more information.",
            param=param,
        )
    if effective_tax_code(ctx.state, facts) is None:
        return invalid(
            "You must specify a tax code in all line items (on the product, or `tax_code` on the invoice item) or "
            f"set a default tax code in your Stripe Tax settings: invoice item {facts.item_id} has none.",
            param=param,
        )
    return None


def check_lines(ctx: Ctx, lines: Iterable[tuple[LineFacts, str | None]]) -> None:
    for facts, param in lines:
        error = refusal(ctx, facts, param=param)
        if error is not None:
            raise error


def item_tax_params(
    params: Mapping[str, Any], *, item_id: str, existing: Mapping[str, Any] | None
) -> dict[str, str | None]:
    """An invoice item's own ``tax_behavior`` and ``tax_code`` after this request.

    With ``price_data`` they are refused: its price has its own ``tax_behavior`` and its product the
    tax code, and Stripe does not say which would win (the strict choice). Once ``inclusive`` or
    ``exclusive``, a tax behaviour "cannot be changed" (SDK, ``tax_behavior`` of invoiceitems/create
    and /update).
    """
    current = dict(existing or {})
    for key in ("tax_behavior", "tax_code"):
        if key in params and params.get("price_data") is not None:
            raise exclusive_parameters("price_data", key)
    if "tax_code" in params:
        if params["tax_code"] is not None:
            check_tax_code(params["tax_code"], "tax_code")
        current["tax_code"] = params["tax_code"]  # "" (None) removes it
    if "tax_behavior" in params:
        before = current.get("tax_behavior")
        if before in ("inclusive", "exclusive") and params["tax_behavior"] != before:
            raise invalid(
                f"The tax_behavior of invoice item {item_id} is `{before}`: once specified as either `inclusive` "
                "or `exclusive`, it cannot be changed.",
                param="tax_behavior",
            )
        current["tax_behavior"] = params["tax_behavior"]
    return current


# --- invoices ----------------------------------------------------------------------------------------


def automatic_tax_object(enabled: bool) -> Object:
    """``invoice.automatic_tax`` as this API version shapes it (SDK ``Invoice.AutomaticTax``).

    ``liability``: "The account that's liable for tax"; an account's own invoice is its own (``self``).
    ``status`` is filled when the invoice is rendered; ``disabled_reason`` stays null: its values
    (``finalization_requires_location_inputs``, ``finalization_system_error``) are for invoices Stripe
    finalizes without tax, subscription invoices (https://docs.stripe.com/tax/customer-locations),
    which the emulator does not make.
    """
    return {
        "disabled_reason": None,
        "enabled": enabled,
        "liability": {"type": "self"} if enabled else None,
        "provider": "stripe" if enabled else None,
        "status": None,
    }


def require_active(state: AccountState, *, param: str | None) -> None:
    """Automatic tax on an account whose settings are not active: ``stripe_tax_inactive``.

    The code is one of Stripe's ("Stripe Tax has not been activated on your account",
    https://docs.stripe.com/error-codes; the SDK lists it among ``last_finalization_error`` codes).
    Stripe does not say at which call an invoice meets it; the emulator refuses it where the invoice
    asks for automatic tax (create, update) and again at finalization, the strictest reading.
    """
    if not is_active(state):
        raise StripeError(
            400, "Stripe Tax has not been activated on your account.", code="stripe_tax_inactive", param=param
        )


def requested(ctx: Ctx, params: Mapping[str, Any]) -> bool | None:
    """``automatic_tax[enabled]`` as asked for (None when the request leaves it out), checked."""
    asked = params.get("automatic_tax")
    if asked is None:
        return None
    liability = asked.get("liability")
    if liability is not None:
        if liability["type"] == "self" and liability.get("account") is not None:
            raise invalid(
                "You can only set `automatic_tax[liability][account]` when `automatic_tax[liability][type]` is "
                "`account`.",
                param="automatic_tax[liability][account]",
            )
        if liability["type"] == "account":
            if liability.get("account") is None:
                raise missing_parameter("automatic_tax[liability][account]")
            raise invalid(
                f"No such connected account: '{liability['account']}'. `automatic_tax[liability][type]=account` "
                "names a connected account (Stripe Connect), which this emulator does not model.",
                param="automatic_tax[liability][account]",
            )
    if asked["enabled"]:
        require_active(ctx.state, param="automatic_tax[enabled]")
    return bool(asked["enabled"])


def enabled_by_default(ctx: Ctx, customer: Object, pending: Iterable[Object]) -> bool:
    """The account default for invoices that omit ``automatic_tax`` (https://docs.stripe.com/tax/invoicing/automatic-tax-default).

    "When a request omits automatic_tax and the account's invoices[automatic_tax_default_value] is
    enabled_when_possible, Stripe runs compatibility checks"; "Invoices that fail a compatibility
    check are created with automatic tax disabled instead of returning an error". Stripe's list of
    checks is not in any stored copy of the page; the emulator's are: settings active, the customer's
    location usable (``supported`` or ``not_collecting``), and every pending item it pulls in compatible.
    """
    if ctx.state.automatic_tax_default != "enabled_when_possible" or not is_active(ctx.state):
        return False
    if customer_tax(ctx, customer)["automatic_tax"] not in ("supported", "not_collecting"):
        return False
    return all(refusal(ctx, facts_of(ctx.state, item), param=None) is None for item in pending)


LOCATION_INVALID = (
    "When `automatic_tax[enabled]=true`, enough customer location information must be provided to accurately "
    "determine tax rates for the customer."
)


def require_location(ctx: Ctx, customer: Object | None, *, param: str | None) -> None:
    """An invoice asking for automatic tax for a customer Stripe cannot place: ``customer_tax_location_invalid``.

    Stripe documents the error at finalization (``check_finalize``); whether creating (or turning on
    automatic tax for) a draft already meets it is not documented, but integrators report it "at
    invoice-creation time" (a Stripe Tax integration's notes found through the code index: "most of our
    customers don't have a full address on file in Stripe at invoice-creation time, so `automatic_tax:
    true` fails with 'enough customer location information must be provided'"; useautumn/autumn#1694
    guards invoice creation for the same reason). The emulator refuses it there too, the strictest
    reading; a draft whose customer loses their location afterwards shows ``requires_location_inputs``
    and cannot be finalized.
    """
    if customer is None or customer_tax(ctx, customer)["automatic_tax"] == "unrecognized_location":
        raise StripeError(400, LOCATION_INVALID, code="customer_tax_location_invalid", param=param)


def check_finalize(ctx: Ctx, invoice: Object) -> None:
    """Finalizing an automatic-tax invoice needs active settings and a usable customer location.

    "When we can't finalize an invoice because of an unrecognized customer location, we send an
    invoice.finalization_failed event with the invoice last_finalization_error[code] being
    customer_tax_location_invalid" (https://docs.stripe.com/tax/customer-locations); the synchronous
    answer is a 400 with that code and "When `automatic_tax[enabled]=true`, enough customer location
    information must be provided to accurately determine tax rates for the customer." (a real answer
    captured in openmeterio/openmeter ``test/app/stripe/invoice_test.go``). A customer whose location
    lookup ``failed`` gets ``taxes_calculation_failed`` ("Tax calculation for the order failed.",
    https://docs.stripe.com/error-codes), which the emulator chooses for that case.
    """
    if not invoice["automatic_tax"]["enabled"]:
        return
    require_active(ctx.state, param=None)
    customer = ctx.state.customers.get(invoice["customer"])
    status = "unrecognized_location" if customer is None else customer_tax(ctx, customer)["automatic_tax"]
    if status == "unrecognized_location":
        raise StripeError(400, LOCATION_INVALID, code="customer_tax_location_invalid")
    if status == "failed":
        raise StripeError(400, "Tax calculation for the order failed.", code="taxes_calculation_failed")


@dataclass
class InvoiceTax:
    """The tax Stripe computed for an invoice: per line, in total, and the calculation's status."""

    status: str | None = None
    lines: dict[str, list[Object]] = field(default_factory=dict)
    totals: list[Object] = field(default_factory=list)
    exclusive: int = 0
    inclusive: int = 0
    # The inclusive tax of the lines before discounts, for `subtotal_excluding_tax` ("before any
    # invoice level discount or tax is applied", SDK Invoice.subtotal_excluding_tax).
    inclusive_before_discounts: int = 0


def tax_amount(base: int, percentage: Decimal, behavior: str, step: int = 1) -> int:
    """One line's tax, rounded to the currency's step, halves away from zero.

    Exclusive tax is added on top of the line: ``base * rate``. Inclusive tax is inside it: ``base *
    rate / (1 + rate)``, and the line's taxable amount is what is left. Stripe does not publish its
    rounding; the emulator rounds once per line and tax, half away from zero (so a credit's tax is
    the negation of the same charge's), to the minor unit, or to the currency's step where amounts
    must be multiples of one (10 in three-decimal currencies, 100 in ISK and UGX: currencies.py), so
    a taxed invoice can still be charged. The invoice's amount before tax is exact either way: the
    lines' own amounts (exclusive), or the total less the rounded taxes (inclusive).
    """
    if behavior == "exclusive":
        raw = Decimal(base) * percentage / 100
    else:
        raw = Decimal(base) * percentage / (100 + percentage)
    return int((raw / step).quantize(Decimal(1), rounding=ROUND_HALF_UP)) * step


def _taxability(customer: Object, registered: bool, code: str | None) -> str:
    """``taxability_reason`` (SDK ``InvoiceLineItem.Tax.taxability_reason``) for the cases modelled."""
    exempt = customer.get("tax_exempt")
    if exempt == "exempt":
        return "customer_exempt"
    if exempt == "reverse":
        return "reverse_charge"
    if not registered:
        return "not_collecting"
    if code == NONTAXABLE_CODE:
        return "not_subject_to_tax"
    return "standard_rated"


def _rate_id(state: AccountState, country: str, region: str | None, percentage: Decimal, inclusive: bool) -> str:
    """The ``txr_`` id of the tax rate Stripe Tax applied: "Tax Rate IDs ... are now nested" in each tax's
    ``tax_rate_details`` (https://docs.stripe.com/changelog/basil/2025-03-31/invoice-tax-configurations)."""
    key = (country, region, format(percentage.normalize(), "f"), inclusive)
    found = state.tax_rate_ids.get(key)
    if found is None:
        found = state.tax_rate_ids[key] = state.new_id("txr")
    return found


def compute(ctx: Ctx, invoice: Object, items: list[Object], bases: Mapping[str, int]) -> InvoiceTax:
    """The tax on ``invoice``'s lines, each taxed on ``bases[item id]`` (its amount less its discounts).

    Stripe calculates tax "at the published rate at the time of invoice finalization"
    (https://docs.stripe.com/tax/invoicing), and shows it on drafts before that; the emulator works it
    out whenever a draft is read and freezes it at finalization. ``status`` (SDK
    ``Invoice.AutomaticTax.status``): ``complete``, ``requires_location_inputs`` (the customer's
    location is not recognized: no tax until it is) or ``failed``.
    """
    if not invoice["automatic_tax"]["enabled"]:
        return InvoiceTax()
    state = ctx.state
    customer = state.customers.get(invoice["customer"])
    if customer is None or not is_active(state):
        return InvoiceTax(status="failed")
    status = customer_tax(ctx, customer)["automatic_tax"]
    location = customer_location(ctx, customer)
    if status == "failed":
        return InvoiceTax(status="failed")
    if location is None:
        return InvoiceTax(status="requires_location_inputs")
    registration = registration_for(ctx, location)
    region = location.state if location.country == "US" else None
    rate = rate_for(ctx.world, location.country, region) if registration is not None else None
    result = InvoiceTax(status="complete")
    step = currencies.step(invoice["currency"])
    totals: dict[tuple[str, str, str], Object] = {}
    for item in items:
        facts = facts_of(state, item)
        behavior = effective_behavior(state, facts)
        if behavior is None:  # cannot happen: such lines are refused when added
            return InvoiceTax(status="failed")
        behavior = concrete_behavior(behavior, invoice["currency"])
        reason = _taxability(customer, registration is not None, effective_tax_code(state, facts))
        percentage = rate if reason == "standard_rated" and rate is not None else Decimal(0)
        base = bases[item["id"]]
        amount = tax_amount(base, percentage, behavior, step)
        rate_id = _rate_id(state, location.country, region, percentage, behavior == "inclusive")
        result.lines[item["id"]] = [
            {
                "amount": amount,
                "tax_behavior": behavior,
                "tax_rate_details": {"tax_rate": rate_id},
                "taxability_reason": reason,
                "taxable_amount": base if behavior == "exclusive" else base - amount,
                "type": "tax_rate_details",
            }
        ]
        if behavior == "exclusive":
            result.exclusive += amount
        else:
            result.inclusive += amount
            result.inclusive_before_discounts += tax_amount(item["amount"], percentage, behavior, step)
        total = totals.setdefault(
            (rate_id, behavior, reason),
            {
                "amount": 0,
                "tax_behavior": behavior,
                "tax_rate_details": {"tax_rate": rate_id},
                "taxability_reason": reason,
                "taxable_amount": 0,
                "type": "tax_rate_details",
            },
        )
        total["amount"] += amount
        total["taxable_amount"] += result.lines[item["id"]][0]["taxable_amount"]
    result.totals = list(totals.values())
    return result
