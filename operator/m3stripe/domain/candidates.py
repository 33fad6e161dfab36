"""Which Bills a pass reads: the replayed and owed ones, those m3ter lists as changed since the watermark, and those
the daily reconciliation sweep finds changed behind the index's back (domain.sweep)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from m3stripe.domain.billing import Bill, MalformedBill
from m3stripe.domain.ports import BILLS_PAGE_SIZE, BillSource
from m3stripe.domain.runs import SyncState
from m3stripe.domain.sweep import needs_reread

# Bills modified just before a pass started may become visible in m3ter's listing a little later.
WATERMARK_OVERLAP = timedelta(minutes=2)


@dataclass
class Sweep:
    """The reconciliation sweep of one pass: what it listed and re-read, and whether it got to the end."""

    since: datetime | None
    listed: int = 0
    reread: int = 0
    finished: bool = False


async def read_candidates(
    source: BillSource,
    state: SyncState,
    replay: frozenset[str],
    completed: frozenset[str] = frozenset(),
    sweep: Sweep | None = None,
) -> AsyncIterator[Bill | MalformedBill]:
    """Every Bill the pass looks at, once: replays and retries by id, then the changed ones, then the sweep's."""
    seen: set[str] = set()
    for bill_id in [*replay, *state.retry_bill_ids]:
        if bill_id in seen:
            continue
        seen.add(bill_id)
        bill = await source.get_bill(bill_id)
        if bill is not None:
            yield bill
    since = state.watermark - WATERMARK_OVERLAP if state.watermark else None
    read: set[str] = set()  # "<id>@<version>" read incrementally, so the sweep does not read them again
    async for bill in source.iter_bills(modified_since=since):
        # A Bill an interrupted pass completed at this very version is done; a newer version is not.
        if bill.id not in seen and f"{bill.id}@{bill.version}" not in completed:
            read.add(f"{bill.id}@{bill.version}")
            yield bill
    if sweep is not None:
        async for bill in _swept(source, sweep, frozenset(seen | read | completed)):
            yield bill


async def _swept(source: BillSource, sweep: Sweep, handled: frozenset[str]) -> AsyncIterator[Bill | MalformedBill]:
    """The Bills the reconciliation sweep re-reads (see domain.sweep), fetched by ids a page at a time and handled like
    any candidate: the writer compares each version with what Stripe holds, so a version already sent costs reads."""
    batch: list[str] = []
    async for listed in source.list_bill_versions():
        sweep.listed += 1
        if needs_reread(listed, sweep.since, handled) and listed.id not in batch:
            batch.append(listed.id)
        if len(batch) == BILLS_PAGE_SIZE:
            async for bill in _reread(source, sweep, batch):
                yield bill
            batch = []
    if batch:
        async for bill in _reread(source, sweep, batch):
            yield bill
    sweep.finished = True


async def _reread(source: BillSource, sweep: Sweep, ids: list[str]) -> AsyncIterator[Bill | MalformedBill]:
    async for bill in source.bills_by_ids(ids):
        sweep.reread += 1
        yield bill
