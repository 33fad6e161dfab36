"""The Ready summary's precedence, Stalled polarity, and churn-free status patches."""

from __future__ import annotations

from typing import Any

import pytest

from m3stripe.api.conditions import Observation
from m3stripe.api.status import StripeIntegrationStatus, read_status, wire
from m3stripe.domain.credential_check import CredentialCheck
from m3stripe.kube.status_builder import (
    Assessment,
    build_status,
    internal_error_message,
    internal_error_status,
    observe,
    pass_error_of,
    ready_of,
    status_patch,
)

STRIPE_OK = CredentialCheck(True, "Connected", "Stripe accepted the key", account_id="acct_1")
STRIPE_BAD = CredentialCheck(False, "StripeAuthFailed", "Stripe rejected the API key")
STRIPE_DOWN = CredentialCheck(False, "StripeUnreachable", "could not reach Stripe", retryable=True)
SOURCE_OK = CredentialCheck(True, "Connected", "m3ter accepted the credentials")
SOURCE_BAD = CredentialCheck(False, "M3terAuthFailed", "m3ter rejected the credentials")


def by_type(observations: list[Observation]) -> dict[str, Observation]:
    return {str(o.type): o for o in observations}


def ready(a: Assessment) -> Observation:
    return by_type(observe(a)[0])["Ready"]


def conditions(status: dict[str, Any] | StripeIntegrationStatus) -> dict[str, dict[str, Any]]:
    written = wire(status) if isinstance(status, StripeIntegrationStatus) else status
    return {c["type"]: c for c in written["conditions"]}


@pytest.mark.parametrize(
    ("assessment", "status", "reason"),
    [
        (
            Assessment(problems=("spec.x: bad",), disabled=True, suspended=True, stripe=STRIPE_BAD, source=SOURCE_BAD),
            "False",
            "InvalidSpec",
        ),
        (Assessment(disabled=True, suspended=True, stripe=STRIPE_BAD, source=SOURCE_BAD), "False", "AutoDisabled"),
        (Assessment(suspended=True, stripe=STRIPE_BAD, source=SOURCE_BAD), "False", "Suspended"),
        (Assessment(stripe=STRIPE_BAD, source=SOURCE_BAD), "False", "StripeAuthFailed"),
        (Assessment(stripe=STRIPE_DOWN, source=SOURCE_BAD), "False", "StripeUnreachable"),
        (Assessment(stripe=STRIPE_OK, source=SOURCE_BAD), "False", "M3terAuthFailed"),
        (Assessment(stripe=STRIPE_OK, source=SOURCE_OK, ready_message="syncing every 5m"), "True", "Ready"),
        (Assessment(), "True", "Ready"),
    ],
)
def test_ready_precedence(assessment: Assessment, status: str, reason: str) -> None:
    obs = ready(assessment)
    assert (obs.status, obs.reason) == (status, reason)


def test_invalid_spec_is_stalled_with_every_problem_in_the_message() -> None:
    obs, absent = observe(Assessment(problems=("spec.a: one", "spec.b: two"), stripe=STRIPE_OK))
    got = by_type(obs)
    assert got["Stalled"].status == "True"
    assert got["Ready"].message == "invalid spec: spec.a: one; spec.b: two"
    assert got["Connected"].status == "Unknown"
    assert "Stalled" not in absent


def test_disabled_is_stalled_with_its_message() -> None:
    obs, absent = observe(Assessment(disabled=True, disabled_message="disabled after 10 errors", stripe=STRIPE_OK))
    got = by_type(obs)
    assert (got["Stalled"].status, got["Stalled"].reason) == ("True", "AutoDisabled")
    assert got["Ready"].message == "disabled after 10 errors"
    assert got["Connected"].status == "True"
    assert "Stalled" not in absent


@pytest.mark.parametrize(
    "assessment",
    [Assessment(), Assessment(suspended=True), Assessment(stripe=STRIPE_BAD), Assessment(stripe=STRIPE_OK)],
)
def test_stalled_is_removed_unless_true(assessment: Assessment) -> None:
    obs, absent = observe(assessment)
    assert "Stalled" in absent
    assert "Stalled" not in by_type(obs)


def test_check_results_become_connected_conditions() -> None:
    got = by_type(observe(Assessment(stripe=STRIPE_DOWN, source=SOURCE_BAD))[0])
    assert (got["Connected"].status, got["Connected"].reason) == ("Unknown", "StripeUnreachable")
    assert (got["SourceConnected"].status, got["SourceConnected"].reason) == ("False", "M3terAuthFailed")
    got = by_type(observe(Assessment(stripe=STRIPE_BAD, source=SOURCE_OK))[0])
    assert got["Connected"].status == "False"
    assert got["SourceConnected"].status == "True"
    got = by_type(observe(Assessment())[0])
    assert "Connected" not in got
    assert "SourceConnected" not in got


def test_build_status_when_connected() -> None:
    built = build_status(
        read_status({"lastHandledReplay": "tok"}),
        Assessment(stripe=STRIPE_OK, source=SOURCE_OK),
        generation=4,
        integration_id="uid-1",
    )
    status = wire(built)
    assert status["observedGeneration"] == 4
    assert status["integrationId"] == "uid-1"
    assert status["connected"] is True
    assert status["stripeAccountId"] == "acct_1"
    assert status["disabled"] is False
    assert status["consecutiveErrors"] == 0
    assert status["lastHandledReplay"] == "tok"  # carried over
    assert conditions(status)["Ready"]["status"] == "True"
    assert all(c["observedGeneration"] == 4 for c in status["conditions"])
    assert ready_of(built) == ("True", "Ready")


