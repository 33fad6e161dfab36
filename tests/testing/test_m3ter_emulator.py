"""The m3ter emulator, exercised only through the official ``m3ter`` SDK over HTTP."""

from __future__ import annotations

import asyncio
import base64
import time
import typing
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta

import aiohttp
import m3ter
import pytest
from m3ter import AsyncM3ter
from m3ter.types import Address
from m3ter.types.bill_response import LineItem

from m3stripe.domain.billing import ADDRESS_KEYS, LINE_ITEM_TYPES
from m3stripe.testing.m3ter_emulator import M3terEmulator
from m3stripe.testing.m3ter_emulator import state as emulator_state
from tests.support.clock import Clock

ORG = "org-1"
CLIENT_ID = "client-1"
SECRET = "s3cret-value"


@pytest.fixture
async def emulator() -> AsyncIterator[M3terEmulator]:
    async with M3terEmulator() as running:
        running.add_client(CLIENT_ID, SECRET, ORG, token_ttl_seconds=300)
        yield running


def _basic(client_id: str = CLIENT_ID, secret: str = SECRET) -> dict[str, str]:
    encoded = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {encoded}"}


@pytest.fixture
async def anonymous(emulator: M3terEmulator) -> AsyncIterator[AsyncM3ter]:
    client = AsyncM3ter(api_key=CLIENT_ID, api_secret=SECRET, org_id=ORG, base_url=emulator.url, max_retries=0)
    yield client
    await client.close()


@pytest.fixture
async def client(anonymous: AsyncM3ter) -> AsyncM3ter:
    token = await anonymous.authentication.get_bearer_token(grant_type="client_credentials", extra_headers=_basic())
    return anonymous.with_options(token=token.access_token)


def _account(emulator: M3terEmulator, code: str = "acme", org: str = ORG) -> str:
    return emulator.add_account(org, name=f"{code} Ltd", code=code, currency="USD")


# -- OAuth and access control ---------------------------------------------------------------


async def test_token_flow_issues_a_bearer_token(emulator: M3terEmulator, anonymous: AsyncM3ter) -> None:
    token = await anonymous.authentication.get_bearer_token(grant_type="client_credentials", extra_headers=_basic())
    assert token.access_token
    assert token.expires_in == 300
    assert token.token_type == "Bearer"
    assert emulator.tokens_issued == 1
    accounts = await anonymous.with_options(token=token.access_token).accounts.list()
    assert accounts.data == []


@pytest.mark.parametrize(("client_id", "secret"), [(CLIENT_ID, "wrong"), ("nobody", SECRET)])
async def test_bad_client_credentials_get_401(
    emulator: M3terEmulator, anonymous: AsyncM3ter, client_id: str, secret: str
) -> None:
    with pytest.raises(m3ter.AuthenticationError) as caught:
        await anonymous.authentication.get_bearer_token(
            grant_type="client_credentials", extra_headers=_basic(client_id, secret)
        )
    assert caught.value.status_code == 401
    assert isinstance(caught.value.body, dict) and "message" in caught.value.body
    assert emulator.tokens_issued == 0


# m3ter's error codes page: "403 Forbidden or Unauthorized", an expired Bearer Token being its example
# (https://docs.m3ter.com/guides/m3ter-apis/http-error-codes); the body is {"message": ...} (OpenAPI Error).


async def test_unknown_token_gets_403(anonymous: AsyncM3ter) -> None:
    with pytest.raises(m3ter.PermissionDeniedError) as caught:
        await anonymous.with_options(token="not-a-token").bills.list()
    assert caught.value.body == {"message": "Unauthorized: unknown bearer token"}


async def test_expired_token_gets_403(emulator: M3terEmulator, client: AsyncM3ter) -> None:
    await client.bills.list()
    assert emulator.expire_tokens() == 1
    with pytest.raises(m3ter.PermissionDeniedError) as caught:
        await client.bills.list()
    assert caught.value.body == {"message": "Unauthorized: the bearer token has expired"}


