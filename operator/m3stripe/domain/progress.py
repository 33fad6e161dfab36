"""Sync progress and whose it is: status.sync (watermark, retries, checkpoint, last sweep) and the scope it was
made against.

The progress says which Bills a pass still owes *this* Stripe account: it belongs to the m3ter Organization and the
Stripe account and mode it was made against, and to the older integrations this one left shared Bills to: its scope
(`scope_id`, recorded in status.sync.scope; operators before the name recorded it as status.sync.ledger, still read).
When any of them changes, the next pass starts over.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from m3stripe.api.conditions import parse_rfc3339, rfc3339
from m3stripe.api.status import SyncProgress
from m3stripe.domain.runs import RunReport, SyncState


def scope_id(organization_id: str, *, live: bool, stripe_account: str | None, owners: str = "") -> str:
    """The source and the Stripe account and mode a sync progress belongs to, as digests (no id in clear in the status), and
    `owners`, the digest of the older integrations this one leaves the Bills they also select to
    (overlap.Overlap.owners_digest; "" when none)."""

    def digest(value: str) -> str:
        return hashlib.sha256(value.encode()).hexdigest()[:12]

    account = digest(stripe_account) if stripe_account else "-"
    scope = f"{digest(organization_id)}.{'live' if live else 'test'}.{account}"
    return f"{scope}.{owners}" if owners else scope


def progress_moved(progress: SyncProgress | None, scope: str) -> str | None:
    """Why the stored progress was made against another Organization or Stripe account, or None if it was not.

    A watermark says which Bills *that* Stripe account already got: kept across a move from test mode to live
    (the README's rollout) it would keep every Bill already sent to test mode from ever reaching live.
    Progress written before the scope was recorded counts as this scope's; an account that was not known
    (a restricted key that may not read it) is no evidence of a move.
    """
    recorded = _recorded_scope(progress)
    if recorded is None:
        return None
    (old_org, old_mode, old_account), (org, mode, account) = _parts(recorded), _parts(scope)
    if old_org != org:
        return "spec.m3ter.organizationId names another Organization than the sync progress was made for"
    if old_mode != mode:
        return f"spec.destination moved from {old_mode} to {mode} mode"
    if "-" not in (old_account, account) and old_account != account:
        return "the Stripe key now belongs to another Stripe account"
    old_owners, owners = _owners(recorded), _owners(scope)
    if old_owners and old_owners != owners:
        # Bills left to an older integration that is gone now, or no longer selects them, may be no one's: the
        # watermark moved past them while they were its. New owners need nothing: Bills sent here stay recognised.
        return "an older integration this one left the Bills both select to is gone or selects other Bills now"
    return None


def _owners(scope: str) -> str:
    return [*scope.split("."), "", "", "", ""][3]


def recorded_owners(progress: SyncProgress | None) -> str:
    """The owners' digest the stored progress was made with ("" when none or nothing recorded)."""
    recorded = _recorded_scope(progress)
    return _owners(recorded) if recorded is not None else ""


def _recorded_scope(progress: SyncProgress | None) -> str | None:
    if progress is None:
        return None
    return progress.scope or progress.ledger or None  # `ledger`: the name before `scope`


def _parts(scope: str) -> tuple[str, str, str]:
    """(organization digest, mode, account digest or "-"); a malformed record has empty parts, so it moved."""
    organization, mode, account = [*scope.split("."), "", "", ""][:3]
    return organization, mode, account


def fresh_progress(scope: str) -> SyncProgress:
    """The progress of a pass that starts over against `scope`, as explicit nulls: a merge patch must not keep
    the old scope's watermark or sweep under the new scope's name."""
    return SyncProgress(watermark=None, retryBillIds=[], lastSweep=None, scope=scope, ledger=None)


def progress_for(progress: SyncProgress | None, scope: str) -> tuple[SyncProgress | None, str | None, str]:
    """The progress a pass against `scope` starts from, why it starts over (None: it does not), and the scope to
    record when the pass ends.

    Starting over is `fresh_progress` (a checkpoint written mid-pass carries it too). A pass that could not see
    the key's account keeps the account recorded: recording "unknown" would hide a later move to another account.
    """
    moved = progress_moved(progress, scope)
    if moved is None:
        # Not moved: the Organization and mode are the recorded ones (or nothing is recorded).
        recorded = _recorded_scope(progress)
        if recorded is not None and _parts(scope)[2] == "-":
            kept = ".".join(_parts(recorded))
            return progress, None, f"{kept}.{_owners(scope)}" if _owners(scope) else kept
        return progress, None, scope
    return fresh_progress(scope), moved, scope


def sync_state(progress: SyncProgress | None) -> SyncState:
    """Where a pass starts: raises ValueError for a watermark that is no time (the pass then fails, visibly)."""
    if progress is None:
        return SyncState()
    return SyncState(
        watermark=parse_rfc3339(progress.watermark),
        retry_bill_ids=tuple(progress.retryBillIds),
        last_sweep=_last_sweep(progress.lastSweep),
    )


def _last_sweep(value: str | None) -> datetime | None:
    # Unreadable (a status restored from elsewhere): as if no sweep had completed, so the next pass sweeps
    # every Bill; that costs reads and can skip nothing, where refusing the pass would stop the integration.
    try:
        return parse_rfc3339(value)
    except ValueError:
        return None


def checkpointed(progress: SyncProgress | None) -> frozenset[str]:
    """The Bills interrupted passes completed since the current watermark (empty once it moved)."""
    if progress is None or (progress.checkpointWatermark or "") != (progress.watermark or ""):
        return frozenset()
    return frozenset(progress.checkpoint or ())


def with_checkpoint(progress: SyncProgress | None, done: list[str]) -> SyncProgress:
    """The progress a pass in flight records (`<id>@<version>` of the Bills it completed), so a restart skips them."""
    base = progress if progress is not None else SyncProgress()
    return base.model_copy(update={"checkpoint": done, "checkpointWatermark": base.watermark or ""})


def progress_of_run(report: RunReport) -> SyncProgress:
    """Where the next pass starts after this one: its watermark, the Bills owed a retry, the last sweep."""
    fields: dict[str, object] = {"retryBillIds": list(report.retry_bill_ids)}
    if report.watermark:
        fields["watermark"] = rfc3339(report.watermark)
    if report.last_sweep:
        fields["lastSweep"] = rfc3339(report.last_sweep)
    return SyncProgress.model_validate(fields)


def ended(progress: SyncProgress, scope: str, *, started_over: bool) -> SyncProgress:
    """The progress recorded when a pass ends: the scope it was made against; its checkpoint is spent (the merge
    patch's nulls remove it); after starting over, so are the old scope's watermark and sweep, which a pass that
    did not complete would otherwise leave in place."""
    base = fresh_progress(scope) if started_over else SyncProgress()
    update = {name: getattr(progress, name) for name in progress.model_fields_set}
    # The old name goes once the new one is written (an explicit null in the merge patch).
    return base.model_copy(
        update={**update, "scope": scope, "ledger": None, "checkpoint": None, "checkpointWatermark": None}
    )
