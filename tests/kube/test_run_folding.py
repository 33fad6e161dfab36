"""A run folded into the status: run history, open events (de-duplication, retention, the bound), the error count and
the progress, as the JSON the operator writes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from m3stripe.api.conditions import rfc3339
from m3stripe.api.names import ANNOTATION_REENABLE
from m3stripe.api.status import IntegrationEvent, StripeIntegrationStatus, read_status, wire
from m3stripe.domain.progress import sync_state
from m3stripe.domain.runs import EventKind, RunStatus
from m3stripe.kube.status_builder import MAX_OPEN_EVENTS, disabled_event, fold_report, merge_events, run_record
from tests.domain.builders import RUN_START, event, report

T0 = RUN_START
RETENTION = timedelta(hours=720)


def written(events: list[IntegrationEvent]) -> list[dict[str, Any]]:
    """Open events as the JSON the operator writes."""
    return [wire(e) for e in events]


# --------------------------------------------------------------------------- merge_events


def test_new_events_open_with_count_one_and_are_fresh() -> None:
    e = event()
    opened, fresh = merge_events([], [e], now=T0, retention=RETENTION)
    events = written(opened)
    assert fresh == [e]
    assert events == [
        {
            "id": e.id,
            "kind": "integration.perform.error",
            "message": "boom",
            "runId": "run-1",
            "runStatus": "ERROR",
            "billId": "bill-1",
            "accountId": "acc-1",
            "firstSeen": "2025-06-01T12:00:00Z",
            "lastSeen": "2025-06-01T12:00:00Z",
            "count": 1,
        }
    ]


def test_none_fields_are_left_out() -> None:
    opened, _ = merge_events([], [event(bill_id=None, account_id=None)], now=T0, retention=RETENTION)
    events = written(opened)
    assert "billId" not in events[0]
    assert "accountId" not in events[0]


def test_a_repeat_bumps_count_and_last_seen_and_is_not_fresh() -> None:
    first, _ = merge_events([], [event(run_id="run-1")], now=T0, retention=RETENTION)
    later = T0 + timedelta(hours=1)
    opened, fresh = merge_events(first, [event(run_id="run-2", at=later)], now=later, retention=RETENTION)
    events = written(opened)
    assert fresh == []
    assert len(events) == 1
    assert events[0]["count"] == 2
    assert events[0]["firstSeen"] == "2025-06-01T12:00:00Z"
    assert events[0]["lastSeen"] == "2025-06-01T13:00:00Z"
    assert events[0]["runId"] == "run-2"


def test_a_repeat_within_one_run_is_counted_once_as_fresh() -> None:
    opened, fresh = merge_events([], [event(), event()], now=T0, retention=RETENTION)
    events = written(opened)
    assert len(fresh) == 1
    assert events[0]["count"] == 2


def test_merge_does_not_mutate_existing_events() -> None:
    existing, _ = merge_events([], [event()], now=T0, retention=RETENTION)
    snapshot = [e.model_copy(deep=True) for e in existing]
    merge_events(existing, [event()], now=T0 + timedelta(hours=1), retention=RETENTION)
    assert existing == snapshot


def test_retention_drops_events_not_raised_recently() -> None:
    old, _ = merge_events([], [event("old")], now=T0, retention=RETENTION)
    recent, _ = merge_events(
        old, [event("recent", at=T0 + timedelta(hours=10))], now=T0 + timedelta(hours=10), retention=RETENTION
    )
    now = T0 + timedelta(hours=25)
    opened, fresh = merge_events(recent, [], now=now, retention=timedelta(hours=24))
    events = written(opened)
    assert [e["message"] for e in events] == ["recent"]
    assert fresh == []
    # exactly at the cutoff it is still kept
    opened, _ = merge_events(recent, [], now=T0 + timedelta(hours=24), retention=timedelta(hours=24))
    events = written(opened)
    assert {e["message"] for e in events} == {"old", "recent"}


def test_a_repeat_keeps_an_old_event_alive() -> None:
    old, _ = merge_events([], [event("old")], now=T0, retention=RETENTION)
    now = T0 + timedelta(days=60)
    opened, fresh = merge_events(old, [event("old", at=now)], now=now, retention=RETENTION)
    events = written(opened)
    assert [e["count"] for e in events] == [2]
    assert fresh == []


def test_at_most_100_events_kept_newest_first() -> None:
    existing = [
        IntegrationEvent(
            **{
                "id": f"evt-{i:03d}",
                "kind": "integration.perform.error",
                "message": f"m{i}",
                "firstSeen": rfc3339(T0 + timedelta(minutes=i)),
                "lastSeen": rfc3339(T0 + timedelta(minutes=i)),
                "count": 1,
            }
        )
        for i in range(120)
    ]
    now = T0 + timedelta(hours=5)
    new = event("newest", at=now)
    opened, fresh = merge_events(existing, [new], now=now, retention=RETENTION)
    events = written(opened)
    assert len(events) == MAX_OPEN_EVENTS == 100
    assert events[0]["id"] == new.id
    assert [e["id"] for e in events[1:]] == [f"evt-{i:03d}" for i in range(119, 20, -1)]
    assert fresh == [new]
    last_seen = [e["lastSeen"] for e in events]
    assert last_seen == sorted(last_seen, reverse=True)


def test_long_messages_are_cut_to_the_status_limit() -> None:
    opened, _ = merge_events([], [event("m" * 5000)], now=T0, retention=RETENTION)
    events = written(opened)
    assert len(events[0]["message"]) == 4096


# --------------------------------------------------------------------------- fold_report


EMPTY = StripeIntegrationStatus()


def recent(n: int) -> list[dict[str, Any]]:
    return [{"runId": f"old-{i}", "status": "COMPLETE"} for i in range(n)]


def test_fold_report_prepends_the_run_and_bounds_history() -> None:
    status = read_status({"recentRuns": recent(5)})
    folded, _ = fold_report(status, report("new"), history=3, retention=RETENTION, consecutive_errors=0, now=T0)
    out = wire(folded)
    assert [r["runId"] for r in out["recentRuns"]] == ["new", "old-0", "old-1"]
    folded, _ = fold_report(EMPTY, report("first"), history=3, retention=RETENTION, consecutive_errors=0, now=T0)
    out = wire(folded)
    assert [r["runId"] for r in out["recentRuns"]] == ["first"]


def test_fold_report_records_the_run() -> None:
    r = report("run-9", sent=2, skipped=1, stripe_ids=[("b1", 3, "in_1")])
    folded, _ = fold_report(EMPTY, r, history=10, retention=RETENTION, consecutive_errors=4, now=T0)
    out = wire(folded)
    record = out["recentRuns"][0]
    assert record["status"] == "COMPLETE"
    assert record["startTime"] == "2025-06-01T12:00:00Z"
    assert record["completionTime"] == "2025-06-01T12:00:05Z"
    assert record["billsSent"] == 2
    assert record["billsSkipped"] == 1
    assert record["stripeObjects"] == [{"billId": "b1", "billVersion": 3, "stripeId": "in_1"}]
    assert out["lastSync"]["runId"] == "run-9"
    assert "stripeObjects" not in out["lastSync"]
    assert out["consecutiveErrors"] == 4


def test_run_record_caps_stripe_objects_at_50() -> None:
    r = report(stripe_ids=[(f"b{i}", 1, f"in_{i}") for i in range(80)])
    assert len(wire(run_record(r))["stripeObjects"]) == 50


def test_last_successful_sync_time_only_on_complete() -> None:
    folded, _ = fold_report(EMPTY, report(), history=10, retention=RETENTION, consecutive_errors=0, now=T0)
    done = wire(folded)
    assert done["lastSuccessfulSyncTime"] == "2025-06-01T12:00:05Z"
    for status in (RunStatus.ERROR, RunStatus.AUTH_FAILED, RunStatus.AWAITING_RETRY, RunStatus.STARTED):
        folded, _ = fold_report(
            EMPTY, report(status=status), history=10, retention=RETENTION, consecutive_errors=1, now=T0
        )
        out = wire(folded)
        assert "lastSuccessfulSyncTime" not in out


def test_fold_report_sync_progress() -> None:
    watermark = datetime(2025, 6, 1, 11, 0, 0, 123456, tzinfo=UTC)
    r = report(watermark=watermark, retry_bill_ids=["b1", "b2"])
    folded, _ = fold_report(EMPTY, r, history=10, retention=RETENTION, consecutive_errors=0, now=T0)
    out = wire(folded)
    assert out["sync"] == {"watermark": "2025-06-01T11:00:00Z", "retryBillIds": ["b1", "b2"]}
    state = sync_state(folded.sync)
    assert state.watermark == datetime(2025, 6, 1, 11, 0, 0, tzinfo=UTC)
    assert state.retry_bill_ids == ("b1", "b2")

    folded, _ = fold_report(EMPTY, report(), history=10, retention=RETENTION, consecutive_errors=0, now=T0)
    out = wire(folded)
    assert out["sync"] == {"retryBillIds": []}
    assert sync_state(folded.sync).watermark is None


def test_fold_report_merges_events_and_returns_only_fresh_ones() -> None:
    old, _ = merge_events([], [event("known")], now=T0, retention=RETENTION)
    later = T0 + timedelta(minutes=5)
    r = report(events=[event("known", at=later), event("new", at=later)], status=RunStatus.ERROR)
    status = StripeIntegrationStatus(openEvents=old)
    folded, fresh = fold_report(status, r, history=10, retention=RETENTION, consecutive_errors=2, now=later)
    out = wire(folded)
    assert [e.message for e in fresh] == ["new"]
    assert {e["message"]: e["count"] for e in out["openEvents"]} == {"known": 2, "new": 1}


# --------------------------------------------------------------------------- disabled_event


def test_disabled_event_says_how_to_reenable_and_the_last_cause() -> None:
    last = event("Stripe rejected the API key")
    e = disabled_event("run-7", 10, T0, last)
    assert e.kind is EventKind.DISABLED
    assert e.status is RunStatus.DISABLED
    assert e.run_id == "run-7"
    assert ANNOTATION_REENABLE in e.message
    assert "10 successive" in e.message
    assert e.message.endswith("The last one: Stripe rejected the API key")
    assert "The last one" not in disabled_event("run-7", 10, T0, None).message
    assert len(disabled_event("r", 3, T0, event("x" * 10000)).message) == 4096