@pytest.mark.parametrize(
    "assessment",
    [
        Assessment(stripe=STRIPE_BAD),
        Assessment(stripe=STRIPE_DOWN),
        Assessment(),
        Assessment(problems=("spec.x: bad",), stripe=STRIPE_OK),
    ],
)
def test_not_connected_clears_the_stripe_account(assessment: Assessment) -> None:
    current = read_status({"connected": True, "stripeAccountId": "acct_old", "consecutiveErrors": 3})
    status = wire(build_status(current, assessment, generation=1, integration_id="uid-1"))
    assert status["connected"] is False
    assert status["stripeAccountId"] is None
    assert status["consecutiveErrors"] == 3


def test_build_status_removes_stalled_once_the_spec_is_fixed() -> None:
    broken = build_status(None, Assessment(problems=("spec.x: bad",)), generation=1, integration_id="u")
    assert conditions(broken)["Stalled"]["status"] == "True"
    fixed = build_status(broken, Assessment(stripe=STRIPE_OK), generation=2, integration_id="u")
    assert "Stalled" not in conditions(fixed)
    assert conditions(fixed)["Ready"]["status"] == "True"


def test_build_status_applies_extra_last() -> None:
    extra = StripeIntegrationStatus(consecutiveErrors=7)
    status = wire(build_status(None, Assessment(), generation=1, integration_id="u", extra=extra))
    assert status["consecutiveErrors"] == 7


def test_ready_of_without_conditions() -> None:
    assert ready_of(None) == (None, None)
    assert ready_of(read_status({"conditions": []})) == (None, None)


def test_status_patch_is_none_when_nothing_changed() -> None:
    status = build_status(None, Assessment(stripe=STRIPE_OK), generation=1, integration_id="u")
    again = build_status(status, Assessment(stripe=STRIPE_OK), generation=1, integration_id="u")
    assert status_patch(status, again) is None
    assert status_patch({}, {}) is None


def test_status_patch_contains_changed_keys_and_nulls_for_removed_ones() -> None:
    old = {"a": 1, "b": {"x": 1}, "gone": "y", "same": [1]}
    new = {"a": 2, "b": {"x": 1}, "same": [1], "added": True}
    assert status_patch(old, new) == {"a": 2, "added": True, "gone": None}
    assert status_patch(None, {"a": 1}) == {"a": 1}


def test_status_patch_after_disconnect_nulls_the_account() -> None:
    connected = build_status(None, Assessment(stripe=STRIPE_OK), generation=1, integration_id="u")
    broken = build_status(connected, Assessment(stripe=STRIPE_BAD), generation=1, integration_id="u")
    patch = status_patch(connected, broken)
    assert patch is not None
    assert patch["stripeAccountId"] is None
    assert patch["connected"] is False
    assert "conditions" in patch
    assert "integrationId" not in patch


# -- unexpected exceptions --------------------------------------------------------------------


def test_an_unexpected_exception_makes_ready_false_internal_error_after_the_credential_checks() -> None:
    assert ready(Assessment(stripe=STRIPE_OK, source=SOURCE_OK, internal_error="unexpected X")).reason == (
        "InternalError"
    )
    assert ready(Assessment(stripe=STRIPE_BAD, source=SOURCE_OK, internal_error="unexpected X")).reason == (
        "StripeAuthFailed"
    )
    assert ready(Assessment(problems=("spec.x: bad",), internal_error="unexpected X")).reason == "InvalidSpec"
    assert ready(Assessment(suspended=True, internal_error="unexpected X")).reason == "Suspended"


def test_a_pass_that_failed_unexpectedly_keeps_ready_false_until_a_clean_pass() -> None:
    failed = {
        "conditions": [
            {
                "type": "Synced",
                "status": "False",
                "reason": "InternalError",
                "message": "run r: unexpected ValueError in the sync pass: boom",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            }
        ]
    }
    assert pass_error_of(read_status(failed)).endswith("boom")
    status = build_status(
        read_status(failed), Assessment(stripe=STRIPE_OK, source=SOURCE_OK), generation=1, integration_id="u"
    )
    assert conditions(status)["Ready"]["reason"] == "InternalError"
    assert "boom" in conditions(status)["Ready"]["message"]
    clean = build_status(None, Assessment(stripe=STRIPE_OK, source=SOURCE_OK), generation=1, integration_id="u")
    assert conditions(clean)["Ready"]["reason"] == "Ready"


def test_a_failed_reconcile_keeps_the_status_and_sets_ready_false() -> None:
    current = {"openEvents": "garbage", "conditions": [{"type": "Connected", "status": "True", "reason": "Connected"}]}
    status = internal_error_status(current, "unexpected AttributeError while reconciling: x", generation=3)
    assert status["openEvents"] == "garbage"
    ready_condition = conditions(status)["Ready"]
    assert (ready_condition["status"], ready_condition["reason"], ready_condition["observedGeneration"]) == (
        "False",
        "InternalError",
        3,
    )
    assert conditions(status)["Connected"]["status"] == "True"


def test_an_internal_error_message_names_the_exception_and_masks_anything_like_a_key() -> None:
    message = internal_error_message(ValueError("bad key sk_test_51abcDEF and rk_live_xyz9\nsecond line"), "in X")
    assert message.startswith("unexpected ValueError in X: bad key *** and *** second line.")
    assert "sk_test_51abcDEF" not in message and "rk_live_xyz9" not in message
    assert len(internal_error_message(RuntimeError("x" * 5000), "here")) < 1200
