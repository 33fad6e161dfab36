"""The reconciliation sweep's listing: List Bills without line items, pages of 100, then the chosen ids."""

from __future__ import annotations

import aiohttp

from m3stripe.testing.m3ter_emulator import M3terEmulator
from tests.adapters.service_user import CREDS, ORG
from tests.support.world import m3ter_source


def _usage_bills(emulator: M3terEmulator, count: int, subtotal: str) -> list[str]:
    """`count` Bills of one Account, each one USAGE line of `subtotal`."""
    account = emulator.add_account(ORG, name="A", code="a", currency="USD")
    return [
        emulator.add_bill(ORG, account_id=account, lines=[{"line_item_type": "USAGE", "subtotal": subtotal}])
        for _ in range(count)
    ]


async def test_the_sweep_lists_every_bill_without_line_items_in_pages_of_100(emulator: M3terEmulator) -> None:
    bills = _usage_bills(emulator, 230, "1")
    emulator.approve_bill(ORG, bills[0])
    emulator.lock_bill(ORG, bills[0])
    async with m3ter_source(CREDS, emulator.url) as source:
        listed = [bill async for bill in source.list_bill_versions()]
    pages = [r for r in emulator.requests_to(f"/organizations/{ORG}/bills") if "ids" not in r.query]
    stored = {bill_id: emulator.get_bill(ORG, bill_id) for bill_id in bills}
    assert sorted(b.id for b in listed) == sorted(bills)
    assert len(pages) == 3
    assert all(r.query.get("excludeLineItems") == "true" and r.query.get("pageSize") == "100" for r in pages)
    by_id = {b.id: b for b in listed}
    assert by_id[bills[0]].locked and not by_id[bills[1]].locked
    assert all(by_id[i].version == stored[i].version for i in bills)
    assert all(by_id[i].last_modified == stored[i].dt_last_modified for i in bills)


async def test_the_emulator_leaves_line_items_out_when_asked_to(emulator: M3terEmulator) -> None:
    account = emulator.add_account(ORG, name="A", code="a", currency="USD")
    emulator.add_bill(ORG, account_id=account, lines=[{"line_item_type": "USAGE", "subtotal": "1"}])
    async with m3ter_source(CREDS, emulator.url) as source:
        _, client = await source.client.authed()
        bare = await client.bills.list(exclude_line_items=True)
        full = await client.bills.list()
    assert bare.data[0].line_items is None
    assert full.data[0].line_items and len(full.data[0].line_items) == 1


async def test_chosen_bills_are_read_by_ids_with_their_line_items(emulator: M3terEmulator) -> None:
    bills = _usage_bills(emulator, 3, "2.5")
    async with m3ter_source(CREDS, emulator.url) as source:
        read = [bill async for bill in source.bills_by_ids([bills[2], bills[0]])]
    assert [b.id for b in read] == [bills[2], bills[0]]
    assert all(len(b.line_items) == 1 for b in read)  # type: ignore[union-attr]


async def test_a_bill_hidden_from_search_is_still_listed(emulator: M3terEmulator) -> None:
    account = emulator.add_account(ORG, name="A", code="a", currency="USD")
    hidden, shown = (emulator.add_bill(ORG, account_id=account, lines=[]) for _ in range(2))
    emulator.hide_from_search(hidden)
    async with m3ter_source(CREDS, emulator.url) as source:
        _, client = await source.client.authed()
        found = await client.bills.search(sort_by="dtLastModified", sort_order="DESC", page_size=100)
        listed = [bill.id async for bill in source.list_bill_versions()]
    assert [b.id for b in found.data or ()] == [shown]
    assert sorted(listed) == sorted([hidden, shown])


async def test_the_admin_api_hides_a_bill_from_search_and_refuses_an_unknown_one(emulator: M3terEmulator) -> None:
    account = emulator.add_account(ORG, name="A", code="a", currency="USD")
    bill = emulator.add_bill(ORG, account_id=account, lines=[])
    base = f"{emulator.url}/_emulator/organizations/{ORG}/bills"
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base}/{bill}/hide-from-search", json={}) as hidden:
            assert hidden.status == 200
        async with http.post(f"{base}/no-such-bill/hide-from-search", json={}) as unknown:
            assert unknown.status == 404
    assert emulator.search_hidden == {bill}
