"""Reading the status the API server holds into the typed model, and writing it back: what cannot be read is set
aside (never guessed, never removed), and what the operator writes is exactly the fields it set."""

from __future__ import annotations

from typing import Any

import pytest

from m3stripe.api.status import (
    StripeIntegrationStatus,
    SyncProgress,
    UnreadableStatus,
    read_status,
    wire,
)

CONDITION = {
    "type": "Ready",
    "status": "True",
    "reason": "Ready",
    "message": "",
    "lastTransitionTime": "2026-12-01T00:00:00Z",
}


def test_a_status_reads_back_what_was_written() -> None:
    written = {
        "observedGeneration": 3,
        "conditions": [CONDITION],
        "consecutiveErrors": 2,
        "sync": {"watermark": "2026-12-01T00:00:00Z", "retryBillIds": ["b-1"], "scope": "a.test.-"},
        "lastHandledReplay": "b-1 #t",
    }
    status = read_status(written)
    assert status.consecutiveErrors == 2 and status.sync is not None and status.sync.retryBillIds == ["b-1"]
    assert wire(status) == written and not status.unreadable
    assert read_status(None) == StripeIntegrationStatus() and wire(read_status(None)) == {}


def test_a_field_of_a_newer_operator_is_ignored_at_any_depth() -> None:
    status = read_status({"futureField": 1, "sync": {"scope": "a.test.-", "futureCursor": "x"}, "consecutiveErrors": 1})
    assert wire(status) == {"sync": {"scope": "a.test.-"}, "consecutiveErrors": 1}
    assert not status.unreadable  # nothing the operator needs is missing


def test_a_field_that_cannot_be_read_is_set_aside_named_and_refused_where_it_is_needed() -> None:
    status = read_status({"openEvents": "garbage", "consecutiveErrors": "many", "disabled": False})
    assert status.openEvents == [] and status.consecutiveErrors == 0  # as if absent...
    assert set(status.unreadable) == {"openEvents", "consecutiveErrors"}
    assert wire(status) == {"disabled": False}  # ...and never written back, so never overwritten either
    status.require("disabled")
    with pytest.raises(UnreadableStatus, match=r"status\.openEvents: Input should be a valid list"):
        status.require("disabled", "openEvents")


def test_setting_an_unreadable_field_anew_makes_it_readable() -> None:
    status = read_status({"recentRuns": 7})
    fixed = status.merged(StripeIntegrationStatus(recentRuns=[]))
    fixed.require("recentRuns")
    assert "recentRuns" in status.unreadable  # the status it came from is unchanged


def test_a_condition_that_cannot_be_read_is_left_out_and_the_others_kept() -> None:
    status = read_status({"conditions": [{"type": "Synced", "status": "False"}, "text", CONDITION]})
    assert [c.type for c in status.conditions] == ["Ready"] and not status.unreadable


@pytest.mark.parametrize("value", ["yesterday", 5, ["2026-12-01T00:00:00Z"]])
def test_a_last_sweep_that_cannot_be_read_is_no_sweep_and_the_rest_of_the_progress_is_kept(value: object) -> None:
    status = read_status({"sync": {"watermark": "2026-12-01T00:00:00Z", "lastSweep": value}})
    assert status.sync is not None and status.sync.watermark == "2026-12-01T00:00:00Z"
    assert status.sync.lastSweep == (value if isinstance(value, str) else None)  # a string: the pass parses it


@pytest.mark.parametrize("raw", ["garbage", ["a"], 5])
def test_a_status_that_is_not_an_object_cannot_be_read(raw: object) -> None:
    with pytest.raises(UnreadableStatus, match="not an object"):
        read_status(raw)


def test_what_is_written_is_the_fields_set_with_their_explicit_nulls() -> None:
    progress = SyncProgress(watermark=None, retryBillIds=[], checkpoint=None, scope="a.test.-")
    change = StripeIntegrationStatus(sync=progress, stripeAccountId=None)
    expected: dict[str, Any] = {
        "sync": {"watermark": None, "retryBillIds": [], "checkpoint": None, "scope": "a.test.-"},
        "stripeAccountId": None,
    }
    assert wire(change) == expected
    merged = read_status({"consecutiveErrors": 1, "stripeAccountId": "acct_1"}).merged(change)
    assert wire(merged) == {"consecutiveErrors": 1, **expected}
