"""Run reports and their folding into status: counters, event de-duplication, resolve, replay, history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from m3stripe.api.names import ANNOTATION_REENABLE, ANNOTATION_REPLAY, ANNOTATION_REQUESTED_AT, ANNOTATION_RESOLVE
from m3stripe.domain.run_history import (
    MAX_GESTURE_IDS,
    MAX_GESTURE_LENGTH,
    MAX_OPEN_EVENTS,
    disabled_event,
    fold_report,
    gesture_annotations,
    ledger_id,
    merge_events,
    parse_targets,
    progress_for,
    replay_bills,
    replay_request,
    resolve_events,
    rfc3339,
    run_record,
    sync_state,
    unknown_event_ids,
)
from m3stripe.domain.runs import BillResult, ErrorEvent, EventKind, Outcome, RunReport, RunStatus, SyncState

T0 = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
RETENTION = timedelta(hours=720)


def event(
    message: str = "boom",
    *,
    kind: EventKind = EventKind.PERFORM,
    bill_id: str | None = "bill-1",
    account_id: str | None = "acc-1",
    run_id: str = "run-1",
    at: datetime = T0,
) -> ErrorEvent:
    return ErrorEvent(kind=kind, message=message, run_id=run_id, time=at, bill_id=bill_id, account_id=account_id)


def report(run_id: str = "run-1", *, status: RunStatus = RunStatus.COMPLETE, **fields: Any) -> RunReport:
    r = RunReport(run_id=run_id, started=T0, completed=T0 + timedelta(seconds=5), status=status)
    for name, value in fields.items():
        setattr(r, name, value)
    return r


# --------------------------------------------------------------------------- RunReport


def test_run_report_counts_each_outcome() -> None:
    r = report()
    for outcome, n in ((Outcome.SENT, 3), (Outcome.UNCHANGED, 2), (Outcome.SKIPPED, 4), (Outcome.FAILED, 1)):
        for i in range(n):
            r.add(BillResult(f"{outcome}-{i}", 1, outcome), keep_ids=10)
    assert (r.sent, r.unchanged, r.skipped, r.failed) == (3, 2, 4, 1)
    assert r.summary() == "3 sent, 2 already in Stripe, 4 skipped, 1 failed"


def test_run_report_keeps_stripe_ids_of_sent_bills_up_to_the_bound() -> None:
    r = report()
    for i in range(5):
        r.add(BillResult(f"b{i}", i, Outcome.SENT, stripe_id=f"in_{i}"), keep_ids=3)
    r.add(BillResult("u", 1, Outcome.UNCHANGED, stripe_id="in_u"), keep_ids=3)
    r.add(BillResult("nostripe", 1, Outcome.SENT), keep_ids=10)
    assert r.stripe_ids == [("b0", 0, "in_0"), ("b1", 1, "in_1"), ("b2", 2, "in_2")]
    assert r.sent == 6


def test_run_report_collects_events_and_retries() -> None:
    r = report()
    e = event()
    r.add(BillResult("b1", 1, Outcome.FAILED, event=e, retry=True), keep_ids=10)
    r.add(BillResult("b2", 1, Outcome.FAILED, event=None, retry=False), keep_ids=10)
    assert r.events == [e]
    assert r.retry_bill_ids == ["b1"]
    assert r.failed == 2


def test_summary_mentions_an_early_stop() -> None:
    r = report(stopped_early="Stripe rejected the API key")
    assert r.summary().endswith("; stopped early: Stripe rejected the API key")


# --------------------------------------------------------------------------- ErrorEvent.id


def test_event_id_is_stable_for_the_same_problem_across_runs_and_times() -> None:
    a = event(run_id="run-1", at=T0)
    b = event(run_id="run-2", at=T0 + timedelta(days=1))
    assert a.id == b.id
    assert a.id.startswith("evt-")


@pytest.mark.parametrize(
    "other",
    [
        event(message="other"),
        event(kind=EventKind.VALIDATION),
        event(bill_id="bill-2"),
        event(account_id="acc-2"),
        event(bill_id=None),
    ],
)
def test_event_id_differs_for_another_problem(other: ErrorEvent) -> None:
    assert other.id != event().id


# --------------------------------------------------------------------------- merge_events


def test_new_events_open_with_count_one_and_are_fresh() -> None:
    e = event()
    events, fresh = merge_events([], [e], now=T0, retention=RETENTION)
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
    events, _ = merge_events([], [event(bill_id=None, account_id=None)], now=T0, retention=RETENTION)
    assert "billId" not in events[0]
    assert "accountId" not in events[0]


def test_a_repeat_bumps_count_and_last_seen_and_is_not_fresh() -> None:
    first, _ = merge_events([], [event(run_id="run-1")], now=T0, retention=RETENTION)
    later = T0 + timedelta(hours=1)
    events, fresh = merge_events(first, [event(run_id="run-2", at=later)], now=later, retention=RETENTION)
    assert fresh == []
    assert len(events) == 1
    assert events[0]["count"] == 2
    assert events[0]["firstSeen"] == "2025-06-01T12:00:00Z"
    assert events[0]["lastSeen"] == "2025-06-01T13:00:00Z"
    assert events[0]["runId"] == "run-2"


def test_a_repeat_within_one_run_is_counted_once_as_fresh() -> None:
    events, fresh = merge_events([], [event(), event()], now=T0, retention=RETENTION)
    assert len(fresh) == 1
    assert events[0]["count"] == 2


def test_merge_does_not_mutate_existing_events() -> None:
    existing, _ = merge_events([], [event()], now=T0, retention=RETENTION)
    snapshot = [dict(e) for e in existing]
    merge_events(existing, [event()], now=T0 + timedelta(hours=1), retention=RETENTION)
    assert existing == snapshot


def test_retention_drops_events_not_raised_recently() -> None:
    old, _ = merge_events([], [event("old")], now=T0, retention=RETENTION)
    recent, _ = merge_events(
        old, [event("recent", at=T0 + timedelta(hours=10))], now=T0 + timedelta(hours=10), retention=RETENTION
    )
    now = T0 + timedelta(hours=25)
    events, fresh = merge_events(recent, [], now=now, retention=timedelta(hours=24))
    assert [e["message"] for e in events] == ["recent"]
    assert fresh == []
    # exactly at the cutoff it is still kept
    events, _ = merge_events(recent, [], now=T0 + timedelta(hours=24), retention=timedelta(hours=24))
    assert {e["message"] for e in events} == {"old", "recent"}


def test_a_repeat_keeps_an_old_event_alive() -> None:
    old, _ = merge_events([], [event("old")], now=T0, retention=RETENTION)
    now = T0 + timedelta(days=60)
    events, fresh = merge_events(old, [event("old", at=now)], now=now, retention=RETENTION)
    assert [e["count"] for e in events] == [2]
    assert fresh == []


def test_at_most_100_events_kept_newest_first() -> None:
    existing = [
        {
            "id": f"evt-{i:03d}",
            "kind": "integration.perform.error",
            "message": f"m{i}",
            "firstSeen": rfc3339(T0 + timedelta(minutes=i)),
            "lastSeen": rfc3339(T0 + timedelta(minutes=i)),
            "count": 1,
        }
        for i in range(120)
    ]
    now = T0 + timedelta(hours=5)
    new = event("newest", at=now)
    events, fresh = merge_events(existing, [new], now=now, retention=RETENTION)
    assert len(events) == MAX_OPEN_EVENTS == 100
    assert events[0]["id"] == new.id
    assert [e["id"] for e in events[1:]] == [f"evt-{i:03d}" for i in range(119, 20, -1)]
    assert fresh == [new]
    last_seen = [e["lastSeen"] for e in events]
    assert last_seen == sorted(last_seen, reverse=True)


def test_long_messages_are_cut_to_the_status_limit() -> None:
    events, _ = merge_events([], [event("m" * 5000)], now=T0, retention=RETENTION)
    assert len(events[0]["message"]) == 4096


# --------------------------------------------------------------------------- resolve


def open_events() -> list[dict[str, Any]]:
    return [{"id": "evt-a", "message": "a"}, {"id": "evt-b", "message": "b"}, {"id": "evt-c", "message": "c"}]


@pytest.mark.parametrize(
    ("annotation", "left"),
    [
        ("evt-a", ["evt-b", "evt-c"]),
        ("evt-a,evt-c", ["evt-b"]),
        ("  evt-a \n evt-c  ", ["evt-b"]),
        ("evt-a, evt-b\tevt-c", []),
        ("all", []),
        ("evt-a all", []),
        ("evt-b #2025-06-01", ["evt-a", "evt-c"]),
        ("#evt-a", ["evt-a", "evt-b", "evt-c"]),
        ("evt-unknown", ["evt-a", "evt-b", "evt-c"]),
        ("", ["evt-a", "evt-b", "evt-c"]),
    ],
)
def test_resolve_events(annotation: str, left: list[str]) -> None:
    assert [e["id"] for e in resolve_events(open_events(), annotation)] == left


def test_parse_targets_ignores_the_token_after_hash() -> None:
    assert parse_targets("a, b c#d e") == ["a", "b", "c"]
    assert parse_targets(",,  ,") == []


# --------------------------------------------------------------------------- replay


def test_replay_bills_expands_runs_from_history_and_open_events() -> None:
    status: dict[str, Any] = {
        "recentRuns": [
            {"runId": "run-1", "stripeObjects": [{"billId": "b1", "billVersion": 1, "stripeId": "in_1"}]},
            {
                "runId": "run-2",
                "stripeObjects": [
                    {"billId": "b2", "billVersion": 1, "stripeId": "in_2"},
                    {"billId": "b3", "billVersion": 2, "stripeId": "in_3"},
                ],
            },
            {"runId": "run-3"},
        ],
        "openEvents": [
            {"id": "evt-1", "runId": "run-2", "billId": "b4"},
            {"id": "evt-2", "runId": "run-2"},  # no bill: nothing to replay
            {"id": "evt-3", "runId": "run-1", "billId": "b5"},
        ],
    }
    assert replay_bills(status, "run:run-2") == {"b2", "b3", "b4"}
    assert replay_bills(status, "x1, run:run-1 #again") == {"x1", "b1", "b5"}
    assert replay_bills(status, "run:run-3 run:missing") == frozenset()
    assert replay_bills({}, "b9 b10") == {"b9", "b10"}
    assert replay_bills(status, "#b1") == frozenset()


# --------------------------------------------------------------------------- fold_report


def recent(n: int) -> list[dict[str, Any]]:
    return [{"runId": f"old-{i}", "status": "COMPLETE"} for i in range(n)]


def test_fold_report_prepends_the_run_and_bounds_history() -> None:
    status = {"recentRuns": recent(5)}
    out, _ = fold_report(status, report("new"), history=3, retention=RETENTION, consecutive_errors=0, now=T0)
    assert [r["runId"] for r in out["recentRuns"]] == ["new", "old-0", "old-1"]
    out, _ = fold_report({}, report("first"), history=3, retention=RETENTION, consecutive_errors=0, now=T0)
    assert [r["runId"] for r in out["recentRuns"]] == ["first"]


def test_fold_report_records_the_run() -> None:
    r = report("run-9", sent=2, skipped=1, stripe_ids=[("b1", 3, "in_1")])
    out, _ = fold_report({}, r, history=10, retention=RETENTION, consecutive_errors=4, now=T0)
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
    assert len(run_record(r)["stripeObjects"]) == 50


def test_last_successful_sync_time_only_on_complete() -> None:
    done, _ = fold_report({}, report(), history=10, retention=RETENTION, consecutive_errors=0, now=T0)
    assert done["lastSuccessfulSyncTime"] == "2025-06-01T12:00:05Z"
    for status in (RunStatus.ERROR, RunStatus.AUTH_FAILED, RunStatus.AWAITING_RETRY, RunStatus.STARTED):
        out, _ = fold_report({}, report(status=status), history=10, retention=RETENTION, consecutive_errors=1, now=T0)
        assert "lastSuccessfulSyncTime" not in out


def test_fold_report_sync_progress() -> None:
    watermark = datetime(2025, 6, 1, 11, 0, 0, 123456, tzinfo=UTC)
    r = report(watermark=watermark, retry_bill_ids=["b1", "b2"])
    out, _ = fold_report({}, r, history=10, retention=RETENTION, consecutive_errors=0, now=T0)
    assert out["sync"] == {"watermark": "2025-06-01T11:00:00Z", "retryBillIds": ["b1", "b2"]}
    state = sync_state(out)
    assert state.watermark == datetime(2025, 6, 1, 11, 0, 0, tzinfo=UTC)
    assert state.retry_bill_ids == ("b1", "b2")

    out, _ = fold_report({}, report(), history=10, retention=RETENTION, consecutive_errors=0, now=T0)
    assert out["sync"] == {"retryBillIds": []}
    assert sync_state(out).watermark is None


def test_fold_report_merges_events_and_returns_only_fresh_ones() -> None:
    old, _ = merge_events([], [event("known")], now=T0, retention=RETENTION)
    later = T0 + timedelta(minutes=5)
    r = report(events=[event("known", at=later), event("new", at=later)], status=RunStatus.ERROR)
    out, fresh = fold_report({"openEvents": old}, r, history=10, retention=RETENTION, consecutive_errors=2, now=later)
    assert [e.message for e in fresh] == ["new"]
    assert {e["message"]: e["count"] for e in out["openEvents"]} == {"known": 2, "new": 1}


def test_sync_state_of_an_empty_status() -> None:
    state = sync_state({})
    assert state.watermark is None
    assert state.retry_bill_ids == ()


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


# -- hostile gestures -------------------------------------------------------------------------


def test_resolve_all_is_case_insensitive() -> None:
    for spelling in ("all", "ALL", "All", " aLl #again"):
        assert resolve_events(open_events(), spelling) == []
        assert unknown_event_ids(open_events(), spelling) == []


def test_resolve_names_the_ids_that_are_not_open() -> None:
    ids = [e["id"] for e in open_events()]
    assert unknown_event_ids(open_events(), f"{ids[0]}, evt-000000000000 typo") == ["evt-000000000000", "typo"]
    assert unknown_event_ids(open_events(), ids[0]) == []


def test_a_replay_refuses_ids_that_could_leave_the_bills_path_and_names_them() -> None:
    request = replay_request({}, "good-1 ../../accounts a/b %2e b\u00efll " + "x" * 200)
    assert request.bills == {"good-1"}
    text = " ".join(request.problems)
    for named in ("'../../accounts'", "'a/b'", "'%2e'", "'b\u00efll'", "at most 128"):
        assert named in text


def test_a_replay_names_malformed_and_unknown_run_references() -> None:
    status = {"recentRuns": [{"runId": "run-1", "stripeObjects": [{"billId": "b1"}]}]}
    request = replay_request(status, "run: run:../x run:run-1 run:run-9")
    assert request.bills == {"b1"}
    assert any("'run:'" in p and "not a run reference" in p for p in request.problems)
    assert any("'run:../x'" in p for p in request.problems)
    assert any("'run-9'" in p and "not in status.recentRuns" in p for p in request.problems)
    assert not any("run-1'" in p for p in request.problems)


@pytest.mark.parametrize(
    ("key", "value", "says"),
    [
        (ANNOTATION_RESOLVE, 5, "must be a string, not int"),
        (ANNOTATION_REPLAY, ["b1"], "must be a string, not list"),
        (ANNOTATION_REQUESTED_AT, "t" * (MAX_GESTURE_LENGTH + 1), "characters long"),
        (ANNOTATION_REENABLE, "r" * 220_000, "characters long"),
        (ANNOTATION_REPLAY, " ".join(f"b{i}" for i in range(MAX_GESTURE_IDS + 1)), f"names {MAX_GESTURE_IDS + 1} ids"),
        (ANNOTATION_RESOLVE, ",".join(f"e{i}" for i in range(500)), "names 500 ids"),
        (ANNOTATION_RESOLVE, ",".join(f"evt-{i}" for i in range(5000)), "characters long"),
    ],
)
def test_an_unusable_gesture_is_refused_whole_and_stands_for_nothing(key: str, value: object, says: str) -> None:
    annotations, refused = gesture_annotations({key: value, "other/annotation": "kept"})
    assert [(k, why) for k, why in refused if says in why] == [(key, refused[0][1])]
    marker = annotations[key]
    assert len(marker) < 64 and marker.startswith("#refused-")
    assert parse_targets(marker) == []  # acts on no id
    assert replay_bills({}, marker) == frozenset() and resolve_events(open_events(), marker) == open_events()
    assert annotations["other/annotation"] == "kept"
    assert gesture_annotations({key: value})[0][key] == marker  # stable: handled once


def test_gestures_within_bounds_pass_unchanged() -> None:
    value = " ".join(f"b{i}" for i in range(MAX_GESTURE_IDS))
    assert gesture_annotations({ANNOTATION_REPLAY: value}) == ({ANNOTATION_REPLAY: value}, [])


def test_annotations_that_are_not_a_map_are_no_gestures() -> None:
    assert gesture_annotations(None) == ({}, [])
    assert gesture_annotations(["a"]) == ({}, [("metadata.annotations", "must be a map of strings")])


def test_a_replay_by_run_reference_beyond_the_id_bound_is_refused_whole_and_names_the_bound() -> None:
    runs = [
        {"runId": f"run-2026120{i:03d}-3f9a2c", "stripeObjects": [{"billId": f"b{i}-{j}"} for j in range(50)]}
        for i in range(100)
    ]
    value = ",".join(f"run:{r['runId']}" for r in runs) + " #t1"
    assert gesture_annotations({ANNOTATION_REPLAY: value})[1] == []  # 100 references: within the id bound
    request = replay_request({"recentRuns": runs}, value)
    assert request.bills == frozenset()
    assert any("5000 Bills" in p and f"at most {MAX_GESTURE_IDS}" in p for p in request.problems)


def test_bills_of_a_replayed_run_are_known_from_the_history_and_named_ids_are_not() -> None:
    status = {"recentRuns": [{"runId": "run-1", "stripeObjects": [{"billId": "b1"}, {"billId": "b2"}]}]}
    request = replay_request(status, "run:run-1 b3")
    assert request.bills == {"b1", "b2", "b3"} and request.from_history == {"b1", "b2"}


@pytest.mark.parametrize("value", [",,,,", "#t", "  ,  #again"])
def test_a_replay_naming_no_bill_id_says_so(value: str) -> None:
    request = replay_request({}, value)
    assert request.bills == frozenset() and "names no Bill id" in " ".join(request.problems)


def test_a_refused_gesture_marker_is_not_reported_again_as_naming_no_id() -> None:
    marker = gesture_annotations({ANNOTATION_REPLAY: 5})[0][ANNOTATION_REPLAY]
    assert replay_request({}, marker).problems == []


# -- the ledger a sync progress belongs to ------------------------------------------------------------

TEST_A = ledger_id("org-1", live=False, stripe_account="acct_A")


def _with_ledger(ledger: str | None) -> dict[str, Any]:
    sync: dict[str, Any] = {
        "watermark": "2026-11-01T00:00:00Z",
        "retryBillIds": ["b-1"],
        "lastSweep": "2026-11-01T00:00:00Z",
    }
    if ledger is not None:
        sync["ledger"] = ledger
    return {"sync": sync, "consecutiveErrors": 2}


def test_a_ledger_id_names_no_organization_or_account_in_clear() -> None:
    assert "org-1" not in TEST_A and "acct_A" not in TEST_A and TEST_A.split(".")[1] == "test"


@pytest.mark.parametrize(
    ("now", "why"),
    [
        (ledger_id("org-2", live=False, stripe_account="acct_A"), "another Organization"),
        (ledger_id("org-1", live=True, stripe_account="acct_A"), "from test to live mode"),
        (ledger_id("org-1", live=False, stripe_account="acct_B"), "another Stripe account"),
    ],
)
def test_progress_made_against_another_organization_mode_or_account_starts_over(now: str, why: str) -> None:
    status, moved, recorded = progress_for(_with_ledger(TEST_A), now)
    assert moved is not None and why in moved and recorded == now
    assert sync_state(status) == SyncState()
    # Explicit nulls, so that no merge patch keeps the old watermark under the new ledger's name.
    assert status["sync"] == {"watermark": None, "retryBillIds": [], "lastSweep": None, "ledger": now}
    assert status["consecutiveErrors"] == 2  # only the progress starts over


@pytest.mark.parametrize(
    ("recorded", "now"),
    [
        (TEST_A, TEST_A),
        (None, TEST_A),  # written before the ledger was recorded
        (ledger_id("org-1", live=False, stripe_account=None), TEST_A),  # the account was not known then
        (TEST_A, ledger_id("org-1", live=False, stripe_account=None)),  # nor is it now
    ],
)
def test_progress_of_the_same_ledger_or_of_an_unknown_account_is_kept(recorded: str | None, now: str) -> None:
    original = _with_ledger(recorded)
    status, moved, _ = progress_for(original, now)
    assert moved is None and status is original


def test_a_pass_that_cannot_see_the_keys_account_keeps_the_account_recorded_so_a_later_move_is_seen() -> None:
    unknown = ledger_id("org-1", live=False, stripe_account=None)
    _, moved, recorded = progress_for(_with_ledger(TEST_A), unknown)
    assert moved is None and recorded == TEST_A
    after = _with_ledger(recorded)
    _, moved, _ = progress_for(after, ledger_id("org-1", live=False, stripe_account="acct_B"))
    assert moved is not None and "another Stripe account" in moved
    # With nothing recorded yet, or another mode, the ledger of this pass is what is recorded.
    assert progress_for(_with_ledger(None), unknown)[2] == unknown
