"""The StripeIntegration status: the single source of truth for the CRD's status schema.

Conditions follow metav1.Condition; `Ready` summarises, `Stalled` appears only while true (kstatus's
abnormal-true polarity), and `observedGeneration` sits at the top level where kstatus reads it.
Counters here are best-effort, as the Kubernetes API conventions say of status: Stripe itself is the
ledger of what was sent.
"""

from __future__ import annotations

import enum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

REASON_PATTERN = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
CONDITION_TYPE_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
)


class ConditionType(enum.StrEnum):
    READY = "Ready"
    CONNECTED = "Connected"
    SOURCE_CONNECTED = "SourceConnected"
    SYNCED = "Synced"
    STALLED = "Stalled"
    PLANNED = "Planned"
    # Another integration selects some of the same Bills for the same Stripe account and mode (abnormal-true).
    OVERLAPPING = "Overlapping"
    # How many of the Organization's Accounts the account selection keeps; False when none (it sends nothing).
    ACCOUNTS_SELECTED = "AccountsSelected"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Condition(_Model):
    """One observation of the integration's state (metav1.Condition)."""

    type: str = Field(max_length=316, pattern=CONDITION_TYPE_PATTERN, description="Type of the condition, CamelCase.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    observedGeneration: int | None = Field(
        default=None, ge=0, description="The metadata.generation this condition was computed from."
    )
    lastTransitionTime: str = Field(
        description="When status last changed (RFC 3339).", json_schema_extra={"format": "date-time"}
    )
    reason: str = Field(
        min_length=1,
        max_length=1024,
        pattern=REASON_PATTERN,
        description="Machine-readable CamelCase reason for the condition's last transition.",
    )
    message: str = Field(max_length=32768, description="Human-readable details and what to do about them.")


class LastSync(_Model):
    """Summary of the last sync run; the full history is kept elsewhere, bounded."""

    runId: str | None = Field(default=None, description="Identifier of the run.")
    status: str | None = Field(
        default=None,
        description="m3ter run status of the run: COMPLETE, ERROR, AWAITING_RETRY, AUTH_FAILED, ...",
    )
    startTime: str | None = Field(default=None, description="When the run started (RFC 3339).")
    completionTime: str | None = Field(default=None, description="When the run ended (RFC 3339).")
    billsSent: int = Field(default=0, ge=0, description="Bills sent to Stripe in this run.")
    billsUnchanged: int = Field(default=0, ge=0, description="Bills Stripe already held exactly.")
    billsSkipped: int = Field(default=0, ge=0, description="Bills read but not selected by this integration.")
    billsFailed: int = Field(default=0, ge=0, description="Bills that produced an error event in this run.")
    message: str | None = Field(default=None, max_length=32768, description="One-line summary of the run.")


class StripeObjectRef(_Model):
    """A Bill that reached Stripe in a run, and the Stripe object that now holds it."""

    billId: str = Field(description="m3ter Bill id.")
    billVersion: int = Field(ge=0, description="m3ter Bill version that was sent.")
    stripeId: str = Field(description="Stripe invoice (in_...) or invoice item (ii_...) id.")
    tax: str | None = Field(
        default=None, description="Tax Stripe computed on the invoice (automatic tax), e.g. '2.47 GBP'."
    )


class TaxTotal(_Model):
    """Tax Stripe computed on the invoices of a run, in one currency."""

    currency: str = Field(description="Currency, lower case as Stripe writes it.")
    amount: str = Field(description="Tax in the currency's units, e.g. '12.34'.")


class RunRecord(LastSync):
    """One sync run, kept in a bounded list (most recent first)."""

    stripeObjects: list[StripeObjectRef] = Field(
        default_factory=list,
        max_length=50,
        description="Bills sent in this run and their Stripe objects (first 50).",
    )
    taxes: list[TaxTotal] = Field(
        default_factory=list,
        max_length=50,
        description="Tax Stripe computed (automatic tax) on the invoices this run wrote, per currency.",
    )


class IntegrationEvent(_Model):
    """An error event (one of m3ter's five kinds) that a person has not marked as actioned yet."""

    id: str = Field(description="Stable id; put it in the m3stripe.dev/resolve annotation to mark it actioned.")
    kind: str = Field(
        description="integration.validation.error, .missingaccountmapping.error, .authentication.error, "
        ".perform.error or .disabled.error."
    )
    message: str = Field(max_length=4096, description="What went wrong and what to do about it.")
    runId: str | None = Field(default=None, description="The run that raised it last.")
    runStatus: str | None = Field(default=None, description="m3ter run status the error maps to.")
    billId: str | None = Field(default=None, description="The Bill concerned, if any.")
    accountId: str | None = Field(default=None, description="The m3ter Account concerned, if any.")
    firstSeen: str = Field(description="When it was first raised (RFC 3339).")
    lastSeen: str = Field(description="When it was last raised (RFC 3339).")
    count: int = Field(default=1, ge=1, description="How many times it was raised while open.")


