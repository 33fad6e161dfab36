"""A Send pass of the real SyncEngine: Bills read through the official m3ter SDK, written through the stripe SDK."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import stripe

from m3stripe.adapters.m3ter_source import M3terSource
from m3stripe.adapters.m3ter_token import M3terCredentials
from m3stripe.adapters.stripe_gateway import StripeGateway
from m3stripe.adapters.stripe_ledger import StripeLedger
from m3stripe.api.spec import StripeIntegrationSpec
from m3stripe.domain.account_filter import AccountFilter
from m3stripe.domain.runs import ErrorBudget, RunReport, SyncState
from m3stripe.domain.sync_engine import SyncEngine


@asynccontextmanager
async def m3ter_source(creds: M3terCredentials, url: str, **options: Any) -> AsyncIterator[M3terSource]:
    """An M3terSource that is closed afterwards, whatever the test did with it."""
    source = M3terSource(creds, base_url=url, **options)
    try:
        yield source
    finally:
        await source.aclose()


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
    """One pass of a SyncEngine over `source` and Stripe's `client`; `options` go to SyncEngine (concurrency)."""
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
