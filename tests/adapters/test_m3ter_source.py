"""M3terSource and TokenManager against the m3ter emulator, over HTTP through the official SDK."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from m3stripe.adapters.m3ter_client import M3terRateLimits, sdk_client
from m3stripe.adapters.m3ter_source import M3terSource
from m3stripe.adapters.m3ter_token import M3terAuthError, M3terCredentials, M3terUnavailable, TokenManager
from m3stripe.domain.billing import Account, Bill, MalformedBill
from m3stripe.testing.m3ter_emulator import M3terEmulator
from tests.adapters.service_user import CLIENT_ID, CREDS, ORG, SECRET
from tests.support.clock import Clock
from tests.support.world import m3ter_source


@pytest.fixture
def m3ter_options() -> dict[str, int]:
    return {"token_ttl_seconds": 300, "max_retries": 1}


def _account(emulator: M3terEmulator, code: str = "acme") -> str:
    return emulator.add_account(ORG, name=f"{code} Ltd", code=code, currency="USD")


@asynccontextmanager
async def _clocked(clock: Clock) -> AsyncIterator[tuple[M3terEmulator, str]]:
    """An emulator on `clock` with the Service User, and one Account's id."""
    async with M3terEmulator(clock=clock.utc) as emulator:
        emulator.add_client(CLIENT_ID, SECRET, ORG)
        yield emulator, _account(emulator)


async def _collect(source: M3terSource, **kwargs: object) -> list[Bill | MalformedBill]:
    return [bill async for bill in source.iter_bills(**kwargs)]  # type: ignore[arg-type]


# -- token lifecycle -------------------------------------------------------------------------


async def test_one_token_serves_many_calls(emulator: M3terEmulator) -> None:
    account = _account(emulator)
    bill_id = emulator.add_bill(ORG, account_id=account, lines=[{"subtotal": 1}])
    # No Account cache: every get_account below is a request of its own.
    async with m3ter_source(CREDS, emulator.url, max_retries=1, account_cache_ttl=0) as source:
        await source.check()
        for _ in range(10):
            assert await source.get_bill(bill_id) is not None
            assert await source.get_account(account) is not None
        assert emulator.tokens_issued == 1
        assert source.token_manager.tokens_fetched == 1


async def test_token_is_refreshed_shortly_before_expiry(emulator: M3terEmulator) -> None:
    clock = Clock()
    emulator.add_client("c60", "s60", ORG, token_ttl_seconds=600)
    creds = M3terCredentials(ORG, "c60", "s60")
    client = sdk_client(creds, base_url=emulator.url, timeout=30.0, max_retries=0, rate_limits=M3terRateLimits())
    tokens = TokenManager(creds, client=client, refresh_margin=60, clock=clock)
    try:
        first = await tokens.get()
        clock.advance(539)  # 61 s of lifetime left: still outside the margin
        assert await tokens.get() == first
        clock.advance(2)  # 59 s left: inside the margin, refresh before m3ter would reject it
        second = await tokens.get()
        assert second != first
        assert (tokens.tokens_fetched, emulator.tokens_issued) == (2, 2)
    finally:
        await client.close()


async def test_short_lived_tokens_are_reused_until_half_life(emulator: M3terEmulator) -> None:
    # A 2 s token is shorter than the 60 s margin; it must still be reused, then replaced for real.
    emulator.add_client("short", "lived", ORG, token_ttl_seconds=2)
    creds = M3terCredentials(ORG, "short", "lived")
    async with m3ter_source(creds, emulator.url, max_retries=0) as source:
        await source.check()
        await source.check()
        assert emulator.tokens_issued == 1
        await asyncio.sleep(1.1)
        await source.check()
        assert emulator.tokens_issued == 2


async def test_concurrent_callers_share_one_token_fetch(emulator: M3terEmulator, source: M3terSource) -> None:
    bill_id = emulator.add_bill(ORG, account_id=_account(emulator))
    emulator.latency_seconds = 0.05  # keep the token request in flight while the others pile up
    bills = await asyncio.gather(*(source.get_bill(bill_id) for _ in range(25)))
    assert all(bill is not None and bill.id == bill_id for bill in bills)
    assert emulator.tokens_issued == 1
    assert len(emulator.requests_to("/oauth/token", method="POST")) == 1


