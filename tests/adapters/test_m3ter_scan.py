"""The changed-Bill scan over a fake page function: no emulator, no HTTP.

test_m3ter_search_paging.py runs the same scan through the SDK against the emulator; here Search Bills is the test's
own list, newest first, which a test changes between two page reads exactly where its case needs it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta

import pytest
from m3ter.types import BillResponse

from m3stripe.adapters.m3ter_scan import MAX_SEARCH_STEP_BACKS, changed_bills
from m3stripe.domain.billing import Bill, MalformedBill

SINCE = datetime(2025, 2, 1, tzinfo=UTC)


def _hit(bill_id: str, seconds: float) -> BillResponse:
    """A search hit as the SDK builds it from m3ter's JSON, modified ``seconds`` after SINCE."""
    return BillResponse.construct(
        id=bill_id, version=1, dtLastModified=(SINCE + timedelta(seconds=seconds)).isoformat()
    )


class FakeSearch:
    """Search Bills over ``order`` (newest first); ``between_pages`` may change it after each page read."""

    def __init__(self, order: list[BillResponse], between_pages: Callable[[int], None] = lambda read: None) -> None:
        self.order = order
        self.offsets: list[int] = []
        self._between_pages = between_pages

    async def __call__(self, offset: int, page_size: int) -> Sequence[BillResponse]:
        page = self.order[offset : offset + page_size]
        self.offsets.append(offset)
        self._between_pages(len(self.offsets))
        return page


async def _read(ids: list[str]) -> AsyncIterator[Bill | MalformedBill]:
    for bill_id in ids:  # the stand-in for a Bill read by id: the scan looks only at its id and version
        yield MalformedBill(id=bill_id, message="read by id", version=1)


async def _no_listing() -> AsyncIterator[Bill | MalformedBill]:
    raise AssertionError("the scan fell back to the full listing")
    yield  # an async generator


async def _scan(
    search: FakeSearch, page_size: int, list_all: Callable[[], AsyncIterator[Bill | MalformedBill]] = _no_listing
) -> list[Bill | MalformedBill]:
    return [
        bill
        async for bill in changed_bills(
            SINCE, page_size, search=search, read=_read, list_all=list_all, organization="o"
        )
    ]


async def test_the_scan_reads_newest_first_down_to_the_first_older_bill_through_overlapping_pages() -> None:
    changed = [_hit(f"new-{n}", 100 - n) for n in range(25)]
    search = FakeSearch([*changed, *(_hit(f"old-{n}", -1 - n) for n in range(5))])
    bills = await _scan(search, page_size=10)
    assert [bill.id for bill in bills] == [f"new-{n}" for n in range(25)]
    # Pages of 10 overlap by 4 (and by the group tied with a page's last Bill, here none): one new page every 5.
    assert search.offsets == [0, 5, 10, 15, 20]


async def test_bills_deleted_from_the_part_already_read_make_the_scan_step_back_and_skip_nothing() -> None:
    def delete_five_read(pages_read: int) -> None:
        if pages_read == 1:
            del search.order[:5]  # more than the overlap (4) can absorb: the next page starts past unread Bills

    search = FakeSearch([_hit(f"new-{n}", 100 - n) for n in range(25)], between_pages=delete_five_read)
    bills = await _scan(search, page_size=10)
    assert [bill.id for bill in bills] == [f"new-{n}" for n in range(25)]
    assert search.offsets[:3] == [0, 5, 0], "the second page held no Bill of the first: read again from earlier"


async def test_a_tied_group_too_large_for_a_page_is_read_from_the_full_listing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tied = [_hit(f"tied-{n}", 50) for n in range(15)]
    search = FakeSearch([_hit("newest", 60), *tied, _hit("old", -1)])

    async def listing() -> AsyncIterator[Bill | MalformedBill]:
        for hit in search.order:
            yield MalformedBill(id=str(hit.id), message="listed", version=1, last_modified=hit.dt_last_modified)

    bills = await _scan(search, page_size=10, list_all=listing)
    assert sorted(bill.id for bill in bills) == sorted(["newest", *(f"tied-{n}" for n in range(15))])
    assert len(bills) == 16, "a Bill read by the search is not repeated by the listing"
    assert "listing every Bill" in caplog.text


async def test_a_search_that_keeps_moving_falls_back_to_the_full_listing() -> None:
    def delete_the_page_read(pages_read: int) -> None:
        del search.order[:10]  # every page read is gone before the next: no page ever holds an anchor

    search = FakeSearch([_hit(f"new-{n}", 1000 - n) for n in range(500)], between_pages=delete_the_page_read)
    listed: list[str] = []

    async def listing() -> AsyncIterator[Bill | MalformedBill]:
        for hit in search.order:
            listed.append(str(hit.id))
            yield MalformedBill(id=str(hit.id), message="listed", version=1, last_modified=hit.dt_last_modified)

    bills = await _scan(search, page_size=10, list_all=listing)
    # Each read at offset 5 found none of the Bills before it and stepped back; one more than the bound allows
    # ends the search, and the full listing reads the rest.
    assert search.offsets.count(5) == MAX_SEARCH_STEP_BACKS + 1
    assert listed
    assert {bill.id for bill in bills} >= {str(hit.id) for hit in search.order}, "a Bill still there was skipped"
    assert len(bills) == len({bill.id for bill in bills}), "no Bill twice"
