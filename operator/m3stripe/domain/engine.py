"""The one place an engine is built from a spec and its collaborators (the operator and the benchmark call it)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from m3stripe.api.spec import StripeIntegrationSpec
from m3stripe.domain.account_filter import AccountFilter
from m3stripe.domain.plan import Planner
from m3stripe.domain.ports import BillSource, Ledger, LedgerReader
from m3stripe.domain.sync import ErrorBudget, SyncEngine


def _now() -> datetime:
    return datetime.now(UTC)


def _unfenced() -> None:
    return None


def build_engine(
    spec: StripeIntegrationSpec,
    *,
    integration_id: str,
    source: BillSource,
    stripe: Ledger | LedgerReader,
    budget: ErrorBudget,
    account_filter: AccountFilter | None = None,
    concurrency: int = 8,
    fence: Callable[[], None] = _unfenced,
    clock: Callable[[], datetime] = _now,
) -> SyncEngine:
    """A Send engine over a `Ledger`, or (spec.mode: Plan) a planning engine over the reads of `stripe` only."""
    if spec.is_plan:
        ledger: Ledger | None = None
        planner: Planner | None = Planner(stripe, integration_id)
    elif isinstance(stripe, Ledger):
        ledger, planner = stripe, None
    else:
        raise TypeError("spec.mode is Send: the engine needs a Stripe ledger that writes, not a read-only one")
    return SyncEngine(
        spec=spec,
        account_filter=account_filter,
        integration_id=integration_id,
        source=source,
        ledger=ledger,
        planner=planner,
        budget=budget,
        concurrency=concurrency,
        clock=clock,
        fence=fence,
    )