@pytest.mark.parametrize(("status", "error"), [(403, m3ter.PermissionDeniedError), (401, m3ter.AuthenticationError)])
async def test_revoked_token_is_refused_with_the_chosen_status(
    emulator: M3terEmulator, client: AsyncM3ter, status: int, error: type[m3ter.APIStatusError]
) -> None:
    await client.bills.list()
    assert emulator.revoke_tokens(CLIENT_ID, status=status) == 1
    with pytest.raises(error) as caught:
        await client.bills.list()
    assert caught.value.status_code == status
    assert caught.value.body == {"message": "Unauthorized: the bearer token was revoked"}


async def test_admin_api_expires_and_revokes_tokens(emulator: M3terEmulator, anonymous: AsyncM3ter) -> None:
    async def fresh() -> AsyncM3ter:
        token = await anonymous.authentication.get_bearer_token(grant_type="client_credentials", extra_headers=_basic())
        return anonymous.with_options(token=token.access_token)

    first, second = await fresh(), await fresh()
    async with aiohttp.ClientSession(emulator.url) as http:
        response = await http.post("/_emulator/tokens/revoke", json={"client_id": CLIENT_ID, "status": 401})
        assert (await response.json()) == {"revoked": 2}
        response = await http.post("/_emulator/tokens/revoke", json={"status": 500})
        assert response.status == 400
    with pytest.raises(m3ter.AuthenticationError):
        await first.bills.list()
    third = await fresh()
    async with aiohttp.ClientSession(emulator.url) as http:
        response = await http.post("/_emulator/tokens/expire", json={})
        assert (await response.json()) == {"expired": 3}
    for client in (second, third):
        with pytest.raises(m3ter.APIStatusError):
            await client.bills.list()


async def test_token_expires_after_its_ttl(emulator: M3terEmulator, anonymous: AsyncM3ter) -> None:
    emulator.add_client("short", "lived", ORG, token_ttl_seconds=1)
    token = await anonymous.authentication.get_bearer_token(
        grant_type="client_credentials", extra_headers=_basic("short", "lived")
    )
    authed = anonymous.with_options(token=token.access_token)
    await authed.accounts.list()
    await asyncio.sleep(1.05)  # the emulator's token expiry runs on real monotonic time
    with pytest.raises(m3ter.PermissionDeniedError):
        await authed.accounts.list()


async def test_other_organization_is_forbidden(emulator: M3terEmulator, client: AsyncM3ter) -> None:
    emulator.add_client("other", "other-secret", "org-2")
    _account(emulator, org="org-2")
    with pytest.raises(m3ter.PermissionDeniedError):
        await client.accounts.list(org_id="org-2")


# -- Accounts -------------------------------------------------------------------------------


async def test_accounts_retrieve_and_list_with_pagination(emulator: M3terEmulator, client: AsyncM3ter) -> None:
    first = emulator.add_account(
        ORG,
        name="Acme",
        code="acme",
        currency="GBP",
        address={"addressLine1": "1 High St", "postCode": "AB1 2CD", "country": "GB"},
        custom_fields={"tier": "gold", "seats": 12},
    )
    for index in range(24):
        _account(emulator, code=f"c{index}")

    account = await client.accounts.retrieve(first)
    assert (account.name, account.code, account.currency) == ("Acme", "acme", "GBP")
    assert account.address is not None and account.address.post_code == "AB1 2CD"
    assert account.custom_fields == {"tier": "gold", "seats": 12}

    codes = [item.code async for item in client.accounts.list(page_size=10)]
    assert len(codes) == 25 and codes[0] == "acme"
    by_code = await client.accounts.list(codes=["c3", "c5"])
    assert sorted(item.code or "" for item in by_code.data) == ["c3", "c5"]
    with pytest.raises(m3ter.NotFoundError):
        await client.accounts.retrieve("missing")


# -- Bills ----------------------------------------------------------------------------------


async def test_bills_page_through_hundreds_in_creation_order(emulator: M3terEmulator, client: AsyncM3ter) -> None:
    accounts = [_account(emulator, code=f"a{index}") for index in range(3)]
    created = [
        emulator.add_bill(ORG, account_id=accounts[index % 3], lines=[{"subtotal": index}]) for index in range(350)
    ]
    seen: list[str] = []
    page = await client.bills.list(page_size=100)
    pages = 1
    seen.extend(bill.id for bill in page.data)
    while page.has_next_page():
        page = await page.get_next_page()
        pages += 1
        seen.extend(bill.id for bill in page.data)
    assert seen == created
    assert pages == 4 and page.next_token is None
    assert [r.query.get("pageSize") for r in emulator.requests_to("/bills")] == ["100"] * 4

    everything = [bill.id async for bill in client.bills.list(page_size=33)]
    assert everything == created


