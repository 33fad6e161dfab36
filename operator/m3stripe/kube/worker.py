"""One worker per StripeIntegration: the single writer of its status and the driver of its sync loop.

Kopf runs `IntegrationWorker.run` as a daemon, so the worker sees live updates of the object and is
stopped when the object goes away or the operator exits. Everything that writes the integration's
status goes through this one loop, so concurrent writers never race on `status.conditions`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Mapping
from typing import Any

from m3stripe.adapters.kube_api import KubeApiError
from m3stripe.api import names
from m3stripe.api.conditions import Observation, condition, conditions_after
from m3stripe.api.gestures import (
    echo,
    gesture_annotations,
    parse_targets,
    resolve_events,
    unhandled,
    unknown_event_ids,
)
from m3stripe.api.spec import StripeIntegrationSpec
from m3stripe.api.status import Condition, ConditionType, LastSync, StripeIntegrationStatus, read_status
from m3stripe.domain.credential_check import CredentialCheck
from m3stripe.domain.ports import FenceLost
from m3stripe.domain.spec_validation import ParsedSpec, parse_spec
from m3stripe.kube.account_selection import selection_observation
from m3stripe.kube.credentials import CachedCheck, check_stripe_credential
from m3stripe.kube.integration import Integration, PassInputs
from m3stripe.kube.overlap_status import overlap_observation
from m3stripe.kube.planning import planned_conditions
from m3stripe.kube.source import SourceHandle
from m3stripe.kube.status_builder import (
    Assessment,
    build_status,
    internal_error_message,
    internal_error_status,
    ready_of,
    status_patch,
)
from m3stripe.kube.sync_driver import SyncDriver

# What every reconcile reads and cannot do without: the conditions it merges into, whether the integration is
# disabled, its error count, and the state of the disablement email. When one cannot be read (api.status.read_status)
# the reconcile is an InternalError, rather than run passes of a disabled integration or count errors from zero.
RECONCILE_NEEDS = ("conditions", "disabled", "consecutiveErrors", "notification")


class IntegrationWorker:
    """The single writer of one integration's status: it assesses credentials and spec, handles people's
    gestures, and runs Send or Plan passes through its SyncDriver. It never writes while it lacks the Lease."""

    def __init__(self, integration: Integration) -> None:
        self.integration = integration
        runtime = integration.runtime
        self._wake = asyncio.Event()
        self._stripe_check = CachedCheck(
            runtime.config.credentials.recheck_seconds, runtime.config.credentials.retry_seconds
        )
        assert runtime.sources is not None
        self._source = SourceHandle(runtime.config, runtime.sources)
        self._sync = SyncDriver(integration)
        self._sync.wake = self._wake.set
        self._next_sync: float | None = None
        self._last_written: StripeIntegrationStatus | None = None
        self._spec: StripeIntegrationSpec | None = None
        self._seen: tuple[object, ...] | None = None
        self._problems_reported: tuple[str, ...] = ()
        self._refusals_reported: set[tuple[str, str]] = set()

    def poke(self, body: Mapping[str, Any]) -> None:
        """Wake the loop when something a person changed (spec, annotations) is not yet handled."""
        meta = body.get("metadata", {})
        seen = (meta.get("generation"), tuple(sorted(gesture_annotations(meta.get("annotations"))[0].items())))
        if seen != self._seen:
            self._wake.set()

    async def run(self, body: Mapping[str, Any], stopped: Any) -> None:
        try:
            while not stopped:
                if not self.integration.runtime.leader.is_leader():
                    # Only the Lease holder writes: a standby waits here, writing nothing at all.
                    self._observe_writer(False)
                    if not await self.integration.runtime.leader.wait_leading(stopped):
                        break
                    # Another replica may have written the status meanwhile: start from what the API holds.
                    self._last_written = None
                self._observe_writer(True)
                self._wake.clear()
                meta = body.get("metadata", {})
                self._seen = (
                    meta.get("generation"),
                    tuple(sorted(gesture_annotations(meta.get("annotations"))[0].items())),
                )
                started = time.monotonic()
                try:
                    await self.reconcile(body)
                except asyncio.CancelledError:
                    raise
                except FenceLost as err:
                    # Not an error of the integration: the replica that took the Lease carries on.
                    self.integration.logger.warning("%s: %s; stopped writing", self.integration.where, err)
                    continue
                except Exception as err:
                    # A bug or an unexpected API failure must not kill the loop: report it and try again later.
                    self.integration.logger.exception("reconcile of %s failed; retrying", self.integration.where)
                    await self._internal_error(body, err)
                finally:
                    self.integration.runtime.metrics.observe_reconcile(
                        self.integration.namespace, self.integration.name, time.monotonic() - started
                    )
                pause = self.integration.runtime.config.credentials.secret_poll_seconds
                if self._next_sync is not None:
                    pause = min(pause, max(0.05, self._next_sync))
                await self._sleep(pause, stopped)
        finally:
            await self._source.close()

    async def _sleep(self, seconds: float, stopped: Any) -> None:
        waiter = asyncio.ensure_future(self._wake.wait())
        stop = asyncio.ensure_future(stopped.wait())
        try:
            await asyncio.wait({waiter, stop}, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            stop.cancel()

    async def reconcile(self, body: Mapping[str, Any]) -> None:
        meta = body.get("metadata", {})
        generation = meta.get("generation")
        # Gesture values that cannot be honoured (not a string, too long, too many ids) are refused once.
        annotations, refused = gesture_annotations(meta.get("annotations"))
        for key, why in refused:
            if (key, annotations.get(key, "")) not in self._refusals_reported:
                self._refusals_reported.add((key, annotations.get(key, "")))
                self.integration.events("Warning", "AnnotationRefused", f"annotation {key}: {why}")
        # This worker is the only writer of the status: what it last wrote is the truth, even when the watch
        # has not delivered it back yet. The body's status only matters when the worker starts.
        current = self._last_written if self._last_written is not None else read_status(body.get("status"))
        current.require(*RECONCILE_NEEDS)
        extra = self._handle_requests(current, annotations)
        extra = extra.merged(self._sync.notification_fields(current))
        parsed = parse_spec(body.get("spec"))
        self._spec = None if isinstance(parsed, list) else parsed.spec
        stripe: CredentialCheck | None = None
        self._next_sync = None
        if isinstance(parsed, list):
            problems = tuple(str(p) for p in parsed)
            assessment = Assessment(problems=problems)
            if problems != self._problems_reported:
                self._problems_reported = problems
                self.integration.events("Warning", "InvalidSpec", "; ".join(problems))
        else:
            self._problems_reported = ()
            assessment, stripe = await self._assess(parsed, current.merged(extra))
            if self._source.source is not None and assessment.source is not None and assessment.source.ok:
                seen = current.merged(extra).merged(StripeIntegrationStatus(observedGeneration=generation))
                extra = extra.merged(await self._sync.count_selection(parsed, seen, self._source.source))
            selection = selection_observation(parsed, extra.accountSelection or current.accountSelection)
            assessment = dataclasses.replace(assessment, selection=selection)
        new = build_status(current, assessment, generation=generation, integration_id=self.integration.uid, extra=extra)
        await self._write(current, new)
        self._sync.start_notification()  # only once its Sending state is in the API
        self._observe(new)
        if isinstance(parsed, list) or not self.integration.runtime.config.sync.enabled:
            return
        ready = (
            stripe is not None
            and stripe.ok
            and stripe.secret is not None
            and self._source.source is not None
            and not assessment.disabled
            and not assessment.suspended
        )
        if not ready:
            return
        due = self._sync.seconds_until_due(parsed, new, annotations)
        if due > 0:
            self._next_sync = due
            return
        assert stripe is not None and stripe.secret is not None and self._source.source is not None

        async def checkpoint(fields: StripeIntegrationStatus) -> None:
            """Progress of the pass in flight (status.sync.checkpoint), so that a restart skips what it did."""
            base = self._last_written if self._last_written is not None else new
            await self._write(base, base.merged(fields))

        inputs = PassInputs(parsed, new, annotations, stripe.secret, stripe.account_id, self._source.source)
        fields = await self._sync.run_pass(inputs, checkpoint=checkpoint)
        if fields.lastSync is not None and fields.lastSync.status == "AUTH_FAILED":
            self._stripe_check.invalidate()  # Stripe refused the key mid-run: check it again now
            self._wake.set()
        conditions = planned_conditions if parsed.spec.is_plan else _synced
        merged = conditions(new, fields, generation, self._sync.pass_error)
        if "overlaps" in fields.model_fields_set:
            overlapping = overlap_observation(fields.overlaps, self._sync.overlap)
            merged = conditions_after(merged, [overlapping], generation=generation)
        base = new.merged(fields).merged(StripeIntegrationStatus(conditions=merged))
        assessment = dataclasses.replace(
            assessment,
            disabled=base.disabled,
            disabled_message=base.disabledMessage or assessment.disabled_message,
        )
        final = build_status(base, assessment, generation=generation, integration_id=self.integration.uid)
        await self._write(self._last_written if self._last_written is not None else new, final)
        self._observe(final)
        self._next_sync = parsed.spec.sync_interval_seconds

    def _handle_requests(
        self, current: StripeIntegrationStatus, annotations: Mapping[str, str]
    ) -> StripeIntegrationStatus:
        """Resolve and re-enable requests (annotations): handled once per value, echoed back in status."""
        extra = StripeIntegrationStatus()
        resolve = unhandled(annotations, current, names.ANNOTATION_RESOLVE)
        if resolve:
            extra = extra.merged(echo(names.ANNOTATION_RESOLVE, resolve))
        if resolve and not parse_targets(resolve):
            self.integration.events(
                "Warning",
                "UnknownEventIds",
                f"{names.ANNOTATION_RESOLVE}={resolve[:140]!r} names no event id (anything after '#' is only a "
                "re-trigger token); write ids from status.openEvents, comma or space separated, or all",
            )
        elif resolve:
            current.require("openEvents")
            left = resolve_events(current.openEvents, resolve)
            extra = extra.merged(StripeIntegrationStatus(openEvents=left))
            closed = len(current.openEvents) - len(left)
            self.integration.events("Normal", "EventsResolved", f"{closed} error event(s) marked as actioned")
            unknown = unknown_event_ids(current.openEvents, resolve)
            if unknown:
                self.integration.events(
                    "Warning",
                    "UnknownEventIds",
                    f"{names.ANNOTATION_RESOLVE} names {len(unknown)} id(s) that are not open events: "
                    f"{', '.join(repr(u[:80]) for u in unknown[:10])}; see status.openEvents for the ids, or use all",
                )
        if reenable := unhandled(annotations, current, names.ANNOTATION_REENABLE):
            extra = extra.merged(echo(names.ANNOTATION_REENABLE, reenable))
            if current.disabled:
                extra = extra.merged(StripeIntegrationStatus(disabled=False, consecutiveErrors=0, disabledMessage=None))
                self.integration.events("Normal", "Reenabled", "re-enabled by the m3stripe.dev/reenable annotation")
        return extra

    async def _assess(self, parsed: ParsedSpec, current: StripeIntegrationStatus) -> tuple[Assessment, CredentialCheck]:
        spec = parsed.spec
        stripe = await check_stripe_credential(
            self.integration.runtime.kube,
            self.integration.namespace,
            spec,
            self._stripe_check,
            api_base=self.integration.runtime.config.stripe.api_base,
        )
        source: CredentialCheck = await self._source.check(
            self.integration.runtime.kube, self.integration.namespace, spec
        )
        mode = "test mode" if spec.is_test_mode else "live mode"
        account = f"Stripe account {stripe.account_id}" if stripe.account_id else "Stripe"
        ready_message = (
            f"connected to {account} ({mode}); reading Bills of m3ter organization "
            f"{spec.m3ter.organizationId} every {spec.syncInterval}"
        )
        return Assessment(
            disabled=current.disabled,
            disabled_message=current.disabledMessage
            or "disabled after successive errors; annotate with m3stripe.dev/reenable=<new value> to re-enable",
            suspended=spec.suspend,
            stripe=stripe,
            source=source,
            ready_message=ready_message,
            plan=spec.is_plan,
        ), stripe

    async def _internal_error(self, body: Mapping[str, Any], err: Exception) -> None:
        """Make an unexpected exception visible: Ready=False InternalError (with a Warning event), a metric."""
        m = self.integration.runtime.metrics
        m.internal_error(self.integration.namespace, self.integration.name, "reconcile")
        message = internal_error_message(err, "while reconciling")
        try:
            generation = body.get("metadata", {}).get("generation")
            if self._last_written is not None:
                failed = internal_error_status(self._last_written, message, generation=generation)
                await self._write(self._last_written, failed)
            else:  # as JSON: the status itself may be what the reconcile could not read
                current = body.get("status")
                await self._write_json(current, internal_error_status(current, message, generation=generation))
        except Exception:  # the status itself may be what is broken: the event still says it
            self.integration.logger.exception(
                "%s: could not record the internal error in status", self.integration.where
            )
            self.integration.events("Warning", "InternalError", message)

    def _observe(self, status: StripeIntegrationStatus) -> None:
        spec = self._spec
        self.integration.runtime.metrics.observe_status(
            self.integration.namespace,
            self.integration.name,
            status,
            suspended=bool(spec and spec.suspend),
            sync_interval=spec.sync_interval_seconds if spec else None,
        )

    def _observe_writer(self, writing: bool) -> None:
        self.integration.runtime.metrics.writer(self.integration.namespace, self.integration.name, writing)

    async def _write(self, current: StripeIntegrationStatus, new: StripeIntegrationStatus) -> None:
        patch = status_patch(current, new)
        if patch is None:
            return
        await self._patch(patch)
        self._last_written = new
        self._announce(current, new)

    async def _write_json(self, current: Mapping[str, Any] | None, new: dict[str, Any]) -> None:
        """`_write` for a status as JSON (an internal error's, on a status that may be unreadable)."""
        patch = status_patch(current, new)
        if patch is None:
            return
        await self._patch(patch)
        self._last_written = read_status(new)
        self._announce(read_status(current), self._last_written)

    async def _patch(self, patch: dict[str, Any]) -> None:
        leader = self.integration.runtime.leader
        leader.fence()  # a replica that lost the Lease must not overwrite the new writer's status
        try:
            # Abandoned when the fence falls. Like a Stripe request, a PATCH the API server already received
            # is applied on its schedule; the margin of the Lease covers that.
            await self.integration.runtime.kube.patch_status(
                self.integration.namespace, self.integration.name, patch, timeout=leader.time_left()
            )
        except KubeApiError:
            leader.fence()  # cut off by the fence: a lost Lease, not an error of the integration
            raise

    def _announce(self, old: StripeIntegrationStatus, new: StripeIntegrationStatus) -> None:
        """Kubernetes events on transitions only, never on every pass."""
        was_connected, is_connected = old.connected, new.connected
        if is_connected and not was_connected:
            self.integration.events(
                "Normal", "Connected", _condition_message(new, ConditionType.CONNECTED) or "connected"
            )
        elif was_connected and not is_connected:
            reason: str = _condition_reason(new, ConditionType.CONNECTED) or "Disconnected"
            message = _condition_message(new, ConditionType.CONNECTED) or "disconnected"
            self.integration.events("Warning" if reason != "NotConnected" else "Normal", "Disconnected", message)
        old_ready, new_ready = ready_of(old), ready_of(new)
        # InvalidSpec has its own events (naming each field); AutoDisabled is announced by the pass that disabled
        # the integration, with the same message, so a second event would only repeat it.
        if new_ready != old_ready and new_ready[1] not in (None, "InvalidSpec", "AutoDisabled"):
            ready_status, ready_reason = new_ready
            message = _condition_message(new, ConditionType.READY) or ""
            kind = "Normal" if ready_status == "True" or ready_reason in ("Suspended", "NotConnected") else "Warning"
            self.integration.events(kind, ready_reason or "Unknown", message)


def _condition_message(status: StripeIntegrationStatus, type_: str) -> str | None:
    found = condition(status.conditions, type_)
    return (found.message if found is not None else "") or None


def _condition_reason(status: StripeIntegrationStatus, type_: str) -> str | None:
    found = condition(status.conditions, type_)
    return (found.reason if found is not None else "") or None


def _synced(
    status: StripeIntegrationStatus, fields: StripeIntegrationStatus, generation: int | None, internal_error: str = ""
) -> list[Condition]:
    last = fields.lastSync or LastSync()
    run_status = last.status or ""
    if internal_error:
        obs = Observation(ConditionType.SYNCED, "False", "InternalError", f"run {last.runId}: {internal_error}")
    elif run_status == "COMPLETE":
        obs = Observation(ConditionType.SYNCED, "True", "RunComplete", last.message or "")
    else:
        reason = "".join(p.capitalize() for p in run_status.split("_")) or "RunFailed"
        obs = Observation(
            ConditionType.SYNCED,
            "False",
            reason,
            f"run {last.runId}: {last.message}; see status.openEvents",
        )
    return conditions_after(status.conditions, [obs], generation=generation)
