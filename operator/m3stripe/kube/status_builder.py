"""Compute an integration's status from what a reconcile observed and what a pass reported, and write it without
churn.

`build_status` turns a reconcile's observations into conditions; `fold_report` folds a run into the status (run
history, open events, the error count, the progress); `status_patch` is the merge patch from one status to the next.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, overload

from m3stripe.adapters.stripe_gateway import scrub
from m3stripe.api.conditions import Observation, condition, conditions_after, merge_conditions, parse_rfc3339, rfc3339
from m3stripe.api.status import (
    ConditionType,
    IntegrationEvent,
    LastSync,
    RunRecord,
    StripeIntegrationStatus,
    wire,
)
from m3stripe.domain.credential_check import CredentialCheck
from m3stripe.domain.money import format_money, from_minor_units
from m3stripe.domain.progress import progress_of_run
from m3stripe.domain.runs import ErrorEvent, EventKind, RunReport, RunStatus

MAX_OPEN_EVENTS = 100


@dataclass(frozen=True)
class Assessment:
    """The inputs of the Ready summary, in the order they take precedence."""

    problems: tuple[str, ...] = ()
    disabled: bool = False
    disabled_message: str = ""
    suspended: bool = False
    stripe: CredentialCheck | None = None
    source: CredentialCheck | None = None
    ready_message: str = ""
    # An unexpected exception in the last pass (or this reconcile): shown until a pass runs cleanly.
    internal_error: str = ""
    plan: bool = False  # spec.mode: Plan: nothing is written to Stripe
    # AccountsSelected (kube.account_selection): whether the account selection keeps any Account at all.
    selection: Observation | None = None


INTERNAL_ERROR = "InternalError"


def internal_error_message(err: BaseException, where: str) -> str:
    """A one-line description of an unexpected exception, for a condition and an event.

    It names the exception and its text, with anything shaped like a Stripe key masked: exception
    texts are not ours, and a secret must never reach status or events.
    """
    text = " ".join(str(err).split())[:900] or "(no message)"
    text = scrub(text, mask="***")
    return (
        f"unexpected {type(err).__name__} {where}: {text}. This is a bug or an input the operator does not "
        "handle; the operator retries, and the log has the traceback (search for the integration's name)"
    )


def pass_error_of(status: StripeIntegrationStatus, *, plan: bool = False) -> str:
    """The message of a pass that ended in an unexpected exception, while its condition says so.

    A plan pass reports on Planned and a Send pass on Synced: in Plan mode only a plan pass's crash counts.
    """
    found = condition(status.conditions, ConditionType.PLANNED if plan else ConditionType.SYNCED)
    if found is not None and found.reason == INTERNAL_ERROR:
        return found.message or INTERNAL_ERROR
    return ""


def observe(a: Assessment) -> tuple[list[Observation], list[str]]:
    """Conditions to set and (abnormal-true) condition types to remove."""
    obs: list[Observation] = []
    absent: list[str] = []
    if a.problems:
        text = "invalid spec: " + "; ".join(a.problems)
        obs.append(Observation(ConditionType.STALLED, "True", "InvalidSpec", text))
        obs.append(Observation(ConditionType.READY, "False", "InvalidSpec", text))
        obs.append(
            Observation(ConditionType.CONNECTED, "Unknown", "InvalidSpec", "not checked while the spec is invalid")
        )
        return obs, absent
    if a.selection is not None:
        obs.append(a.selection)
    if a.stripe is not None:
        obs.append(_check_obs(ConditionType.CONNECTED, a.stripe))
    if a.source is not None:
        obs.append(_check_obs(ConditionType.SOURCE_CONNECTED, a.source))
    if a.disabled:
        obs.append(Observation(ConditionType.STALLED, "True", "AutoDisabled", a.disabled_message))
        obs.append(Observation(ConditionType.READY, "False", "AutoDisabled", a.disabled_message))
        return obs, absent
    absent.append(ConditionType.STALLED)
    if not a.plan:
        absent.append(ConditionType.PLANNED)
    if a.suspended:
        obs.append(Observation(ConditionType.READY, "False", "Suspended", "spec.suspend is true: no Bills are sent"))
    elif a.stripe is not None and not a.stripe.ok:
        obs.append(Observation(ConditionType.READY, "False", a.stripe.reason, a.stripe.message))
    elif a.source is not None and not a.source.ok:
        obs.append(Observation(ConditionType.READY, "False", a.source.reason, a.source.message))
    elif a.internal_error:
        obs.append(Observation(ConditionType.READY, "False", INTERNAL_ERROR, a.internal_error))
    elif a.plan:
        # Healthy for kstatus and Argo CD: planning is what was asked for; the reason says nothing is sent.
        text = (
            "spec.mode is Plan: nothing is written to Stripe; status.plan (kubectl m3stripe plan NAME) shows what "
            f"a Send pass would do. {a.ready_message}"
        )
        obs.append(Observation(ConditionType.READY, "True", "PlanOnly", text))
    else:
        obs.append(Observation(ConditionType.READY, "True", "Ready", a.ready_message))
    return obs, absent


def _check_obs(type_: str, check: CredentialCheck) -> Observation:
    if check.ok:
        return Observation(type_, "True", check.reason, check.message)
    return Observation(type_, "Unknown" if check.retryable else "False", check.reason, check.message)


def build_status(
    current: StripeIntegrationStatus | None,
    assessment: Assessment,
    *,
    generation: int | None,
    integration_id: str,
    extra: StripeIntegrationStatus | None = None,
) -> StripeIntegrationStatus:
    """The full status the operator owns, carrying over fields it does not recompute here; `extra` (the fields a
    reconcile or pass changed) is applied last."""
    current = current if current is not None else StripeIntegrationStatus()
    if not assessment.internal_error:
        assessment = dataclasses.replace(assessment, internal_error=pass_error_of(current, plan=assessment.plan))
    observations, absent = observe(assessment)
    stripe = assessment.stripe
    connected = bool(stripe is not None and stripe.ok and not assessment.problems)
    fields: dict[str, Any] = {
        "observedGeneration": generation,
        "conditions": conditions_after(current.conditions, observations, generation=generation, absent=absent),
        "integrationId": integration_id,
        "connected": connected,
        "disabled": assessment.disabled,
    }
    if connected:
        if stripe is not None and stripe.account_id:
            fields["stripeAccountId"] = stripe.account_id
    else:
        fields["stripeAccountId"] = None  # the last account is not where Bills would go now
    if "consecutiveErrors" not in current.model_fields_set and "consecutiveErrors" not in current.unreadable:
        fields["consecutiveErrors"] = 0
    status = current.merged(StripeIntegrationStatus.model_validate(fields))
    return status.merged(extra) if extra is not None else status


@overload
def internal_error_status(
    current: StripeIntegrationStatus, message: str, *, generation: int | None
) -> StripeIntegrationStatus: ...
@overload
def internal_error_status(
    current: Mapping[str, Any] | None, message: str, *, generation: int | None
) -> dict[str, Any]: ...
def internal_error_status(
    current: StripeIntegrationStatus | Mapping[str, Any] | None, message: str, *, generation: int | None
) -> StripeIntegrationStatus | dict[str, Any]:
    """The status after a reconcile failed unexpectedly: everything kept, Ready=False InternalError.

    On the typed status, or on the status as JSON, as the API server holds it, when the operator has not read it
    yet: the status itself may be what the reconcile could not read, and only its conditions are touched."""
    failed = Observation(ConditionType.READY, "False", INTERNAL_ERROR, message)
    if isinstance(current, StripeIntegrationStatus):
        conditions = conditions_after(current.conditions, [failed], generation=generation)
        return current.merged(StripeIntegrationStatus(conditions=conditions))
    status = dict(current or {})
    status["conditions"] = merge_conditions(status.get("conditions"), [failed], generation=generation)
    return status


StatusOrJson = StripeIntegrationStatus | Mapping[str, Any]


def status_patch(old: StatusOrJson | None, new: StatusOrJson) -> dict[str, Any] | None:
    """A merge patch turning `old` into `new` at the top level, or None when nothing changed.

    Each is a typed status, compared as the JSON the operator writes (`wire`), or that JSON itself (a status the
    operator has not read: `internal_error_status`). A field is sent whole when it changed; within it, the explicit
    nulls it carries remove keys (a merge patch merges objects key by key)."""
    before, after = _json(old), _json(new)
    patch: dict[str, Any] = {k: v for k, v in after.items() if before.get(k) != v}
    for gone in set(before) - set(after):
        patch[gone] = None
    return patch or None


def _json(status: StatusOrJson | None) -> dict[str, Any]:
    return wire(status) if isinstance(status, StripeIntegrationStatus) else dict(status or {})


def ready_of(status: StripeIntegrationStatus | None) -> tuple[str | None, str | None]:
    ready = condition(status.conditions, ConditionType.READY) if status is not None else None
    return (ready.status, ready.reason) if ready is not None else (None, None)


# ---------------------------------------------------------------------------------------- a run, into status


def run_record(report: RunReport) -> RunRecord:
    """status.recentRuns[]: the run's status, counts, summary, the Stripe objects of the Bills it sent and the tax."""
    taxes = {(bill, version): (currency, amount) for bill, version, currency, amount in report.bill_taxes}
    record: dict[str, Any] = {
        "runId": report.run_id,
        "status": str(report.status),
        "startTime": rfc3339(report.started),
        "completionTime": rfc3339(report.completed or report.started),
        "billsSent": report.sent,
        "billsUnchanged": report.unchanged,
        "billsSkipped": report.skipped,
        "billsFailed": report.failed,
        "message": report.summary(),
        "stripeObjects": [
            {"billId": bill, "billVersion": version, "stripeId": stripe_id, **_tax_of(taxes, bill, version)}
            for bill, version, stripe_id in report.stripe_ids[:50]
        ],
    }
    if report.taxes:
        record["taxes"] = [
            {"currency": currency, "amount": format_money(from_minor_units(amount, currency), currency).split(" ")[0]}
            for currency, amount in sorted(report.taxes.items())
        ]
        record["message"] = f"{record['message']}; tax {tax_summary(report)}"
    return RunRecord.model_validate(record)


