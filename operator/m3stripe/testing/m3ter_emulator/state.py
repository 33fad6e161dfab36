"""In-memory m3ter data and the rules that change it (no HTTP here).

Records are kept per Organization in creation order with a monotonically increasing ``seq``, so
list endpoints page deterministically and a ``nextToken`` is just "the seq after which to resume".
"""

from __future__ import annotations

import base64
import bisect
import secrets
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Final, Literal, TypeVar

#: The line item types m3ter puts on a Bill, in the vendor's order: the SDK's ``LineItem.line_item_type`` literal
#: (``m3ter/types/bill_response.py``, generated from m3ter's OpenAPI document: ``lineItemType`` of ``GetBill``).
#: Copied from the vendor, not from the operator: the emulator is the tests' oracle, so an operator constant that
#: were wrong must not make it agree.
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
#: The keys of an Account's address, as m3ter sends them: the SDK's ``Address`` model (``m3ter/types/address.py``,
#: its field aliases; ``address`` of m3ter's OpenAPI ``GetAccount``). Copied from the vendor for the same reason.
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

#: ``pageSize`` bounds per endpoint, as m3ter's API reference gives them (each operation's ``pageSize``
#: schema in m3ter's OpenAPI document, rendered as "Required range" on docs.m3ter.com): List Bills
#: https://docs.m3ter.com/api/bill/list-bills and Search Bills https://docs.m3ter.com/api/bill/search-bills
#: 1..100, List Accounts 1..100, a Bill's line items 1..100, List Currencies
#: https://docs.m3ter.com/api/currency/list-currencies 1..100, the External Mapping lists 1..200.
PAGE_SIZE_LIMITS: Final[Mapping[str, int]] = {
    "accounts": 100,
    "bills": 100,
    "bills/search": 100,
    "lineitems": 100,
    "currencies": 100,
    "externalmappings": 200,
}
MAX_PAGE_SIZE = max(PAGE_SIZE_LIMITS.values())  # the largest any endpoint here allows
DEFAULT_PAGE_SIZE = 10  # Search Bills: "If not defined, default is 10"; the lists do not say, so the same

Money = Decimal | int | float | str
BillStatus = Literal["PENDING", "APPROVED"]


