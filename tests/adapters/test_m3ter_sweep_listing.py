"""The reconciliation sweep's listing: List Bills without line items, pages of 100, then the chosen ids."""

from __future__ import annotations

import aiohttp

from m3stripe.adapters.m3ter_source import M3terCredentials, M3terSource
from m3stripe.testing.m3ter_emulator import M3terEmulator

ORG = "org-1"
CREDS = M3terCredentials(ORG, "client-1", "secret-1")


async def test_the_sweep_lists_every_bill_without_line_items_in_pages_of_100() -> None:
    async with M3terEmulator() as m3ter:
        m3ter.add_client(CREDS.client_id, CREDS.client_secret, ORG)
        account = m3ter.add_account(ORG, name="A", code="a", currency="USD")
        bills = [
            m3ter.add_bill(ORG, account_id=account, lines=[{"line_item_type": "USAGE", "subtotal": "1"}])
            for _ in range(230)
        ]
        m3ter.approve_bill(ORG, bills[0])
        m3ter.lock_bill(ORG, bills[0])
        source = M3terSource(CREDS, base_url=m3ter.url)
        try:
            listed = [bill async for bill in source.list_bill_versions()]
        finally:
            await source.aclose()
        pages = [r for r in m3ter.requests_to(f"/organizations/{ORG}/bills") if "ids" not in r.query]
        stored = {bill_id: m3ter.get_bill(ORG, bill_id) for bill_id in bills}
    assert sorted(b.id for b in listed) == sorted(bills)
    assert len(pages) == 3
    assert all(r.query.get("excludeLineItems") == "true" and r.query.get("pageSize") == "100" for r in pages)
    by_id = {b.id: b for b in listed}
    assert by_id[bills[0]].locked and not by_id[bills[1]].locked
    assert all(by_id[i].version == stored[i].version for i in bills)
    assert all(by_id[i].last_modified == stored[i].dt_last_modified for i in bills)


async def test_the_emulator_leaves_line_items_out_when_asked_to() -> None:
    async with M3terEmulator() as m3ter:
        m3ter.add_client(CREDS.client_id, CREDS.client_secret, ORG)
        account = m3ter.add_account(ORG, name="A", code="a", currency="USD")
        m3ter.add_bill(ORG, account_id=account, lines=[{"line_item_type": "USAGE", "subtotal": "1"}])
        source = M3terSource(CREDS, base_url=m3ter.url)
        try:
            _, client = await source._client()
            bare = await client.bills.list(exclude_line_items=True)
            full = await client.bills.list()
        finally:
            await source.aclose()
    assert bare.data[0].line_items is None
    assert full.data[0].line_items and len(full.data[0].line_items) == 1


async def test_chosen_bills_are_read_by_ids_with_their_line_items() -> None:
    async with M3terEmulator() as m3ter:
        m3ter.add_client(CREDS.client_id, CREDS.client_secret, ORG)
        account = m3ter.add_account(ORG, name="A", code="a", currency="USD")
        bills = [
            m3ter.add_bill(ORG, account_id=account, lines=[{"line_item_type": "USAGE", "subtotal": "2.5"}])
            for _ in range(3)
        ]
        source = M3terSource(CREDS, base_url=m3ter.url)
        try:
            read = [bill async for bill in source.bills_by_ids([bills[2], bills[0]])]
        finally:
            await source.aclose()
    assert [b.id for b in read] == [bills[2], bills[0]]
    assert all(len(b.line_items) == 1 for b in read)  # type: ignore[union-attr]


async def test_a_bill_hidden_from_search_is_still_listed() -> None:
    async with M3terEmulator() as m3ter:
        m3ter.add_client(CREDS.client_id, CREDS.client_secret, ORG)
        account = m3ter.add_account(ORG, name="A", code="a", currency="USD")
        hidden, shown = (m3ter.add_bill(ORG, account_id=account, lines=[]) for _ in range(2))
        m3ter.hide_from_search(hidden)
        source = M3terSource(CREDS, base_url=m3ter.url)
        try:
            _, client = await source._client()
            found = await client.bills.search(sort_by="dtLastModified", sort_order="DESC", page_size=100)
            listed = [bill.id async for bill in source.list_bill_versions()]
        finally:
            await source.aclose()
    assert [b.id for b in found.data or ()] == [shown]
    assert sorted(listed) == sorted([hidden, shown])


async def test_the_admin_api_hides_a_bill_from_search_and_refuses_an_unknown_one() -> None:
    async with M3terEmulator() as m3ter:
        account = m3ter.add_account(ORG, name="A", code="a", currency="USD")
        bill = m3ter.add_bill(ORG, account_id=account, lines=[])
        base = f"{m3ter.url}/_emulator/organizations/{ORG}/bills"
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{base}/{bill}/hide-from-search", json={}) as hidden:
                assert hidden.status == 200
            async with http.post(f"{base}/no-such-bill/hide-from-search", json={}) as unknown:
                assert unknown.status == 404
        assert m3ter.search_hidden == {bill}