class SyncProgress(_Model):
    """Where the next pass starts: persisted so a restart neither skips nor repeats work."""

    watermark: str | None = Field(
        default=None,
        description="Start of the last complete pass; Bills modified since are read next (RFC 3339).",
    )
    retryBillIds: list[str] = Field(
        default_factory=list, max_length=1000, description="Bills owed a retry on the next pass."
    )
    checkpoint: list[str] = Field(
        default_factory=list,
        max_length=2000,
        description="Bills (<id>@<version>) that the pass in progress completed: a restarted operator skips them.",
    )
    checkpointWatermark: str | None = Field(
        default=None, description="The watermark the checkpoint belongs to; ignored once the watermark moves."
    )
    lastSweep: str | None = Field(
        default=None,
        description=(
            "Start of the last completed reconciliation sweep (RFC 3339); the next is due spec.reconcileInterval later."
        ),
    )
    ledger: str | None = Field(
        default=None,
        max_length=64,
        description=(
            "Which m3ter Organization and Stripe account and mode this progress was made against, and which older "
            "integrations it left shared Bills to (opaque digests). When the spec or the key points elsewhere, or "
            "one of those integrations goes away or changes its selection, the next pass starts over: it reads "
            "every Bill and sends what the Stripe account lacks."
        ),
    )


class AccountSelection(_Model):
    """The account selection (accountIds, restrictedAccountIds, accountFilter) counted over every Account of the
    m3ter Organization: once per spec generation and then daily (condition AccountsSelected)."""

    observedGeneration: int | None = Field(default=None, ge=0, description="The spec generation counted.")
    time: str = Field(description="When the Accounts were counted (RFC 3339).")
    accounts: int = Field(ge=0, description="Accounts of the Organization.")
    selected: int = Field(ge=0, description="Accounts the selection keeps: none means no Bill is ever sent.")


class OverlapRecord(_Model):
    """Another StripeIntegration that selects some of the same Bills for the same m3ter Organization and Stripe
    account and mode. The older of the two sends the Bills both select (if it sends Bills at all); the other leaves
    them to it."""

    integration: str = Field(description="The other integration, namespace/name.")
    uid: str = Field(description="Its metadata.uid.")
    sends: bool = Field(
        description="True: it is the older one and sends the Bills both select (this one leaves them to it); "
        "false: this one sends them (it is younger, or it sends nothing now: suspended, disabled, in Plan mode or "
        "not connected)."
    )
    bills: int = Field(default=0, ge=0, description="Bills both selected in the last pass that met any.")
    notes: str | None = Field(
        default=None, max_length=1024, description="Its state: suspended, disabled, in Plan mode, account not known."
    )
    selections: str = Field(
        description="Digest of both integrations' selections; the record starts over when either changes."
    )
    lastSeen: str = Field(description="When a pass last met a Bill both select (RFC 3339).")


class DisablementNotification(_Model):
    """The disablement email, persisted before and after each attempt: a restart neither skips nor repeats it."""

    disablementId: str = Field(description="The run that disabled the integration (one email per disablement).")
    recipients: list[str] = Field(default_factory=list, max_length=100, description="Who is emailed.")
    sentTo: list[str] = Field(
        default_factory=list, max_length=100, description="Recipients the mail server accepted it for (never resent)."
    )
    state: Literal["Pending", "Sending", "Sent", "Failed", "Unknown"] = Field(
        description=(
            "Pending (an attempt is due), Sending (an attempt is in flight), Sent, Failed (after every retry), "
            "Unknown (the operator stopped during an attempt; not resent, so that nobody gets it twice)."
        )
    )
    attempts: int = Field(default=0, ge=0, description="Attempts made so far.")
    nextAttemptTime: str | None = Field(default=None, description="When a Pending email is tried next (RFC 3339).")
    message: str | None = Field(default=None, max_length=1024, description="The last attempt's outcome.")


MAX_PLAN_BILLS = 50


class PlannedBillRecord(_Model):
    """What a Send pass would do with one Bill."""

    billId: str = Field(description="m3ter Bill id.")
    billVersion: int = Field(ge=0, description="m3ter Bill version planned.")
    accountId: str | None = Field(default=None, description="m3ter Account of the Bill.")
    action: str = Field(
        description="CreateInvoice, UpdateDraft, AddItems, ReplaceItems, Nothing or Blocked.",
    )
    reason: str = Field(default="", max_length=1024, description="Why (for Nothing and Blocked: what to do).")
    customer: str | None = Field(default=None, description="The Stripe Customer the Bill goes to.")
    stripeId: str | None = Field(default=None, description="The Stripe object that already holds the Bill, if any.")
    lines: int = Field(default=0, ge=0, description="Lines (invoice lines or invoice items) Stripe would hold.")
    currency: str | None = Field(default=None, description="ISO currency code, lower case as Stripe writes it.")
    total: str | None = Field(default=None, description="The total Stripe would hold, in the currency's units.")