async def test_rejected_token_is_replaced_once(emulator: M3terEmulator, source: M3terSource) -> None:
    await source.check()
    emulator.expire_tokens()  # m3ter answers an expired token with 403, not 401
    await source.check()
    assert emulator.tokens_issued == 2


@pytest.mark.parametrize("status", [403, 401])
async def test_a_token_revoked_mid_pass_is_replaced_once_for_every_caller(
    emulator: M3terEmulator, source: M3terSource, status: int
) -> None:
    account = _account(emulator)
    bills = [emulator.add_bill(ORG, account_id=account) for _ in range(40)]
    seen: list[str] = []
    async for bill in source.iter_bills(modified_since=None, page_size=10):
        seen.append(bill.id)
        if len(seen) == 10:
            emulator.revoke_tokens(status=status)
            # Many callers at once meet the revoked token: one new token serves them all.
            emulator.latency_seconds = 0.02
            fetched = await asyncio.gather(*(source.get_bill(bill_id) for bill_id in bills[:20]))
            emulator.latency_seconds = 0.0
            assert all(b is not None for b in fetched)
    assert seen == bills, "the pass read every Bill after the revocation"
    assert emulator.tokens_issued == 2
    assert len(emulator.requests_to("/oauth/token", method="POST")) == 2


async def test_a_refused_fresh_token_is_an_authentication_error(emulator: M3terEmulator) -> None:
    # The Service User belongs to org-1: every token it gets is refused for org-2 (403, as m3ter answers).
    source = M3terSource(M3terCredentials("org-2", CLIENT_ID, SECRET), base_url=emulator.url, max_retries=0)
    try:
        with pytest.raises(M3terAuthError, match=r"freshly issued token .*org-2.*HTTP 403") as caught:
            await source.check()
    finally:
        await source.aclose()
    assert emulator.tokens_issued == 2, "one new token, then the refusal is final"
    assert SECRET not in str(caught.value)


# -- errors ----------------------------------------------------------------------------------