async def test_bill_list_filters(emulator: M3terEmulator, client: AsyncM3ter) -> None:
    acme, globex = _account(emulator, "acme"), _account(emulator, "globex")
    ids = [emulator.add_bill(ORG, account_id=acme if i % 2 else globex) for i in range(10)]
    emulator.approve_bill(ORG, ids[1])
    emulator.approve_bill(ORG, ids[2])

    approved = await client.bills.list(status="APPROVED")
    assert [bill.id for bill in approved.data] == ids[1:3]
    for_acme = [bill.id async for bill in client.bills.list(account_id=acme, page_size=2)]
    assert for_acme == ids[1::2]
    chosen = await client.bills.list(ids=[ids[7], ids[3], "missing"])
    assert [bill.id for bill in chosen.data] == [ids[3], ids[7]]
    with pytest.raises(m3ter.BadRequestError):
        await client.bills.list(page_size=201)


@pytest.mark.parametrize(
    ("endpoint", "limit"),
    [("bills", 100), ("accounts", 100), ("currencies", 100), ("mappings", 200), ("line items", 100)],
)
async def test_page_size_is_bounded_per_endpoint_as_m3ter_documents(
    emulator: M3terEmulator, client: AsyncM3ter, endpoint: str, limit: int
) -> None:
    # Each pageSize's "Required range" in m3ter's API reference (List Bills, List Accounts, List Currencies:
    # 1..100; External Mappings: 1..200); outside it m3ter answers 400 with its error body {"message": ...}.
    bill_id = emulator.add_bill(ORG, account_id=_account(emulator))
    calls: dict[str, Callable[[int], Awaitable[object]]] = {
        "bills": lambda size: client.bills.list(page_size=size),
        "accounts": lambda size: client.accounts.list(page_size=size),
        "currencies": lambda size: client.currencies.list(page_size=size),
        "mappings": lambda size: client.external_mappings.list_by_m3ter_entity("a", entity="Account", page_size=size),
        "line items": lambda size: client.bills.line_items.list(bill_id, page_size=size),
    }
    call = calls[endpoint]
    await call(limit)
    await call(1)
    for refused in (limit + 1, 0):
        with pytest.raises(m3ter.BadRequestError) as caught:
            await call(refused)
        assert caught.value.body == {"message": f"pageSize must be between 1 and {limit}"}


async def test_bill_body_matches_the_sdk_model(emulator: M3terEmulator, client: AsyncM3ter) -> None:
    account = _account(emulator)
    bill_id = emulator.add_bill(
        ORG,
        account_id=account,
        currency="EUR",
        due_date="2025-02-14",
        start_date="2025-01-01",
        end_date="2025-02-01",
        purchase_order_number="PO-7",
        lines=[
            {
                "line_item_type": "USAGE",
                "quantity": 3,
                "unit_price": "0.1",
                "description": "API calls",
                "product_name": "API",
                "aggregation_id": "agg-1",
                "sequence_number": 2,
            },
            {"lineItemType": "STANDING_CHARGE", "subtotal": "0.2"},
        ],
    )
    bill = await client.bills.retrieve(bill_id)
    assert (bill.account_id, bill.account_code, bill.currency) == (account, "acme", "EUR")
    assert (bill.status, bill.version, bill.locked) == ("PENDING", 1, False)
    assert str(bill.due_date) == "2025-02-14" and bill.purchase_order_number == "PO-7"
    assert bill.bill_total == pytest.approx(0.5)
    assert isinstance(bill.dt_last_modified, datetime) and bill.dt_last_modified.tzinfo is not None
    assert bill.line_items is not None and len(bill.line_items) == 2
    usage = bill.line_items[0]
    assert usage.line_item_type == "USAGE"
    assert usage.quantity == 3
    assert usage.subtotal == pytest.approx(0.3)
    assert (usage.average_unit_price, usage.product_name, usage.aggregation_id) == (0.1, "API", "agg-1")
    assert usage.sequence_number == 2
    assert usage.service_period_start_date == datetime(2025, 1, 1, tzinfo=UTC)

    listed = await client.bills.list()
    assert listed.data[0].bill_total is None, "the list carries billTotal only when asked"
    listed = await client.bills.list(include_bill_total=True)
    assert listed.data[0].bill_total == pytest.approx(0.5)

    line_items = await client.bills.line_items.list(bill_id)
    assert [line.line_item_type for line in line_items.data] == ["USAGE", "STANDING_CHARGE"]


