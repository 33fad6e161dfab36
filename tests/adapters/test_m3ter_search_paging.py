"""M3terSource.iter_bills(modified_since=...): Search Bills paged by offset never skips a changed Bill.

Against the m3ter emulator over HTTP through the official SDK. m3ter's Search Bills
(https://docs.m3ter.com/api/bill/search-bills) pages by ``fromDocument`` (an offset), documents no
``nextToken`` for it and no tie-break between equal ``dtLastModified`` values; Bills can be deleted
(SDK ``resources/bills/bills.py`` ``delete``) while a pass reads.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import pytest

from m3stripe.adapters.m3ter_source import M3terSource
from m3stripe.adapters.m3ter_token import M3terUnavailable
from m3stripe.domain.billing import Bill, MalformedBill
from m3stripe.testing.m3ter_emulator import M3terEmulator
from tests.adapters.service_user import CLIENT_ID, CREDS, ORG, SECRET
from tests.support.clock import Clock

BEFORE = datetime(2025, 1, 1, tzinfo=UTC)
SINCE = datetime(2025, 2, 1, tzinfo=UTC)


@pytest.fixture
def clock() -> Clock:
    return Clock(BEFORE)


@asynccontextmanager
async def _emulator(clock: Clock, **options: object) -> AsyncIterator[M3terEmulator]:
    async with M3terEmulator(clock=clock.utc, **options) as emulator:  # type: ignore[arg-type]
        emulator.add_client(CLIENT_ID, SECRET, ORG)
        yield emulator


@pytest.fixture
async def source_for() -> AsyncIterator[list[M3terSource]]:
    made: list[M3terSource] = []
    yield made
    for source in made:
        await source.aclose()


def _source(emulator: M3terEmulator, made: list[M3terSource]) -> M3terSource:
    source = M3terSource(CREDS, base_url=emulator.url, max_retries=0)
    made.append(source)
    return source


def _seed(emulator: M3terEmulator, clock: Clock, changed: int, *, unchanged: int = 5, step: timedelta) -> list[str]:
    """``unchanged`` Bills from before SINCE, then ``changed`` Bills approved after it, ``step`` apart."""
    account = emulator.add_account(ORG, name="Acme", code="acme", currency="USD")
    for _ in range(unchanged):
        emulator.add_bill(ORG, account_id=account)
    bills = [emulator.add_bill(ORG, account_id=account) for _ in range(changed)]
    clock.set(SINCE)
    for bill_id in bills:
        clock.advance(step)
        emulator.approve_bill(ORG, bill_id)
    return bills


async def _read(source: M3terSource, page_size: int = 10) -> list[Bill | MalformedBill]:
    return [bill async for bill in source.iter_bills(modified_since=SINCE, page_size=page_size)]


@pytest.mark.parametrize("deleted_at_once", [1, 3, 6, 15])
async def test_deleting_bills_already_read_mid_scan_never_skips_a_changed_bill(
    clock: Clock, source_for: list[M3terSource], deleted_at_once: int
) -> None:
    async with _emulator(clock) as emulator:
        bills = _seed(emulator, clock, 40, step=timedelta(seconds=1))
        source = _source(emulator, source_for)
        seen: list[str] = []
        deleted: set[str] = set()
        async for bill in source.iter_bills(modified_since=SINCE, page_size=10):
            seen.append(bill.id)
            if len(seen) == 10:  # the end of the first page: Bills already read are deleted in m3ter
                for bill_id in seen[:deleted_at_once]:
                    emulator.delete_bill(ORG, bill_id)
                    deleted.add(bill_id)
    assert set(bills) - deleted - set(seen) == set(), "a changed Bill was never read this pass"
    assert len(seen) == len(set(seen)), "overlapping pages are deduplicated"


async def test_full_search_pages_without_next_token_are_read_to_the_end(
    clock: Clock, source_for: list[M3terSource]
) -> None:
    async with _emulator(clock, search_next_token=False) as emulator:
        bills = _seed(emulator, clock, 250, step=timedelta(seconds=1))
        changed = await _read(_source(emulator, source_for), page_size=100)
    assert [bill.id for bill in changed] == list(reversed(bills))


@pytest.mark.parametrize("seed", range(5))
async def test_bills_sharing_a_timestamp_across_a_page_boundary_are_all_read(
    clock: Clock, source_for: list[M3terSource], seed: int, caplog: pytest.LogCaptureFixture
) -> None:
    # Groups of 7 Bills approved in the same millisecond; m3ter orders them in no documented way, and the
    # emulator reorders them on every request: with pages of 20 many groups straddle a page boundary.
    async with _emulator(clock, unique_timestamps=False, search_seed=seed) as emulator:
        account = emulator.add_account(ORG, name="Acme", code="acme", currency="USD")
        for _ in range(5):
            emulator.add_bill(ORG, account_id=account)
        bills = [emulator.add_bill(ORG, account_id=account) for _ in range(63)]
        clock.set(SINCE)
        for index, bill_id in enumerate(bills):
            if index % 7 == 0:
                clock.advance(timedelta(seconds=1))
            emulator.approve_bill(ORG, bill_id)
        changed = await _read(_source(emulator, source_for), page_size=20)
    assert sorted(bill.id for bill in changed) == sorted(bills)
    assert len(changed) == len(bills)
    assert "listing every Bill" not in caplog.text, "the search alone read them"


async def test_more_bills_sharing_a_timestamp_than_a_page_holds_are_all_read(
    clock: Clock, source_for: list[M3terSource], caplog: pytest.LogCaptureFixture
) -> None:
    # 25 Bills in one millisecond cannot be read whole by offset in pages of 10: the pass lists every Bill.
    async with _emulator(clock, unique_timestamps=False, search_seed=3) as emulator:
        bills = _seed(emulator, clock, 25, unchanged=30, step=timedelta(0))
        changed = await _read(_source(emulator, source_for), page_size=10)
    assert sorted(bill.id for bill in changed) == sorted(bills)
    assert "listing every Bill" in caplog.text


async def test_changed_bills_are_read_by_id_page_by_page_and_one_by_one_when_a_page_leaves_some_out(
    clock: Clock, source_for: list[M3terSource]
) -> None:
    async with _emulator(clock) as emulator:
        bills = _seed(emulator, clock, 12, step=timedelta(seconds=1))
        emulator.ids_page_cap = 3
        paged = await _read(_source(emulator, source_for), page_size=10)
        emulator.ids_next_token = False  # the rest of each page of ids must be read one by one
        one_by_one = await _read(_source(emulator, source_for), page_size=10)
        single_reads = [r for r in emulator.requests if "/bills/" in r.path and not r.path.endswith("/search")]
    assert [bill.id for bill in paged] == list(reversed(bills))
    assert [bill.id for bill in one_by_one] == list(reversed(bills))
    assert single_reads, "Bills left out of a page of ids were read with Get Bill"


async def test_a_changed_bill_left_out_of_its_page_of_ids_and_deleted_since_is_skipped_and_any_other_error_fails(
    clock: Clock, source_for: list[M3terSource]
) -> None:
    async with _emulator(clock) as emulator:
        bills = _seed(emulator, clock, 8, step=timedelta(seconds=1))
        newest_first = list(reversed(bills))
        emulator.ids_page_cap = 2
        emulator.ids_next_token = False  # List Bills answers 2 of each page of ids; the rest come one by one
        source = _source(emulator, source_for)
        seen: list[str] = []
        async for bill in source.iter_bills(modified_since=SINCE, page_size=10):
            seen.append(bill.id)
            if len(seen) == 1:
                emulator.delete_bill(ORG, newest_first[4])  # 404 on its Get Bill: deleted, nothing to send
        assert seen == [bill_id for bill_id in newest_first if bill_id != newest_first[4]]
        with pytest.raises(M3terUnavailable):
            async for bill in source.iter_bills(modified_since=SINCE, page_size=10):
                if bill.id == newest_first[1]:
                    emulator.inject_server_errors(1)  # the next Get Bill fails: an error, never a skip


@pytest.mark.parametrize("seed", range(8))
async def test_deletions_while_a_group_sharing_a_timestamp_straddles_the_page_boundary_never_skip_one(
    clock: Clock, source_for: list[M3terSource], seed: int
) -> None:
    # Newest first: 10 Bills a second apart, then 15 Bills of one millisecond, cut by the end of a page of 20.
    # After that page three of the first ten are deleted: everything moves up three places, tied Bills too.
    async with _emulator(clock, unique_timestamps=False, search_seed=seed) as emulator:
        account = emulator.add_account(ORG, name="Acme", code="acme", currency="USD")
        tied = [emulator.add_bill(ORG, account_id=account) for _ in range(15)]
        newest = [emulator.add_bill(ORG, account_id=account) for _ in range(10)]
        clock.set(SINCE + timedelta(seconds=1))
        for bill_id in tied:
            emulator.approve_bill(ORG, bill_id)
        for bill_id in newest:
            clock.advance(timedelta(seconds=1))
            emulator.approve_bill(ORG, bill_id)
        source = _source(emulator, source_for)
        seen: list[str] = []
        async for bill in source.iter_bills(modified_since=SINCE, page_size=20):
            seen.append(bill.id)
            if len(seen) == 20:
                for bill_id in newest[-3:]:
                    emulator.delete_bill(ORG, bill_id)
    assert set(tied) - set(seen) == set(), "a tied Bill was skipped"
