"""Drive sync passes for one integration and turn their reports into status, events, metrics and email."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from m3stripe.adapters.m3ter_source import M3terSource
from m3stripe.adapters.mailer import MailError
from m3stripe.adapters.stripe_ledger import StripeLedger
from m3stripe.api import names
from m3stripe.api.conditions import parse_rfc3339, rfc3339
from m3stripe.api.gestures import ReplayRequest, echo, replay_request, unhandled
from m3stripe.api.spec import StripeIntegrationSpec
from m3stripe.api.status import DisablementNotification, StripeIntegrationStatus, SyncProgress
from m3stripe.domain.overlap import Overlap
from m3stripe.domain.ports import BillSource, BillSourceError, FenceLost
from m3stripe.domain.progress import (
    checkpointed,
    ended,
    progress_for,
    recorded_owners,
    scope_id,
    sync_state,
    with_checkpoint,
)
from m3stripe.domain.runs import ErrorBudget, ErrorEvent, EventKind, RunReport, RunStatus, SyncState
from m3stripe.domain.spec_validation import ParsedSpec
from m3stripe.domain.sync_engine import SyncEngine, build_engine
from m3stripe.kube.account_selection import count_due, count_selection, selection_observation
from m3stripe.kube.integration import Integration, PassInputs
from m3stripe.kube.overlap_status import fold_overlaps, overlap_event
from m3stripe.kube.peers import find_overlap, selection_of
from m3stripe.kube.planning import plan_pass, plan_seconds_until_due
from m3stripe.kube.status_builder import disabled_event, fold_report, internal_error_message, merge_events

EVENT_REASONS = {
    EventKind.VALIDATION: "ValidationError",
    EventKind.MISSING_ACCOUNT_MAPPING: "MissingAccountMapping",
    EventKind.AUTHENTICATION: "AuthenticationError",
    EventKind.PERFORM: "PerformError",
    EventKind.DISABLED: "IntegrationDisabled",
}
MAX_K8S_EVENTS_PER_RUN = 10
# What a Send pass folds its run into: when one cannot be read, the pass is refused (InternalError) before it
# writes anything to Stripe, rather than write and then lose what it did.
FOLDED_INTO = ("recentRuns", "openEvents", "overlaps")
# Disablement email: attempts in all; the first retry waits config.smtp.notification_retry_seconds, doubled each time.
MAIL_ATTEMPTS = 5


class SyncDriver:
    """Runs one integration's passes: builds the engine over the m3ter source and the Stripe ledger, folds each
    run into the status, emits its events and sends the disablement email. It never writes without the fence."""

    def __init__(self, integration: Integration) -> None:
        self.integration = integration
        self._mail_tasks: set[asyncio.Task[None]] = set()
        # The disablement email: the attempt armed to start once its Sending state is written (with the cause of
        # the disablement), its outcome.
        self._mail_armed: tuple[DisablementNotification, str] | None = None
        self._mail_result: tuple[list[str], int, str] | None = None
        self.wake: Callable[[], None] | None = None  # the worker's wake-up, set by the worker
        # The last pass's unexpected exception ("" after a clean pass), and the filter warnings already given.
        self.pass_error = ""
        self._filter_warned: set[str] = set()
        # The other integrations on the same Bills as the last pass found them (None before the first pass).
        self.overlap: Overlap | None = None
        self._listed: Overlap | None = None  # the peers as the last successful listing found them

    def seconds_until_due(
        self, parsed: ParsedSpec, status: StripeIntegrationStatus, annotations: Mapping[str, str]
    ) -> float:
        """0 when a pass should run now; otherwise how long until the next one is due."""
        planned = plan_seconds_until_due(parsed, status, annotations)
        if planned is not None:
            return planned
        if unhandled(annotations, status, names.ANNOTATION_REQUESTED_AT) or unhandled(
            annotations, status, names.ANNOTATION_REPLAY
        ):
            return 0.0
        last = parse_rfc3339(status.lastSync.completionTime if status.lastSync is not None else None)
        if last is None:
            return 0.0  # never ran, or the status was lost: do not wait a whole interval
        due = last.timestamp() + parsed.spec.sync_interval_seconds
        return max(0.0, due - datetime.now(UTC).timestamp())

    async def run_pass(
        self, inputs: PassInputs, *, checkpoint: Callable[[StripeIntegrationStatus], Awaitable[None]] | None = None
    ) -> StripeIntegrationStatus:
        """Run one pass; return the status fields it changes. `checkpoint` writes status fields mid-pass."""
        spec = inputs.parsed.spec
        # Other integrations sending this Organization's Bills to the same Stripe account and mode: the older one
        # sends a Bill both select (domain.overlap).
        overlap = await find_overlap(
            self.integration.runtime.kube,
            me=self.integration.seniority,
            uid=self.integration.uid,
            spec=spec,
            stripe_account=inputs.stripe_account,
        )
        postponed = ""
        if not overlap.unknown:
            self._listed = overlap
        elif self._listed is not None:
            # The listing failed (the API server busy, the grant withdrawn): the peers of the last pass that listed
            # them are a better guess than none, which would make this integration write Bills an older one owns.
            overlap = dataclasses.replace(self._listed, unknown=overlap.unknown, forbidden=overlap.forbidden)
        elif not overlap.forbidden and not spec.is_plan:
            # None known: a transient failure postpones the pass. Without the grant (forbidden) it would never
            # succeed, so the pass runs blind and the Overlapping condition says so (overlap_status).
            postponed = overlap.unknown
        self.overlap = overlap
        # Progress made against another Organization or Stripe account says nothing of this one, nor progress that
        # left Bills to an integration that no longer takes them: start over. Peers that could not be listed say
        # nothing of the owners: the recorded ones stand.
        scope = scope_id(
            spec.m3ter.organizationId,
            live=not spec.is_test_mode,
            stripe_account=inputs.stripe_account,
            owners=recorded_owners(inputs.status.sync) if overlap.unknown else overlap.owners_digest(),
        )
        progress, moved, scope = progress_for(inputs.status.sync, scope)
        status = inputs.status if moved is None else inputs.status.merged(StripeIntegrationStatus(sync=progress))
        if spec.is_plan:  # a dry run: nothing written to Stripe, progress and history untouched
            planned, self.pass_error, report = await plan_pass(
                self.integration, dataclasses.replace(inputs, status=status), overlap=overlap
            )
            if report is not None:
                planned = planned.merged(self._overlaps(status, overlap, report, spec))
            return planned
        status.require(*FOLDED_INTO)
        annotations, source = inputs.annotations, inputs.source
        extra = StripeIntegrationStatus()
        if moved is not None:
            message = (
                f"{moved}: the sync progress (watermark, retries, last sweep) belonged to the old one, so this pass "
                "reads every Bill again and sends what the Stripe account now in use does not hold yet (what it holds "
                "is left as it is). Plan first (spec.mode: Plan) to see what that is"
            )
            self.integration.logger.info("%s: %s", self.integration.where, message)
            self.integration.events("Normal", "SyncProgressReset", message)
        replay: frozenset[str] = frozenset()
        if replay_token := unhandled(annotations, status, names.ANNOTATION_REPLAY):
            replay = await self._replayable(replay_request(status, replay_token), source)
            extra = extra.merged(echo(names.ANNOTATION_REPLAY, replay_token))
        if requested := unhandled(annotations, status, names.ANNOTATION_REQUESTED_AT):
            extra = extra.merged(echo(names.ANNOTATION_REQUESTED_AT, requested))
        budget = ErrorBudget(spec.autoDisableThreshold, status.consecutiveErrors)
        started = time.monotonic()
        if postponed:
            # The replay's Bills are owed to the next pass, as a failed Bill is: the gesture is not lost.
            report = self._postponed(status, postponed, replay)
            budget.error()
        else:
            report = await self._send(inputs, status, budget, replay, checkpoint)
        self.integration.runtime.metrics.observe_run(
            self.integration.namespace,
            self.integration.name,
            report,
            seconds=time.monotonic() - started,
            interval=spec.sync_interval_seconds,
        )
        retention = spec.event_retention
        fields, fresh = fold_report(
            status,
            report,
            history=spec.runHistoryLimit,
            retention=retention,
            consecutive_errors=budget.consecutive,
        )
        assert fields.sync is not None
        extra = extra.merged(fields).merged(
            StripeIntegrationStatus(sync=ended(fields.sync, scope, started_over=moved is not None))
        )
        self._announce(report, fresh)
        extra = extra.merged(self._overlaps(status, overlap, report, spec))
        if budget.exhausted and not status.disabled:
            event = disabled_event(
                report.run_id,
                spec.autoDisableThreshold,
                datetime.now(UTC),
                report.events[-1] if report.events else None,
            )
            events, _ = merge_events(extra.openEvents, [event], now=event.time, retention=retention)
            extra = extra.merged(
                StripeIntegrationStatus(openEvents=events, disabled=True, disabledMessage=event.message)
            )
            self.integration.runtime.metrics.error_event(
                self.integration.namespace, self.integration.name, str(event.kind)
            )
            self.integration.events("Warning", "AutoDisabled", event.message)
            extra = extra.merged(self._notification(report.run_id, list(spec.integrationDisabledNotificationUsers)))
        self.integration.logger.info(
            "%s: sync run %s: %s (%s)",
            self.integration.where,
            report.run_id,
            report.status,
            report.summary(),
        )
        return extra

    async def count_selection(
        self, parsed: ParsedSpec, status: StripeIntegrationStatus, source: BillSource
    ) -> StripeIntegrationStatus:
        """status.accountSelection when a count is due (a new generation, or a day after the last count), with a
        Warning event when the selection keeps no Account at all; no change otherwise, or when m3ter cannot list
        them."""
        now = datetime.now(UTC)
        if not count_due(parsed, status, now):
            return StripeIntegrationStatus()
        try:
            record = await count_selection(parsed, source, status.observedGeneration, now)
        except BillSourceError as err:
            self.integration.logger.warning(
                "%s: could not count the selected Accounts: %s", self.integration.where, err
            )
            return StripeIntegrationStatus()
        before = status.accountSelection
        new_zero = before is None or before.selected != 0 or before.observedGeneration != record.observedGeneration
        if record.selected == 0 and new_zero:
            observation = selection_observation(parsed, record)
            if observation is not None:
                self.integration.events("Warning", "NoAccountSelected", observation.message)
        return StripeIntegrationStatus(accountSelection=record)

    def _overlaps(
        self, status: StripeIntegrationStatus, overlap: Overlap, report: RunReport, spec: StripeIntegrationSpec
    ) -> StripeIntegrationStatus:
        """status.overlaps after the pass, with a Warning event for each other integration newly seen on the same
        Bills."""
        status.require("overlaps")
        records, fresh = fold_overlaps(
            status.overlaps, overlap, report, selection_of(spec), report.completed or report.started
        )
        for record in fresh:
            self.integration.events("Warning", "Overlapping", overlap_event(record))
        return StripeIntegrationStatus(overlaps=records)

    async def _send(
        self,
        inputs: PassInputs,
        status: StripeIntegrationStatus,
        budget: ErrorBudget,
        replay: frozenset[str],
        checkpoint: Callable[[StripeIntegrationStatus], Awaitable[None]] | None,
    ) -> RunReport:
        """A Send pass over the Stripe account of the credential."""
        spec, parsed, source, overlap = inputs.parsed.spec, inputs.parsed, inputs.source, self.overlap
        async with self.integration.stripe(spec, key=inputs.stripe_key, account=inputs.stripe_account) as gateway:
            engine = build_engine(
                spec,
                account_filter=parsed.account_filter,
                integration_id=self.integration.uid,
                source=source,
                stripe=StripeLedger(gateway),
                budget=budget,
                concurrency=self.integration.runtime.config.sync.concurrency_for(spec.effective_requests_per_second),
                fence=self.integration.runtime.leader.fence,
                overlap=overlap,
            )
            self.pass_error = ""
            try:
                status.require("sync")  # unreadable progress: the pass fails, visibly, rather than start from nothing
                report = await engine.run_pass(
                    sync_state(status.sync),
                    replay=replay,
                    completed=checkpointed(status.sync),
                    checkpoint=None if checkpoint is None else _saver(status.sync, checkpoint),
                )
            except (asyncio.CancelledError, FenceLost):
                raise
            except Exception as err:
                # Recorded as a run that ended in ERROR, keeping the last progress: nothing is skipped.
                report = self._crashed(status, err)
            self._warn_filter(engine)
        return report

    def _postponed(self, status: StripeIntegrationStatus, why: str, replay: frozenset[str]) -> RunReport:
        """A pass not run because the other integrations could not be listed and none are known from an earlier
        pass: run blind, it would write Bills an older integration owns. Progress is kept; retried next pass."""
        report = self._unrun(status, RunStatus.AWAITING_RETRY)
        message = (
            f"the pass was postponed: {why}. Without them this integration cannot tell which Bills an older "
            "integration on the same Stripe account sends; retried on the next pass"
        )
        report.events.append(
            ErrorEvent(
                kind=EventKind.PERFORM,
                message=message,
                run_id=report.run_id,
                time=report.started,
                status=RunStatus.AWAITING_RETRY,
            )
        )
        report.retry_bill_ids = list(dict.fromkeys([*report.retry_bill_ids, *sorted(replay)]))
        report.stopped_early = message
        return report

    def _unrun(self, status: StripeIntegrationStatus, outcome: RunStatus) -> RunReport:
        """A run that read no Bill: it keeps the last progress, so nothing is skipped."""
        try:
            status.require("sync")
            state = sync_state(status.sync)
        except Exception:  # the stored progress itself is unreadable: start over (Stripe is listed first)
            state = SyncState()
        now = datetime.now(UTC)
        report = RunReport(
            run_id=f"run-{now.strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:6]}",
            started=now,
            completed=now,
            status=outcome,
        )
        report.watermark = state.watermark
        report.retry_bill_ids = list(state.retry_bill_ids)
        report.last_sweep = state.last_sweep
        return report

    def _crashed(self, status: StripeIntegrationStatus, err: Exception) -> RunReport:
        self.integration.logger.exception("%s: the sync pass failed unexpectedly", self.integration.where)
        m = self.integration.runtime.metrics
        m.internal_error(self.integration.namespace, self.integration.name, "pass")
        self.pass_error = internal_error_message(err, "in the sync pass")
        report = self._unrun(status, RunStatus.ERROR)
        report.stopped_early = self.pass_error
        return report

    async def _replayable(self, request: ReplayRequest, source: M3terSource) -> frozenset[str]:
        """The replay's Bills that m3ter has; every id that cannot be replayed is named in a Warning event."""
        if request.problems:
            self.integration.events("Warning", "ReplayRefused", "; ".join(request.problems)[:1024])
        found: set[str] = set(request.bills & request.from_history)  # read from m3ter when they were sent
        missing: list[str] = []
        for bill_id in sorted(request.bills - request.from_history):
            try:
                bill = await source.get_bill(bill_id)
            except BillSourceError:
                found.add(bill_id)  # m3ter could not answer now: the pass reads it again and reports it
                continue
            if bill is None:
                missing.append(bill_id)
            else:
                found.add(bill_id)
        if missing:
            self.integration.events(
                "Warning",
                "ReplayBillNotFound",
                f"{names.ANNOTATION_REPLAY}: m3ter organization {source.organization_id} has no Bill "
                f"{', '.join(missing[:20])} readable with these credentials; nothing was sent for it",
            )
        return frozenset(found)

    def _warn_filter(self, engine: SyncEngine) -> None:
        notes = engine.selector.notes
        for warning in notes.warnings() if notes is not None else ():
            if warning not in self._filter_warned:
                self._filter_warned.add(warning)
                self.integration.events("Warning", "AccountFilterWarning", f"spec.{warning}")

    def _announce(self, report: RunReport, fresh: list[Any]) -> None:
        for event in fresh[:MAX_K8S_EVENTS_PER_RUN]:
            self.integration.events("Warning", EVENT_REASONS[event.kind], f"[{event.id}] {event.message}")
        if len(fresh) > MAX_K8S_EVENTS_PER_RUN:
            self.integration.events(
                "Warning",
                "MoreErrors",
                f"{len(fresh) - MAX_K8S_EVENTS_PER_RUN} more new error events in run {report.run_id}; "
                "see status.openEvents",
            )
        if report.sent:
            self.integration.events("Normal", "BillsSent", f"run {report.run_id}: {report.summary()}")

    # ------------------------------------------------------------------ the disablement email
    # A state machine in status.notification, advanced by the worker's loop (the single status writer):
    # Pending -> (status written) Sending -> attempt -> Sent | Pending (retry after backoff) | Failed. The
    # state is persisted before each attempt, so a restarted operator never sends an email twice: an attempt
    # that was in flight when the previous process died is reported as Unknown, not repeated.

    def _notification(self, disablement_id: str, recipients: list[str]) -> StripeIntegrationStatus:
        if not recipients:
            return StripeIntegrationStatus()
        m, ns, name = self.integration.runtime.metrics, self.integration.namespace, self.integration.name
        if self.integration.runtime.mailer is None:
            self.integration.events(
                "Warning",
                "NotificationNotSent",
                "no SMTP server is configured for the operator (M3STRIPE_SMTP_HOST); nobody was emailed",
            )
            m.notified(ns, name, "failed", len(recipients))
            state: dict[str, Any] = {"state": "Failed", "message": "no SMTP server configured (M3STRIPE_SMTP_HOST)"}
        else:
            state = {"state": "Pending", "nextAttemptTime": rfc3339(datetime.now(UTC))}
            self._wake_soon(0.0)
        note = {"disablementId": disablement_id, "recipients": recipients, "attempts": 0, **state}
        return StripeIntegrationStatus(notification=DisablementNotification.model_validate(note))

    def notification_fields(self, status: StripeIntegrationStatus) -> StripeIntegrationStatus:
        """The status change that advances the disablement email; arms an attempt to start after it is written."""
        note = status.notification
        if note is None or self._mail_tasks:
            return StripeIntegrationStatus()
        if self._mail_result is not None:
            delivered, attempts, message = self._mail_result
            self._mail_result = None
            sent_to = list(dict.fromkeys([*note.sentTo, *delivered]))
            done = note.model_copy(update={"sentTo": sent_to, "attempts": attempts, "message": message})
            if set(sent_to) >= set(note.recipients):
                return _noted(done, state="Sent")
            if attempts >= MAIL_ATTEMPTS:
                self.integration.events(
                    "Warning",
                    "NotificationFailed",
                    f"disablement email not delivered after {attempts} attempts: {message}",
                )
                return _noted(done, state="Failed")
            delay = self.integration.runtime.config.smtp.notification_retry_seconds * 2 ** (attempts - 1)
            self.integration.events(
                "Warning", "NotificationFailed", f"disablement email not delivered ({message}); retrying in {delay:g}s"
            )
            self._wake_soon(delay)
            retry_at = rfc3339(datetime.now(UTC) + timedelta(seconds=delay))
            return _noted(done, state="Pending", nextAttemptTime=retry_at)
        if note.state == "Sending":
            # Persisted by a process that stopped during the attempt: it may have been delivered.
            self.integration.events(
                "Warning",
                "NotificationUncertain",
                "the operator restarted while sending the disablement email; it is not sent again, so that "
                "nobody gets it twice: check that " + ", ".join(note.recipients) + " got it",
            )
            return _noted(note, state="Unknown")
        if note.state != "Pending" or self.integration.runtime.mailer is None:
            return StripeIntegrationStatus()
        due = parse_rfc3339(note.nextAttemptTime)
        now = datetime.now(UTC)
        if due is not None and due > now:
            self._wake_soon((due - now).total_seconds())
            return StripeIntegrationStatus()
        self._mail_armed = (note, status.disabledMessage or "")
        return _noted(note, state="Sending", nextAttemptTime=None)

    def start_notification(self) -> None:
        """After `notification_fields`' Sending state is in the API: make one attempt, in the background."""
        armed, self._mail_armed = self._mail_armed, None
        mailer = self.integration.runtime.mailer
        if armed is None or mailer is None:
            return
        note, cause = armed
        # The Sending PATCH may have returned after the fence fell: then the new writer owns the email (it
        # finds Sending and reports it Unknown rather than send it twice).
        self.integration.runtime.leader.fence()
        m, ns, name = self.integration.runtime.metrics, self.integration.namespace, self.integration.name
        # Only those not yet emailed, one message each: a retry never reaches someone twice.
        recipients = [r for r in note.recipients if r not in set(note.sentTo)]
        attempts = note.attempts + 1
        subject = f"StripeIntegration {ns}/{name} was disabled"
        body = (
            f"The StripeIntegration {ns}/{name} disabled itself (run {note.disablementId}).\n\n"
            f"{cause}\n\n"
            f"Inspect it with: kubectl describe stripeintegration -n {ns} {name}\n"
            f"Re-enable it after fixing the cause: kubectl annotate stripeintegration -n {ns} {name} "
            f'm3stripe.dev/reenable="$(date +%s)" --overwrite\n'
        )

        async def send() -> None:
            delivered: list[str] = []
            errors: list[str] = []
            for recipient in recipients:
                if not self.integration.runtime.leader.is_leader():
                    # Email is not fenced at the SMTP server: the check right before each message is all there
                    # is. What was delivered is not recorded (we may no longer write the status); the new
                    # writer finds Sending and reports the email Unknown, never sends it twice.
                    self.integration.logger.warning("%s/%s: Lease lost, disablement email not continued", ns, name)
                    return
                try:
                    await mailer.send([recipient], subject, body)
                except MailError as err:
                    errors.append(str(err)[:300])
                except Exception as err:  # a mail bug must never take the worker down
                    errors.append(f"{recipient}: {type(err).__name__}")
                else:
                    delivered.append(recipient)
            m.notified(ns, name, "sent", len(delivered))
            if errors:
                m.notified(ns, name, "failed", len(errors))
            if delivered:
                self.integration.events(
                    "Normal", "NotificationSent", f"emailed {len(delivered)} user(s) about the disablement"
                )
            message = "; ".join(errors)[:1024] if errors else f"sent to {len(delivered)} recipient(s)"
            self._mail_result = (delivered, attempts, message)
            self._wake_soon(0.0)

        task = asyncio.create_task(send())
        self._mail_tasks.add(task)
        task.add_done_callback(self._mail_tasks.discard)

    def _wake_soon(self, delay: float) -> None:
        if self.wake is None:
            return
        loop = asyncio.get_running_loop()
        if delay <= 0:
            loop.call_soon(self.wake)
        else:
            loop.call_later(delay, self.wake)


def _noted(note: DisablementNotification, **update: Any) -> StripeIntegrationStatus:
    """The status change that records the email's new state (the notification is written whole)."""
    return StripeIntegrationStatus(notification=note.model_copy(update=update))


def _saver(
    progress: SyncProgress | None, write: Callable[[StripeIntegrationStatus], Awaitable[None]]
) -> Callable[[list[str]], Awaitable[None]]:
    async def save(done: list[str]) -> None:
        await write(StripeIntegrationStatus(sync=with_checkpoint(progress, done)))

    return save