def test_the_emulators_line_item_types_and_address_keys_are_the_vendors() -> None:
    # The emulator's own copies (it imports nothing of the operator but its API) against the SDK's models; the
    # operator's constants, which the emulator used to import, must agree with the same vendor lists.
    vendor_types = typing.get_args(LineItem.model_fields["line_item_type"].annotation)
    vendor_keys = tuple(field.alias or name for name, field in Address.model_fields.items())
    assert vendor_types == emulator_state.LINE_ITEM_TYPES
    assert set(emulator_state.ADDRESS_KEYS) == set(vendor_keys)
    assert vendor_types == LINE_ITEM_TYPES
    assert set(ADDRESS_KEYS) == set(vendor_keys)


async def test_every_line_item_type_is_accepted(emulator: M3terEmulator, client: AsyncM3ter) -> None:
    account = _account(emulator)
    lines = [{"line_item_type": kind, "subtotal": "1.5"} for kind in LINE_ITEM_TYPES]
    bill = await client.bills.retrieve(emulator.add_bill(ORG, account_id=account, lines=lines))
    assert len(LINE_ITEM_TYPES) == 19
    assert [line.line_item_type for line in bill.line_items or []] == list(LINE_ITEM_TYPES)
    with pytest.raises(ValueError, match="not an m3ter line item type"):
        emulator.add_bill(ORG, account_id=account, lines=[{"line_item_type": "BOGUS", "subtotal": 1}])


async def test_regenerate_and_approve_bump_version_and_last_modified(
    emulator: M3terEmulator, client: AsyncM3ter
) -> None:
    bill_id = emulator.add_bill(ORG, account_id=_account(emulator), lines=[{"subtotal": "10"}])
    original = await client.bills.retrieve(bill_id)

    assert emulator.approve_bill(ORG, bill_id) == 2
    approved = await client.bills.retrieve(bill_id)
    assert (approved.status, approved.version) == ("APPROVED", 2)
    assert approved.dt_approved is not None
    assert approved.dt_last_modified and original.dt_last_modified
    assert approved.dt_last_modified > original.dt_last_modified

    assert emulator.regenerate_bill(ORG, bill_id, lines=[{"subtotal": "12.25"}]) == 3
    regenerated = await client.bills.retrieve(bill_id)
    assert (regenerated.status, regenerated.version, regenerated.bill_total) == ("PENDING", 3, 12.25)
    assert regenerated.dt_last_modified and regenerated.dt_last_modified > approved.dt_last_modified

    emulator.approve_bill(ORG, bill_id)
    emulator.lock_bill(ORG, bill_id)
    with pytest.raises(ValueError, match="locked"):
        emulator.regenerate_bill(ORG, bill_id)
    unlocked_only = await client.bills.list(locked=False)
    assert unlocked_only.data == []


async def test_controllable_clock_stamps_changes() -> None:
    clock = Clock(datetime(2025, 3, 1, 12, tzinfo=UTC))
    async with M3terEmulator(clock=clock.utc) as emulator:
        emulator.add_client(CLIENT_ID, SECRET, ORG)
        bill_id = emulator.add_bill(ORG, account_id=_account(emulator))
        clock.advance(timedelta(hours=1))
        emulator.regenerate_bill(ORG, bill_id)
        async with AsyncM3ter(api_key=CLIENT_ID, api_secret=SECRET, org_id=ORG, base_url=emulator.url) as sdk:
            token = await sdk.authentication.get_bearer_token(grant_type="client_credentials", extra_headers=_basic())
            bill = await sdk.with_options(token=token.access_token).bills.retrieve(bill_id)
    assert bill.dt_created is not None
    assert timedelta(0) <= bill.dt_created - datetime(2025, 3, 1, 12, tzinfo=UTC) < timedelta(seconds=1)
    assert bill.dt_last_modified == datetime(2025, 3, 1, 13, tzinfo=UTC)


