"""m3ter's SDK models as the domain's values: Bills with their line items, Accounts, currency rules, the sweep's
listing of Bill versions, and the Stripe customer an External Mapping names.

The SDK builds its models without validation, so each field is checked here, one Bill at a time: a Bill that
cannot be read becomes a :class:`MalformedBill` naming the field, never an error that stops a pass.
"""

from __future__ import annotations

import decimal
import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Any, Final, TypeVar

from m3ter.types import AccountResponse, BillResponse, CurrencyResponse, ExternalMappingResponse
from m3ter.types.bill_response import LineItem as SdkLineItem

from m3stripe.api.conditions import parse_rfc3339
from m3stripe.domain.billing import (
    ADDRESS_KEYS,
    Account,
    Bill,
    BillStatus,
    CurrencyRounding,
    CustomFieldValue,
    LineItem,
    MalformedBill,
)
from m3stripe.domain.sweep import ListedBill

from .m3ter_token import M3terSourceError

log = logging.getLogger(__name__)

# maxDecimalPlaces bound of Create Currency (https://docs.m3ter.com/api/currency/create-currency: 0..5).
MAX_DECIMAL_PLACES = 5
STRIPE_SYSTEM = "Stripe"
STRIPE_CUSTOMER_TABLE = "Customer"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

#: m3ter's ``roundingMode`` (Java's RoundingMode names; https://docs.m3ter.com/api/currency/list-currencies,
#: SDK ``m3ter/types/currency_response.py``) to the ``decimal`` module's constants.
ROUNDING_MODES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "UP": decimal.ROUND_UP,
        "DOWN": decimal.ROUND_DOWN,
        "CEILING": decimal.ROUND_CEILING,
        "FLOOR": decimal.ROUND_FLOOR,
        "HALF_UP": decimal.ROUND_HALF_UP,
        "HALF_DOWN": decimal.ROUND_HALF_DOWN,
        "HALF_EVEN": decimal.ROUND_HALF_EVEN,
        # UNNECESSARY asserts that amounts never need rounding at maxDecimalPlaces (Java throws if they
        # would), so m3ter's own amounts come out alike under every mode. m3ter gives no rule for the
        # rounding the operator may still need (a Stripe minor unit coarser than maxDecimalPlaces):
        # banker's rounding is the unbiased choice.
        "UNNECESSARY": decimal.ROUND_HALF_EVEN,
    }
)

_T = TypeVar("_T")


# A hit of Search Bills or an entry of List Bills without line items: only its id, version and dtLastModified.


def hit_id(hit: BillResponse) -> str:
    value = getattr(hit, "id", None)
    return value if isinstance(value, str) else ""


def hit_version(hit: BillResponse) -> int | None:
    version = getattr(hit, "version", None)
    return version if isinstance(version, int) and not isinstance(version, bool) else None


def hit_modified(hit: BillResponse) -> datetime | None:
    try:
        return _datetime(getattr(hit, "dt_last_modified", None))
    except (ValueError, TypeError):
        return None  # unreadable: read it, so it is reported rather than skipped


def to_listed_bill(item: BillResponse) -> ListedBill:
    """One entry of List Bills without line items, as the reconciliation sweep reads it."""
    return ListedBill(
        id=hit_id(item),
        version=hit_version(item),
        last_modified=hit_modified(item),
        locked=getattr(item, "locked", None) is True,
    )


def newest_stripe_customer(mappings: Iterable[ExternalMappingResponse], account_id: str) -> str | None:
    """The Stripe Customer id the Account's External Mappings name, or None.

    System and table names are compared case-insensitively because they are free text in
    m3ter. Should several mappings exist, the most recently modified one wins.
    """
    best: tuple[datetime, str, str] | None = None
    for mapping in mappings:
        if (
            str(mapping.external_system).lower() == STRIPE_SYSTEM.lower()
            and str(mapping.external_table).lower() == STRIPE_CUSTOMER_TABLE.lower()
            and mapping.m3ter_id == account_id
        ):
            modified = _datetime(mapping.dt_last_modified) or _EPOCH
            candidate = (modified, mapping.id, mapping.external_id)
            if best is None or candidate > best:
                best = candidate
    return None if best is None else best[2]


