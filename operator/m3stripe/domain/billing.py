"""m3ter billing data as the operator sees it: Accounts, Bills and their line items.

Plain frozen values, free of SDK types, so the reconciler, the filters and the Stripe side never
depend on how m3ter is reached. Money is always ``Decimal``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Final, Literal

BillStatus = Literal["PENDING", "APPROVED"]
CustomFieldValue = str | int | float | Decimal | None

#: Every line item type m3ter puts on a Bill, in the order m3ter documents them.
LINE_ITEM_TYPES: Final[tuple[str, ...]] = (
    "STANDING_CHARGE",
    "USAGE",
    "COUNTER_RUNNING_TOTAL_CHARGE",
    "COUNTER_ADJUSTMENT_DEBIT",
    "COUNTER_ADJUSTMENT_CREDIT",
    "USAGE_CREDIT",
    "MINIMUM_SPEND",
    "MINIMUM_SPEND_REFUND",
    "CREDIT_DEDUCTION",
    "MANUAL_ADJUSTMENT",
    "CREDIT_MEMO",
    "DEBIT_MEMO",
    "COMMITMENT_CONSUMED",
    "COMMITMENT_FEE",
    "OVERAGE_SURCHARGE",
    "OVERAGE_USAGE",
    "BALANCE_CONSUMED",
    "BALANCE_FEE",
    "AD_HOC",
)

#: The address keys m3ter uses; an Account always carries all of them (absent ones are None).
ADDRESS_KEYS: Final[tuple[str, ...]] = (
    "addressLine1",
    "addressLine2",
    "addressLine3",
    "addressLine4",
    "locality",
    "region",
    "postCode",
    "country",
)


@dataclass(frozen=True)
class CurrencyRounding:
    """m3ter's rounding rule for one currency (``GET /picklists/currency``: ``maxDecimalPlaces``, ``roundingMode``)."""

    code: str  # upper-case ISO 4217
    max_decimal_places: int
    rounding_mode: str  # a ``decimal`` module constant, e.g. ``decimal.ROUND_HALF_UP``


@dataclass(frozen=True)
class Account:
    """An m3ter end-customer Account."""

    id: str
    name: str
    code: str
    currency: str | None
    # Mappings are excluded from hashing/equality-by-hash because dicts are unhashable; they are
    # frozen into read-only proxies so the value really is immutable.
    address: Mapping[str, str | None] = field(default_factory=dict, hash=False)
    custom_fields: Mapping[str, CustomFieldValue] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        address = {key: self.address.get(key) for key in ADDRESS_KEYS}
        object.__setattr__(self, "address", MappingProxyType(address))
        object.__setattr__(self, "custom_fields", MappingProxyType(dict(self.custom_fields)))

    def as_filter_record(self) -> dict[str, Any]:
        """The nested record an account-filter expression is evaluated against (fresh, mutable copy)."""
        return {
            "id": self.id,
            "name": self.name,
            "accountName": self.name,
            "code": self.code,
            "accountCode": self.code,
            "currency": self.currency,
            "address": dict(self.address),
            "customFields": dict(self.custom_fields),
        }


@dataclass(frozen=True)
class LineItem:
    """One line of a Bill; ``subtotal`` is in the Bill's currency before tax."""

    id: str
    line_item_type: str
    description: str
    quantity: Decimal
    subtotal: Decimal
    unit_price: Decimal | None
    currency: str
    aggregation_id: str | None
    product_name: str | None
    service_period_start: datetime | None
    service_period_end: datetime | None
    sequence_number: int | None


@dataclass(frozen=True)
class Bill:
    """An m3ter Bill at one ``version``; m3ter bumps the version whenever the Bill changes."""

    id: str
    version: int
    account_id: str
    account_code: str | None
    status: BillStatus
    currency: str
    bill_total: Decimal | None
    due_date: date | None
    bill_date: date | None
    purchase_order_number: str | None
    last_modified: datetime
    line_items: tuple[LineItem, ...]
    external_invoice_reference: str | None
    locked: bool
    # m3ter's dtCreated, "when the Bill was first created" (m3ter SDK types/bill_response.py): the same for
    # every version, so no write for this Bill can be older. None when m3ter did not say.
    created: datetime | None = None

    @property
    def line_items_total(self) -> Decimal:
        """Sum of the line subtotals, exact (useful when m3ter omits ``billTotal``)."""
        return sum((line.subtotal for line in self.line_items), Decimal(0))


@dataclass(frozen=True)
class MalformedBill:
    """A Bill m3ter returned that cannot be read (a field's value is unusable); nothing is sent for it.

    The sync engine reports it as a validation error naming the Bill and the field, and sends every
    other Bill. ``version`` is 0 when the version itself is unreadable.
    """

    id: str
    message: str
    version: int = 0
    account_id: str | None = None
    last_modified: datetime | None = None
