"""The StripeIntegration spec: the single source of truth for the CRD's spec schema.

Field names follow m3ter's guide ("Configuring Stripe Integrations") in camelCase, with its defaults.
`crds/` is generated from these models (`m3stripe crds`); a test fails when the two drift apart.
"""

from __future__ import annotations

import enum
from datetime import timedelta
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StringConstraints, field_validator
from pydantic.config import JsonDict

from m3stripe.api.durations import parse_duration

# DNS-1123 subdomain: what Kubernetes accepts as a Secret name.
SECRET_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# Keys of a Secret's data map.
SECRET_KEY_PATTERN = r"^[-._a-zA-Z0-9]+$"
# Durations in the Go style that `kubectl` users know (and that CEL's duration() parses).
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
ACCOUNT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]*$"
STRIPE_PRODUCT_PATTERN = r"^prod_[A-Za-z0-9]+$"

MIN_SYNC_INTERVAL_SECONDS = 10
# Upper bounds of the durations (vendor-neutral: the operator's own scheduling). Without them a value such
# as 99999999999h passes the pattern and then overflows date arithmetic in the middle of a pass.
MAX_SYNC_INTERVAL = "24h"
MAX_EVENT_RETENTION = "8760h"  # one year
MIN_EVENT_RETENTION = "1m"
# The reconciliation sweep lists every Bill of the Organization: at most hourly keeps its cost a small share of
# the passes'; at least monthly keeps the safety net meaningful.
MIN_RECONCILE_INTERVAL = "1h"
MAX_RECONCILE_INTERVAL = "720h"
DURATION_MAX_LENGTH = 32


# The spec's small choices, each a table of {member: the value the CRD spells}; a __doc__ set here is what the
# class docstring was, and pydantic carries it into the CRD's schema.
Destination = enum.StrEnum("Destination", {"STRIPE": "Stripe", "STRIPE_TEST_MODE": "StripeTestMode"})
Destination.__doc__ = "Where Bills go: Stripe's live environment or its test environment."
SortLineItemsBy = enum.StrEnum(
    "SortLineItemsBy", {"NONE": "None", "SUBTOTAL": "Subtotal", "AGGREGATION_ID": "AggregationId"}
)
Mode = enum.StrEnum("Mode", {"SEND": "Send", "PLAN": "Plan"})
Mode.__doc__ = "Send writes Bills to Stripe; Plan only computes what a Send pass would write."
CollectionMethod = enum.StrEnum(
    "CollectionMethod", {"CHARGE_AUTOMATICALLY": "ChargeAutomatically", "SEND_INVOICE": "SendInvoice"}
)
AutomaticTax = enum.StrEnum(
    "AutomaticTax", {"ENABLED": "Enabled", "DISABLED": "Disabled", "ACCOUNT_DEFAULT": "AccountDefault"}
)
AutomaticTax.__doc__ = (
    "Whether the invoices ask Stripe Tax to compute tax: Enabled, Disabled, or AccountDefault (the request leaves "
    "automatic_tax out and the Stripe account's default for API invoices decides)."
)
TaxBehavior = enum.StrEnum(
    "TaxBehavior", {"EXCLUSIVE": "Exclusive", "INCLUSIVE": "Inclusive", "ACCOUNT_DEFAULT": "AccountDefault"}
)
TaxBehavior.__doc__ = (
    "Whether m3ter's amounts exclude tax (Stripe adds it on top) or include it (Stripe takes it out of them), or "
    "AccountDefault (the default tax behavior of the Stripe account's Stripe Tax settings)."
)
# Stripe's product tax codes are "txcd_" and eight digits (https://docs.stripe.com/tax/tax-codes).
TAX_CODE_PATTERN = r"^txcd_[0-9]{8}$"


class LineItemType(enum.StrEnum):
    """m3ter's 19 Bill line item types (the domain of `excludedLineItemTypes`)."""

    STANDING_CHARGE = "STANDING_CHARGE"
    USAGE = "USAGE"
    COUNTER_RUNNING_TOTAL_CHARGE = "COUNTER_RUNNING_TOTAL_CHARGE"
    COUNTER_ADJUSTMENT_DEBIT = "COUNTER_ADJUSTMENT_DEBIT"
    COUNTER_ADJUSTMENT_CREDIT = "COUNTER_ADJUSTMENT_CREDIT"
    USAGE_CREDIT = "USAGE_CREDIT"
    MINIMUM_SPEND = "MINIMUM_SPEND"
    MINIMUM_SPEND_REFUND = "MINIMUM_SPEND_REFUND"
    CREDIT_DEDUCTION = "CREDIT_DEDUCTION"
    MANUAL_ADJUSTMENT = "MANUAL_ADJUSTMENT"
    CREDIT_MEMO = "CREDIT_MEMO"
    DEBIT_MEMO = "DEBIT_MEMO"
    COMMITMENT_CONSUMED = "COMMITMENT_CONSUMED"
    COMMITMENT_FEE = "COMMITMENT_FEE"
    OVERAGE_SURCHARGE = "OVERAGE_SURCHARGE"
    OVERAGE_USAGE = "OVERAGE_USAGE"
    BALANCE_CONSUMED = "BALANCE_CONSUMED"
    BALANCE_FEE = "BALANCE_FEE"
    AD_HOC = "AD_HOC"