async def test_bad_credentials_raise_auth_error_without_the_secret(
    emulator: M3terEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    creds = M3terCredentials(ORG, CLIENT_ID, "wrong-" + SECRET)
    async with m3ter_source(creds, emulator.url, max_retries=0) as source:
        caplog.set_level(logging.DEBUG)
        with pytest.raises(M3terAuthError) as caught:
            await source.check()
    message = str(caught.value)
    assert CLIENT_ID in message and "401" in message
    basic = base64.b64encode(f"{CLIENT_ID}:wrong-{SECRET}".encode()).decode()
    for leaked in (SECRET, basic):
        assert leaked not in message
        assert leaked not in repr(caught.value)
        assert leaked not in caplog.text
    assert SECRET not in repr(creds)


async def test_concurrent_callers_share_one_failed_fetch(emulator: M3terEmulator) -> None:
    source = M3terSource(M3terCredentials(ORG, CLIENT_ID, "wrong"), base_url=emulator.url, max_retries=0)
    emulator.latency_seconds = 0.05
    try:
        results = await asyncio.gather(*(source.check() for _ in range(10)), return_exceptions=True)
    finally:
        await source.aclose()
    assert all(isinstance(result, M3terAuthError) for result in results)
    assert len(emulator.requests_to("/oauth/token", method="POST")) == 1


async def test_credentials_for_another_org_are_refused(emulator: M3terEmulator) -> None:
    source = M3terSource(M3terCredentials("org-2", CLIENT_ID, SECRET), base_url=emulator.url, max_retries=0)
    try:
        with pytest.raises(M3terAuthError, match="org-2"):
            await source.check()
    finally:
        await source.aclose()


async def test_emulator_down_is_unavailable() -> None:
    async with M3terEmulator() as gone:
        url = gone.url
    async with m3ter_source(CREDS, url, max_retries=1) as source:
        with pytest.raises(M3terUnavailable):
            await source.check()


async def test_server_errors_are_retried_then_reported(emulator: M3terEmulator) -> None:
    async with m3ter_source(CREDS, emulator.url, max_retries=2) as source:
        bill_id = emulator.add_bill(ORG, account_id=_account(emulator))
        emulator.inject_server_errors(2, status=503, retry_after=0.01)
        assert await source.get_bill(bill_id) is not None
        emulator.inject_server_errors(3, status=500, retry_after=0.01)
        with pytest.raises(M3terUnavailable, match="500"):
            await source.get_bill(bill_id)
        emulator.inject_server_errors(3, status=429, retry_after=0.01)
        with pytest.raises(M3terUnavailable):
            await source.check()


# -- bills -----------------------------------------------------------------------------------


async def test_iter_bills_streams_page_by_page(emulator: M3terEmulator, source: M3terSource) -> None:
    account = _account(emulator)
    created = [emulator.add_bill(ORG, account_id=account, lines=[{"subtotal": i}]) for i in range(250)]
    stream = source.iter_bills(modified_since=None)
    first = await anext(stream)
    assert first.id == created[0]
    assert len(emulator.requests_to("/bills")) == 1, "only the first page is fetched before the first Bill"
    rest = [bill.id async for bill in stream]
    assert [first.id, *rest] == created
    pages = emulator.requests_to("/bills")
    assert len(pages) == 3
    assert all(page.query["pageSize"] == "100" and page.query["includeBillTotal"] == "true" for page in pages)


async def test_bills_are_read_at_most_100_a_page_as_m3ter_allows(emulator: M3terEmulator, source: M3terSource) -> None:
    # List Bills and Search Bills take pageSize 1..100 (https://docs.m3ter.com/api/bill/list-bills); m3ter
    # answers a larger page with 400, which would fail every pass on a real Organization.
    account = _account(emulator)
    for _ in range(3):
        emulator.add_bill(ORG, account_id=account)
    assert len(await _collect(source, modified_since=None)) == 3
    assert {r.query["pageSize"] for r in emulator.requests_to("/bills")} == {"100"}
    with pytest.raises(ValueError, match="between 1 and 100"):
        await _collect(source, modified_since=None, page_size=101)


async def test_iter_bills_honours_modified_since() -> None:
    clock = Clock(datetime(2025, 1, 1, tzinfo=UTC))
    async with _clocked(clock) as (emulator, account):
        old = [emulator.add_bill(ORG, account_id=account) for _ in range(120)]
        since = datetime(2025, 2, 1, tzinfo=UTC)
        clock.set(since)
        emulator.approve_bill(ORG, old[5])
        emulator.regenerate_bill(ORG, old[77], lines=[{"subtotal": "3"}])
        new = emulator.add_bill(ORG, account_id=account)
        async with m3ter_source(CREDS, emulator.url) as source:
            changed = await _collect(source, modified_since=since, page_size=50)
            naive = await _collect(source, modified_since=since.replace(tzinfo=None), page_size=50)
            everything = await _collect(source, modified_since=None)
    # Newest first (descending dtLastModified), as iter_bills documents.
    assert [(bill.id, bill.version) for bill in changed] == [(new, 1), (old[77], 2), (old[5], 2)]
    assert [bill.id for bill in naive] == [bill.id for bill in changed], "naive datetimes are UTC"
    assert len(everything) == 121
    assert all(isinstance(bill, Bill) and bill.last_modified.tzinfo is not None for bill in everything)


async def test_an_incremental_read_costs_what_changed_not_the_organization_size() -> None:
    clock = Clock(datetime(2025, 1, 1, tzinfo=UTC))
    async with _clocked(clock) as (emulator, account):
        old = [emulator.add_bill(ORG, account_id=account, lines=[{"subtotal": "1.5"}]) for _ in range(1500)]
        since = datetime(2025, 2, 1, tzinfo=UTC)
        clock.set(since)
        for index in range(0, 1500, 60):  # 25 changed Bills
            clock.advance(timedelta(seconds=1))
            emulator.regenerate_bill(ORG, old[index], lines=[{"subtotal": "2.5"}])
        async with m3ter_source(CREDS, emulator.url) as source:
            changed = await _collect(source, modified_since=since, page_size=10)
        searches = emulator.requests_to("/bills/search")
        listings = emulator.requests_to("/bills")
    assert [bill.id for bill in changed] == [old[index] for index in reversed(range(0, 1500, 60))]
    assert all(isinstance(bill, Bill) and bill.bill_total == Decimal("2.5") for bill in changed)
    # Pages of 10 overlapping by 5 (the last Bill, which may tie with the next, and 4 before it, so deletions
    # mid-scan skip nothing): five search pages reach the first unchanged Bill; each page holding new ids has them
    # read once (the fifth holds none).
    assert len(searches) == 5 and len(listings) == 4
    assert all(
        r.query["sortBy"] == "dtLastModified" and r.query["sortOrder"] == "DESC" and r.query["pageSize"] == "10"
        for r in searches
    )
    assert [r.query.get("fromDocument") for r in searches] == [None, "5", "10", "15", "20"]
    assert all(r.query["includeBillTotal"] == "true" and "ids" in r.query for r in listings)


async def test_a_bill_changed_during_an_incremental_read_is_never_skipped() -> None:
    clock = Clock(datetime(2025, 1, 1, tzinfo=UTC))
    async with _clocked(clock) as (emulator, account):
        bills = [emulator.add_bill(ORG, account_id=account) for _ in range(30)]
        since = datetime(2025, 2, 1, tzinfo=UTC)
        clock.set(since)
        for bill_id in bills:
            clock.advance(timedelta(seconds=1))
            emulator.approve_bill(ORG, bill_id)
        async with m3ter_source(CREDS, emulator.url) as source:
            seen: list[str] = []
            pass_started = clock.utc() + timedelta(milliseconds=500)
            async for bill in source.iter_bills(modified_since=since, page_size=10):
                seen.append(bill.id)
                if len(seen) == 12:  # mid-scan, an older changed Bill changes again and jumps to the front
                    clock.advance(timedelta(seconds=1))
                    emulator.regenerate_bill(ORG, bills[3])
            # The next pass reads from this pass's start: the Bill that moved is there, at its new version.
            next_pass = [bill async for bill in source.iter_bills(modified_since=pass_started)]
    assert set(seen) - {bills[3]} == set(bills) - {bills[3]}, "no Bill that stayed put was skipped"
    assert [(bill.id, bill.version) for bill in next_pass] == [(bills[3], 3)]


async def test_bill_conversion_is_exact(emulator: M3terEmulator, source: M3terSource) -> None:
    account = emulator.add_account(ORG, name="Acme", code="acme", currency="GBP")
    bill_id = emulator.add_bill(
        ORG,
        account_id=account,
        due_date=date(2025, 2, 28),
        bill_date=date(2025, 2, 1),
        start_date=date(2025, 1, 1),
        end_date=date(2025, 2, 1),
        purchase_order_number="PO-1",
        lines=[
            {
                "line_item_type": "USAGE",
                "quantity": "3",
                "unit_price": "0.1",
                "subtotal": "0.1",
                "aggregation_id": "agg-1",
                "product_name": "API",
                "sequence_number": 1,
            },
            {"line_item_type": "STANDING_CHARGE", "subtotal": "0.2"},
            {"line_item_type": "CREDIT_MEMO", "subtotal": "-1234567.89"},
        ],
    )
    bill = await source.get_bill(bill_id)
    assert isinstance(bill, Bill)
    usage, standing, credit = bill.line_items
    assert (usage.subtotal, standing.subtotal) == (Decimal("0.1"), Decimal("0.2"))
    assert usage.subtotal + standing.subtotal == Decimal("0.3")
    assert credit.subtotal == Decimal("-1234567.89")
    assert bill.bill_total == Decimal("-1234567.59")
    assert bill.line_items_total == bill.bill_total
    assert (usage.quantity, usage.unit_price) == (Decimal("3"), Decimal("0.1"))
    assert (usage.line_item_type, usage.aggregation_id, usage.product_name) == ("USAGE", "agg-1", "API")
    assert usage.sequence_number == 1 and usage.currency == "GBP"
    assert usage.service_period_start == datetime(2025, 1, 1, tzinfo=UTC)
    assert (bill.account_id, bill.account_code, bill.currency) == (account, "acme", "GBP")
    assert (bill.status, bill.version, bill.locked) == ("PENDING", 1, False)
    assert (bill.due_date, bill.bill_date) == (date(2025, 2, 28), date(2025, 2, 1))
    assert bill.purchase_order_number == "PO-1" and bill.external_invoice_reference is None

    listed = [b async for b in source.iter_bills(modified_since=None)]
    assert listed == [bill]


async def test_get_bill_missing_is_none(emulator: M3terEmulator, source: M3terSource) -> None:
    assert await source.get_bill("no-such-bill") is None


# -- accounts and mappings -------------------------------------------------------------------


async def test_get_account_converts_and_caches(emulator: M3terEmulator) -> None:
    clock = Clock()
    async with m3ter_source(CREDS, emulator.url, account_cache_ttl=60, clock=clock) as source:
        account_id = emulator.add_account(
            ORG,
            name="Acme",
            code="acme",
            currency="EUR",
            address={"addressLine1": "1 Rue", "locality": "Paris", "country": "FR"},
            custom_fields={"tier": "gold", "discount": 0.15, "seats": 12},
        )
        account = await source.get_account(account_id)
        assert account == await source.get_account(account_id)
        assert len(emulator.requests_to(f"/accounts/{account_id}")) == 1
        clock.advance(61)
        await source.get_account(account_id)
        assert len(emulator.requests_to(f"/accounts/{account_id}")) == 2
        assert await source.get_account("missing") is None
    assert isinstance(account, Account)
    record = account.as_filter_record()
    assert record["id"] == account_id
    assert record["name"] == record["accountName"] == "Acme"
    assert record["code"] == record["accountCode"] == "acme"
    assert record["currency"] == "EUR"
    assert record["address"] == {
        "addressLine1": "1 Rue",
        "addressLine2": None,
        "addressLine3": None,
        "addressLine4": None,
        "locality": "Paris",
        "region": None,
        "postCode": None,
        "country": "FR",
    }
    assert record["customFields"] == {"tier": "gold", "discount": Decimal("0.15"), "seats": Decimal("12")}
    assert hash(account) == hash(account)


async def test_stripe_customer_mapping(emulator: M3terEmulator, source: M3terSource) -> None:
    mapped, unmapped, salesforce_only = (
        _account(emulator, "a"),
        _account(emulator, "b"),
        _account(emulator, "c"),
    )
    emulator.add_external_mapping(ORG, mapped, "cus_A")
    emulator.add_external_mapping(ORG, salesforce_only, "0015g", system="Salesforce", table="Account")
    emulator.add_external_mapping(ORG, salesforce_only, "prod_X", system="Stripe", table="Product")
    assert await source.find_stripe_customer_mapping(mapped) == "cus_A"
    assert await source.find_stripe_customer_mapping(unmapped) is None
    assert await source.find_stripe_customer_mapping(salesforce_only) is None
    emulator.add_external_mapping(ORG, mapped, "cus_B")
    assert await source.find_stripe_customer_mapping(mapped) == "cus_B", "the latest mapping wins"
    lookups = emulator.requests_to(f"/externalmappings/external/Account/{mapped}")
    assert lookups and lookups[0].query["pageSize"] == "200"


async def test_long_scan_survives_token_rotation(emulator: M3terEmulator, source: M3terSource) -> None:
    account = _account(emulator)
    for _ in range(30):
        emulator.add_bill(ORG, account_id=account)
    seen = 0
    async for _ in source.iter_bills(modified_since=datetime.now(UTC) - timedelta(days=1), page_size=10):
        seen += 1
        if seen == 10:
            emulator.expire_tokens()
    assert seen == 30 and emulator.tokens_issued == 2
