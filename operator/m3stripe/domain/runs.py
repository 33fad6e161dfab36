"""What a sync pass reports: m3ter's run statuses and its five kinds of integration error events."""

from __future__ import annotations

import enum
import hashlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime


class RunStatus(enum.StrEnum):
    """m3ter's integration run statuses, as far as they apply to a pass."""

    STARTED = "STARTED"
    COMPLETE = "COMPLETE"
    ERROR = "ERROR"
    AWAITING_RETRY = "AWAITING_RETRY"
    RATE_LIMIT_RETRY = "RATE_LIMIT_RETRY"
    AUTH_FAILED = "AUTH_FAILED"
    INVOICE_ALREADY_PAID = "INVOICE_ALREADY_PAID"
    DISABLED = "DISABLED"
    TIMEOUT_LIMIT_EXCEEDED = "TIMEOUT_LIMIT_EXCEEDED"


class EventKind(enum.StrEnum):
    """m3ter's five integration error events."""

    VALIDATION = "integration.validation.error"
    MISSING_ACCOUNT_MAPPING = "integration.missingaccountmapping.error"
    AUTHENTICATION = "integration.authentication.error"
    PERFORM = "integration.perform.error"
    DISABLED = "integration.disabled.error"


class Outcome(enum.StrEnum):
    SENT = "sent"  # Stripe now holds this Bill version (created or updated)
    UNCHANGED = "unchanged"  # Stripe already held exactly this Bill version
    SKIPPED = "skipped"  # not selected by this integration
    FAILED = "failed"  # an error event; retried on a later pass where that can help


@dataclass(frozen=True)
class ErrorEvent:
    """One of m3ter's integration error events (validation, missing mapping, authentication, perform)."""

    kind: EventKind
    message: str
    run_id: str
    time: datetime
    bill_id: str | None = None
    account_id: str | None = None
    status: RunStatus = RunStatus.ERROR

    @property
    def id(self) -> str:
        """Stable for the same problem of the same Bill, so a repeat does not open a second event."""
        basis = f"{self.kind}|{self.bill_id}|{self.account_id}|{self.message}"
        return "evt-" + hashlib.sha256(basis.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class BillResult:
    bill_id: str
    version: int
    outcome: Outcome
    stripe_id: str | None = None
    detail: str = ""
    event: ErrorEvent | None = None
    retry: bool = False
    # Overlap (domain.overlap): the older integration this Bill was left to, or the younger ones that also select
    # a Bill this integration wrote; "namespace/name" each.
    left_to: str | None = None
    shared_with: tuple[str, ...] = ()
    # The tax Stripe computed on the Bill's invoice (minor units of `currency`), when automatic tax was on, and
    # whether none was due (Stripe Tax does not collect where the customer is).
    currency: str | None = None
    tax: int | None = None
    untaxed: bool = False


@dataclass
class RunReport:
    """One integration run, as m3ter reports runs: its status, counts, events and each Bill's result."""

    run_id: str
    started: datetime
    completed: datetime | None = None
    status: RunStatus = RunStatus.STARTED
    sent: int = 0
    unchanged: int = 0
    skipped: int = 0
    failed: int = 0
    stripe_ids: list[tuple[str, int, str]] = field(default_factory=list)  # (bill id, version, Stripe id)
    events: list[ErrorEvent] = field(default_factory=list)
    retry_bill_ids: list[str] = field(default_factory=list)
    watermark: datetime | None = None
    stopped_early: str | None = None
    # The reconciliation sweep: when the last completed one started (carried over unless this pass completed
    # one), and, if this pass swept, how many Bills it listed and how many of those it re-read.
    last_sweep: datetime | None = None
    swept_listed: int | None = None
    swept_reread: int = 0
    # Bills another integration on the same Stripe account also selects: left to the older one ("ns/name": count),
    # or written here while a younger one also selects them.
    left_to: Counter[str] = field(default_factory=Counter)
    shared_with: Counter[str] = field(default_factory=Counter)
    # The tax Stripe computed on the invoices this run wrote, per currency (minor units), and per Bill: an invoice
    # found as it should be is not counted again (a re-read, a progress reset), a regenerated Bill's is.
    taxes: Counter[str] = field(default_factory=Counter)
    untaxed: int = 0  # taxed invoices on which Stripe Tax found no tax due (not collecting there)
    bill_taxes: list[tuple[str, int, str, int]] = field(default_factory=list)  # (bill id, version, currency, tax)

    def add(self, result: BillResult, *, keep_ids: int) -> None:
        if result.outcome is Outcome.SENT:
            self.sent += 1
        elif result.outcome is Outcome.UNCHANGED:
            self.unchanged += 1
        elif result.outcome is Outcome.SKIPPED:
            self.skipped += 1
        else:
            self.failed += 1
        if result.stripe_id and result.outcome is Outcome.SENT and len(self.stripe_ids) < keep_ids:
            self.stripe_ids.append((result.bill_id, result.version, result.stripe_id))
        if result.event is not None:
            self.events.append(result.event)
        if result.retry:
            self.retry_bill_ids.append(result.bill_id)
        if result.tax is not None and result.currency and result.outcome is Outcome.SENT:
            self.taxes[result.currency] += result.tax
            self.untaxed += result.untaxed
            if len(self.bill_taxes) < keep_ids:
                self.bill_taxes.append((result.bill_id, result.version, result.currency, result.tax))
        if result.left_to:
            self.left_to[result.left_to] += 1
        for peer in result.shared_with:
            self.shared_with[peer] += 1

    def summary(self) -> str:
        text = f"{self.sent} sent, {self.unchanged} already in Stripe, {self.skipped} skipped, {self.failed} failed"
        if self.left_to:
            text += "; left to older integrations that also select them: " + ", ".join(
                f"{count} to {peer}" for peer, count in sorted(self.left_to.items())
            )
        if self.untaxed:
            text += f"; no tax due on {self.untaxed} invoice(s): Stripe Tax does not collect where the customer is"
        if self.swept_listed is not None:
            text += f"; reconciliation sweep: {self.swept_listed} listed, {self.swept_reread} re-read"
        if self.stopped_early:
            text += f"; stopped early: {self.stopped_early}"
        return text


def run_status(report: RunReport, stopped: RunStatus | None) -> RunStatus:
    """The run's m3ter status: the one that stopped it, else the gravest among its events (COMPLETE without any)."""
    if stopped is not None:
        return stopped
    if not report.events:
        return RunStatus.COMPLETE
    statuses = {e.status for e in report.events}
    for status in (
        RunStatus.AUTH_FAILED,
        RunStatus.INVOICE_ALREADY_PAID,
        RunStatus.RATE_LIMIT_RETRY,
        RunStatus.AWAITING_RETRY,
    ):
        if status in statuses:
            return status
    return RunStatus.ERROR


@dataclass(frozen=True)
class SyncState:
    """What survives between passes (persisted in the integration's status)."""

    watermark: datetime | None = None
    retry_bill_ids: tuple[str, ...] = ()
    last_sweep: datetime | None = None  # start of the last completed reconciliation sweep


@dataclass
class ErrorBudget:
    """m3ter's rule: this many successive error events disable the integration; any success resets it."""

    threshold: int
    consecutive: int = 0

    def error(self) -> None:
        self.consecutive += 1

    def success(self) -> None:
        self.consecutive = 0

    @property
    def exhausted(self) -> bool:
        return self.consecutive >= self.threshold
