"""The engine's world (tests/domain): the real SyncEngine, built by `build_engine` as the operator builds it, reading
Bills through the official m3ter SDK from the m3ter emulator and writing them through the official stripe SDK to the
Stripe emulator in contract mode, all on the test's event loop."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import stripe

from m3stripe.adapters.m3ter_source import M3terSource
from m3stripe.adapters.m3ter_token import M3terCredentials
from m3stripe.adapters.stripe_client import open_client
from m3stripe.adapters.stripe_gateway import RetryPolicy, StripeGateway
from m3stripe.adapters.stripe_ledger import StripeLedger, StripeLedgerReader
from m3stripe.adapters.stripe_rate_limit import StripeRateLimit
from m3stripe.api.spec import StripeIntegrationSpec
from m3stripe.domain.account_filter import AccountFilter
from m3stripe.domain.overlap import Overlap
from m3stripe.domain.runs import ErrorBudget, RunReport, SyncState
from m3stripe.domain.sync_engine import SyncEngine, build_engine
from m3stripe.testing.m3ter_emulator import M3terEmulator
from m3stripe.testing.stripe_emulator import StripeEmulator
from tests.domain.builders import engine_spec
from tests.support.world import World, m3ter_source, open_world

ORG = "org-engine"
CREDS = M3terCredentials(ORG, "engine-client", "engine-secret")
KEY = "sk_test_51engineInProcess"
# Retried once, at once: a test that wants Stripe's faults retried as the operator does says so (`retry`).
QUICK_RETRY = RetryPolicy(max_attempts=2, base_delay=0, max_delay=0)


@dataclass(kw_only=True)
class EngineWorld(World):
    source: M3terSource  # the world's Service User's
    integration_id: str
    spec: StripeIntegrationSpec
    concurrency: int = 4  # Bills at a time, unless a pass says otherwise

    async def run(
        self,
        state: SyncState | None = None,
        *,
        replay: frozenset[str] = frozenset(),
        budget: ErrorBudget | None = None,
        client: stripe.StripeClient | None = None,
        key: str | None = None,
        source: M3terSource | None = None,
        concurrency: int | None = None,
        retry: RetryPolicy = QUICK_RETRY,
        spec: StripeIntegrationSpec | None = None,
        integration_id: str | None = None,
        overlap: Overlap | None = None,
        account_filter: AccountFilter | None = None,
        limiter: StripeRateLimit | None = None,
        **spec_fields: Any,
    ) -> RunReport:
        """One pass of the engine: the world's spec (or `spec`, or the world's Organization's spec with
        `spec_fields`), through the world's Stripe client (or `client`, or a new one of `key`); a Plan spec decides
        through the read-only ledger. Every request it sent to Stripe kept Stripe's contract."""
        if spec_fields:
            spec = engine_spec(self.org, **spec_fields)
        spec = spec or self.spec
        async with AsyncExitStack() as opened:
            if key is not None:
                client = await opened.enter_async_context(open_client(key, api_base=self.stripe.url))
            gateway = StripeGateway(client or self.sdk, retry=retry, limiter=limiter)
            engine = build_engine(
                spec,
                integration_id=integration_id or self.integration_id,
                source=source or self.source,
                stripe=StripeLedgerReader(gateway) if spec.is_plan else StripeLedger(gateway),
                budget=budget or ErrorBudget(spec.autoDisableThreshold),
                account_filter=account_filter,
                concurrency=concurrency or self.concurrency,
                overlap=overlap,
            )
            report = await engine.run_pass(state or SyncState(), replay=replay)
        assert not self.stripe.violations, self.stripe.contract_report()
        return report


W = TypeVar("W", bound=EngineWorld)


@asynccontextmanager
async def open_engine_world(
    cls: type[W],
    *,
    creds: M3terCredentials = CREDS,
    key: str = KEY,
    stripe_emulator: StripeEmulator | None = None,
    m3ter: M3terEmulator | None = None,
    account: dict[str, Any] | None = None,
    source_options: dict[str, Any] | None = None,
    **fields: Any,
) -> AsyncIterator[W]:
    """A `cls` over `open_world` (the Stripe emulator seeded 11, in contract mode, unless given; `key`'s account made
    with the `account` options), with its Service User's M3terSource (made with `source_options`), a new integration
    id, the Organization's spec, and `fields` of `cls` over those."""
    stripe_emulator = stripe_emulator or StripeEmulator(seed=11, contract_mode=True)
    async with (
        open_world(creds, key, stripe_emulator=stripe_emulator, m3ter=m3ter, **(account or {})) as base,
        m3ter_source(creds, base.m3ter.url, **(source_options or {})) as source,
    ):
        made: dict[str, Any] = {
            "source": source,
            "integration_id": f"int-{uuid.uuid4().hex[:8]}",
            "spec": engine_spec(creds.organization_id),
        }
        yield cls(**{**base.parts(), **made, **fields})


@asynccontextmanager
async def world(**options: Any) -> AsyncIterator[EngineWorld]:
    """The engine's world (`open_engine_world`'s `options`)."""
    async with open_engine_world(EngineWorld, **options) as w:
        yield w


def next_state(report: RunReport) -> SyncState:
    """The state the next pass starts from, as the operator keeps it."""
    return SyncState(
        watermark=report.watermark, retry_bill_ids=tuple(report.retry_bill_ids), last_sweep=report.last_sweep
    )


async def send_pass(
    spec: StripeIntegrationSpec,
    *,
    source: M3terSource,
    client: stripe.StripeClient,
    integration_id: str | None = None,
    budget: ErrorBudget | None = None,
    account_filter: AccountFilter | None = None,
    state: SyncState | None = None,
    **options: Any,
) -> RunReport:
    """One pass of a SyncEngine over `source` and Stripe's `client`, outside any world (a test's own emulators);
    `options` go to SyncEngine (concurrency)."""
    engine = SyncEngine(
        spec=spec,
        account_filter=account_filter,
        integration_id=integration_id or str(uuid.uuid4()),
        source=source,
        ledger=StripeLedger(StripeGateway(client)),
        budget=budget or ErrorBudget(spec.autoDisableThreshold),
        **options,
    )
    return await engine.run_pass(state or SyncState())
