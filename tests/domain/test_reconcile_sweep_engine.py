"""A Bill the search index misses is sent by the reconciliation sweep, exactly once (issue 9)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import timedelta

import pytest

from m3stripe.adapters.m3ter_token import M3terCredentials
from m3stripe.domain.runs import RunStatus, SyncState
from m3stripe.testing.m3ter_emulator import M3terEmulator
from m3stripe.testing.stripe_emulator import StripeEmulator
from tests.support.engine_world import EngineWorld, next_state, open_engine_world

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


@dataclass(kw_only=True)
class SweepWorld(EngineWorld):
    m3ter: SweepFailingEmulator


@pytest.fixture
async def world() -> AsyncIterator[SweepWorld]:
    """Two Accounts with their customers and a Bill each; m3ter is read without retries, two Bills at a time."""
    async with open_engine_world(
        SweepWorld,
        creds=CREDS,
        key=STRIPE_KEY,
        stripe_emulator=StripeEmulator(),
        m3ter=SweepFailingEmulator(),
        source_options={"max_retries": 0},
        concurrency=2,
    ) as w:
        for code in ("a", "b"):
            account = w.m3ter.add_account(ORG, name=code.upper(), code=code, currency="USD")
            await w.customer_for(account, name=code)
            w.m3ter.add_bill(ORG, account_id=account, lines=LINES)
        yield w


def _listings(m3ter: M3terEmulator) -> int:
    return sum(1 for r in m3ter.requests_to(f"/organizations/{ORG}/bills") if r.query.get("excludeLineItems") == "true")


async def test_a_bill_the_search_misses_is_sent_by_the_sweep_exactly_once(world: SweepWorld) -> None:
    first = await world.run(SyncState())
    assert first.status is RunStatus.COMPLETE and first.sent == 2
    assert first.last_sweep == first.started, "the first, full read is a sweep"
    assert _listings(world.m3ter) == 0, "and costs no second listing"

    account = next(iter(world.m3ter.org(ORG).accounts))
    missed = world.m3ter.add_bill(ORG, account_id=account, lines=LINES)
    world.m3ter.hide_from_search(missed)

    incremental = await world.run(next_state(first))
    assert incremental.status is RunStatus.COMPLETE
    assert incremental.sent == 0 and incremental.swept_listed is None, "not due: the search alone misses it"
    assert incremental.last_sweep == first.last_sweep
    assert len(world.invoices_of(missed)) == 0

    assert first.last_sweep is not None
    forced = replace(next_state(incremental), last_sweep=first.last_sweep - timedelta(hours=25))
    swept = await world.run(forced)
    assert swept.status is RunStatus.COMPLETE, swept.events
    # The two other Bills come from the incremental read's overlap (already in Stripe); the sweep re-reads
    # only what this pass has not handled: the missed Bill.
    assert swept.sent == 1 and swept.unchanged == 2
    assert (swept.swept_listed, swept.swept_reread) == (3, 1)
    assert "reconciliation sweep: 3 listed, 1 re-read" in swept.summary()
    assert swept.last_sweep == swept.started
    assert len(world.invoices_of(missed)) == 1

    again = await world.run(replace(next_state(swept), last_sweep=swept.started - timedelta(hours=25)))
    assert again.status is RunStatus.COMPLETE and again.sent == 0 and again.unchanged == 3
    assert len(world.invoices_of(missed)) == 1, "the version Stripe holds is not sent twice"


async def test_a_sweep_that_cannot_list_leaves_last_sweep_unchanged(world: SweepWorld) -> None:
    first = await world.run(SyncState())
    assert first.last_sweep is not None
    account = next(iter(world.m3ter.org(ORG).accounts))
    missed = world.m3ter.add_bill(ORG, account_id=account, lines=LINES)
    world.m3ter.hide_from_search(missed)
    world.m3ter.fail_sweep = True
    stale = first.last_sweep - timedelta(hours=25)

    failed = await world.run(replace(next_state(first), last_sweep=stale))
    assert failed.status is RunStatus.AWAITING_RETRY
    assert failed.last_sweep == stale and failed.watermark == first.watermark
    assert len(world.invoices_of(missed)) == 0

    world.m3ter.fail_sweep = False
    recovered = await world.run(next_state(failed))
    assert recovered.sent == 1 and recovered.last_sweep == recovered.started
    assert len(world.invoices_of(missed)) == 1


async def test_a_pass_sweeps_once_its_reconcile_interval_has_passed(world: SweepWorld) -> None:
    first = await world.run(SyncState())
    assert first.last_sweep is not None
    world.spec = world.spec.model_copy(update={"reconcileInterval": "1h"})
    early = await world.run(replace(next_state(first), last_sweep=first.last_sweep - timedelta(minutes=59)))
    assert early.swept_listed is None and _listings(world.m3ter) == 0
    due = await world.run(replace(next_state(early), last_sweep=first.last_sweep - timedelta(hours=1)))
    assert due.swept_listed == 2 and _listings(world.m3ter) == 1
