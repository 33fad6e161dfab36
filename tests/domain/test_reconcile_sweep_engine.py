"""A Bill the search index misses is sent by the reconciliation sweep, exactly once (issue 9)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta

import pytest

from m3stripe.adapters.m3ter_token import M3terCredentials
from m3stripe.adapters.stripe_client import open_client
from m3stripe.adapters.stripe_gateway import metadata_of
from m3stripe.domain.mapping import META_ACCOUNT, META_BILL
from m3stripe.domain.runs import RunReport, RunStatus, SyncState
from m3stripe.testing.m3ter_emulator import M3terEmulator
from m3stripe.testing.stripe_emulator import StripeEmulator
from tests.domain.builders import engine_spec
from tests.domain.passes import m3ter_source, send_pass

ORG = "org-1"
CREDS = M3terCredentials(ORG, "client-1", "secret-1")
STRIPE_KEY = "sk_test_51reconcileSWEEPengine"
LINES = [{"line_item_type": "USAGE", "subtotal": "12.5"}]


class SweepFailingEmulator(M3terEmulator):
    """Answers 503 to every sweep listing (List Bills with excludeLineItems) while ``fail_sweep`` is set."""

    fail_sweep = False

    def record_request(self, method: str, path: str, query: dict[str, str]) -> None:
        super().record_request(method, path, query)
        if self.fail_sweep and query.get("excludeLineItems") == "true":
            self.inject_server_errors(1, status=503)


class World:
    def __init__(self, m3ter: SweepFailingEmulator, stripe: StripeEmulator) -> None:
        self.m3ter, self.stripe = m3ter, stripe
        self.integration_id = str(uuid.uuid4())
        self.spec = engine_spec(ORG)

    async def run(self, state: SyncState) -> RunReport:
        async with (
            open_client(STRIPE_KEY, api_base=self.stripe.url) as client,
            m3ter_source(CREDS, self.m3ter.url, max_retries=0) as source,
        ):
            return await send_pass(
                self.spec, source=source, client=client, integration_id=self.integration_id, state=state, concurrency=2
            )

    async def invoices_of(self, bill_id: str) -> int:
        async with open_client(STRIPE_KEY, api_base=self.stripe.url) as client:
            invoices = await client.v1.invoices.list_async(params={"limit": 100})
        return sum(1 for invoice in invoices.data if metadata_of(invoice).get(META_BILL) == bill_id)


@pytest.fixture
async def world() -> AsyncIterator[World]:
    async with SweepFailingEmulator() as m3ter, StripeEmulator() as stripe_emulator:
        m3ter.add_client(CREDS.client_id, CREDS.client_secret, ORG)
        stripe_emulator.add_api_key(STRIPE_KEY)
        w = World(m3ter, stripe_emulator)
        async with open_client(STRIPE_KEY, api_base=stripe_emulator.url) as client:
            for code in ("a", "b"):
                account = m3ter.add_account(ORG, name=code.upper(), code=code, currency="USD")
                await client.v1.customers.create_async(params={"name": code, "metadata": {META_ACCOUNT: account}})
                m3ter.add_bill(ORG, account_id=account, lines=LINES)
        yield w


def _next(state: SyncState, report: RunReport) -> SyncState:
    return SyncState(
        watermark=report.watermark, retry_bill_ids=tuple(report.retry_bill_ids), last_sweep=report.last_sweep
    )


def _listings(m3ter: M3terEmulator) -> int:
    return sum(1 for r in m3ter.requests_to(f"/organizations/{ORG}/bills") if r.query.get("excludeLineItems") == "true")


async def test_a_bill_the_search_misses_is_sent_by_the_sweep_exactly_once(world: World) -> None:
    first = await world.run(SyncState())
    assert first.status is RunStatus.COMPLETE and first.sent == 2
    assert first.last_sweep == first.started, "the first, full read is a sweep"
    assert _listings(world.m3ter) == 0, "and costs no second listing"

    account = next(iter(world.m3ter.org(ORG).accounts))
    missed = world.m3ter.add_bill(ORG, account_id=account, lines=LINES)
    world.m3ter.hide_from_search(missed)

    incremental = await world.run(_next(SyncState(), first))
    assert incremental.status is RunStatus.COMPLETE
    assert incremental.sent == 0 and incremental.swept_listed is None, "not due: the search alone misses it"
    assert incremental.last_sweep == first.last_sweep
    assert await world.invoices_of(missed) == 0

    assert first.last_sweep is not None
    forced = replace(_next(SyncState(), incremental), last_sweep=first.last_sweep - timedelta(hours=25))
    swept = await world.run(forced)
    assert swept.status is RunStatus.COMPLETE, swept.events
    # The two other Bills come from the incremental read's overlap (already in Stripe); the sweep re-reads
    # only what this pass has not handled: the missed Bill.
    assert swept.sent == 1 and swept.unchanged == 2
    assert (swept.swept_listed, swept.swept_reread) == (3, 1)
    assert "reconciliation sweep: 3 listed, 1 re-read" in swept.summary()
    assert swept.last_sweep == swept.started
    assert await world.invoices_of(missed) == 1

    again = await world.run(replace(_next(SyncState(), swept), last_sweep=swept.started - timedelta(hours=25)))
    assert again.status is RunStatus.COMPLETE and again.sent == 0 and again.unchanged == 3
    assert await world.invoices_of(missed) == 1, "the version Stripe holds is not sent twice"


async def test_a_sweep_that_cannot_list_leaves_last_sweep_unchanged(world: World) -> None:
    first = await world.run(SyncState())
    assert first.last_sweep is not None
    account = next(iter(world.m3ter.org(ORG).accounts))
    missed = world.m3ter.add_bill(ORG, account_id=account, lines=LINES)
    world.m3ter.hide_from_search(missed)
    world.m3ter.fail_sweep = True
    stale = first.last_sweep - timedelta(hours=25)

    failed = await world.run(replace(_next(SyncState(), first), last_sweep=stale))
    assert failed.status is RunStatus.AWAITING_RETRY
    assert failed.last_sweep == stale and failed.watermark == first.watermark
    assert await world.invoices_of(missed) == 0

    world.m3ter.fail_sweep = False
    recovered = await world.run(_next(SyncState(), failed))
    assert recovered.sent == 1 and recovered.last_sweep == recovered.started
    assert await world.invoices_of(missed) == 1


async def test_a_pass_sweeps_once_its_reconcile_interval_has_passed(world: World) -> None:
    first = await world.run(SyncState())
    assert first.last_sweep is not None
    world.spec = world.spec.model_copy(update={"reconcileInterval": "1h"})
    early = await world.run(replace(_next(SyncState(), first), last_sweep=first.last_sweep - timedelta(minutes=59)))
    assert early.swept_listed is None and _listings(world.m3ter) == 0
    due = await world.run(replace(_next(SyncState(), early), last_sweep=first.last_sweep - timedelta(hours=1)))
    assert due.swept_listed == 2 and _listings(world.m3ter) == 1