def tax_summary(report: RunReport) -> str:
    """The run's tax per currency, as a person reads money ("12.34 GBP, 5 JPY")."""
    return ", ".join(
        format_money(from_minor_units(amount, currency), currency) for currency, amount in sorted(report.taxes.items())
    )


def _tax_of(taxes: Mapping[tuple[str, int], tuple[str, int]], bill: str, version: int) -> dict[str, str]:
    found = taxes.get((bill, version))
    if found is None:
        return {}
    currency, amount = found
    return {"tax": format_money(from_minor_units(amount, currency), currency)}


def merge_events(
    existing: Iterable[IntegrationEvent], new: Iterable[ErrorEvent], *, now: datetime, retention: timedelta
) -> tuple[list[IntegrationEvent], list[ErrorEvent]]:
    """Open events after adding `new` (repeats bump count/lastSeen) and dropping expired ones.

    Also returns the events that were not open before: those deserve a Kubernetes Event.
    """
    by_id: dict[str, IntegrationEvent] = {e.id: _without_nulls(e) for e in existing}
    fresh: list[ErrorEvent] = []
    stamp = rfc3339(now)
    for event in new:
        current = by_id.get(event.id)
        if current is None:
            opened = {
                "id": event.id,
                "kind": str(event.kind),
                "message": event.message[:4096],
                "runId": event.run_id,
                "runStatus": str(event.status),
                "billId": event.bill_id,
                "accountId": event.account_id,
                "firstSeen": stamp,
                "lastSeen": stamp,
                "count": 1,
            }
            by_id[event.id] = IntegrationEvent.model_validate({k: v for k, v in opened.items() if v is not None})
            fresh.append(event)
        else:
            by_id[event.id] = current.model_copy(
                update={"runId": event.run_id, "lastSeen": stamp, "count": current.count + 1}
            )
    cutoff = now - retention
    kept = [e for e in by_id.values() if (parse_rfc3339(e.lastSeen) or now) >= cutoff]
    kept.sort(key=lambda e: e.lastSeen, reverse=True)
    return kept[:MAX_OPEN_EVENTS], fresh


