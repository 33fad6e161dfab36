"""Who a worker works for: one StripeIntegration, the process's shared state, and where its events and log go."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from m3stripe.adapters.m3ter_source import M3terSource
from m3stripe.adapters.stripe_client import open_client
from m3stripe.adapters.stripe_gateway import StripeGateway
from m3stripe.api.spec import StripeIntegrationSpec
from m3stripe.api.status import StripeIntegrationStatus
from m3stripe.domain.overlap import Seniority
from m3stripe.domain.spec_validation import ParsedSpec
from m3stripe.kube.leadership import FencedRateLimit
from m3stripe.kube.runtime import Runtime


class EventSink(Protocol):
    """Emits a Kubernetes Event on the integration (kopf.event in the operator)."""

    def __call__(self, type_: str, reason: str, message: str) -> None: ...


@dataclass(frozen=True)
class PassInputs:
    """What a Send or Plan pass starts from: the checked spec, the status and annotations read, the credentials."""

    parsed: ParsedSpec
    status: StripeIntegrationStatus
    annotations: Mapping[str, str]
    stripe_key: str
    stripe_account: str | None
    source: M3terSource


@dataclass(frozen=True)
class Integration:
    """The identity of one StripeIntegration as its worker, sync driver and plan pass see it."""

    runtime: Runtime
    namespace: str
    name: str
    uid: str
    events: EventSink
    logger: logging.Logger | logging.LoggerAdapter[Any]
    # metadata.creationTimestamp: of two integrations on the same Bills, the older one sends them (domain.overlap).
    created: datetime | None = None

    @property
    def where(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def seniority(self) -> Seniority:
        """Unknown creation: the youngest, so that it never takes a Bill from an integration that has it."""
        return (self.created or datetime.max.replace(tzinfo=UTC), self.namespace, self.name)

    @contextlib.asynccontextmanager
    async def stripe(
        self, spec: StripeIntegrationSpec, *, key: str, account: str | None
    ) -> AsyncIterator[StripeGateway]:
        """The Stripe gateway of one pass: the account's shared limiter, behind the Lease's fence."""
        # One budget per (Stripe account, mode), shared with every integration and key on that account
        # (https://docs.stripe.com/rate-limits); the key's mode matches the destination (checked before).
        rt = self.runtime
        limiter = rt.limiters.get(
            account or f"key:{hash(key)}", not spec.is_test_mode, spec.effective_requests_per_second, owner=self.uid
        )
        # Every Stripe request first checks that this process still holds the Lease, and is abandoned when the
        # fence falls.
        fenced = FencedRateLimit(limiter, rt.leader.fence, rt.leader.time_left)
        async with open_client(key, api_base=rt.config.stripe.api_base, timeout=rt.config.stripe.timeout_seconds) as c:
            yield StripeGateway(c, limiter=fenced, observer=rt.metrics.stripe(limiter.budget, limiter.per_second))
