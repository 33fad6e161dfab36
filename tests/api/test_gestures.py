"""The gesture grammar: ids and tokens in an annotation, resolve, replay (run references expanded from the status),
and the bounds past which a gesture is refused whole."""

from __future__ import annotations

from typing import Any

import pytest

from m3stripe.api.gestures import (
    MAX_GESTURE_IDS,
    MAX_GESTURE_LENGTH,
    gesture_annotations,
    parse_targets,
    replay_bills,
    replay_request,
    resolve_events,
    unknown_event_ids,
)
from m3stripe.api.names import ANNOTATION_REENABLE, ANNOTATION_REPLAY, ANNOTATION_REQUESTED_AT, ANNOTATION_RESOLVE

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


def sent(bill_id: str) -> dict[str, Any]:
    """A Bill a run sent, as status.recentRuns[].stripeObjects[] holds it."""
    return {"billId": bill_id, "billVersion": 1, "stripeId": f"in_{bill_id}"}


def opened(event_id: str, **fields: str) -> dict[str, Any]:
    """An open error event, as status.openEvents[] holds it."""
    seen = "2025-06-01T12:00:00Z"
    return {
        "id": event_id,
        "kind": "integration.perform.error",
        "message": "m",
        "firstSeen": seen,
        "lastSeen": seen,
    } | (fields)


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
            opened("evt-1", runId="run-2", billId="b4"),
            opened("evt-2", runId="run-2"),  # no bill: nothing to replay
            opened("evt-3", runId="run-1", billId="b5"),
        ],
    }
    assert replay_bills(status, "run:run-2") == {"b2", "b3", "b4"}
    assert replay_bills(status, "x1, run:run-1 #again") == {"x1", "b1", "b5"}
    assert replay_bills(status, "run:run-3 run:missing") == frozenset()
    assert replay_bills({}, "b9 b10") == {"b9", "b10"}
    assert replay_bills(status, "#b1") == frozenset()


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
    status = {"recentRuns": [{"runId": "run-1", "stripeObjects": [sent("b1")]}]}
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
        {"runId": f"run-2026120{i:03d}-3f9a2c", "stripeObjects": [sent(f"b{i}-{j}") for j in range(50)]}
        for i in range(100)
    ]
    value = ",".join(f"run:{r['runId']}" for r in runs) + " #t1"
    assert gesture_annotations({ANNOTATION_REPLAY: value})[1] == []  # 100 references: within the id bound
    request = replay_request({"recentRuns": runs}, value)
    assert request.bills == frozenset()
    assert any("5000 Bills" in p and f"at most {MAX_GESTURE_IDS}" in p for p in request.problems)


def test_bills_of_a_replayed_run_are_known_from_the_history_and_named_ids_are_not() -> None:
    status = {"recentRuns": [{"runId": "run-1", "stripeObjects": [sent("b1"), sent("b2")]}]}
    request = replay_request(status, "run:run-1 b3")
    assert request.bills == {"b1", "b2", "b3"} and request.from_history == {"b1", "b2"}


@pytest.mark.parametrize("value", [",,,,", "#t", "  ,  #again"])
def test_a_replay_naming_no_bill_id_says_so(value: str) -> None:
    request = replay_request({}, value)
    assert request.bills == frozenset() and "names no Bill id" in " ".join(request.problems)


def test_a_refused_gesture_marker_is_not_reported_again_as_naming_no_id() -> None:
    marker = gesture_annotations({ANNOTATION_REPLAY: 5})[0][ANNOTATION_REPLAY]
    assert replay_request({}, marker).problems == []
