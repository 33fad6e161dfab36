"""Process-wide state shared by the kopf handlers: configuration, API clients, metrics, workers; and the memo
that carries it to them."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from m3stripe.adapters.kube_api import KubeApi
from m3stripe.adapters.mailer import Mailer
from m3stripe.adapters.stripe_rate_limit import LimiterRegistry
from m3stripe.kube.config import OperatorConfig
from m3stripe.kube.leadership import AlwaysLeader, Leadership
from m3stripe.kube.source import SourceRegistry
from m3stripe.metrics import Metrics


class Worker(Protocol):
    """What the watch handler needs of an integration's worker."""

    def poke(self, body: Mapping[str, Any]) -> None: ...


@dataclass
class Runtime:
    """The process's shared state: configuration, clients, limiters, m3ter sources, live workers, the Lease."""

    config: OperatorConfig
    kube: KubeApi
    metrics: Metrics
    mailer: Mailer | None = None
    limiters: LimiterRegistry = field(default_factory=LimiterRegistry)
    sources: SourceRegistry | None = None
    workers: dict[str, Worker] = field(default_factory=dict)
    # Whether this process may write now (the Lease), checked before every Stripe request and status write.
    leader: Leadership = field(default_factory=AlwaysLeader)

    def __post_init__(self) -> None:
        if self.sources is None:
            self.sources = SourceRegistry(self.config)


@dataclass
class OperatorMemo:
    """What kopf hands every handler as `memo` (`kopf.run(memo=...)`): `m3stripe run` fills in the settings and
    the watched scope, the startup handler the Runtime and the election task.

    Kopf gives each resource object a shallow copy of it when it first sees the object, which is after the
    startup handler ran: every copy shares the one Runtime.
    """

    config: OperatorConfig = field(default_factory=OperatorConfig)
    # Whether the operator watches named namespaces (`m3stripe run -n`) rather than the whole cluster.
    namespaced: bool = False
    runtime: Runtime | None = None
    election: asyncio.Task[None] | None = None

    def started(self) -> Runtime:
        """The Runtime, once the startup handler has built it."""
        if self.runtime is None:
            raise RuntimeError("the operator has not started yet")
        return self.runtime
