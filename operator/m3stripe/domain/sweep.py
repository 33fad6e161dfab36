"""The periodic reconciliation sweep: which listed Bills a sweep re-reads.

An incremental pass finds changed Bills through m3ter's search index (Search Bills sorted by
``dtLastModified``); m3ter does not say how soon a change reaches that index. The sweep lists Bills from
List Bills instead (the endpoint the first, full pass uses) without their line items, and re-reads only
those that may have changed since the previous sweep. The rules are here, pure, so they are tested alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

# Why the window catches everything an incremental read could miss: the previous sweep listed every Bill
# from List Bills when it started (lastSweep is that start, and it only moves once the sweep and its pass
# completed), so any version of a Bill whose dtLastModified is older than lastSweep was in that listing and
# was handled then. Only versions stamped at or after lastSweep can be unseen, and those are all in this
# sweep's window. The margin covers what can blur "older than lastSweep": lastSweep is the operator's clock
# and dtLastModified m3ter's (clock skew), and m3ter does not say how soon a stamped change shows in List
# Bills (a write committed after its stamp). m3ter is silent on both, so the margin is generous: an hour of
# extra re-reads a day costs little, as Stripe's metadata makes an already-sent version a read, not a write.
SWEEP_MARGIN = timedelta(hours=1)


@dataclass(frozen=True)
class ListedBill:
    """What a sweep's listing (List Bills with ``excludeLineItems=true``) says about one Bill."""

    id: str
    version: int | None
    last_modified: datetime | None
    locked: bool


def sweep_due(last_sweep: datetime | None, now: datetime, interval: timedelta) -> bool:
    """A sweep is due when none has completed yet, or the last one started ``interval`` ago or more."""
    return last_sweep is None or now - last_sweep >= interval


def sweep_since(last_sweep: datetime | None, margin: timedelta = SWEEP_MARGIN) -> datetime | None:
    """The start of a sweep's window; None (every Bill) on the first sweep."""
    return None if last_sweep is None else last_sweep - margin


def needs_reread(bill: ListedBill, since: datetime | None, handled: frozenset[str] | set[str]) -> bool:
    """Whether the sweep re-reads this listed Bill (with its line items) and hands it to the pass.

    ``handled``: ids and "<id>@<version>" keys this pass has already read; a Bill read at this version (or
    read by id, at its current version) is not read twice.
    """
    if not bill.id or bill.id in handled or f"{bill.id}@{bill.version}" in handled:
        return False
    if since is None:
        # The first sweep, over the whole history: a locked Bill cannot change (issue 9: "Locked Bills cannot
        # change and need no re-read"; m3ter's SDK records when and by whom, BillResponse.dt_locked/locked_by),
        # so the version the full listing or a pass read when it was locked is final.
        return not bill.locked
    # In the window a locked Bill is still re-read: its lock may have followed a change that the incremental
    # read missed, and m3ter does not say that locking stamps dtLastModified. The window keeps that cheap.
    # An unreadable stamp is re-read, so the Bill is reported rather than skipped.
    return bill.last_modified is None or bill.last_modified >= since