def to_currency_rounding(item: CurrencyResponse) -> CurrencyRounding | None:
    """One picklist entry as a rounding rule; None when m3ter holds no rule for it."""
    code = (item.code or "").strip().upper()
    places, mode = item.max_decimal_places, item.rounding_mode
    if not code or places is None or mode is None:
        return None
    rounding = ROUNDING_MODES.get(str(mode))
    if rounding is None:
        raise M3terSourceError(
            f"m3ter currency {code} has roundingMode {mode!r}, which m3ter's API reference does not define; "
            f"set it to one of {', '.join(ROUNDING_MODES)} in m3ter's currency picklist"
        )
    # The SDK builds models without validation, so a malformed value arrives as it was sent. m3ter accepts
    # maxDecimalPlaces 0 <= x <= 5 (Create Currency's body, https://docs.m3ter.com/api/currency/create-currency;
    # the SDK's currency_create_params.py gives no range): anything else was not set through m3ter's API.
    if isinstance(places, bool) or not isinstance(places, int) or not 0 <= places <= MAX_DECIMAL_PLACES:
        raise M3terSourceError(
            f"m3ter currency {code} has maxDecimalPlaces {places!r}; expected a whole number "
            f"0..{MAX_DECIMAL_PLACES} (fix the currency in m3ter's currency picklist)"
        )
    return CurrencyRounding(code=code, max_decimal_places=places, rounding_mode=rounding)


class BillFieldError(ValueError):
    """One field of an m3ter Bill holds a value the operator cannot use."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field} {problem}")
        self.field = field
        self.problem = problem


def _field(field: str, convert: Callable[[], _T]) -> _T:
    """Run one field's conversion; any failure names the field (``lineItems[2].subtotal``)."""
    try:
        return convert()
    except BillFieldError:
        raise
    except (ValueError, TypeError, ArithmeticError, AttributeError) as exc:
        raise BillFieldError(field, str(exc)) from None


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:60] + "..."


def _decimal(value: Any) -> Decimal:
    """Exact Decimal of a JSON number as the SDK parsed it: via str, never float arithmetic."""
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int | float | str) and not isinstance(value, bool):
        try:
            result = Decimal(str(value))
        except InvalidOperation:
            raise ValueError(f"is {_shown(value)}, not a number") from None
    else:
        raise ValueError(f"is {_shown(value)}, not a number")
    if not result.is_finite():
        raise ValueError(f"is {_shown(value)}, not a finite number")
    return result