# -- External mappings ----------------------------------------------------------------------


async def test_external_mapping_lookup(emulator: M3terEmulator, client: AsyncM3ter) -> None:
    account, other = _account(emulator, "acme"), _account(emulator, "globex")
    emulator.add_external_mapping(ORG, account, "cus_123")
    emulator.add_external_mapping(ORG, account, "0015g00000AbCdE", system="Salesforce", table="Account")
    emulator.add_external_mapping(ORG, other, "cus_999")

    mine = await client.external_mappings.list_by_m3ter_entity(account, entity="Account")
    assert {(m.external_system, m.external_table, m.external_id) for m in mine.data} == {
        ("Stripe", "Customer", "cus_123"),
        ("Salesforce", "Account", "0015g00000AbCdE"),
    }
    assert all(m.m3ter_entity == "Account" and m.m3ter_id == account for m in mine.data)
    reverse = await client.external_mappings.list_by_external_entity(
        "cus_999", system="Stripe", external_table="Customer"
    )
    assert [m.m3ter_id for m in reverse.data] == [other]
    stripe_only = await client.external_mappings.list(external_system_id="Stripe")
    assert sorted(m.external_id for m in stripe_only.data) == ["cus_123", "cus_999"]
    none = await client.external_mappings.list_by_m3ter_entity("unmapped", entity="Account")
    assert none.data == []


# -- faults, scale, admin -------------------------------------------------------------------


async def test_injected_faults_are_retried_by_the_sdk(emulator: M3terEmulator, client: AsyncM3ter) -> None:
    emulator.inject_server_errors(2, status=503, retry_after=0.01)
    page = await client.with_options(max_retries=2).bills.list()
    assert page.data == [] and emulator.faults_served == 2
    emulator.inject_server_errors(1, status=429)
    with pytest.raises(m3ter.RateLimitError):
        await client.bills.list()


# m3ter's Config API limits (https://www.m3ter.com/docs/guides/m3ter-apis/config-api-limits): 50 requests a
# second per Organization (429 for the rest of that second), 20,000 per rolling 5 minutes per source IP.


FROZEN = 1_700_000_000.25  # a quarter past a wall-clock second


async def test_a_burst_above_the_organization_limit_gets_429_for_the_rest_of_the_second(
    emulator: M3terEmulator, client: AsyncM3ter
) -> None:
    clock = Clock(FROZEN)
    emulator.rate_clock = clock
    outcomes = await asyncio.gather(*(client.accounts.list() for _ in range(60)), return_exceptions=True)
    refused = [o for o in outcomes if isinstance(o, m3ter.RateLimitError)]
    assert len(refused) == 10, "50 requests a second, counted per wall-clock second"
    assert refused[0].body == {"message": "Too Many Requests"}
    clock.advance(0.7)  # still the same second
    with pytest.raises(m3ter.RateLimitError):
        await client.accounts.list()
    clock.advance(0.1)  # the next second
    await client.accounts.list()
    assert len(emulator.throttled_requests()) == emulator.throttled == 11
    # Another Organization has its own budget.
    emulator.add_client("other", "other-secret", "org-2")
    token = await client.authentication.get_bearer_token(
        grant_type="client_credentials", extra_headers=_basic("other", "other-secret")
    )
    await client.with_options(token=token.access_token).accounts.list(org_id="org-2")


async def test_token_requests_count_against_their_organization(emulator: M3terEmulator, anonymous: AsyncM3ter) -> None:
    emulator.rate_clock = Clock(FROZEN)
    emulator.organization_requests_per_second = 3
    for _ in range(3):
        await anonymous.authentication.get_bearer_token(grant_type="client_credentials", extra_headers=_basic())
    with pytest.raises(m3ter.RateLimitError):
        await anonymous.authentication.get_bearer_token(grant_type="client_credentials", extra_headers=_basic())