class EmulatorError(Exception):
    """A request the real API would refuse; carries the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class OAuthClient:
    client_id: str
    client_secret: str
    organization_id: str
    token_ttl_seconds: int


@dataclass
class IssuedToken:
    token: str
    client_id: str
    organization_id: str
    expires_at: float  # time.monotonic() deadline
    revoked_status: int | None = None  # the status a revoked token is answered with


# m3ter's HTTP error codes page lists no 401 for the Config API: "403 Forbidden or Unauthorized", with an
# expired Bearer Token as its example of "403 - Unauthorized"
# (https://docs.m3ter.com/guides/m3ter-apis/http-error-codes). So a bearer token that is missing,
# unknown, expired or revoked is answered with 403 and m3ter's {"message": ...} body here; a revocation
# can ask for 401 instead, since the SDK tells the two apart and the operator must handle both.
UNAUTHORIZED_STATUS: Final = 403


@dataclass(kw_only=True)
class _Entity:
    """What every m3ter entity the emulator stores carries: creation order, id, stamps, version."""

    seq: int
    id: str
    dt_created: datetime
    dt_last_modified: datetime
    version: int = 1


@dataclass
class AccountRecord(_Entity):
    name: str
    code: str
    currency: str | None
    address: dict[str, str | None]
    custom_fields: dict[str, Any]
    email_address: str | None
    purchase_order_number: str | None
    parent_account_id: str | None


@dataclass
class LineRecord:
    # The emulator's own record of an m3ter line item, in the order of its JSON (render.line_item); it is
    # not domain.billing.LineItem on purpose: the emulator must not share the operator's reading of m3ter.
    id: str
    line_item_type: str
    description: str
    quantity: Decimal
    units: Decimal
    unit: str
    subtotal: Decimal
    unit_price: Decimal | None  # averageUnitPrice
    currency: str
    aggregation_id: str | None
    product_id: str | None
    product_name: str | None
    product_code: str | None
    service_period_start: datetime | None
    service_period_end: datetime | None
    sequence_number: int | None


@dataclass
class BillRecord(_Entity):
    """The emulator's own record of an m3ter Bill; rendered to m3ter's JSON only when asked for."""

    account_id: str
    account_code: str | None
    currency: str
    status: BillStatus
    lines: list[LineRecord]
    explicit_total: Decimal | None
    bill_date: date
    due_date: date | None
    start_date: date | None
    end_date: date | None
    purchase_order_number: str | None
    external_invoice_reference: str | None
    billing_frequency: str
    locked: bool
    dt_approved: datetime | None = None
    dt_locked: datetime | None = None
    # Raw JSON edits applied when the Bill is rendered (``corrupt_bill``): dotted paths with [index].
    json_overrides: dict[str, Any] = field(default_factory=dict)
    json_removals: list[str] = field(default_factory=list)

    @property
    def total(self) -> Decimal:
        if self.explicit_total is not None:
            return self.explicit_total
        return sum((line.subtotal for line in self.lines), Decimal(0))


@dataclass
class MappingRecord(_Entity):
    m3ter_entity: str
    m3ter_id: str
    external_system: str
    external_table: str
    external_id: str
    integration_config_id: str | None


#: m3ter's ``roundingMode`` values (Java's RoundingMode names), from the API reference
#: https://docs.m3ter.com/api/currency/list-currencies and the SDK's ``m3ter/types/currency_response.py``.
ROUNDING_MODES: Final[tuple[str, ...]] = (
    "UP",
    "DOWN",
    "CEILING",
    "FLOOR",
    "HALF_UP",
    "HALF_DOWN",
    "HALF_EVEN",
    "UNNECESSARY",
)
#: ``maxDecimalPlaces`` is 0..5 (m3ter's OpenAPI ``CurrencyRequest`` schema; Create Currency,
#: https://docs.m3ter.com/api/currency/create-currency).
MAX_DECIMAL_PLACES: Final = 5

#: The picklist a new emulated Organization starts with. m3ter does not publish the picklist a new
#: Organization gets, so these follow ISO 4217 minor units with HALF_UP (m3ter's own Create Currency
#: example uses ``maxDecimalPlaces: 2``); tests set other rules with ``set_currency``.
DEFAULT_CURRENCIES: Final[Mapping[str, tuple[str, int]]] = {
    "USD": ("US Dollar", 2),
    "EUR": ("Euro", 2),
    "GBP": ("Pound Sterling", 2),
    "CAD": ("Canadian Dollar", 2),
    "AUD": ("Australian Dollar", 2),
    "CHF": ("Swiss Franc", 2),
    "SEK": ("Swedish Krona", 2),
    "NOK": ("Norwegian Krone", 2),
    "DKK": ("Danish Krone", 2),
    "JPY": ("Yen", 0),
    "KRW": ("Won", 0),
    "ISK": ("Iceland Krona", 0),
    "UGX": ("Uganda Shilling", 0),
    "BHD": ("Bahraini Dinar", 3),
    "JOD": ("Jordanian Dinar", 3),
    "KWD": ("Kuwaiti Dinar", 3),
    "OMR": ("Rial Omani", 3),
    "TND": ("Tunisian Dinar", 3),
}


@dataclass
class CurrencyRecord(_Entity):
    code: str
    name: str
    max_decimal_places: int | None
    rounding_mode: str | None
    archived: bool


_R = TypeVar("_R", AccountRecord, BillRecord, MappingRecord, CurrencyRecord)


@dataclass
class OrgData:
    """One Organization's records plus the indexes the list endpoints need."""

    accounts: dict[str, AccountRecord] = field(default_factory=dict)
    account_order: list[AccountRecord] = field(default_factory=list)
    bills: dict[str, BillRecord] = field(default_factory=dict)
    bill_order: list[BillRecord] = field(default_factory=list)
    bills_by_account: dict[str, list[BillRecord]] = field(default_factory=dict)
    mappings: dict[str, MappingRecord] = field(default_factory=dict)
    mapping_order: list[MappingRecord] = field(default_factory=list)
    mappings_by_m3ter: dict[tuple[str, str], list[MappingRecord]] = field(default_factory=dict)
    mappings_by_external: dict[tuple[str, str, str], list[MappingRecord]] = field(default_factory=dict)
    currencies: dict[str, CurrencyRecord] = field(default_factory=dict)  # by upper-case code
    currency_order: list[CurrencyRecord] = field(default_factory=list)


