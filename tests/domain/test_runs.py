"""A run's report (counts, the Stripe ids it keeps, events, retries, its summary) and the stable id of an error event."""

from __future__ import annotations

from datetime import timedelta

import pytest

from m3stripe.domain.runs import BillResult, ErrorEvent, EventKind, Outcome
from tests.domain.builders import RUN_START, event, report

T0 = RUN_START
RETENTION = timedelta(hours=720)


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
