"""The operator's side of a latency benchmark: one pass of every integration of a fleet, at once, in this process.

Run by ``latency_throughput.py`` in a fresh interpreter (``python benchmarks/bench_fleet.py PLAN.json OUT.json``),
so that the CPU time it reports is the operator's alone: the emulators run in their own processes
(bench_processes.py). Each integration is built as ``m3stripe.kube`` builds it for a Send pass: its own
``open_client``, a ``StripeGateway`` over the account's shared limiter from one ``LimiterRegistry`` behind a
``FencedRateLimit`` (a fence that always stands), the operator's Prometheus observer, ``M3terSource`` with the
process's shared m3ter budgets, and ``build_engine`` with the operator's default concurrency
(``OperatorConfig.sync.concurrency_for``, or ``M3STRIPE_SYNC_CONCURRENCY``) unless the plan sets one. Not measured
here: kopf, the Lease renewals and the status patches (checkpoints) of the real process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import dataclasses
import io
import json
import logging
import pstats
import sys
import time
from pathlib import Path
from typing import Any

from bench_observe import CountingObserver, LoopLag, peak_rss_bytes, quantile
from bench_spec import bench_spec
from m3stripe.adapters.m3ter_client import M3terRateLimits
from m3stripe.adapters.m3ter_source import M3terSource
from m3stripe.adapters.m3ter_token import M3terCredentials
from m3stripe.adapters.stripe_client import open_client
from m3stripe.adapters.stripe_gateway import StripeGateway
from m3stripe.adapters.stripe_ledger import StripeLedger
from m3stripe.adapters.stripe_rate_limit import LimiterRegistry
from m3stripe.api.spec import StripeIntegrationSpec
from m3stripe.domain.runs import ErrorBudget, RunReport, SyncState
from m3stripe.domain.sync_engine import SyncEngine, build_engine
from m3stripe.kube.config import OperatorConfig
from m3stripe.kube.leadership import FencedRateLimit
from m3stripe.metrics import Metrics


class Tee:
    """A StripeObserver that reports to several (the operator's metrics, and the benchmark's counts)."""

    def __init__(self, *observers: Any) -> None:
        self._observers = observers

    def request(self, endpoint: str, status: int, seconds: float) -> None:
        for observer in self._observers:
            observer.request(endpoint, status, seconds)

    def retry(self, endpoint: str, reason: str) -> None:
        for observer in self._observers:
            observer.retry(endpoint, reason)

    def rate_limit_wait(self, seconds: float) -> None:
        for observer in self._observers:
            observer.rate_limit_wait(seconds)


@dataclasses.dataclass
class IntegrationResult:
    id: str
    status: str
    sent: int
    failed: int
    skipped: int
    seconds: float
    requests: int  # sent by the gateway, retries included
    statuses: dict[str, int]
    retries: dict[str, int]
    limiter_wait_seconds: float


def _stand() -> None:
    return None


async def run(plan: dict[str, Any], profiler: cProfile.Profile | None) -> dict[str, Any]:
    config = OperatorConfig.from_env()
    registry = LimiterRegistry()
    m3ter_limits = M3terRateLimits(organization_rate=config.m3ter.requests_per_second)
    metrics = Metrics()
    rps = int(plan["rps"])
    concurrency = int(plan["concurrency"] or config.sync.concurrency_for(rps))
    lag = LoopLag()
    built: list[tuple[dict[str, Any], SyncEngine, StripeGateway, CountingObserver, M3terSource]] = []
    async with contextlib.AsyncExitStack() as stack:
        for integration in plan["integrations"]:
            spec = StripeIntegrationSpec.model_validate(bench_spec(integration["org"], rps, plan["mode"]))
            limiter = registry.get(
                integration["stripe_account"],
                not spec.is_test_mode,
                spec.effective_requests_per_second,
                owner=integration["id"],
            )
            counting = CountingObserver()
            observer = Tee(counting, metrics.stripe(limiter.budget, limiter.per_second))
            source = M3terSource(
                M3terCredentials(integration["org"], integration["client_id"], integration["client_secret"]),
                base_url=plan["m3ter_url"],
                rate_limits=m3ter_limits,
            )
            stack.push_async_callback(source.aclose)
            client = await stack.enter_async_context(
                open_client(
                    integration["stripe_key"], api_base=plan["stripe_url"], timeout=config.stripe.timeout_seconds
                )
            )
            gateway = StripeGateway(client, limiter=FencedRateLimit(limiter, _stand), observer=observer)
            engine = build_engine(
                spec,
                integration_id=integration["id"],
                source=source,
                stripe=StripeLedger(gateway),
                budget=ErrorBudget(spec.autoDisableThreshold),
                concurrency=concurrency,
            )
            built.append((integration, engine, gateway, counting, source))

        started = time.perf_counter()

        async def one_pass(engine: SyncEngine) -> tuple[RunReport, float]:
            report = await engine.run_pass(SyncState())
            return report, time.perf_counter() - started

        watcher = asyncio.create_task(lag.run())
        cpu_started = time.process_time()
        if profiler is not None:
            profiler.enable()
        try:
            passes = await asyncio.gather(*(one_pass(engine) for _, engine, *_ in built))
        finally:
            if profiler is not None:
                profiler.disable()
            cpu = time.process_time() - cpu_started
            wall = time.perf_counter() - started
            watcher.cancel()
    results = [
        IntegrationResult(
            id=integration["id"],
            status=str(report.status),
            sent=report.sent + report.unchanged,
            failed=report.failed,
            skipped=report.skipped,
            seconds=seconds,
            requests=gateway.requests,
            statuses={str(k): v for k, v in counting.statuses.items()},
            retries=dict(counting.retries),
            limiter_wait_seconds=counting.limiter_wait_seconds,
        )
        for (integration, _, gateway, counting, _), (report, seconds) in zip(built, passes, strict=True)
    ]
    round_trips = [t for *_, counting, _ in built for t in counting.round_trips]
    return {
        "concurrency": concurrency,
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "peak_rss_bytes": peak_rss_bytes(),
        "loop_lag_p50": quantile(lag.samples, 0.5),
        "loop_lag_p99": quantile(lag.samples, 0.99),
        "round_trip_p50": quantile(round_trips, 0.5),
        "round_trip_p99": quantile(round_trips, 0.99),
        "integrations": [dataclasses.asdict(r) for r in results],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("plan", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--profile", metavar="FILE", help="cProfile the passes; write the stats to FILE")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    plan = json.loads(args.plan.read_text(encoding="utf-8"))
    # CPU time, not wall time: the loop's idle waits in epoll would otherwise top the list.
    profiler = cProfile.Profile(time.process_time) if args.profile else None
    result = asyncio.run(run(plan, profiler))
    if profiler is not None:
        profiler.dump_stats(args.profile)
        requests = sum(r["requests"] for r in result["integrations"])
        text = io.StringIO()
        stats = pstats.Stats(profiler, stream=text)
        text.write(f"cProfile of the operator's process during the passes: {requests} Stripe requests\n")
        stats.sort_stats("tottime").print_stats(20)
        stats.sort_stats("cumulative").print_stats(30)
        result["profile"] = text.getvalue()
    args.out.write_text(json.dumps(result), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