# Aliases let fixtures and the admin API use the API's camelCase names as well as Python's.
_LINE_KEY_ALIASES = {
    "type": "line_item_type",
    "lineItemType": "line_item_type",
    "unitPrice": "unit_price",
    "averageUnitPrice": "unit_price",
    "aggregationId": "aggregation_id",
    "productId": "product_id",
    "productName": "product_name",
    "productCode": "product_code",
    "servicePeriodStartDate": "service_period_start",
    "servicePeriodEndDate": "service_period_end",
    "sequenceNumber": "sequence_number",
}
_LINE_KEYS = frozenset(
    {
        "id",
        "line_item_type",
        "description",
        "quantity",
        "subtotal",
        "unit_price",
        "currency",
        "unit",
        "units",
        "aggregation_id",
        "product_id",
        "product_name",
        "product_code",
        "service_period_start",
        "service_period_end",
        "sequence_number",
    }
)


def _decimal(value: Money | None, what: str) -> Decimal:
    if value is None or isinstance(value, bool):
        raise ValueError(f"{what} must be a number, got {value!r}")
    # str() first so floats keep their shortest repr (0.1 stays 0.1, not 0.1000000000000000055...).
    return value if isinstance(value, Decimal) else Decimal(str(value))


def _as_date(value: date | str | None) -> date | None:
    if value is None or (isinstance(value, date) and not isinstance(value, datetime)):
        return value
    if isinstance(value, datetime):
        return value.date()
    return date.fromisoformat(value)


def _as_datetime(value: datetime | date | str | None) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day, tzinfo=UTC)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def encode_next_token(kind: str, seq: int) -> str:
    return base64.urlsafe_b64encode(f"{kind}:{seq}".encode()).decode().rstrip("=")