async def test_the_source_ip_limit_holds_over_a_rolling_window(emulator: M3terEmulator, client: AsyncM3ter) -> None:
    clock = Clock(time.time())  # the fixture's token request, just before, is in the window too
    emulator.rate_clock = clock
    emulator.organization_requests_per_second = None
    emulator.ip_requests_per_window = 30  # m3ter: 20,000 per rolling 5 minutes; smaller to keep the test short
    for _ in range(29):
        await client.accounts.list()
        clock.advance(5)
    with pytest.raises(m3ter.RateLimitError):
        await client.accounts.list()  # 145 s after the first: all 30 are inside the 300 s window
    clock.advance(300)
    await client.accounts.list()


async def test_the_admin_api_sets_the_rate_limits(emulator: M3terEmulator) -> None:
    async with aiohttp.ClientSession(emulator.url) as http:
        response = await http.post("/_emulator/ratelimits", json={"organization_requests_per_second": None})
        assert (await response.json())["organization_requests_per_second"] is None
        response = await http.post("/_emulator/ratelimits", json={"per_minute": 5})
        assert response.status == 400
    assert emulator.organization_requests_per_second is None


async def test_ten_thousand_bills_page_quickly(emulator: M3terEmulator, client: AsyncM3ter) -> None:
    emulator.organization_requests_per_second = None  # this measures paging; the raw client is not throttled
    accounts = [_account(emulator, f"a{index}") for index in range(50)]
    line = [{"line_item_type": "USAGE", "subtotal": "1.25"}]
    for index in range(10_000):
        emulator.add_bill(ORG, account_id=accounts[index % 50], lines=line)
    started = time.perf_counter()
    page = await client.bills.list(page_size=100, account_id=accounts[7], status="PENDING")
    count = len(page.data)
    while page.has_next_page():
        page = await page.get_next_page()
        count += len(page.data)
    assert count == 200
    total = 0
    async for _ in client.bills.list(page_size=100):
        total += 1
    assert total == 10_000
    assert time.perf_counter() - started < 10


async def test_admin_api_seeds_a_standalone_emulator(emulator: M3terEmulator, client: AsyncM3ter) -> None:
    async with aiohttp.ClientSession(emulator.url) as http:
        response = await http.post(f"/_emulator/organizations/{ORG}/accounts", json={"name": "Acme", "code": "acme"})
        account_id = (await response.json())["id"]
        response = await http.post(
            f"/_emulator/organizations/{ORG}/bills",
            json={"account_id": account_id, "lines": [{"lineItemType": "AD_HOC", "subtotal": 4}]},
        )
        bill_id = (await response.json())["id"]
        response = await http.post(f"/_emulator/organizations/{ORG}/bills/{bill_id}/approve")
        assert (await response.json()) == {"version": 2}
        response = await http.post(f"/_emulator/organizations/{ORG}/bills", json={"account_id": "nope"})
        assert response.status == 400
    bill = await client.bills.retrieve(bill_id)
    assert (bill.status, bill.version, bill.bill_total) == ("APPROVED", 2, 4)


# -- Currency picklist ----------------------------------------------------------------------


async def test_currency_picklist_serves_rounding_rules(emulator: M3terEmulator, client: AsyncM3ter) -> None:
    emulator.set_currency(ORG, "usd", max_decimal_places=4, rounding_mode="HALF_EVEN")
    page = await client.currencies.list(page_size=100, codes=["USD", "JPY"])
    by_code = {item.code: item for item in page.data}
    assert (by_code["USD"].max_decimal_places, by_code["USD"].rounding_mode) == (4, "HALF_EVEN")
    assert (by_code["JPY"].max_decimal_places, by_code["JPY"].rounding_mode) == (0, "HALF_UP")
    with pytest.raises(m3ter.BadRequestError) as caught:
        await client.currencies.list(page_size=101)  # List Currencies: pageSize 1..100
    assert caught.value.body == {"message": "pageSize must be between 1 and 100"}
    with pytest.raises(ValueError, match="rounding_mode"):
        emulator.set_currency(ORG, "EUR", rounding_mode="HALF_ODD")
    with pytest.raises(ValueError, match="max_decimal_places"):
        emulator.set_currency(ORG, "EUR", max_decimal_places=6)


# -- Search Bills ---------------------------------------------------------------------------


