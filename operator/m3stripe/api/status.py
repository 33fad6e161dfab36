"""The StripeIntegration status: the single source of truth for the CRD's status schema, and what the operator
reads and writes.

Conditions follow metav1.Condition; `Ready` summarises, `Stalled` appears only while true (kstatus's
abnormal-true polarity), and `observedGeneration` sits at the top level where kstatus reads it.
Counters here are best-effort, as the Kubernetes API conventions say of status: Stripe itself is the
ledger of what was sent.

The operator holds the status as a `StripeIntegrationStatus`: `read_status` parses what the API server holds
(tolerantly: see there), `wire` is the JSON the operator writes. A model carries the fields that were set on it
and no other (`model_fields_set`), and `wire` writes exactly those: a field set to None is an explicit null, which a
JSON merge patch needs to remove a key (`sync.checkpoint`, a progress that starts over), and a field never set is
left out. So the operator builds a change as a status with only the changed fields set, and `merged` applies it.
"""

from __future__ import annotations

import copy
import enum
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

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


def _list_schema_only(schema: dict[str, Any]) -> None:
    """The schema of an optional list as the list's (its null is a merge patch's, never a stored value)."""
    variants = schema.pop("anyOf")
    schema.update(next(v for v in variants if v.get("type") != "null"))


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
    # None only in what the operator writes: the explicit null that removes a spent checkpoint (a merge patch);
    # the API server never holds one, so the schema is the list's alone.
    checkpoint: list[str] | None = Field(
        default_factory=list,
        json_schema_extra=_list_schema_only,
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
    scope: str | None = Field(
        default=None,
        max_length=64,
        description=(
            "Which m3ter Organization and Stripe account and mode this progress was made against, and which older "
            "integrations it left shared Bills to (opaque digests). When the spec or the key points elsewhere, or "
            "one of those integrations goes away, stops sending or changes its selection, the next pass starts over: "
            "it reads every Bill and sends what the Stripe account lacks."
        ),
    )
    ledger: str | None = Field(
        default=None,
        max_length=64,
        description="The former name of scope, read when scope is absent (written by operators before it); removed "
        "by the next pass.",
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

    # The fields `read_status` set aside (name -> why), so that code that needs one can refuse to go on.
    _unreadable: dict[str, str] = PrivateAttr(default_factory=dict)

    @property
    def unreadable(self) -> Mapping[str, str]:
        """The fields `read_status` could not read, and why; empty for a status the operator built."""
        return self._unreadable

    def require(self, *fields: str) -> None:
        """For code that cannot do without `fields`: UnreadableStatus when one of them could not be read."""
        problems = [self._unreadable[name] for name in fields if name in self._unreadable]
        if problems:
            raise UnreadableStatus(
                "; ".join(problems) + " (a status restored from elsewhere, or written under another schema?)"
            )

    def merged(self, changes: StripeIntegrationStatus) -> StripeIntegrationStatus:
        """This status with every field that `changes` sets replaced; the fields `changes` leaves unset are kept."""
        update = {name: getattr(changes, name) for name in changes.model_fields_set}
        out = self.model_copy(update=update)
        out._unreadable = {name: why for name, why in self._unreadable.items() if name not in update}
        return out


class UnreadableStatus(ValueError):
    """A part of the status that the operator needs cannot be read; where it is needed, that is an InternalError."""


def wire(model: BaseModel) -> dict[str, Any]:
    """A status (or a part of it) as the JSON the operator writes: the fields set on it, explicit nulls included."""
    return model.model_dump(mode="json", by_alias=True, exclude_unset=True)


def read_status(raw: object) -> StripeIntegrationStatus:
    """The status as the API server holds it, read as far as it can be: a status restored from a backup, or written
    by another version of the operator, may be partly unreadable, and the operator keeps working around that part.

    - A field this version does not know (a newer operator's) is ignored: the structural schema prunes unknown
      fields on write, so none should appear; if one does, it is not read and, since the operator writes only the
      fields it sets, never removed either.
    - A condition that cannot be read is left out (the next observation of its type writes it anew), and so is a
      `sync.lastSweep` that cannot be read: as if no sweep had completed, so the next pass sweeps every Bill, which
      costs reads and can skip nothing, where refusing the pass would stop the integration.
    - Any other field that cannot be read is set aside: the status reads as if it were absent, `unreadable` names
      it, and code that cannot do without it calls `require`, which raises UnreadableStatus (the reconcile or pass
      that needs it then reports InternalError). It stays in the API server as it is until the operator sets it.

    Raises UnreadableStatus when the status is not an object at all.
    """
    if raw is None:
        return StripeIntegrationStatus()
    if not isinstance(raw, Mapping):
        raise UnreadableStatus(f"status is a {type(raw).__name__}, not an object")
    data: dict[str, Any] = {key: value for key, value in raw.items() if isinstance(key, str)}
    try:
        return StripeIntegrationStatus.model_validate(data)  # what the operator wrote: the usual case
    except ValidationError:
        data = copy.deepcopy(data)  # parts of it are taken out below
    unreadable: dict[str, str] = {}
    while True:
        try:
            status = StripeIntegrationStatus.model_validate(data)
        except ValidationError as err:
            if not _set_aside(data, err, unreadable):
                raise UnreadableStatus(f"status cannot be read: {err}") from None
            continue
        status._unreadable = unreadable
        return status


def _set_aside(data: dict[str, Any], err: ValidationError, unreadable: dict[str, str]) -> bool:
    """Remove from `data` what `err` found unreadable (see read_status); False when nothing could be removed."""
    before = copy.deepcopy(data)
    dropped_conditions: set[int] = set()
    for error in err.errors():
        loc = error["loc"]
        if not loc or loc[0] not in data:
            continue
        top = str(loc[0])
        if error["type"] == "extra_forbidden":
            _delete(data, loc)
        elif top == "conditions" and len(loc) > 1 and isinstance(loc[1], int):
            dropped_conditions.add(loc[1])
        elif tuple(loc[:2]) == ("sync", "lastSweep"):
            _delete(data, loc[:2])
        else:
            unreadable[top] = f"status.{'.'.join(str(part) for part in loc)}: {error['msg']}"
            del data[top]
    if dropped_conditions and isinstance(data.get("conditions"), list):
        data["conditions"] = [c for i, c in enumerate(data["conditions"]) if i not in dropped_conditions]
    return data != before


def _delete(data: Any, loc: tuple[int | str, ...]) -> None:
    """Remove the key at `loc` (a validation error's location), if it is there."""
    for part in loc[:-1]:
        found = _MISSING
        if isinstance(data, dict):
            found = data.get(part, _MISSING)
        elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            found = data[part]
        if found is _MISSING:
            return
        data = found
    if isinstance(data, dict):
        data.pop(loc[-1], None)


_MISSING = object()