def decode_next_token(kind: str, token: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        token_kind, seq = raw.split(":", 1)
        if token_kind != kind:
            raise ValueError(token_kind)
        return int(seq)
    except (ValueError, UnicodeDecodeError) as exc:
        raise EmulatorError(400, f"Invalid nextToken {token!r}") from exc


def paginate(
    kind: str,
    records: Sequence[_R],
    *,
    page_size: int,
    next_token: str | None,
    predicate: Callable[[_R], bool] | None = None,
) -> tuple[list[_R], str | None]:
    """One page of ``records`` (sorted by seq) after ``next_token``, plus the token for the next page.

    Looks one match ahead so the last page never carries a ``nextToken`` (clients stop cleanly).
    """
    start = 0
    if next_token:
        start = bisect.bisect_right(records, decode_next_token(kind, next_token), key=lambda r: r.seq)
    page: list[_R] = []
    for index in range(start, len(records)):
        record = records[index]
        if predicate is not None and not predicate(record):
            continue
        if len(page) == page_size:
            return page, encode_next_token(kind, page[-1].seq)
        page.append(record)
    return page, None


class M3terState:
    """The emulated m3ter tenant data: OAuth clients, Accounts, Bills and External Mappings."""

    def __init__(self, *, clock: Callable[[], datetime] | None = None, unique_timestamps: bool = True) -> None:
        self._clock = clock or (lambda: datetime.now(UTC))
        self._unique_timestamps = unique_timestamps
        self._last_stamp: datetime | None = None
        self._seq = 0
        self._orgs: dict[str, OrgData] = {}
        self._clients: dict[str, OAuthClient] = {}
        self._tokens: dict[str, IssuedToken] = {}
        self.tokens_issued = 0

    # -- infrastructure -------------------------------------------------------------------

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _stamp(self) -> datetime:
        """Millisecond timestamps like m3ter's, strictly increasing (unless ``unique_timestamps`` is off)."""
        now = self._clock()
        now = (now if now.tzinfo else now.replace(tzinfo=UTC)).astimezone(UTC)
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)
        if not self._unique_timestamps:
            return now
        if self._last_stamp is not None and now <= self._last_stamp:
            now = self._last_stamp + timedelta(milliseconds=1)
        self._last_stamp = now
        return now

    def org(self, organization_id: str) -> OrgData:
        org = self._orgs.get(organization_id)
        if org is None:
            org = self._orgs[organization_id] = OrgData()
            # Seeded with the clock's time, not _stamp(), so seeding never shifts the stamps tests expect.
            now = self._clock()
            for code, (name, places) in DEFAULT_CURRENCIES.items():
                self._put_currency(org, code, name=name, max_decimal_places=places, rounding_mode="HALF_UP", now=now)
        return org

    def existing_org(self, organization_id: str) -> OrgData:
        try:
            return self._orgs[organization_id]
        except KeyError:
            raise EmulatorError(404, f"Organization {organization_id} not found") from None

    # -- OAuth ----------------------------------------------------------------------------

    def add_client(
        self, client_id: str, client_secret: str, organization_id: str, token_ttl_seconds: int = 18000
    ) -> None:
        """Register a Service User's API credentials (m3ter's default token lifetime is 5 hours)."""
        if token_ttl_seconds < 1:
            raise ValueError("token_ttl_seconds must be at least 1")
        self._clients[client_id] = OAuthClient(client_id, client_secret, organization_id, token_ttl_seconds)
        self.org(organization_id)

    def issue_token(self, client_id: str, client_secret: str) -> IssuedToken:
        client = self._clients.get(client_id)
        if client is None or not secrets.compare_digest(client.client_secret, client_secret):
            raise EmulatorError(401, "Bad credentials")
        issued = IssuedToken(
            token=secrets.token_urlsafe(32),
            client_id=client_id,
            organization_id=client.organization_id,
            expires_at=time.monotonic() + client.token_ttl_seconds,
        )
        self._tokens[issued.token] = issued
        self.tokens_issued += 1
        return issued

    def token_ttl(self, client_id: str) -> int:
        return self._clients[client_id].token_ttl_seconds

    def authenticate(self, token: str) -> IssuedToken:
        issued = self._tokens.get(token)
        if issued is None:
            raise EmulatorError(UNAUTHORIZED_STATUS, "Unauthorized: unknown bearer token")
        if issued.revoked_status is not None:
            raise EmulatorError(issued.revoked_status, "Unauthorized: the bearer token was revoked")
        if time.monotonic() >= issued.expires_at:
            raise EmulatorError(UNAUTHORIZED_STATUS, "Unauthorized: the bearer token has expired")
        return issued

    def expire_tokens(self, client_id: str | None = None) -> int:
        """Make the issued tokens (of ``client_id``, or all) expired now; returns how many."""
        count = 0
        for issued in self._tokens.values():
            if client_id is None or issued.client_id == client_id:
                issued.expires_at = 0.0
                count += 1
        return count

    def revoke_tokens(self, client_id: str | None = None, *, status: int = UNAUTHORIZED_STATUS) -> int:
        """Revoke the issued tokens (of ``client_id``, or all): later use is answered with ``status``."""
        if status not in (401, 403):
            raise ValueError("status must be 401 or 403")
        count = 0
        for issued in self._tokens.values():
            if client_id is None or issued.client_id == client_id:
                issued.revoked_status = status
                count += 1
        return count

    # -- Accounts -------------------------------------------------------------------------

    def add_account(
        self,
        organization_id: str,
        *,
        id: str | None = None,
        name: str,
        code: str,
        currency: str | None = None,
        address: Mapping[str, str | None] | None = None,
        custom_fields: Mapping[str, Any] | None = None,
        email_address: str | None = None,
        purchase_order_number: str | None = None,
        parent_account_id: str | None = None,
    ) -> str:
        """Create an Account and return its id."""
        org = self.org(organization_id)
        account_id = id or str(uuid.uuid4())
        if account_id in org.accounts:
            raise ValueError(f"account {account_id} already exists")
        if any(existing.code == code for existing in org.account_order):
            raise ValueError(f"account code {code!r} already in use")
        unknown = set(address or {}) - set(ADDRESS_KEYS)
        if unknown:
            raise ValueError(f"unknown address keys {sorted(unknown)}; use {list(ADDRESS_KEYS)}")
        stamp = self._stamp()
        record = AccountRecord(
            seq=self._next_seq(),
            id=account_id,
            name=name,
            code=code,
            currency=currency,
            address=dict(address or {}),
            custom_fields=dict(custom_fields or {}),
            email_address=email_address,
            purchase_order_number=purchase_order_number,
            parent_account_id=parent_account_id,
            dt_created=stamp,
            dt_last_modified=stamp,
        )
        org.accounts[account_id] = record
        org.account_order.append(record)
        return account_id

    def get_account(self, organization_id: str, account_id: str) -> AccountRecord:
        record = self.existing_org(organization_id).accounts.get(account_id)
        if record is None:
            raise EmulatorError(404, f"Account with id {account_id} not found")
        return record

    # -- Bills ----------------------------------------------------------------------------

    def _build_lines(
        self, lines: Iterable[Mapping[str, Any]], *, currency: str, start: date | None, end: date | None
    ) -> list[LineRecord]:
        built: list[LineRecord] = []
        for position, raw in enumerate(lines):
            spec = {_LINE_KEY_ALIASES.get(key, key): value for key, value in raw.items()}
            unknown = set(spec) - _LINE_KEYS
            if unknown:
                raise ValueError(f"line {position}: unknown keys {sorted(unknown)}")
            line_type = spec.get("line_item_type", "USAGE")
            if line_type not in LINE_ITEM_TYPES:
                raise ValueError(f"line {position}: {line_type!r} is not an m3ter line item type")
            quantity = _decimal(spec.get("quantity", 1), f"line {position} quantity")
            unit_price = spec.get("unit_price")
            if "subtotal" in spec:
                subtotal = _decimal(spec["subtotal"], f"line {position} subtotal")
            elif unit_price is not None:
                subtotal = quantity * _decimal(unit_price, f"line {position} unit_price")
            else:
                raise ValueError(f"line {position}: give subtotal or unit_price")
            sequence_number = spec.get("sequence_number")
            built.append(
                LineRecord(
                    id=str(spec.get("id") or uuid.uuid4()),
                    line_item_type=line_type,
                    description=str(spec.get("description", line_type.replace("_", " ").title())),
                    quantity=quantity,
                    subtotal=subtotal,
                    unit_price=None if unit_price is None else _decimal(unit_price, "unit_price"),
                    currency=str(spec.get("currency", currency)),
                    unit=str(spec.get("unit", "")),
                    units=_decimal(spec.get("units", quantity), f"line {position} units"),
                    aggregation_id=spec.get("aggregation_id"),
                    product_id=spec.get("product_id"),
                    product_name=spec.get("product_name"),
                    product_code=spec.get("product_code"),
                    service_period_start=_as_datetime(spec.get("service_period_start", start)),
                    service_period_end=_as_datetime(spec.get("service_period_end", end)),
                    sequence_number=None if sequence_number is None else int(sequence_number),
                )
            )
        return built

    def add_bill(
        self,
        organization_id: str,
        *,
        account_id: str,
        lines: Iterable[Mapping[str, Any]] = (),
        currency: str | None = None,
        status: BillStatus = "PENDING",
        id: str | None = None,
        bill_date: date | str | None = None,
        due_date: date | str | None = None,
        start_date: date | str | None = None,
        end_date: date | str | None = None,
        purchase_order_number: str | None = None,
        external_invoice_reference: str | None = None,
        bill_total: Money | None = None,
        billing_frequency: str = "MONTHLY",
        locked: bool = False,
    ) -> str:
        """Create a Bill for an existing Account and return its id.

        ``lines`` are mappings such as ``{"line_item_type": "USAGE", "quantity": 3, "unit_price": "0.5"}``
        (camelCase API names work too). ``billTotal`` is the sum of line subtotals unless ``bill_total``
        is given.
        """
        if status not in ("PENDING", "APPROVED"):
            raise ValueError(f"status must be PENDING or APPROVED, not {status!r}")
        org = self.org(organization_id)
        account = org.accounts.get(account_id)
        if account is None:
            raise ValueError(f"account {account_id} does not exist in organization {organization_id}")
        bill_id = id or str(uuid.uuid4())
        if bill_id in org.bills:
            raise ValueError(f"bill {bill_id} already exists")
        bill_currency = currency or account.currency or "USD"
        start, end = _as_date(start_date), _as_date(end_date)
        stamp = self._stamp()
        record = BillRecord(
            seq=self._next_seq(),
            id=bill_id,
            account_id=account_id,
            account_code=account.code,
            currency=bill_currency,
            status=status,
            lines=self._build_lines(lines, currency=bill_currency, start=start, end=end),
            explicit_total=None if bill_total is None else _decimal(bill_total, "bill_total"),
            bill_date=_as_date(bill_date) or end or stamp.date(),
            due_date=_as_date(due_date),
            start_date=start,
            end_date=end,
            purchase_order_number=purchase_order_number or account.purchase_order_number,
            external_invoice_reference=external_invoice_reference,
            billing_frequency=billing_frequency,
            locked=locked,
            dt_created=stamp,
            dt_last_modified=stamp,
            dt_approved=stamp if status == "APPROVED" else None,
            dt_locked=stamp if locked else None,
        )
        org.bills[bill_id] = record
        org.bill_order.append(record)
        org.bills_by_account.setdefault(account_id, []).append(record)
        return bill_id

    def get_bill(self, organization_id: str, bill_id: str) -> BillRecord:
        record = self.existing_org(organization_id).bills.get(bill_id)
        if record is None:
            raise EmulatorError(404, f"Bill with id {bill_id} not found")
        return record

    def _mutable_bill(self, organization_id: str, bill_id: str) -> BillRecord:
        try:
            record = self.get_bill(organization_id, bill_id)
        except EmulatorError as exc:
            raise KeyError(exc.message) from None
        if record.locked:
            raise ValueError(f"bill {bill_id} is locked and cannot change")
        return record

    def regenerate_bill(
        self,
        organization_id: str,
        bill_id: str,
        *,
        lines: Iterable[Mapping[str, Any]] | None = None,
        bill_total: Money | None = None,
        due_date: date | str | None = None,
    ) -> int:
        """Recalculate a Bill as m3ter does when usage changes: new version, back to PENDING.

        Returns the new version.
        """
        record = self._mutable_bill(organization_id, bill_id)
        if lines is not None:
            record.lines = self._build_lines(
                lines, currency=record.currency, start=record.start_date, end=record.end_date
            )
        if bill_total is not None or lines is not None:
            record.explicit_total = None if bill_total is None else _decimal(bill_total, "bill_total")
        if due_date is not None:
            record.due_date = _as_date(due_date)
        record.status = "PENDING"
        record.dt_approved = None
        return self._touch(record)

    def approve_bill(self, organization_id: str, bill_id: str) -> int:
        """Approve a Bill (new version); returns the new version."""
        record = self._mutable_bill(organization_id, bill_id)
        record.status = "APPROVED"
        version = self._touch(record)
        record.dt_approved = record.dt_last_modified
        return version

    def lock_bill(self, organization_id: str, bill_id: str) -> int:
        """Lock an APPROVED Bill so it can no longer change; returns the new version."""
        record = self._mutable_bill(organization_id, bill_id)
        if record.status != "APPROVED":
            raise ValueError(f"bill {bill_id} must be APPROVED before it can be locked")
        record.locked = True
        version = self._touch(record)
        record.dt_locked = record.dt_last_modified
        return version

    def corrupt_bill(
        self,
        organization_id: str,
        bill_id: str,
        set: Mapping[str, Any] | None = None,
        remove: Iterable[str] = (),
    ) -> int:
        """Serve this Bill with raw JSON edits m3ter's own data could carry (for hostile-input tests).

        ``set`` maps paths such as ``"version"`` or ``"lineItems[1].subtotal"`` to any JSON value (NaN and
        Infinity included: they are written as the bare ``NaN``/``Infinity`` tokens Python's JSON accepts);
        ``remove`` drops paths. Version and last-modified time are left alone. Returns the version.
        """
        record = self.get_bill(organization_id, bill_id)
        record.json_overrides.update(set or {})
        record.json_removals.extend(remove)
        return record.version

    def set_external_invoice_reference(self, organization_id: str, bill_id: str, reference: str | None) -> int:
        """Set ``externalInvoiceReference`` (allowed on locked Bills too, as in m3ter)."""
        record = self.get_bill(organization_id, bill_id)
        record.external_invoice_reference = reference
        return self._touch(record)

    def delete_bill(self, organization_id: str, bill_id: str) -> None:
        record = self._mutable_bill(organization_id, bill_id)
        org = self.org(organization_id)
        del org.bills[bill_id]
        org.bill_order.remove(record)
        org.bills_by_account[record.account_id].remove(record)

    def _touch(self, record: BillRecord) -> int:
        record.version += 1
        record.dt_last_modified = self._stamp()
        return record.version

    def bills_for_listing(self, organization_id: str, account_id: str | None) -> Sequence[BillRecord]:
        org = self.existing_org(organization_id)
        if account_id is None:
            return org.bill_order
        return org.bills_by_account.get(account_id, [])

    def iter_bills(self, organization_id: str) -> Iterator[BillRecord]:
        return iter(self.org(organization_id).bill_order)

    # -- Currencies (the currency picklist) -------------------------------------------------

    def _put_currency(
        self,
        org: OrgData,
        code: str,
        *,
        name: str | None,
        max_decimal_places: int | None,
        rounding_mode: str | None,
        archived: bool = False,
        now: datetime | None = None,
    ) -> CurrencyRecord:
        key = code.upper()
        stamp = now or self._stamp()
        record = org.currencies.get(key)
        if record is None:
            record = CurrencyRecord(
                seq=self._next_seq(),
                id=str(uuid.uuid4()),
                code=key,
                name=name or key,
                max_decimal_places=max_decimal_places,
                rounding_mode=rounding_mode,
                archived=archived,
                dt_created=stamp,
                dt_last_modified=stamp,
            )
            org.currencies[key] = record
            org.currency_order.append(record)
            return record
        record.name = name or record.name
        record.max_decimal_places = max_decimal_places
        record.rounding_mode = rounding_mode
        record.archived = archived
        record.version += 1
        record.dt_last_modified = stamp
        return record

    def set_currency(
        self,
        organization_id: str,
        code: str,
        *,
        max_decimal_places: int | None = 2,
        rounding_mode: str | None = "HALF_UP",
        name: str | None = None,
        archived: bool = False,
        unchecked: bool = False,
    ) -> str:
        """Create or update a currency of the picklist; returns its id.

        ``unchecked`` stores values m3ter's API would refuse (an unknown rounding mode, a null), so a
        test can see how the operator copes with a picklist it does not expect.
        """
        if not unchecked:
            if rounding_mode not in ROUNDING_MODES:
                raise ValueError(f"rounding_mode must be one of {list(ROUNDING_MODES)}, not {rounding_mode!r}")
            if not isinstance(max_decimal_places, int) or not 0 <= max_decimal_places <= MAX_DECIMAL_PLACES:
                raise ValueError(f"max_decimal_places must be an integer 0..{MAX_DECIMAL_PLACES}")
        record = self._put_currency(
            self.org(organization_id),
            code,
            name=name,
            max_decimal_places=max_decimal_places,
            rounding_mode=rounding_mode,
            archived=archived,
        )
        return record.id

    def remove_currency(self, organization_id: str, code: str) -> None:
        org = self.org(organization_id)
        record = org.currencies.pop(code.upper())
        org.currency_order.remove(record)

    # -- External Mappings ----------------------------------------------------------------

    def add_external_mapping(
        self,
        organization_id: str,
        account_id: str,
        external_id: str,
        system: str = "Stripe",
        table: str = "Customer",
        *,
        m3ter_entity: str = "Account",
        id: str | None = None,
        integration_config_id: str | None = None,
    ) -> str:
        """Map an m3ter entity (an Account by default) to an external record; returns the mapping id."""
        org = self.org(organization_id)
        mapping_id = id or str(uuid.uuid4())
        if mapping_id in org.mappings:
            raise ValueError(f"external mapping {mapping_id} already exists")
        stamp = self._stamp()
        record = MappingRecord(
            seq=self._next_seq(),
            id=mapping_id,
            m3ter_entity=m3ter_entity,
            m3ter_id=account_id,
            external_system=system,
            external_table=table,
            external_id=external_id,
            integration_config_id=integration_config_id,
            dt_created=stamp,
            dt_last_modified=stamp,
        )
        org.mappings[mapping_id] = record
        org.mapping_order.append(record)
        # Entity names are matched case-insensitively: m3ter documents "Account" but accepts "account".
        org.mappings_by_m3ter.setdefault((m3ter_entity.lower(), account_id), []).append(record)
        org.mappings_by_external.setdefault((system, table, external_id), []).append(record)
        return mapping_id

    def get_mapping(self, organization_id: str, mapping_id: str) -> MappingRecord:
        record = self.existing_org(organization_id).mappings.get(mapping_id)
        if record is None:
            raise EmulatorError(404, f"ExternalMapping with id {mapping_id} not found")
        return record
