"""Condition bookkeeping: lastTransitionTime moves only when status flips; no churn otherwise."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from m3stripe.api.conditions import Observation, find, merge_conditions
from m3stripe.api.status import Condition

T1 = "2025-06-01T12:00:00Z"
T2 = "2025-06-01T13:00:00Z"


def cond(type_: str, status: str, reason: str = "R", message: str = "", at: str = T1, gen: int = 1) -> dict[str, Any]:
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": gen,
        "lastTransitionTime": at,
    }


def test_new_condition_gets_now_and_generation() -> None:
    out = merge_conditions(None, [Observation("Ready", "True", "Ready", "all good")], generation=3, now=T1)
    assert out == [cond("Ready", "True", "Ready", "all good", T1, 3)]


def test_same_status_keeps_transition_time_even_when_reason_and_message_change() -> None:
    existing = [cond("Ready", "False", "Suspended", "paused", T1)]
    out = merge_conditions(
        existing, [Observation("Ready", "False", "StripeAuthFailed", "bad key")], generation=2, now=T2
    )
    assert out == [cond("Ready", "False", "StripeAuthFailed", "bad key", T1, 2)]


def test_status_flip_moves_transition_time() -> None:
    existing = [cond("Ready", "False", "Suspended", at=T1)]
    out = merge_conditions(existing, [Observation("Ready", "True", "Ready")], generation=1, now=T2)
    assert out[0]["lastTransitionTime"] == T2
    assert out[0]["status"] == "True"
    out = merge_conditions(out, [Observation("Ready", "Unknown", "Checking")], generation=1, now="2025-06-02T00:00:00Z")
    assert out[0]["lastTransitionTime"] == "2025-06-02T00:00:00Z"


def test_unchanged_observation_gives_an_identical_list() -> None:
    first = merge_conditions(None, [Observation("Ready", "True", "Ready", "ok")], generation=1, now=T1)
    again = merge_conditions(first, [Observation("Ready", "True", "Ready", "ok")], generation=1, now=T2)
    assert again == first


def test_absent_types_are_removed_and_others_kept() -> None:
    existing = [cond("Stalled", "True"), cond("Ready", "False"), cond("Custom", "True")]
    out = merge_conditions(existing, [Observation("Ready", "True", "Ready")], generation=1, absent=["Stalled"], now=T2)
    assert [c["type"] for c in out] == ["Ready", "Custom"]
    assert out[1] == cond("Custom", "True")
    # removing a type that is not there is fine
    assert merge_conditions(out, [], generation=1, absent=["Stalled"], now=T2) == out


def test_order_is_stable_and_new_types_are_appended() -> None:
    existing = [cond("Connected", "True"), cond("Ready", "True")]
    out = merge_conditions(
        existing,
        [
            Observation("SourceConnected", "True", "Connected"),
            Observation("Ready", "False", "X"),
            Observation("Connected", "True", "Y"),
        ],
        generation=1,
        now=T2,
    )
    assert [c["type"] for c in out] == ["Connected", "Ready", "SourceConnected"]


def test_observed_generation_follows_the_generation() -> None:
    existing = [cond("Ready", "True", gen=1)]
    out = merge_conditions(existing, [Observation("Ready", "True", "R")], generation=5, now=T2)
    assert out[0]["observedGeneration"] == 5
    out = merge_conditions(None, [Observation("Ready", "True", "R")], generation=None, now=T2)
    assert "observedGeneration" not in out[0]


def test_existing_list_is_not_mutated() -> None:
    existing = [cond("Ready", "True")]
    merge_conditions(existing, [Observation("Ready", "False", "X", "m")], generation=9, now=T2)
    assert existing == [cond("Ready", "True")]


def test_long_messages_are_cut() -> None:
    out = merge_conditions(None, [Observation("Ready", "False", "X", "m" * 40000)], generation=1, now=T1)
    assert len(out[0]["message"]) == 32768


def test_default_timestamp_is_rfc3339_utc() -> None:
    out = merge_conditions(None, [Observation("Ready", "True", "R")], generation=1)
    stamp = out[0]["lastTransitionTime"]
    assert stamp.endswith("Z")
    assert len(stamp) == len("2025-06-01T12:00:00Z")


@pytest.mark.parametrize("reason", ["Ready", "StripeAuthFailed", "A", "a_b", "X:Y,Z_1"])
def test_good_reasons(reason: str) -> None:
    assert Observation("Ready", "True", reason).reason == reason


@pytest.mark.parametrize("reason", ["", "1Ready", "Not Ready", "Ready-Now", "Ready,", "Ready:", "Bad.Reason"])
def test_bad_reason_raises(reason: str) -> None:
    with pytest.raises(ValueError, match="reason"):
        Observation("Ready", "True", reason)


def test_reason_with_trailing_newline_raises() -> None:
    with pytest.raises(ValueError):
        Observation("Ready", "True", "Ready\n")


def test_status_model_rejects_a_trailing_newline_in_reason() -> None:
    # The schema the apiserver enforces: what Observation is meant to mirror.
    with pytest.raises(ValidationError):
        Condition.model_validate(cond("Ready", "True", reason="Ready\n"))


def test_find() -> None:
    conditions = [cond("Ready", "True"), cond("Connected", "False")]
    assert find(conditions, "Connected") == conditions[1]
    assert find(conditions, "Stalled") is None
    assert find(None, "Ready") is None