def _without_nulls(event: IntegrationEvent) -> IntegrationEvent:
    """An open event as it is written: without null fields (none is ever written)."""
    data = wire(event)
    if None not in data.values():
        return event
    return IntegrationEvent.model_validate({k: v for k, v in data.items() if v is not None})


def fold_report(
    status: StripeIntegrationStatus,
    report: RunReport,
    *,
    history: int,
    retention: timedelta,
    consecutive_errors: int,
    now: datetime | None = None,
) -> tuple[StripeIntegrationStatus, list[ErrorEvent]]:
    """The status fields a run changes (the others unset), and the error events that are new.

    `status` must hold readable recentRuns and openEvents (StripeIntegrationStatus.require): the run is folded
    into them."""
    now = now or datetime.now(UTC)
    record = run_record(report)
    events, fresh = merge_events(status.openEvents, report.events, now=now, retention=retention)
    last = {name: getattr(record, name) for name in record.model_fields_set - {"stripeObjects", "taxes"}}
    fields: dict[str, Any] = {
        "lastSync": LastSync.model_validate(last),
        "recentRuns": [record, *status.recentRuns][:history],
        "openEvents": events,
        "consecutiveErrors": consecutive_errors,
        "sync": progress_of_run(report),
    }
    if report.status is RunStatus.COMPLETE:
        fields["lastSuccessfulSyncTime"] = record.completionTime
    return StripeIntegrationStatus.model_validate(fields), fresh


def disabled_event(run_id: str, threshold: int, now: datetime, last: ErrorEvent | None) -> ErrorEvent:
    """The integration.disabled.error event of a run that exhausted the error budget."""
    cause = f" The last one: {last.message}" if last is not None else ""
    return ErrorEvent(
        kind=EventKind.DISABLED,
        message=(
            f"the integration disabled itself after {threshold} successive error events; no Bills are sent until "
            f"it is re-enabled. Fix the cause, then annotate the StripeIntegration with "
            f"m3stripe.dev/reenable=<any new value>.{cause}"
        )[:4096],
        run_id=run_id,
        time=now,
        status=RunStatus.DISABLED,
    )
