"""m3ter's Config API rate limits: the operator's shared client-side budget against the emulator's enforcement.

m3ter allows an Organization 50 requests per second and a source IP 20,000 per rolling 5 minutes
(https://www.m3ter.com/docs/guides/m3ter-apis/config-api-limits).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from m3stripe.adapters.m3ter_client import M3terRateLimits
from m3stripe.adapters.m3ter_source import M3terSource
from m3stripe.adapters.m3ter_token import M3terCredentials
from m3stripe.kube.config import M3terConfig, OperatorConfig
from m3stripe.kube.source import SourceRegistry
from m3stripe.testing.m3ter_emulator import M3terEmulator

ORG, OTHER_ORG = "org-1", "org-2"
USERS = [M3terCredentials(ORG, f"user-{index}", f"secret-{index}") for index in range(3)]
OTHER = M3terCredentials(OTHER_ORG, "other-user", "other-secret")


@pytest.fixture
async def emulator() -> AsyncIterator[M3terEmulator]:
    async with M3terEmulator() as running:  # m3ter's limits: 50/s per Organization, 20,000/5 min per IP
        for creds in [*USERS, OTHER]:
            running.add_client(creds.client_id, creds.client_secret, creds.organization_id)
        yield running


async def _integration_pass(source: M3terSource, bill_ids: list[str], account_ids: list[str]) -> int:
    """What one integration's pass asks m3ter: the listing, then each Bill's Account and mapping."""
    listed = [bill.id async for bill in source.iter_bills(modified_since=None, page_size=10)]
    await asyncio.gather(*(source.get_bill(bill_id) for bill_id in bill_ids))
    await asyncio.gather(*(source.get_account(account_id) for account_id in account_ids))
    await asyncio.gather(*(source.find_stripe_customer_mapping(account_id) for account_id in account_ids))
    return len(listed)


async def test_integrations_reading_one_organization_share_one_budget_and_get_no_429(
    emulator: M3terEmulator,
) -> None:
    accounts = [emulator.add_account(ORG, name=f"A{i}", code=f"a{i}", currency="USD") for i in range(10)]
    bills = [emulator.add_bill(ORG, account_id=accounts[i % 10]) for i in range(30)]
    other_account = emulator.add_account(OTHER_ORG, name="B", code="b", currency="USD")
    other_bills = [emulator.add_bill(OTHER_ORG, account_id=other_account) for _ in range(5)]
    limits = M3terRateLimits()  # what SourceRegistry shares across the process
    sources = [M3terSource(creds, base_url=emulator.url, rate_limits=limits, account_cache_ttl=0) for creds in USERS]
    other = M3terSource(OTHER, base_url=emulator.url, rate_limits=limits, account_cache_ttl=0)
    try:
        # Three integrations (three Service Users) of one Organization and one of another, all at once:
        # together far more than 50 requests within a second if nothing held them back.
        counts = await asyncio.gather(
            *(_integration_pass(source, bills, accounts) for source in sources),
            _integration_pass(other, other_bills, [other_account]),
        )
    finally:
        for source in [*sources, other]:
            await source.aclose()
    assert counts == [30, 30, 30, 5]
    to_org = [r for r in emulator.requests if r.path.startswith(f"/organizations/{ORG}/")]
    assert len(to_org) > 150, "the pass is big enough to break m3ter's limit if unthrottled"
    assert emulator.throttled_requests() == [] and emulator.throttled == 0


async def test_the_budget_is_keyed_by_organization_not_by_credentials() -> None:
    limits = M3terRateLimits()
    assert limits.for_organization(ORG) is limits.for_organization(ORG)
    assert limits.for_organization(ORG) is not limits.for_organization(OTHER_ORG)


async def test_the_operator_shares_one_budget_across_every_source(emulator: M3terEmulator) -> None:
    registry = SourceRegistry(OperatorConfig(m3ter=M3terConfig(base_url=emulator.url, requests_per_second=20)))
    first = registry.acquire(("one",), M3terCredentials(ORG, USERS[0].client_id, USERS[0].client_secret))
    second = registry.acquire(("two",), M3terCredentials(ORG, USERS[1].client_id, USERS[1].client_secret))
    try:
        assert first.source is not second.source, "different credentials, different sources"
        assert first.source.rate_limits is second.source.rate_limits is registry.rate_limits
    finally:
        await registry.release(("one",))
        await registry.release(("two",))


async def test_a_source_without_a_shared_budget_still_keeps_under_the_limit(emulator: M3terEmulator) -> None:
    account = emulator.add_account(ORG, name="A", code="a", currency="USD")
    bill_id = emulator.add_bill(ORG, account_id=account)
    source = M3terSource(USERS[0], base_url=emulator.url, max_retries=0)
    try:
        bills = await asyncio.gather(*(source.get_bill(bill_id) for _ in range(80)))
    finally:
        await source.aclose()
    assert all(bill is not None for bill in bills)
    assert emulator.throttled == 0


async def test_the_m3ter_clients_of_a_process_share_one_tls_context() -> None:
    # Building a TLS context loads the CA bundle: once per process, not once per integration's m3ter source.
    limits = M3terRateLimits()
    clients = [limits.http_client(organization, 5.0) for organization in (ORG, OTHER_ORG)]
    try:
        contexts = {id(client._transport._pool._ssl_context) for client in clients}  # type: ignore[attr-defined]
        assert contexts == {id(limits.tls_context())}
    finally:
        for client in clients:
            await client.aclose()
