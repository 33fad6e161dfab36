"""The changed-Bill scan: Search Bills newest first, by offset, down to the first Bill older than the watermark.

It reads through three functions: a page of Search Bills (a :data:`SearchPage`, which a test can fake), the Bills
of a page of ids, and the full listing, the safe path when paging by offset is not. Why the scan is safe while
m3ter's order moves under it: the comment in :func:`changed_bills`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime

from m3ter.types import BillResponse

from m3stripe.domain.billing import Bill, MalformedBill

from .m3ter_models import hit_id, hit_modified, hit_version

log = logging.getLogger(__name__)

# Changed-Bill search pages overlap by this many documents (fewer for small pages): up to this many less one
# Bills deleted between two page reads never cause a skip (see changed_bills).
SEARCH_OVERLAP = 10
MAX_SEARCH_STEP_BACKS = 20

#: One page of Search Bills sorted by ``dtLastModified`` DESC: (offset, page size) -> its hits, newest first.
SearchPage = Callable[[int, int], Awaitable[Sequence[BillResponse]]]
#: The Bills of a page of ids, in that order, with their line items; deleted ones left out.
ReadBills = Callable[[list[str]], AsyncIterator[Bill | MalformedBill]]
#: Every Bill, from the full listing (List Bills).
ListBills = Callable[[], AsyncIterator[Bill | MalformedBill]]


async def changed_bills(
    since: datetime,
    page_size: int,
    *,
    search: SearchPage,
    read: ReadBills,
    list_all: ListBills,
    organization: str = "",
) -> AsyncIterator[Bill | MalformedBill]:
    """The Bills modified at or after ``since``, newest first, each (id, version) once.

    ``search`` pages the search, ``read`` reads the changed ids of each page, and ``list_all`` lists every
    Bill when offset paging is not safe; ``organization`` names the Organization in the log.
    """
    # Search Bills (https://docs.m3ter.com/api/bill/search-bills): searchQuery cannot name dtLastModified
    # (not among its "Allowed parameters"), but sortBy takes "any field available on the Bill entity".
    # So: newest first, stop at the first Bill older than the watermark. Paging is by offset
    # (fromDocument), and the order moves under the scan:
    # - a Bill modified or created meanwhile moves to the front (it is newer than the pass, so the next
    #   pass reads it) and shifts the rest back: repeats, never a skip;
    # - a Bill deleted meanwhile ("Suitable for removing incorrect or obsolete Bills", SDK
    #   resources/bills/bills.py delete) from the part already read shifts the rest forward: the Bill
    #   that moves into the last position read would never be read. So pages overlap (by `overlap`
    #   Bills plus the tied group below), repeats are dropped by (id, version), and a page that holds
    #   none of the page before's anchors (its `overlap` Bills next to the tied group, by (id, version))
    #   is re-read from earlier (step back): up to overlap-1 deletions between two page reads never
    #   skip a Bill, more cost a step back. (A page holding an anchor starts at or before it, and from
    #   there the order is contiguous: nothing between them is skipped.);
    # - m3ter documents no tie-break between equal dtLastModified values (milliseconds), so Bills that
    #   tie at a page's end may come in another order on the next read: the next page starts `overlap`
    #   Bills before the first of them, so one answer holds the whole tied group, and only Bills newer
    #   than the group anchor it (a tied Bill proves nothing about where a page starts). A group too
    #   large for that (page_size - overlap or more), or more step-backs than MAX_SEARCH_STEP_BACKS,
    #   cannot be read safely by offset: the rest of the pass lists every Bill (List Bills) and keeps
    #   the changed ones.
    # m3ter does not document nextToken for search (SDK BillSearchResponse.next_token is Optional), so
    # the scan goes on while a page is full, whatever nextToken says.
    overlap = min(SEARCH_OVERLAP, (page_size - 1) // 2)
    if overlap == 0:  # pages under 3 leave no room for an overlap: only the full listing is safe
        async for bill in _by_listing(list_all, since, set()):
            yield bill
        return
    seen: set[tuple[str, int | None]] = set()
    yielded: set[tuple[str, int]] = set()
    previous: set[tuple[str, int | None]] = set()
    start = 0
    step_backs = 0
    while True:
        hits = list(await search(start, page_size))
        ids = [hit_id(hit) for hit in hits]
        keys = {(bill_id, hit_version(hit)) for hit, bill_id in zip(hits, ids, strict=True) if bill_id}
        if start > 0 and previous and not previous & keys:
            step_backs += 1
            if step_backs > MAX_SEARCH_STEP_BACKS:
                break
            log.info(
                "m3ter Bill search of organization %s moved under the scan (deletions?); re-reading from an "
                "earlier offset",
                organization,
            )
            start = max(0, start - (page_size - overlap))
            continue
        changed: list[str] = []
        older_reached = False
        stamps: list[datetime | None] = []
        for hit, bill_id in zip(hits, ids, strict=True):
            modified = hit_modified(hit)
            if modified is not None and modified < since:
                older_reached = True
                break
            stamps.append(modified)
            key = (bill_id, hit_version(hit))
            if bill_id and key not in seen:
                seen.add(key)
                changed.append(bill_id)
        if changed:
            async for bill in read(changed):
                if (bill.id, bill.version) not in yielded:
                    yielded.add((bill.id, bill.version))
                    yield bill
        if older_reached or len(hits) < page_size:
            return
        # The page's last hit may tie with the next unseen one, so the Bills sharing its dtLastModified
        # (from first_tied on) have no fixed place: the next page starts `overlap` Bills before the first
        # of them, and only the Bills before it (strictly newer, in a fixed order) anchor that page.
        first_tied = stamps.index(stamps[-1])
        if first_tied <= overlap:
            log.warning(
                "too many m3ter Bills of organization %s share dtLastModified %s to read them whole in a search "
                "page; listing every Bill",
                organization,
                stamps[-1],
            )
            break
        previous = {(ids[index], hit_version(hits[index])) for index in range(first_tied) if ids[index]}
        start += first_tied - overlap
    async for bill in _by_listing(list_all, since, yielded):
        yield bill


async def _by_listing(
    list_all: ListBills, since: datetime, yielded: set[tuple[str, int]]
) -> AsyncIterator[Bill | MalformedBill]:
    """Every Bill modified at or after ``since`` not yet yielded, from the full List Bills (the safe path)."""
    async for bill in list_all():
        modified = bill.last_modified
        if (modified is None or modified >= since) and (bill.id, bill.version) not in yielded:
            yielded.add((bill.id, bill.version))
            yield bill
