"""Whose sync progress it is: the scope it was made against, starting over when it moved, and where a pass starts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from m3stripe.api.status import StripeIntegrationStatus, SyncProgress, read_status, wire
from m3stripe.domain.progress import (
    checkpointed,
    ended,
    progress_for,
    progress_of_run,
    scope_id,
    sync_state,
    with_checkpoint,
)
from m3stripe.domain.runs import RunReport, SyncState


def test_sync_state_of_an_empty_status() -> None:
    state = sync_state(StripeIntegrationStatus().sync)
    assert state.watermark is None
    assert state.retry_bill_ids == ()


# -- the scope a sync progress belongs to ------------------------------------------------------------

TEST_A = scope_id("org-1", live=False, stripe_account="acct_A")


def _with_scope(scope: str | None, *, field: str = "scope") -> SyncProgress | None:
    """The progress of a status restored with this scope recorded (None: before scopes were recorded) under `field`
    ("ledger": as operators before the name wrote it)."""
    sync: dict[str, Any] = {
        "watermark": "2026-11-01T00:00:00Z",
        "retryBillIds": ["b-1"],
        "lastSweep": "2026-11-01T00:00:00Z",
    }
    if scope is not None:
        sync[field] = scope
    return read_status({"sync": sync, "consecutiveErrors": 2}).sync


def _status_with(progress: SyncProgress | None) -> dict[str, Any]:
    """The status a pass starts from with this progress, as the operator writes it (kube/sync_driver.py)."""
    return wire(read_status({"consecutiveErrors": 2}).merged(StripeIntegrationStatus(sync=progress)))


def test_a_scope_id_names_no_organization_or_account_in_clear() -> None:
    assert "org-1" not in TEST_A and "acct_A" not in TEST_A and TEST_A.split(".")[1] == "test"


@pytest.mark.parametrize(
    ("now", "why"),
    [
        (scope_id("org-2", live=False, stripe_account="acct_A"), "another Organization"),
        (scope_id("org-1", live=True, stripe_account="acct_A"), "from test to live mode"),
        (scope_id("org-1", live=False, stripe_account="acct_B"), "another Stripe account"),
    ],
)
def test_progress_made_against_another_organization_mode_or_account_starts_over(now: str, why: str) -> None:
    status, moved, recorded = progress_for(_with_scope(TEST_A), now)
    assert moved is not None and why in moved and recorded == now
    assert sync_state(status) == SyncState()
    status = _status_with(status)
    # Explicit nulls, so that no merge patch keeps the old watermark under the new scope's name.
    assert status["sync"] == {"watermark": None, "retryBillIds": [], "lastSweep": None, "scope": now, "ledger": None}
    assert status["consecutiveErrors"] == 2  # only the progress starts over


@pytest.mark.parametrize(
    ("recorded", "now"),
    [
        (TEST_A, TEST_A),
        (None, TEST_A),  # written before the scope was recorded
        (scope_id("org-1", live=False, stripe_account=None), TEST_A),  # the account was not known then
        (TEST_A, scope_id("org-1", live=False, stripe_account=None)),  # nor is it now
    ],
)
def test_progress_of_the_same_scope_or_of_an_unknown_account_is_kept(recorded: str | None, now: str) -> None:
    original = _with_scope(recorded)
    status, moved, _ = progress_for(original, now)
    assert moved is None and status is original


def test_a_pass_that_cannot_see_the_keys_account_keeps_the_account_recorded_so_a_later_move_is_seen() -> None:
    unknown = scope_id("org-1", live=False, stripe_account=None)
    _, moved, recorded = progress_for(_with_scope(TEST_A), unknown)
    assert moved is None and recorded == TEST_A
    after = _with_scope(recorded)
    _, moved, _ = progress_for(after, scope_id("org-1", live=False, stripe_account="acct_B"))
    assert moved is not None and "another Stripe account" in moved
    # With nothing recorded yet, or another mode, the scope of this pass is what is recorded.
    assert progress_for(_with_scope(None), unknown)[2] == unknown


def test_a_scope_recorded_under_its_former_name_is_read_and_the_former_name_removed_when_the_pass_ends() -> None:
    old = _with_scope(TEST_A, field="ledger")  # written by an operator before status.sync.scope
    assert progress_for(old, scope_id("org-1", live=False, stripe_account="acct_B"))[1] is not None
    kept, moved, scope = progress_for(old, TEST_A)
    assert moved is None and kept is old and scope == TEST_A
    assert old is not None
    written = wire(StripeIntegrationStatus(sync=ended(old, scope, started_over=False)))["sync"]
    assert written["scope"] == TEST_A and written["ledger"] is None  # the merge patch's null removes it


# -- the checkpoint of a pass in flight, and the progress recorded when it ends ---------------------------------

WATERMARK = "2026-12-01T00:00:00Z"


def test_a_checkpoint_is_written_with_the_progress_it_belongs_to_and_read_back_while_the_watermark_stays() -> None:
    progress = read_status({"sync": {"watermark": WATERMARK, "retryBillIds": ["b-1"], "scope": TEST_A}}).sync
    saved = with_checkpoint(progress, ["b-2@1", "b-3@4"])
    assert wire(StripeIntegrationStatus(sync=saved)) == {
        "sync": {
            "watermark": WATERMARK,
            "retryBillIds": ["b-1"],
            "scope": TEST_A,
            "checkpoint": ["b-2@1", "b-3@4"],
            "checkpointWatermark": WATERMARK,
        }
    }
    assert checkpointed(saved) == {"b-2@1", "b-3@4"}
    moved_on = read_status({"sync": {**wire(saved), "watermark": "2026-12-02T00:00:00Z"}}).sync
    assert checkpointed(moved_on) == frozenset()  # a checkpoint of an older watermark is spent
    assert wire(with_checkpoint(None, ["b-2@1"])) == {"checkpoint": ["b-2@1"], "checkpointWatermark": ""}


def test_the_progress_a_pass_ends_with_clears_its_checkpoint_and_after_starting_over_the_old_watermark() -> None:
    started = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)
    ran = progress_of_run(RunReport(run_id="run-1", started=started, watermark=started, retry_bill_ids=["b-1"]))
    assert wire(ended(ran, TEST_A, started_over=False)) == {
        "watermark": "2026-12-01T12:00:00Z",
        "retryBillIds": ["b-1"],
        "scope": TEST_A,
        "ledger": None,
        "checkpoint": None,
        "checkpointWatermark": None,
    }
    stopped = progress_of_run(RunReport(run_id="run-2", started=started))  # no watermark: the pass did not complete
    assert wire(ended(stopped, TEST_A, started_over=True)) == {
        "watermark": None,
        "retryBillIds": [],
        "lastSweep": None,
        "scope": TEST_A,
        "ledger": None,
        "checkpoint": None,
        "checkpointWatermark": None,
    }