# Bounded so the CRD's CEL overlap rule stays within the apiserver's cost budget.
AccountId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=ACCOUNT_ID_PATTERN)]
Email = Annotated[str, StringConstraints(min_length=3, max_length=254, pattern=EMAIL_PATTERN)]
SecretName = Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=SECRET_NAME_PATTERN)]
SecretKey = Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=SECRET_KEY_PATTERN)]
# Stripe limits an invoice custom field's name to 40 characters.
CustomFieldName = Annotated[str, StringConstraints(min_length=1, max_length=40)]


def _cel(rule: str, message: str, field_path: str | None = None, reason: str = "FieldValueInvalid") -> JsonDict:
    """One `x-kubernetes-validations` entry."""
    entry: JsonDict = {"rule": rule, "message": message, "reason": reason}
    if field_path:
        entry["fieldPath"] = field_path
    return entry


class _Model(BaseModel):
    # Field names are the manifest's camelCase names. Unknown fields are errors, not silently ignored:
    # a typo in git must surface as a condition.
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        use_enum_values=False,
    )


class StripeCredentialRef(_Model):
    """A Secret in the integration's namespace holding the Stripe API key."""

    name: SecretName = Field(description="Name of the Secret, in the same namespace as the StripeIntegration.")
    key: SecretKey = Field(
        default="apiKey",
        description=(
            "Key inside the Secret's data whose value is the Stripe secret or restricted API key "
            "(sk_live_/rk_live_ for Stripe, sk_test_/rk_test_ for StripeTestMode)."
        ),
    )


class M3terCredentialsRef(_Model):
    """A Secret in the integration's namespace holding m3ter API credentials (a service user's key and secret)."""

    name: SecretName = Field(description="Name of the Secret, in the same namespace as the StripeIntegration.")
    clientIdKey: SecretKey = Field(default="clientId", description="Key in the Secret holding the m3ter API key id.")
    clientSecretKey: SecretKey = Field(
        default="clientSecret", description="Key in the Secret holding the m3ter API secret."
    )


class M3terSource(_Model):
    """The m3ter organization whose Bills this integration sends."""

    organizationId: str = Field(
        min_length=1,
        max_length=128,
        pattern=ACCOUNT_ID_PATTERN,
        description="The m3ter Organization id (shown in the m3ter console under Organization settings).",
    )
    credentialsRef: M3terCredentialsRef = Field(
        description="Secret with the m3ter API credentials used to read Bills, Accounts and External Mappings."
    )