def _whole(value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value // 1 or value < minimum:
        raise ValueError(f"is {_shown(value)}, not a whole number of {minimum} or more")
    return int(value)


INT64_MAX = 2**63 - 1


def _version(value: Any) -> int:
    # m3ter's version is an int64 (SDK BillResponse.version: Optional[int]); absent means the first.
    # Above int64 it is no m3ter version, and status.recentRuns[].stripeObjects[].billVersion (int64) could not hold it.
    version = 1 if value is None else _whole(value, 1)
    if version > INT64_MAX:
        raise ValueError(f"is {_shown(value)}, above the int64 maximum {INT64_MAX}")
    return version


def _optional_decimal(value: Any) -> Decimal | None:
    return None if value is None else _decimal(value)


def aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _datetime(value: Any) -> datetime | None:
    # The SDK builds models without validation, so an unparsable field arrives as the raw string.
    if value is None or isinstance(value, datetime):
        return None if value is None else aware(value)
    # m3ter sends an absent time as null (or leaves it out); an empty string is no time, and not "none".
    parsed = parse_rfc3339(str(value)) if str(value) else None
    if parsed is None:
        raise ValueError(f"{value!r} is not a time")
    return parsed


def _date(value: Any) -> date | None:
    if value is None or (isinstance(value, date) and not isinstance(value, datetime)):
        return value
    if isinstance(value, datetime):
        return value.date()
    return date.fromisoformat(str(value)[:10])


def _custom_value(value: Any) -> CustomFieldValue:
    if value is None or isinstance(value, str):
        return value
    return _decimal(value)


def to_line_item(item: SdkLineItem | None, *, bill_id: str, index: int, bill_currency: str) -> LineItem:
    """Convert one embedded Bill line item; lines without an id get a stable positional one.

    Raises :class:`BillFieldError` naming the field. ``subtotal`` is required (SDK ``LineItem.subtotal:
    float``): a line without an amount is never read as zero.
    """
    where = f"lineItems[{index}]"
    if item is None or not isinstance(item, SdkLineItem):
        raise BillFieldError(where, f"is {_shown(item)}, not a line item")
    subtotal = getattr(item, "subtotal", None)
    if subtotal is None:
        raise BillFieldError(f"{where}.subtotal", "is missing; a line without an amount cannot be sent")
    quantity = getattr(item, "quantity", None)
    sequence = getattr(item, "sequence_number", None)
    return LineItem(
        id=str(getattr(item, "id", None) or f"{bill_id}:{index}"),
        line_item_type=str(getattr(item, "line_item_type", "")),
        description=str(getattr(item, "description", None) or ""),
        quantity=_field(f"{where}.quantity", lambda: _decimal(quantity if quantity is not None else 0)),
        subtotal=_field(f"{where}.subtotal", lambda: _decimal(subtotal)),
        unit_price=_field(
            f"{where}.averageUnitPrice", lambda: _optional_decimal(getattr(item, "average_unit_price", None))
        ),
        currency=str(getattr(item, "currency", None) or bill_currency),
        aggregation_id=getattr(item, "aggregation_id", None),
        product_name=getattr(item, "product_name", None),
        service_period_start=_field(
            f"{where}.servicePeriodStartDate", lambda: _datetime(getattr(item, "service_period_start_date", None))
        ),
        service_period_end=_field(
            f"{where}.servicePeriodEndDate", lambda: _datetime(getattr(item, "service_period_end_date", None))
        ),
        sequence_number=_field(f"{where}.sequenceNumber", lambda: None if sequence is None else _whole(sequence, 0)),
    )


def to_bill(item: BillResponse) -> Bill:
    """Convert an SDK Bill (with embedded line items) to the domain Bill; :class:`BillFieldError` if it cannot."""
    bill_id = getattr(item, "id", None)
    if not isinstance(bill_id, str) or not bill_id:
        raise BillFieldError("id", f"is {_shown(bill_id)}, not a Bill id")
    currency = item.currency or ""
    status: BillStatus = "APPROVED" if item.status == "APPROVED" else "PENDING"
    last_modified = (
        _field("dtLastModified", lambda: _datetime(item.dt_last_modified))
        or _field("lastCalculatedDate", lambda: _datetime(item.last_calculated_date))
        or _field("dtCreated", lambda: _datetime(item.dt_created))
        or _EPOCH
    )
    lines = item.line_items
    if lines is not None and not isinstance(lines, list):
        raise BillFieldError("lineItems", f"is {_shown(lines)}, not a list")
    account_id = getattr(item, "account_id", None)
    if not isinstance(account_id, str) or not account_id.strip():
        # The SDK types accountId Optional[str] (types/bill_response.py) and m3ter documents no Bill without one
        # (the vendor is silent): such a Bill has no Account, so no Stripe Customer mapping could ever fix it.
        raise BillFieldError(
            "accountId", f"is {_shown(account_id)}; a Bill without its Account cannot be sent to any Stripe Customer"
        )
    return Bill(
        id=bill_id,
        version=_field("version", lambda: _version(item.version)),
        account_id=account_id,
        account_code=item.account_code,
        status=status,
        currency=currency,
        bill_total=_field("billTotal", lambda: _optional_decimal(item.bill_total)),
        due_date=_field("dueDate", lambda: _date(item.due_date)),
        bill_date=_field("billDate", lambda: _date(item.bill_date)),
        purchase_order_number=item.purchase_order_number,
        last_modified=last_modified,
        line_items=tuple(
            to_line_item(line, bill_id=bill_id, index=index, bill_currency=currency)
            for index, line in enumerate(lines or ())
        ),
        external_invoice_reference=item.external_invoice_reference,
        locked=bool(item.locked),
        created=_first_created(item),
    )


def _first_created(item: BillResponse) -> datetime | None:
    """dtCreated, "when the Bill was first created" (SDK types/bill_response.py); bounds the Stripe lookup
    of earlier writes (stripe_writer.CustomerIndex). Unreadable: None, which searches all, never a skip."""
    try:
        return _datetime(getattr(item, "dt_created", None))
    except (ValueError, TypeError):
        return None


def read_bill(item: BillResponse, organization: str = "") -> Bill | MalformedBill:
    """:func:`to_bill`, or a :class:`MalformedBill` naming the Bill and the field it could not read."""
    try:
        return to_bill(item)
    except BillFieldError as err:
        raw_id = getattr(item, "id", None)
        bill_id = raw_id if isinstance(raw_id, str) and raw_id else "(without an id)"
        account = getattr(item, "account_id", None)
        try:
            version = _version(getattr(item, "version", None))
        except ValueError:
            version = 0
        try:
            modified = _datetime(getattr(item, "dt_last_modified", None))
        except (ValueError, TypeError):
            modified = None
        log.warning("m3ter Bill %s of organization %s cannot be read: %s", bill_id, organization or "?", err)
        return MalformedBill(
            id=bill_id,
            message=(
                f"m3ter Bill {bill_id}: {err}; nothing was sent for this Bill. Correct it in m3ter "
                "(it is read again once it changes)"
            ),
            version=version,
            account_id=account if isinstance(account, str) and account.strip() else None,
            last_modified=modified,
        )


def _address(item: AccountResponse) -> Mapping[str, str | None]:
    if item.address is None:
        return {}
    # The SDK's snake_case attributes map one-to-one onto m3ter's camelCase address keys.
    dumped = item.address.model_dump(by_alias=True)
    return {key: dumped.get(key) for key in ADDRESS_KEYS}


def to_account(item: AccountResponse) -> Account:
    """Convert an SDK Account to the domain Account."""
    return Account(
        id=item.id,
        name=item.name or "",
        code=item.code or "",
        currency=item.currency,
        address=_address(item),
        custom_fields={key: _custom_value(value) for key, value in (item.custom_fields or {}).items()},
    )
