"""What the domain needs of the outside world, in its own terms: a Bill source and a Stripe ledger.

The domain calls only these protocols and reads only these values; the adapters implement them
(`adapters.m3ter_source.M3terSource` is a `BillSource`, `adapters.stripe_ledger.StripeLedger` a
`Ledger`, `adapters.stripe_ledger.StripeLedgerReader` a `LedgerReader`) and raise these errors. Adapters
may import this module; the domain never imports an adapter or a vendor's SDK.

A `LedgerReader` (Plan mode) has no method that writes: code given one cannot change Stripe.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, TypedDict, Unpack, runtime_checkable

from m3stripe.domain.billing import Account, Bill, CurrencyRounding, MalformedBill
from m3stripe.domain.sweep import ListedBill

# The most ids `BillSource.bills_by_ids` takes at once: one page of m3ter's Bills list, whose pageSize is
# 1..100 (https://docs.m3ter.com/api/bill/list-bills, "Required range"; m3ter answers 400 outside it).
BILLS_PAGE_SIZE = 100


# The Bill source (m3ter)


class BillSourceError(Exception):
    """The Bill source refused a request (bad input, an unusable value): retrying the same will not help."""


class BillSourceAuthError(BillSourceError):
    """The Bill source refused the credentials: the pass stops (fix the Secret)."""


class BillSourceUnavailable(BillSourceError):
    """The Bill source could not be reached or kept failing after bounded retries: retried next pass."""


class BillSource(Protocol):
    """Where Bills, their Accounts, customer mappings and currency rounding come from."""

    def iter_bills(self, *, modified_since: datetime | None) -> AsyncIterator[Bill | MalformedBill]: ...
    async def get_bill(self, bill_id: str) -> Bill | MalformedBill | None: ...
    def bills_by_ids(self, ids: list[str]) -> AsyncIterator[Bill | MalformedBill]: ...
    def list_bill_versions(self) -> AsyncIterator[ListedBill]: ...
    async def get_account(self, account_id: str) -> Account | None: ...
    def list_accounts(self) -> AsyncIterator[Account]: ...
    async def find_stripe_customer_mapping(self, account_id: str) -> str | None: ...
    async def rounding_for(self, currency: str) -> CurrencyRounding | None: ...


# The Stripe ledger

# True while the calling task holds what other Bills wait for (CustomerWrites' write lock of a customer): the
# ledger's request then takes the account's next rate-limit slot ahead of the others, since every Bill queued
# behind the lock waits as long as that request does (issue 22: two customers at 250 ms a request).
URGENT: ContextVar[bool] = ContextVar("m3stripe_urgent_request", default=False)

# True while the calling task writes to a customer without holding its write lock (CustomerWrites' concurrent first
# try): a `lock_timeout` answer then fails the request at once, as a TRANSIENT LedgerError with that code, instead of
# being retried in place, and the writer retries it holding the lock.
UNLOCKED_CUSTOMER_WRITE: ContextVar[bool] = ContextVar("m3stripe_unlocked_customer_write", default=False)


class Failure(enum.StrEnum):
    AUTH = "auth"  # 401
    PERMISSION = "permission"  # 403
    INVALID = "invalid"  # other 4xx: the request itself is wrong
    NOT_FOUND = "not_found"
    IDEMPOTENCY = "idempotency"  # same key, different parameters: a bug or a changed Bill under an old key
    TRANSIENT = "transient"  # retries exhausted on 429/5xx/network


class LedgerErrorDetails(TypedDict, total=False):
    """What a LedgerError may say besides its failure and message (an adapter's subclass passes them on)."""

    status: int | None  # the HTTP status
    code: str | None  # Stripe's error code
    endpoint: str  # the request that failed, e.g. "invoices.create"
    permission: str | None  # the restricted-key permission Stripe says is missing (403), e.g. "rak_invoice_write"


class LedgerError(Exception):
    """A Stripe request failed for good; the message is already free of secrets."""

    def __init__(self, failure: Failure, message: str, **details: Unpack[LedgerErrorDetails]) -> None:
        super().__init__(message)
        self.failure = failure
        self.status = details.get("status")
        self.code = details.get("code")
        self.endpoint = details.get("endpoint", "")
        self.permission = details.get("permission")


@dataclass(frozen=True)
class HeldLine:
    """An invoice line, or an invoice item (then `invoice` is the invoice it is on, None while pending)."""

    id: str
    created: int
    amount: int
    description: str
    metadata: Mapping[str, str]
    invoice: str | None = None
    discountable: bool = False


@dataclass(frozen=True)
class InvoiceTax:
    """What Stripe computed of an invoice's tax (its `total_taxes`), in minor units.

    `exclusive` was added on top of the lines, `inclusive` is inside them; the amount before tax is
    `total - exclusive` (the invoice's "total_excluding_tax" plus any inclusive tax).
    """

    enabled: bool = False  # automatic_tax.enabled
    status: str | None = None  # automatic_tax.status: complete, requires_location_inputs, failed
    exclusive: int = 0
    inclusive: int = 0
    not_collecting: bool = False  # every tax line says taxability_reason not_collecting

    @property
    def amount(self) -> int:
        return self.exclusive + self.inclusive


@dataclass(frozen=True)
class TaxSettings:
    """The Stripe account's Stripe Tax settings (GET /v1/tax/settings)."""

    status: str  # active, or pending ("A required setting is missing, such as the head office address")
    missing: tuple[str, ...] = ()  # status_details.pending.missing_fields
    default_behavior: str | None = None  # defaults.tax_behavior: exclusive, inclusive, inferred_by_currency
    default_code: str | None = None  # defaults.tax_code

    @property
    def active(self) -> bool:
        return self.status == "active"


@dataclass(frozen=True)
class CustomerTax:
    """A Stripe Customer's `tax` (returned with expand[]=tax): whether Stripe Tax can place it."""

    automatic_tax: str | None  # supported, not_collecting, failed, unrecognized_location
    country: str | None = None


@dataclass(frozen=True)
class HeldInvoice:
    """What the domain needs of an invoice Stripe holds (a slim copy: an index holds many).

    `lines`: every line of the invoice when Stripe's answer embedded them all (an invoice carries its first lines
    in `lines`, with `has_more` false when that is all of them); None when they must be listed.
    """

    id: str
    created: int
    status: str
    metadata: Mapping[str, str]
    custom_fields: list[dict[str, str]] = field(default_factory=list)
    lines: tuple[HeldLine, ...] | None = None
    total: int | None = None
    tax: InvoiceTax = field(default_factory=InvoiceTax)


@dataclass(frozen=True)
class HeldCustomer:
    id: str
    metadata: Mapping[str, str]
    tax: CustomerTax | None = None  # only when listed with the customers' tax


# `created`: Stripe's filter on an object's creation time, {"gte": ..., "lt": ...} in Unix seconds.
Created = Mapping[str, int]


@runtime_checkable
class LedgerReader(Protocol):
    """Reads of what Stripe holds; nothing here writes."""

    @property
    def requests(self) -> int:
        """Requests sent so far (list pages included)."""
        ...

    def invoices(self, customer: str, created: Created | None) -> AsyncIterator[HeldInvoice]: ...
    def items(self, customer: str, created: Created | None) -> AsyncIterator[HeldLine]: ...
    def invoice_lines(self, invoice_id: str) -> AsyncIterator[HeldLine]: ...
    async def invoice(self, invoice_id: str) -> HeldInvoice: ...
    def customers(self, *, with_tax: bool = False) -> AsyncIterator[HeldCustomer]: ...
    async def customer_tax(self, customer_id: str) -> CustomerTax: ...
    async def tax_settings(self) -> TaxSettings: ...


@runtime_checkable
class Ledger(LedgerReader, Protocol):
    """Reads and writes; every write carries the caller's idempotency key (None: the call is idempotent)."""

    async def create_invoice(self, params: dict[str, Any], *, idempotency_key: str) -> HeldInvoice: ...
    async def add_lines(self, invoice_id: str, params: dict[str, Any], *, idempotency_key: str) -> HeldInvoice: ...
    async def remove_lines(self, invoice_id: str, params: dict[str, Any], *, idempotency_key: str) -> None: ...
    async def update_invoice(self, invoice_id: str, params: dict[str, Any], *, idempotency_key: str) -> HeldInvoice: ...
    async def create_item(self, params: dict[str, Any], *, idempotency_key: str) -> HeldLine: ...
    async def delete_item(self, item_id: str) -> None: ...
    async def delete_invoice(self, invoice_id: str) -> None: ...
    async def create_coupon(self, params: dict[str, Any], *, idempotency_key: str) -> None: ...


class FenceLost(Exception):
    """This process may no longer write (it lost its Lease): the pass ends, and no error is recorded
    against the integration, since the replica that now holds the Lease carries on."""