class PlanTotal(_Model):
    """The Bills a Send pass would write in one currency."""

    currency: str = Field(description="ISO currency code, lower case.")
    bills: int = Field(ge=0, description="Bills that would be written (created or changed) in this currency.")
    amount: str = Field(description="Their total, in the currency's units (a decimal string).")


class PlanSummary(_Model):
    """The last dry run (spec.mode: Plan): what a Send pass would do, nothing written to Stripe."""

    runId: str = Field(description="Identifier of the plan pass.")
    observedGeneration: int | None = Field(default=None, ge=0, description="The spec generation planned.")
    time: str = Field(description="When the plan was computed (RFC 3339).")
    bills: int = Field(default=0, ge=0, description="Bills looked at.")
    createInvoice: int = Field(default=0, ge=0, description="Bills that would get a new draft invoice.")
    updateDraft: int = Field(default=0, ge=0, description="Bills whose draft invoice would be changed.")
    addItems: int = Field(default=0, ge=0, description="Bills whose pending invoice items would be added or replaced.")
    nothing: int = Field(default=0, ge=0, description="Bills Stripe already holds exactly, or not selected.")
    blocked: int = Field(default=0, ge=0, description="Bills that would fail (an error event in Send mode).")
    totals: list[PlanTotal] = Field(
        default_factory=list, max_length=50, description="What would be written, per currency."
    )
    items: list[PlannedBillRecord] = Field(
        default_factory=list,
        max_length=MAX_PLAN_BILLS,
        description=(
            f"The first {MAX_PLAN_BILLS} Bills: writes first, then blocked, then the rest; the counts cover all Bills."
        ),
    )
    truncated: int = Field(default=0, ge=0, description="Bills of the plan not listed in items.")
    tax: str | None = Field(
        default=None,
        max_length=1024,
        description="The tax settings planned with; a plan shows amounts before tax (Stripe computes tax when it writes).",
    )
    message: str | None = Field(default=None, max_length=4096, description="One-line summary of the plan.")


class StripeIntegrationStatus(_Model):
    """Observed state of the integration, written only by the operator."""

    observedGeneration: int | None = Field(
        default=None, ge=0, description="The metadata.generation the operator last acted on (for kstatus)."
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Ready (summary), Connected, SourceConnected, Synced, and Stalled while the spec is unusable.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    integrationId: str | None = Field(
        default=None,
        description="ID of the integration configuration; stamped into the metadata of every Stripe object.",
    )
    connected: bool = Field(default=False, description="The Stripe credential is present, valid and of the right mode.")
    stripeAccountId: str | None = Field(default=None, description="The Stripe account the credential belongs to.")
    disabled: bool = Field(
        default=False,
        description="Disabled automatically after too many successive errors; see the Ready message.",
    )
    disabledMessage: str | None = Field(
        default=None,
        max_length=4096,
        description="Why the integration disabled itself, while it is disabled.",
    )
    consecutiveErrors: int = Field(default=0, ge=0, description="Successive error events since the last success.")
    lastSync: LastSync | None = Field(default=None, description="Summary of the last sync run.")
    lastSuccessfulSyncTime: str | None = Field(
        default=None, description="When a sync run last completed without errors (RFC 3339)."
    )
    recentRuns: list[RunRecord] = Field(
        default_factory=list,
        max_length=100,
        description="The last runs, most recent first (spec.runHistoryLimit).",
    )
    openEvents: list[IntegrationEvent] = Field(
        default_factory=list,
        max_length=100,
        description="Error events not yet marked actioned, newest first.",
    )
    sync: SyncProgress | None = Field(default=None, description="Sync progress carried between passes.")
    accountSelection: AccountSelection | None = Field(
        default=None, description="How many of the Organization's Accounts the account selection keeps."
    )
    overlaps: list[OverlapRecord] = Field(
        default_factory=list,
        max_length=50,
        description=(
            "Other integrations selecting some of the same Bills for the same Stripe account and mode (condition "
            "Overlapping). The older integration sends the Bills both select; the younger one leaves them to it."
        ),
    )
    notification: DisablementNotification | None = Field(
        default=None, description="The email to integrationDisabledNotificationUsers about the last disablement."
    )
    plan: PlanSummary | None = Field(
        default=None, description="The last dry run (spec.mode: Plan); `m3stripe plan NAME` prints it as a table."
    )
    lastHandledRequestedAt: str | None = Field(
        default=None,
        description="Token of the last on-demand sync request handled (the requested-at annotation).",
    )
    lastHandledReenable: str | None = Field(
        default=None, description="Token of the last re-enable request handled (the reenable annotation)."
    )
    lastHandledReplay: str | None = Field(
        default=None, description="Token of the last replay request handled (the replay annotation)."
    )
    lastHandledResolve: str | None = Field(
        default=None, description="Value of the last resolve request handled (the resolve annotation)."
    )