async def test_search_bills_sorts_pages_and_filters_as_documented(emulator: M3terEmulator, client: AsyncM3ter) -> None:
    # https://docs.m3ter.com/api/bill/search-bills: sortBy any Bill field, sortOrder, fromDocument, pageSize 1..100,
    # searchQuery over the documented parameters only.
    acme, globex = _account(emulator, "acme"), _account(emulator, "globex")
    ids = [emulator.add_bill(ORG, account_id=acme if i % 2 else globex) for i in range(25)]
    emulator.approve_bill(ORG, ids[3])  # now the most recently modified
    first = await client.bills.search(sort_by="dtLastModified", sort_order="DESC", page_size=10)
    assert [bill.id for bill in first.data or []][:2] == [ids[3], ids[24]]
    assert first.next_token == "10"
    second = await client.bills.search(sort_by="dtLastModified", sort_order="DESC", page_size=10, from_document=10)
    last = await client.bills.search(sort_by="dtLastModified", sort_order="DESC", page_size=10, from_document=20)
    everything = [b.id for page in (first, second, last) for b in page.data or []]
    assert sorted(everything) == sorted(ids) and len(everything) == 25 and last.next_token is None
    ascending = await client.bills.search(sort_by="dtLastModified", sort_order="ASC", page_size=100)
    assert [b.id for b in ascending.data or []] == list(reversed(everything))
    only_acme = await client.bills.search(search_query=f"accountId:{acme}", page_size=100)
    assert sorted(b.id for b in only_acme.data or []) == sorted(ids[1::2])
    with pytest.raises(m3ter.BadRequestError, match="not searchable"):
        await client.bills.search(search_query="dtLastModified>2025-01-01")  # not an allowed parameter
    with pytest.raises(m3ter.BadRequestError, match="between 1 and 100"):
        await client.bills.search(page_size=101)


async def test_search_bills_orders_equal_timestamps_anew_on_every_request() -> None:
    # m3ter documents no tie-break for equal sortBy values (https://docs.m3ter.com/api/bill/search-bills).
    fixed = datetime(2025, 3, 1, tzinfo=UTC)
    async with M3terEmulator(clock=Clock(fixed).utc, unique_timestamps=False, search_seed=7) as emulator:
        emulator.add_client(CLIENT_ID, SECRET, ORG)
        account = _account(emulator)
        ids = [emulator.add_bill(ORG, account_id=account) for _ in range(20)]
        async with AsyncM3ter(
            api_key=CLIENT_ID, api_secret=SECRET, org_id=ORG, base_url=emulator.url, max_retries=0
        ) as anonymous:
            token = await anonymous.authentication.get_bearer_token(
                grant_type="client_credentials", extra_headers=_basic()
            )
            client = anonymous.with_options(token=token.access_token)
            orders = [
                [b.id for b in (await client.bills.search(sort_by="dtLastModified", page_size=100)).data or []]
                for _ in range(3)
            ]
    assert all(sorted(order) == sorted(ids) for order in orders)
    assert len({tuple(order) for order in orders}) > 1, "ties come in a new order on each request"
    assert {emulator.get_bill(ORG, i).dt_last_modified for i in ids} == {fixed}


async def test_search_bills_can_answer_full_pages_without_next_token(
    emulator: M3terEmulator, client: AsyncM3ter
) -> None:
    account = _account(emulator)
    for _ in range(12):
        emulator.add_bill(ORG, account_id=account)
    emulator.search_next_token = False
    page = await client.bills.search(sort_by="dtLastModified", sort_order="DESC", page_size=10)
    assert len(page.data or []) == 10 and page.next_token is None


async def test_list_bills_by_ids_can_end_a_page_early(emulator: M3terEmulator, client: AsyncM3ter) -> None:
    account = _account(emulator)
    ids = [emulator.add_bill(ORG, account_id=account) for _ in range(5)]
    emulator.ids_page_cap = 2
    first = await client.bills.list(ids=ids, page_size=5)
    assert len(first.data) == 2 and first.next_token
    second = await client.bills.list(ids=ids, page_size=5, next_token=first.next_token)
    assert len(second.data) == 2
    emulator.ids_next_token = False
    assert (await client.bills.list(ids=ids, page_size=5)).next_token is None