class StripeIntegrationSpec(_Model):
    """Desired state of one Bill -> Stripe integration, as m3ter's integration configuration."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "!has(self.accountIds) || !has(self.restrictedAccountIds) || "
                    "!self.accountIds.exists(a, a in self.restrictedAccountIds)",
                    "an account id may not be in both accountIds and restrictedAccountIds; "
                    "remove it from one of the lists",
                    ".restrictedAccountIds",
                ),
                _cel(
                    "!has(self.sendDueDate) || !self.sendDueDate || "
                    "(has(self.createStripeInvoice) && self.createStripeInvoice)",
                    "sendDueDate needs createStripeInvoice: true (a due date belongs to an invoice)",
                    ".sendDueDate",
                ),
                _cel(
                    "!has(self.sendDueDate) || !self.sendDueDate || "
                    "(has(self.collectionMethod) && self.collectionMethod == 'SendInvoice')",
                    "sendDueDate needs collectionMethod: SendInvoice; Stripe accepts a due date only on "
                    "invoices it sends, not on ones it charges automatically",
                    ".collectionMethod",
                ),
                _cel(
                    "!has(self.poNumberCustomField) || (has(self.createStripeInvoice) && self.createStripeInvoice)",
                    "poNumberCustomField needs createStripeInvoice: true (custom fields exist on invoices only)",
                    ".poNumberCustomField",
                ),
                _cel(
                    "!has(self.automaticTax) || self.automaticTax != 'Enabled' || "
                    "!has(self.createStripeInvoice) || self.createStripeInvoice",
                    "automaticTax: Enabled needs createStripeInvoice: true; with pending invoice items the invoice "
                    "is the Stripe Subscription's, whose own automatic_tax decides: turn it on there and set "
                    "taxBehavior for the items",
                    ".automaticTax",
                ),
                _cel(
                    "!has(self.syncInterval) || (duration(self.syncInterval) >= duration('10s') && "
                    f"duration(self.syncInterval) <= duration('{MAX_SYNC_INTERVAL}'))",
                    f"syncInterval must be between 10s and {MAX_SYNC_INTERVAL}",
                    ".syncInterval",
                ),
                _cel(
                    f"!has(self.eventRetention) || (duration(self.eventRetention) >= duration('{MIN_EVENT_RETENTION}') "
                    f"&& duration(self.eventRetention) <= duration('{MAX_EVENT_RETENTION}'))",
                    f"eventRetention must be between {MIN_EVENT_RETENTION} and {MAX_EVENT_RETENTION}",
                    ".eventRetention",
                ),
                _cel(
                    "!has(self.reconcileInterval) || "
                    f"(duration(self.reconcileInterval) >= duration('{MIN_RECONCILE_INTERVAL}') "
                    f"&& duration(self.reconcileInterval) <= duration('{MAX_RECONCILE_INTERVAL}'))",
                    f"reconcileInterval must be between {MIN_RECONCILE_INTERVAL} and {MAX_RECONCILE_INTERVAL}",
                    ".reconcileInterval",
                ),
            ]
        }
    )

    entityType: Literal["Bill"] = Field(
        default="Bill",
        description="The m3ter entity this integration sends. Only Bill is supported, as in m3ter.",
    )
    destination: Destination = Field(
        description=(
            "Stripe sends Bills to your live Stripe account; StripeTestMode to your Stripe test environment. "
            "The credential's key must match (a live key for Stripe, a test key for StripeTestMode)."
        )
    )
    credentialRef: StripeCredentialRef | None = Field(
        default=None,
        description=(
            "The Stripe credential: a Secret reference. Absent means the integration is not connected yet "
            "(m3ter's 'Add Credential'); removing it disconnects; pointing it at another Secret updates it."
        ),
    )
    m3ter: M3terSource = Field(description="Where Bills are read from.")
    accountIds: list[AccountId] = Field(
        default_factory=list,
        max_length=1000,
        description=(
            "m3ter Account ids the integration is allowed to send Bills for. Empty together with "
            "restrictedAccountIds means all Accounts."
        ),
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    restrictedAccountIds: list[AccountId] = Field(
        default_factory=list,
        max_length=1000,
        description="m3ter Account ids whose Bills are never sent by this integration.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    accountFilter: str | None = Field(
        default=None,
        max_length=4096,
        description=(
            "Expression evaluated on the m3ter Account; Bills are sent only when it is true, in addition to "
            "the account id lists. Operators ==, !=, <, <=, >, >=, AND, OR, NOT, parentheses, null; fields "
            "such as id, name, code, currency, address.country, customFields.<name>. "
            'Example: customFields.country == "UK".'
        ),
    )
    integrationDisabledNotificationUsers: list[Email] = Field(
        default_factory=list,
        max_length=50,
        description="Email addresses notified once when the integration is automatically disabled.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    onlySendBillOnApproval: bool = Field(
        default=False,
        description=(
            "Send Bills only once they are APPROVED. When false, a Bill is sent every time it is regenerated."
        ),
    )
    useExternalMappingAccountCode: bool = Field(
        default=False,
        description=(
            "Find the Stripe Customer through m3ter's External Mappings (Account -> Stripe Customer). When "
            "false, the Stripe Customer whose metadata m3ter_account_id equals the m3ter Account id is used."
        ),
    )
    excludedLineItemTypes: list[LineItemType] = Field(
        default_factory=list,
        description="Bill line item types that are not sent to Stripe.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    sortLineItemsBy: SortLineItemsBy = Field(
        default=SortLineItemsBy.NONE,
        description="Order of the lines sent to Stripe: None (m3ter's order), Subtotal, or AggregationId.",
    )
    createStripeInvoice: bool = Field(
        default=True,
        description=(
            "true: one draft Stripe invoice per Bill (Stripe Subscription Invoicing). false: pending invoice "
            "items on the customer, for Stripe Subscriptions to pick up."
        ),
    )
    collectionMethod: CollectionMethod = Field(
        default=CollectionMethod.CHARGE_AUTOMATICALLY,
        description=(
            "How Stripe collects the invoice. sendDueDate requires SendInvoice: Stripe rejects a due date on "
            "invoices it charges automatically."
        ),
    )
    priceDataProductId: str | None = Field(
        default=None,
        max_length=255,
        pattern=STRIPE_PRODUCT_PATTERN,
        description=(
            "A Stripe Product id (prod_...). When set, lines carry price_data with this product and "
            "unit_amount_decimal, so Stripe Tax can apply the product's tax code."
        ),
    )
    automaticTax: AutomaticTax = Field(
        default=AutomaticTax.ACCOUNT_DEFAULT,
        description=(
            "Whether the draft invoices ask Stripe Tax to compute tax (automatic_tax). Enabled: every invoice is "
            "taxed as the Stripe account's Stripe Tax settings and registrations say; Stripe Tax must be active, "
            "and a Bill whose Stripe Customer has no usable location is not sent (an error event says what to add). "
            "Disabled: never taxed. AccountDefault (the default): the request leaves automatic_tax out and the "
            "Stripe account's default for API invoices decides, best effort. Needs createStripeInvoice: true to be "
            "Enabled."
        ),
    )
    taxBehavior: TaxBehavior = Field(
        default=TaxBehavior.ACCOUNT_DEFAULT,
        description=(
            "Whether m3ter's amounts exclude tax (Exclusive: Stripe adds it, the invoice's total before tax equals "
            "the Bill's total) or include it (Inclusive: the invoice's total equals the Bill's total, tax inside). "
            "Sent as each line's and item's tax_behavior. AccountDefault (the default): none is sent and the "
            "default tax behavior in the Stripe account's Stripe Tax settings applies (Stripe refuses taxed lines "
            "without one)."
        ),
    )
    taxCode: str | None = Field(
        default=None,
        max_length=13,
        pattern=TAX_CODE_PATTERN,
        description=(
            "A Stripe product tax code (txcd_ and 8 digits) for the lines that carry no product "
            "(priceDataProductId unset): sent as the invoice item's tax_code. Unset: the Stripe account's default "
            "product tax code applies. Lines with priceDataProductId take that product's tax code."
        ),
    )
    poNumberCustomField: CustomFieldName | None = Field(
        default=None,
        description=(
            "Name of the Stripe invoice custom field that carries the Bill's purchase order number "
            "(Stripe limits names to 40 characters)."
        ),
    )
    sendDueDate: bool = Field(
        default=False,
        description=(
            "Send the Bill's due date to the Stripe invoice. Needs collectionMethod: SendInvoice; keep it "
            "off when Stripe charges invoices automatically."
        ),
    )
    syncInterval: str = Field(
        default="5m",
        max_length=DURATION_MAX_LENGTH,
        pattern=DURATION_PATTERN,
        description=(
            f"How often Bills are read from m3ter, as a duration such as 30s, 5m or 1h (10s to {MAX_SYNC_INTERVAL})."
        ),
    )
    reconcileInterval: str = Field(
        default="24h",
        max_length=DURATION_MAX_LENGTH,
        pattern=DURATION_PATTERN,
        description=(
            "How often a pass also reconciles: it lists every Bill (without line items) and re-reads those "
            "changed since the last reconciliation, catching any change m3ter's search index was late to show; "
            f"{MIN_RECONCILE_INTERVAL} to {MAX_RECONCILE_INTERVAL}."
        ),
    )
    mode: Mode = Field(
        default=Mode.SEND,
        description=(
            "Send: write Bills to Stripe. Plan: a dry run; each pass reads m3ter and Stripe as usual and "
            "records in status.plan what it would do per Bill (create invoice, update draft, add items, "
            "nothing, blocked) without writing anything to Stripe. Switch to Send to send exactly that plan."
        ),
    )
    suspend: bool = Field(
        default=False,
        description="Pause this integration: no Bills are sent while true. Status keeps being reported.",
    )
    # Strict, as the CRD's `type: integer`: the API server refuses "3", true and 3.0, so the operator does too.
    autoDisableThreshold: StrictInt = Field(
        default=10,
        ge=1,
        le=1000,
        description="Number of successive error events after which the integration disables itself.",
    )
    requestsPerSecond: StrictInt | None = Field(
        default=None,
        ge=1,
        le=10000,
        description=(
            "Client-side limit of Stripe requests per second for this integration's Stripe account. "
            "Default: 100 for Stripe, 25 for StripeTestMode (Stripe's documented limits)."
        ),
    )
    runHistoryLimit: StrictInt = Field(
        default=10,
        ge=1,
        le=100,
        description="How many recent runs status.recentRuns keeps (older ones are dropped).",
    )
    eventRetention: str = Field(
        default="720h",
        max_length=DURATION_MAX_LENGTH,
        pattern=DURATION_PATTERN,
        description=(
            "How long an open error event is kept after it was last raised (at most 100 are kept); "
            f"{MIN_EVENT_RETENTION} to {MAX_EVENT_RETENTION}."
        ),
    )
    maxLinesPerInvoice: StrictInt = Field(
        default=250,
        ge=1,
        le=2000,
        description=(
            "Most lines one Stripe invoice may hold (Stripe's default limit is 250; Stripe can raise it on "
            "request). A Bill with more lines is reported as an error, never split."
        ),
    )

    @field_validator("syncInterval")
    @classmethod
    def _interval_bounds(cls, value: str) -> str:
        seconds = parse_duration(value, maximum=parse_duration(MAX_SYNC_INTERVAL)).total_seconds()
        if seconds < MIN_SYNC_INTERVAL_SECONDS:
            raise ValueError(f"must be at least {MIN_SYNC_INTERVAL_SECONDS}s")
        return value

    @field_validator("eventRetention")
    @classmethod
    def _retention_bounds(cls, value: str) -> str:
        if parse_duration(value, maximum=parse_duration(MAX_EVENT_RETENTION)) < parse_duration(MIN_EVENT_RETENTION):
            raise ValueError(f"must be at least {MIN_EVENT_RETENTION}")
        return value

    @field_validator("reconcileInterval")
    @classmethod
    def _reconcile_bounds(cls, value: str) -> str:
        if parse_duration(value, maximum=parse_duration(MAX_RECONCILE_INTERVAL)) < parse_duration(
            MIN_RECONCILE_INTERVAL
        ):
            raise ValueError(f"must be at least {MIN_RECONCILE_INTERVAL}")
        return value

    def cross_field_problems(self) -> list[tuple[str, str]]:
        """The same cross-field rules the CRD's CEL enforces, for objects stored before a rule existed."""
        problems: list[tuple[str, str]] = []
        both = sorted(set(self.accountIds).intersection(self.restrictedAccountIds))
        if both:
            problems.append(
                (
                    "spec.restrictedAccountIds",
                    f"account id(s) {', '.join(both)} are also in accountIds; remove them from one of the lists",
                )
            )
        if self.sendDueDate and not self.createStripeInvoice:
            problems.append(("spec.sendDueDate", "needs createStripeInvoice: true (a due date belongs to an invoice)"))
        if self.sendDueDate and self.collectionMethod is not CollectionMethod.SEND_INVOICE:
            problems.append(
                (
                    "spec.collectionMethod",
                    "must be SendInvoice when sendDueDate is true; Stripe accepts a due date only on invoices it "
                    "sends, not on ones it charges automatically",
                )
            )
        if self.automaticTax is AutomaticTax.ENABLED and not self.createStripeInvoice:
            problems.append(
                (
                    "spec.automaticTax",
                    "Enabled needs createStripeInvoice: true; with pending invoice items the invoice is the Stripe "
                    "Subscription's, whose own automatic_tax decides: turn it on there and set taxBehavior for the "
                    "items",
                )
            )
        if self.poNumberCustomField and not self.createStripeInvoice:
            problems.append(
                (
                    "spec.poNumberCustomField",
                    "needs createStripeInvoice: true (custom fields exist on invoices only)",
                )
            )
        return problems

    @property
    def sync_interval_seconds(self) -> float:
        return parse_duration(self.syncInterval).total_seconds()

    @property
    def event_retention(self) -> timedelta:
        return parse_duration(self.eventRetention)

    @property
    def reconcile_interval(self) -> timedelta:
        return parse_duration(self.reconcileInterval)

    @property
    def is_plan(self) -> bool:
        return self.mode is Mode.PLAN

    @property
    def tax_on(self) -> bool:
        """The invoices ask for automatic tax (spec.automaticTax: Enabled)."""
        return self.automaticTax is AutomaticTax.ENABLED

    @property
    def tax_behavior(self) -> str | None:
        """Stripe's `tax_behavior` value for lines and items, or None to send none (the account's default)."""
        if self.taxBehavior is TaxBehavior.ACCOUNT_DEFAULT:
            return None
        return "exclusive" if self.taxBehavior is TaxBehavior.EXCLUSIVE else "inclusive"

    @property
    def is_test_mode(self) -> bool:
        return self.destination is Destination.STRIPE_TEST_MODE

    @property
    def effective_requests_per_second(self) -> int:
        if self.requestsPerSecond is not None:
            return self.requestsPerSecond
        return 25 if self.is_test_mode else 100
