"""The reconciliation sweep's rules: when it is due, its window, and which listed Bills it re-reads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from m3stripe.api.spec import StripeIntegrationSpec
from m3stripe.api.status import StripeIntegrationStatus, read_status, wire
from m3stripe.domain.progress import sync_state
from m3stripe.domain.runs import RunReport
from m3stripe.domain.sweep import SWEEP_MARGIN, ListedBill, needs_reread, sweep_due, sweep_since
from m3stripe.kube.status_builder import fold_report

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(hours=24)


def _listed(modified: datetime | None, *, locked: bool = False, bill_id: str = "b1", version: int = 3) -> ListedBill:
    return ListedBill(id=bill_id, version=version, last_modified=modified, locked=locked)


def test_the_first_sweep_is_due_at_once() -> None:
    assert sweep_due(None, NOW, DAY)


def test_a_sweep_is_due_once_the_interval_has_passed_since_the_last_one() -> None:
    assert not sweep_due(NOW - DAY + timedelta(seconds=1), NOW, DAY)
    assert sweep_due(NOW - DAY, NOW, DAY)


def test_the_window_starts_a_margin_before_the_last_sweep_and_is_unbounded_on_the_first() -> None:
    assert sweep_since(None) is None
    assert sweep_since(NOW) == NOW - SWEEP_MARGIN
    assert timedelta(hours=1) <= SWEEP_MARGIN


def test_a_bill_modified_at_or_after_the_window_start_is_reread() -> None:
    since = NOW - SWEEP_MARGIN
    assert needs_reread(_listed(since), since, set())
    assert needs_reread(_listed(NOW), since, set())


def test_a_bill_modified_before_the_window_is_not_reread() -> None:
    since = NOW - SWEEP_MARGIN
    assert not needs_reread(_listed(since - timedelta(milliseconds=1)), since, set())


def test_a_bill_without_a_readable_stamp_is_reread_so_it_is_reported() -> None:
    assert needs_reread(_listed(None), NOW, set())


def test_the_first_sweep_rereads_every_unlocked_bill_and_skips_locked_ones() -> None:
    old = NOW - timedelta(days=900)
    assert needs_reread(_listed(old), None, set())
    assert not needs_reread(_listed(old, locked=True), None, set())


def test_a_locked_bill_inside_the_window_is_reread_as_its_lock_may_follow_a_missed_change() -> None:
    since = NOW - SWEEP_MARGIN
    assert needs_reread(_listed(NOW, locked=True), since, set())
    assert not needs_reread(_listed(since - timedelta(hours=1), locked=True), since, set())


def test_a_bill_this_pass_already_handled_is_not_reread() -> None:
    assert not needs_reread(_listed(NOW, version=3), None, {"b1@3"})
    assert not needs_reread(_listed(NOW), None, {"b1"}), "read by id (a retry or replay): its current version"
    assert needs_reread(_listed(NOW, version=4), None, {"b1@3"}), "a newer version than the one handled"


def test_reconcile_interval_defaults_to_a_day_and_is_bounded() -> None:
    base = {
        "destination": "StripeTestMode",
        "credentialRef": {"name": "stripe"},
        "m3ter": {"organizationId": "org-1", "credentialsRef": {"name": "m3ter"}},
    }
    assert StripeIntegrationSpec.model_validate(base).reconcile_interval == DAY
    assert StripeIntegrationSpec.model_validate({**base, "reconcileInterval": "1h"}).reconcile_interval == timedelta(
        hours=1
    )
    for bad in ("30m", "721h", "tomorrow"):
        with pytest.raises(ValidationError, match="reconcileInterval"):
            StripeIntegrationSpec.model_validate({**base, "reconcileInterval": bad})


def test_last_sweep_is_kept_in_status_sync_and_read_back() -> None:
    report = RunReport(run_id="run-1", started=NOW, completed=NOW, watermark=NOW, last_sweep=NOW - DAY)
    report.swept_listed, report.swept_reread = 120, 4
    folded, _ = fold_report(StripeIntegrationStatus(), report, history=10, retention=DAY, consecutive_errors=0, now=NOW)
    fields = wire(folded)
    assert fields["sync"]["lastSweep"] == "2026-11-30T12:00:00Z"
    assert sync_state(read_status({"sync": fields["sync"]}).sync).last_sweep == NOW - DAY
    assert "reconciliation sweep: 120 listed, 4 re-read" in fields["lastSync"]["message"]


def test_a_status_without_last_sweep_means_no_sweep_has_completed() -> None:
    assert sync_state(read_status({"sync": {"watermark": "2026-12-01T00:00:00Z"}}).sync).last_sweep is None
    folded, _ = fold_report(
        StripeIntegrationStatus(),
        RunReport(run_id="run-1", started=NOW, watermark=NOW),
        history=10,
        retention=DAY,
        consecutive_errors=0,
    )
    fields = wire(folded)
    assert "lastSweep" not in fields["sync"]


@pytest.mark.parametrize("value", ["yesterday", 5, ["2026-12-01T00:00:00Z"]])
def test_an_unreadable_last_sweep_means_the_next_pass_sweeps_everything(value: object) -> None:
    state = sync_state(read_status({"sync": {"watermark": "2026-12-01T00:00:00Z", "lastSweep": value}}).sync)
    assert state.last_sweep is None and state.watermark is not None
