"""spec.mode: Plan in the cluster: a pass that only plans, its status.plan, and the Planned condition.

A plan pass reads what a Send pass would read (the same watermark and retries, so switching to Send
sends what the plan showed) and changes none of it: the sync progress, run history, open events and
error count are those of Send passes only. The engine gets a planner over a read-only Stripe port
and no gateway, so nothing in the pass can write to Stripe.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from m3stripe.adapters.stripe_ledger import StripeLedgerReader
from m3stripe.api import names
from m3stripe.api.conditions import Observation, conditions_after, parse_rfc3339
from m3stripe.api.gestures import echo, unhandled
from m3stripe.api.status import Condition, ConditionType, PlanSummary, StripeIntegrationStatus, wire
from m3stripe.domain.overlap import Overlap
from m3stripe.domain.ports import FenceLost
from m3stripe.domain.progress import sync_state
from m3stripe.domain.runs import ErrorBudget, RunReport
from m3stripe.domain.spec_validation import ParsedSpec
from m3stripe.domain.sync_engine import build_engine
from m3stripe.kube.integration import Integration, PassInputs
from m3stripe.kube.status_builder import internal_error_message

# A plan covers every Bill: the error budget that stops a Send pass (autoDisableThreshold) does not stop it.
PLAN_ERROR_BUDGET = 10**9


def plan_seconds_until_due(
    parsed: ParsedSpec, status: StripeIntegrationStatus, annotations: Mapping[str, str]
) -> float | None:
    """When the next plan pass is due (0: now), or None outside Plan mode.

    A new generation, a sync request and a replay request are handled at once (a replay is refused in
    Plan mode, with a Warning event).
    """
    if not parsed.spec.is_plan:
        return None
    if unhandled(annotations, status, names.ANNOTATION_REQUESTED_AT) or unhandled(
        annotations, status, names.ANNOTATION_REPLAY
    ):
        return 0.0
    plan = status.plan  # unreadable: as if there were none, so planning again
    if plan is None or plan.observedGeneration != status.observedGeneration:
        return 0.0
    last = parse_rfc3339(plan.time)
    if last is None:
        return 0.0
    return max(0.0, last.timestamp() + parsed.spec.sync_interval_seconds - datetime.now(UTC).timestamp())


async def plan_pass(
    integration: Integration, inputs: PassInputs, *, overlap: Overlap | None = None
) -> tuple[StripeIntegrationStatus, str, RunReport | None]:
    """Run one plan pass; return the status fields it changes (status.plan and the gesture echo), the message of
    an unexpected error ("" when there was none), and the pass's report (None when it failed)."""
    parsed, status, annotations = inputs.parsed, inputs.status, inputs.annotations
    spec = parsed.spec
    runtime = integration.runtime
    extra = StripeIntegrationStatus()
    if requested := unhandled(annotations, status, names.ANNOTATION_REQUESTED_AT):
        extra = extra.merged(echo(names.ANNOTATION_REQUESTED_AT, requested))
    if replay := unhandled(annotations, status, names.ANNOTATION_REPLAY):
        # Refused, not deferred: a replay kept for the next Send pass would send Bills the plan did not show.
        extra = extra.merged(echo(names.ANNOTATION_REPLAY, replay))
        integration.events(
            "Warning",
            "ReplayRefused",
            f"{names.ANNOTATION_REPLAY}={replay[:200]!r} was not done: spec.mode is Plan and a plan pass writes "
            "nothing to Stripe. Switch spec.mode to Send first, then annotate again with a new value",
        )
    started = time.monotonic()
    async with integration.stripe(spec, key=inputs.stripe_key, account=inputs.stripe_account) as gateway:
        reader = StripeLedgerReader(gateway)
        engine = build_engine(
            spec,
            account_filter=parsed.account_filter,
            integration_id=integration.uid,
            source=inputs.source,
            stripe=reader,
            budget=ErrorBudget(PLAN_ERROR_BUDGET),
            concurrency=runtime.config.sync.concurrency_for(spec.effective_requests_per_second),
            fence=runtime.leader.fence,
            overlap=overlap,
        )
        try:
            status.require("sync")  # unreadable progress: the pass fails, visibly, rather than start from nothing
            report = await engine.run_pass(sync_state(status.sync))
        except (asyncio.CancelledError, FenceLost):
            raise
        except Exception as err:
            integration.logger.exception("%s: the plan pass failed unexpectedly", integration.where)
            runtime.metrics.internal_error(integration.namespace, integration.name, "plan")
            return extra, internal_error_message(err, "in the plan pass"), None
    assert engine.planner is not None  # spec.mode is Plan
    plan = engine.planner.summary(report, generation=status.observedGeneration)
    extra = extra.merged(StripeIntegrationStatus(plan=plan))
    integration.logger.info(
        "%s: plan %s in %.1fs: %s", integration.where, report.run_id, time.monotonic() - started, plan.message
    )
    if _plan_changed(wire(status.plan) if status.plan is not None else None, wire(plan)):
        integration.events("Normal", "Planned", str(plan.message)[:1024])
    return extra, "", report


# What a plan's Planned event reports: a pass that plans the same as the last one says nothing new.
_PLAN_OUTCOME = (
    "observedGeneration",
    "bills",
    "createInvoice",
    "updateDraft",
    "addItems",
    "nothing",
    "blocked",
    "totals",
)


def _plan_changed(old: Any, new: Mapping[str, Any]) -> bool:
    """Whether the plan's outcome differs from the last one's, as written (JSON; `old` None: no readable plan)."""
    if not isinstance(old, Mapping):
        return True
    return any(old.get(k) != new.get(k) for k in _PLAN_OUTCOME)


def planned_conditions(
    status: StripeIntegrationStatus, fields: StripeIntegrationStatus, generation: int | None, internal_error: str = ""
) -> list[Condition]:
    """Planned True once a plan of this generation is in status.plan (a plan pass never touches Synced)."""
    plan: PlanSummary | None = fields.plan or status.plan
    if internal_error:
        obs = Observation(ConditionType.PLANNED, "False", "InternalError", internal_error)
    elif plan is not None:
        obs = Observation(ConditionType.PLANNED, "True", "PlanReady", plan.message or "")
    else:
        obs = Observation(ConditionType.PLANNED, "Unknown", "Planning", "the first plan pass has not finished")
    return conditions_after(status.conditions, [obs], generation=generation)
