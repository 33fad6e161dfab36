"""Plan mode in status: Ready stays True with reason PlanOnly, Planned follows the plan, and when plans are due."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from m3stripe.api.conditions import find, rfc3339
from m3stripe.api.status import ConditionType, PlanSummary, StripeIntegrationStatus, read_status, wire
from m3stripe.domain.credential_check import CredentialCheck
from m3stripe.domain.spec_validation import ParsedSpec, parse_spec
from m3stripe.kube.planning import plan_seconds_until_due, planned_conditions
from m3stripe.kube.status_builder import Assessment, build_status

OK = CredentialCheck(True, "Connected", "Stripe accepted the key", account_id="acct_1")


def parsed(mode: str) -> ParsedSpec:
    spec = {
        "destination": "StripeTestMode",
        "mode": mode,
        "syncInterval": "1h",
        "m3ter": {"organizationId": "org1", "credentialsRef": {"name": "m3ter"}},
    }
    result = parse_spec(spec)
    assert isinstance(result, ParsedSpec)
    return result


def ready(status: dict[str, Any] | StripeIntegrationStatus) -> dict[str, Any]:
    written = wire(status) if isinstance(status, StripeIntegrationStatus) else status
    return dict(find(written["conditions"], ConditionType.READY) or {})


def conditions(written: list[Any]) -> list[dict[str, Any]]:
    """Conditions as the JSON the operator writes."""
    return [wire(c) for c in written]


def planned(message: str) -> StripeIntegrationStatus:
    """What a plan pass changes: status.plan."""
    return StripeIntegrationStatus(plan=PlanSummary(runId="run-1", time="2026-12-01T10:00:00Z", message=message))


EMPTY = StripeIntegrationStatus()


def test_a_plan_mode_integration_is_ready_with_a_reason_saying_nothing_is_sent() -> None:
    status = build_status(
        EMPTY, Assessment(stripe=OK, source=OK, plan=True, ready_message="m"), generation=2, integration_id="i"
    )
    assert (ready(status)["status"], ready(status)["reason"]) == ("True", "PlanOnly")
    assert ready(status)["message"].startswith("spec.mode is Plan: nothing is written to Stripe")


def test_switching_to_send_removes_the_planned_condition() -> None:
    planning = {"conditions": conditions(planned_conditions(EMPTY, planned("plan run-1: ..."), 2))}
    assert find(planning["conditions"], ConditionType.PLANNED)["status"] == "True"  # type: ignore[index]
    sent = build_status(read_status(planning), Assessment(stripe=OK, source=OK), generation=3, integration_id="i")
    sending = wire(sent)
    assert find(sending["conditions"], ConditionType.PLANNED) is None and ready(sending)["reason"] == "Ready"


def test_planned_is_unknown_until_the_first_plan_and_false_when_the_plan_pass_failed() -> None:
    assert find(conditions(planned_conditions(EMPTY, EMPTY, 1)), ConditionType.PLANNED)["status"] == "Unknown"  # type: ignore[index]
    failed = find(conditions(planned_conditions(EMPTY, EMPTY, 1, "unexpected KeyError")), ConditionType.PLANNED)
    assert failed is not None and (failed["status"], failed["reason"]) == ("False", "InternalError")


def test_a_plan_is_due_at_once_for_a_new_generation_or_a_sync_request_and_otherwise_every_interval() -> None:
    recent = rfc3339(datetime.now(UTC) - timedelta(minutes=10))
    written = {"observedGeneration": 2, "plan": {"runId": "run-1", "observedGeneration": 2, "time": recent}}
    status = read_status(written)
    assert 2900 < (plan_seconds_until_due(parsed("Plan"), status, {}) or 0) <= 3000
    assert plan_seconds_until_due(parsed("Plan"), read_status({**written, "observedGeneration": 3}), {}) == 0
    assert plan_seconds_until_due(parsed("Plan"), status, {"m3stripe.dev/requested-at": "t1"}) == 0
    # A replay is refused at once in Plan mode (a plan pass echoes it with a Warning event).
    assert plan_seconds_until_due(parsed("Plan"), status, {"m3stripe.dev/replay": "b-1 #t"}) == 0
    handled = read_status({**written, "lastHandledReplay": "b-1 #t"})
    assert (plan_seconds_until_due(parsed("Plan"), handled, {"m3stripe.dev/replay": "b-1 #t"}) or 0) > 0
    assert plan_seconds_until_due(parsed("Send"), status, {}) is None


def test_a_crashed_plan_pass_makes_ready_false_internal_error_until_a_clean_plan() -> None:
    crashed = StripeIntegrationStatus(
        conditions=planned_conditions(EMPTY, EMPTY, 2, "unexpected ValueError in the plan pass: boom")
    )
    status = build_status(crashed, Assessment(stripe=OK, source=OK, plan=True), generation=2, integration_id="i")
    assert (ready(status)["status"], ready(status)["reason"]) == ("False", "InternalError")
    assert "in the plan pass" in ready(status)["message"]
    clean = StripeIntegrationStatus(conditions=planned_conditions(status, planned("plan run-2: ..."), 2))
    healthy = build_status(clean, Assessment(stripe=OK, source=OK, plan=True), generation=2, integration_id="i")
    assert ready(healthy)["reason"] == "PlanOnly"


def test_in_plan_mode_a_crash_of_an_earlier_send_pass_does_not_keep_ready_false() -> None:
    synced = {
        "type": "Synced",
        "status": "False",
        "reason": "InternalError",
        "message": "unexpected in the sync pass",
        "lastTransitionTime": "2026-12-01T10:00:00Z",
    }
    status = build_status(
        read_status({"conditions": [synced]}),
        Assessment(stripe=OK, source=OK, plan=True),
        generation=2,
        integration_id="i",
    )
    assert ready(status)["reason"] == "PlanOnly"
