"""Sync benchmarks: passes of the real SyncEngine against the m3ter and Stripe emulators, one table at the end.

Run from the repository root with the project's virtualenv::

    python benchmarks/sync_throughput.py --scenario all        # the four scenarios of issue 9, one table
    python benchmarks/sync_throughput.py --bills 10000 --rps 100 --latency 0.02 --mode both   # one backfill

Scenarios (``--scenario``; each run in a fresh interpreter, so each peak RSS is its own):

* ``history``: 300 Bills over 10 customers that already hold 0, 10, 100 or 1,000 invoices (items, in items
  mode) of this integration, a month old; requests per Bill must stay within the minimum + 0.1.
* ``org``: 1,000 Bills changed since the last pass, in an organization of 1,000 and of 100,000 Bills; m3ter
  requests and the pass's wall time follow the 1,000 (the incremental read, ``M3terSource.iter_bills``).
* ``few``: 2 customers x 500 Bills at 50 ms per request and the test-mode limit (25/s), against the bound
  per-customer ordering allows (each customer's Bills one after another, the customers side by side).
* ``backfill``: 10,000 Bills over 1,000 customers at 100 requests/s, against the rate-limit ceiling.

What is measured
----------------
One sync pass (``SyncEngine.run_pass``), built by ``m3stripe.domain.sync_engine.build_engine`` as ``m3stripe.kube.sync_driver`` builds it: the
official stripe SDK through ``open_client`` and ``StripeGateway`` with the client-side limiter from
``LimiterRegistry`` (``spec.requestsPerSecond``), and ``M3terSource`` on the official m3ter SDK. The
Stripe emulator (contract mode: a request outside the SDK's parameter types fails the run) enforces the
same limit server-side (429 + Retry-After above it) and both emulators add a fixed latency to every
request. At the end Stripe's state is checked: the figures only count if the work is right.

"The fewest requests per Bill that Stripe's API allows"
--------------------------------------------------------
For a Bill that Stripe does not hold yet, keeping the operator's exactly-once rule (before writing, look
at what an earlier, possibly interrupted attempt wrote, through list endpoints, which are read-after-write
consistent; the Search API is not):

* invoice mode (``createStripeInvoice: true``): 1 ``GET /v1/invoices?customer=&created[gte]=`` + 1
  ``POST /v1/invoices`` (a draft; Stripe's create takes no lines) + ceil(lines / 50) ``add_lines``.
* invoice-items mode: 1 ``GET /v1/invoiceitems?customer=&created[gte]=`` + 1 ``POST /v1/invoiceitems``
  per line (Stripe has no bulk create for invoice items).

plus ceil(customers / 100) ``GET /v1/customers`` pages per pass, spread over the pass's Bills. The list is
one page whatever the customer's history: the writer lists each customer once per pass from the Bill's
m3ter creation time (less an hour and a day), and before each later Bill re-reads only what was created since
(``stripe_writer.CustomerIndex``). The Bills/s ceiling is the rate limit divided by that minimum.

This is not a test: pytest collects ``tests/`` only, and nothing here is named ``test_*``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import dataclasses
import io
import logging
import os
import pstats
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, Literal

import stripe

from m3stripe.adapters.m3ter_source import M3terSource
from m3stripe.adapters.m3ter_token import M3terCredentials
from m3stripe.adapters.stripe_client import STRIPE_API_VERSION, open_client
from m3stripe.adapters.stripe_gateway import StripeGateway
from m3stripe.adapters.stripe_ledger import StripeLedger
from m3stripe.adapters.stripe_rate_limit import LimiterRegistry
from m3stripe.api.spec import StripeIntegrationSpec
from m3stripe.domain.runs import ErrorBudget, RunReport, SyncState
from m3stripe.domain.sync_engine import build_engine

Placement = Literal["process", "loop"]

PROGRESS_EVERY_SECONDS = 30.0


# The emulators, seeded per scenario, live in bench_emulators.py; the one-table summary in bench_report.py.
from bench_emulators import (  # noqa: E402  (benchmarks/ is the script's directory, first on sys.path)
    M3TER_CLIENT_ID,
    M3TER_CLIENT_SECRET,
    ORG,
    STRIPE_KEY,
    Emulators,
    EmulatorStats,
    InLoopEmulators,
    Mode,
    ProcessEmulators,
    SetupInfo,
    Verification,
    _current_rss_bytes,
)
from bench_observe import CountingObserver, LoopLag, peak_rss_bytes  # noqa: E402
from bench_observe import quantiles_ms as _quantiles_ms  # noqa: E402
from bench_report import Summary, minimum_requests_per_bill, print_table  # noqa: E402
from bench_spec import bench_spec  # noqa: E402

# --- the engine side --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Knobs:
    """How a run was set up: where the emulators ran, the request budget, latency and concurrency."""

    placement: Placement
    rps: int
    latency: float
    concurrency: int
    order: str
    stripe_http: str

    @classmethod
    def of(cls, args: argparse.Namespace) -> Knobs:
        return cls(args.emulators, args.rps, args.latency, args.concurrency, args.order, args.stripe_http)


@dataclasses.dataclass(frozen=True)
class Cost:
    """What the pass cost the engine's process."""

    engine_cpu_seconds: float
    engine_system_seconds: float  # the kernel's share of it (sockets)
    rss_before_bytes: int
    peak_rss_bytes: int
    heap_peak_bytes: int | None  # with --tracemalloc


@dataclasses.dataclass(frozen=True)
class Result:
    mode: Mode
    knobs: Knobs
    setup: SetupInfo
    elapsed: float
    report: RunReport
    stats: EmulatorStats
    observer: CountingObserver
    loop_lag: LoopLag
    verification: Verification
    cost: Cost
    m3ter_tokens_fetched: int
    profile: str | None


@contextlib.asynccontextmanager
async def stripe_client(transport: str, url: str, timeout: float) -> AsyncIterator[stripe.StripeClient]:
    """The operator's client (``open_client``: the SDK on aiohttp), or the same client on the SDK's HTTPX transport."""
    if transport == "aiohttp":
        async with open_client(STRIPE_KEY, api_base=url, timeout=timeout) as client:
            yield client
        return
    http_client = stripe.HTTPXClient(timeout=timeout)
    try:
        yield stripe.StripeClient(
            STRIPE_KEY,
            base_addresses={"api": url},
            http_client=http_client,
            max_network_retries=0,
            stripe_version=STRIPE_API_VERSION,
        )
    finally:
        await http_client.close_async()  # type: ignore[no-untyped-call]


async def _progress(started: float, gateway: StripeGateway, observer: CountingObserver) -> None:
    while True:
        await asyncio.sleep(PROGRESS_EVERY_SECONDS)
        elapsed = time.perf_counter() - started
        print(
            f"  ... {elapsed:6.0f} s: {gateway.requests} Stripe requests ({gateway.requests / elapsed:.1f}/s), "
            f"429s {observer.statuses[429]}",
            file=sys.stderr,
            flush=True,
        )


async def run_mode(args: argparse.Namespace, mode: Mode) -> Result:
    emulators: Emulators = ProcessEmulators() if args.emulators == "process" else InLoopEmulators()
    try:
        print(
            f"[{mode}] seeding {args.bills} Bills x {args.lines} lines over {args.accounts} accounts, history "
            f"{args.history}, unchanged {args.unchanged_bills} (emulators: {args.emulators}) ...",
            file=sys.stderr,
            flush=True,
        )
        integration_id = str(uuid.uuid4())
        setup = await emulators.setup(
            bills=args.bills,
            accounts=args.accounts,
            lines=args.lines,
            latency=args.latency,
            order=args.order,
            integration_id=integration_id,
            history=args.history,
            history_mode=mode,
            unchanged_bills=args.unchanged_bills,
            last_pass=args.last_pass,
        )
        print(f"[{mode}] seeded in {setup.seconds:.1f} s; running the pass", file=sys.stderr, flush=True)
        spec = StripeIntegrationSpec.model_validate(bench_spec(ORG, args.rps, mode))
        observer = CountingObserver()
        lag = LoopLag()
        limiter = LimiterRegistry().get(
            setup.stripe_account, not spec.is_test_mode, spec.effective_requests_per_second, owner=integration_id
        )
        source = M3terSource(
            M3terCredentials(ORG, M3TER_CLIENT_ID, M3TER_CLIENT_SECRET), base_url=setup.m3ter_url, timeout=30.0
        )
        profiler = cProfile.Profile() if args.profile else None
        try:
            await emulators.arm(rps=args.rps, endpoint_rps=limiter.endpoint_per_second)
            rss_before = _current_rss_bytes()
            if args.tracemalloc:
                tracemalloc.start()
            cpu_started, system_started = time.process_time(), os.times().system
            started = time.perf_counter()
            if profiler is not None:
                profiler.enable()
            async with stripe_client(args.stripe_http, setup.stripe_url, 30.0) as client:
                gateway = StripeGateway(client, limiter=limiter, observer=observer)
                engine = build_engine(
                    spec,
                    account_filter=None,
                    integration_id=integration_id,
                    source=source,
                    stripe=StripeLedger(gateway),
                    budget=ErrorBudget(spec.autoDisableThreshold),
                    concurrency=args.concurrency,
                )
                watchers = [
                    asyncio.create_task(_progress(started, gateway, observer)),
                    asyncio.create_task(lag.run()),
                ]
                try:
                    watermark = datetime.fromisoformat(setup.watermark) if setup.watermark else None
                    # A sweep as recent as the watermark: the pass measured is the incremental one (the daily
                    # reconciliation sweep would otherwise be due, as for an integration that never swept).
                    report = await engine.run_pass(SyncState(watermark=watermark, last_sweep=watermark))
                finally:
                    for watcher in watchers:
                        watcher.cancel()
            elapsed = time.perf_counter() - started
            if profiler is not None:
                profiler.disable()
            engine_cpu = time.process_time() - cpu_started
            engine_system = os.times().system - system_started
            heap_peak = tracemalloc.get_traced_memory()[1] if args.tracemalloc else None
            if args.tracemalloc:
                tracemalloc.stop()
            peak_rss = peak_rss_bytes()
            tokens_fetched = source.token_manager.tokens_fetched
        finally:
            await source.aclose()
        stats = await emulators.stats()
        verification = await emulators.verify(mode=mode, integration_id=integration_id)
    finally:
        await emulators.aclose()
    profile_text = None
    if profiler is not None:
        profiler.dump_stats(args.profile)
        buffer = io.StringIO()
        pstats.Stats(profiler, stream=buffer).sort_stats("tottime").print_stats(25)
        profile_text = buffer.getvalue()
    return Result(
        mode=mode,
        knobs=Knobs.of(args),
        setup=setup,
        elapsed=elapsed,
        report=report,
        stats=stats,
        observer=observer,
        loop_lag=lag,
        verification=verification,
        cost=Cost(engine_cpu, engine_system, rss_before, peak_rss, heap_peak),
        m3ter_tokens_fetched=tokens_fetched,
        profile=profile_text,
    )


# --- output -------------------------------------------------------------------------------------------


def _mib(value: int) -> str:
    return f"{value / 2**20:.1f} MiB"


def render(result: Result) -> str:
    s, st, rep, obs = result.setup, result.stats, result.report, result.observer
    bills_done = rep.sent + rep.unchanged
    rate_limited = st.stripe_statuses.get(429, 0)
    served = st.stripe_requests - rate_limited
    per_bill = st.stripe_requests / max(1, bills_done)
    minimum = minimum_requests_per_bill(result.mode, lines=s.lines, bills=s.bills, customers=s.accounts)
    bills_per_second = bills_done / result.elapsed
    ceiling = result.knobs.rps / minimum
    endpoint_width = max((len(e) for e in st.stripe_endpoints), default=0)
    rows: list[tuple[str, str]] = [
        ("mode", f"{result.mode} (createStripeInvoice: {str(result.mode == 'invoice').lower()})"),
        (
            "setup",
            f"{s.bills} Bills x {s.lines} lines over {s.accounts} accounts ({result.knobs.order}); limit {result.knobs.rps} req/s "
            f"(client and emulator); latency {result.knobs.latency * 1000:.0f} ms per request; concurrency "
            f"{result.knobs.concurrency}; emulators in {'a child process' if result.knobs.placement == 'process' else 'the same loop'}; "
            f"stripe SDK on {result.knobs.stripe_http}",
        ),
        ("bills", f"{bills_done} sent of {s.bills} (failed {rep.failed}, skipped {rep.skipped}); status {rep.status}"),
        ("lines per bill", str(s.lines)),
        ("elapsed", f"{result.elapsed:.1f} s"),
        (
            "bills/s",
            f"{bills_per_second:.2f}  (ceiling at the minimum requests/bill: {ceiling:.2f}; "
            f"{100 * bills_per_second / ceiling:.1f}% of it)",
        ),
        (
            "Stripe requests",
            f"{st.stripe_requests} (emulator count; 429s {rate_limited}; gateway sent {obs.statuses.total()})",
        ),
        ("requests/bill", f"{per_bill:.3f}  (minimum Stripe's API allows: {minimum:.3f})"),
        (
            "requests/s",
            f"{st.stripe_requests / result.elapsed:.1f} all, {served / result.elapsed:.1f} served (not 429) = "
            f"{100 * served / result.elapsed / result.knobs.rps:.1f}% of the {result.knobs.rps} req/s ceiling",
        ),
        ("429s received", f"{rate_limited} (gateway retries: {dict(obs.retries) or 'none'})"),
        (
            "client limiter",
            f"{obs.limiter_waits} waits, {obs.limiter_wait_seconds:.0f} s queued in total",
        ),
        ("Stripe round trip", _quantiles_ms(obs.round_trips) + " (as the gateway sees it, after the limiter)"),
        ("event-loop lag", _quantiles_ms(result.loop_lag.samples) + " (engine loop, 50 ms timer)"),
        (
            "m3ter",
            f"{st.m3ter_requests} requests ({', '.join(f'{k} {v}' for k, v in sorted(st.m3ter_kinds.items()))}); "
            f"tokens issued {st.m3ter_tokens_issued} (client fetched {result.m3ter_tokens_fetched})",
        ),
        (
            "peak RSS (engine)",
            f"{_mib(result.cost.peak_rss_bytes)} (RSS before the pass {_mib(result.cost.rss_before_bytes)}"
            + ("; includes the emulators and their objects" if result.knobs.placement == "loop" else "")
            + ")",
        ),
    ]
    if result.cost.heap_peak_bytes is not None:
        rows.append(
            ("tracemalloc peak", f"{_mib(result.cost.heap_peak_bytes)} (Python heap allocated during the pass)")
        )
    if result.knobs.placement == "process":
        rows.append(("peak RSS (emulators)", _mib(st.peak_rss_bytes)))
        rows.append(
            (
                "CPU",
                f"engine {result.cost.engine_cpu_seconds:.1f} s ({100 * result.cost.engine_cpu_seconds / result.elapsed:.0f}% of "
                f"one core; {result.cost.engine_system_seconds:.1f} s of it in the kernel), emulators {st.cpu_seconds:.1f} s ({100 * st.cpu_seconds / result.elapsed:.0f}%)",
            )
        )
    else:
        rows.append(
            (
                "CPU",
                f"{result.cost.engine_cpu_seconds:.1f} s for engine and emulators together "
                f"({100 * result.cost.engine_cpu_seconds / result.elapsed:.0f}% of one core)",
            )
        )
    verdict = "OK" if result.verification.ok else "FAILED"
    what = "invoices, one per Bill" if result.mode == "invoice" else "invoice items, one per line, none invoiced"
    rows.append(
        (
            "verified",
            f"{verdict}: {result.verification.checked_bills} Bills -> {result.verification.stripe_objects} {what}, "
            "amounts and customers match",
        )
    )
    width = max(len(k) for k, _ in rows)
    lines = [f"== m3stripe sync throughput: {result.mode} mode ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC) =="]
    lines += [f"  {k.ljust(width)}  {v}" for k, v in rows]
    lines.append("  Stripe requests by endpoint:")
    lines += [
        f"    {e.ljust(endpoint_width)}  {n:>7}  ({n / max(1, bills_done):.3f}/bill)"
        for e, n in sorted(st.stripe_endpoints.items(), key=lambda kv: -kv[1])
    ]
    for problem in result.verification.problems:
        lines.append(f"  PROBLEM: {problem}")
    if result.profile:
        lines.append("  cProfile of the engine process during the pass (top 25 by own time):")
        lines += [f"    {line}" for line in result.profile.splitlines() if line.strip()]
    return "\n".join(lines)


# --- command line -------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Bills/s and Stripe requests per Bill of one sync pass (a backfill), against the emulators.",
    )
    parser.add_argument("--bills", type=int, default=10_000, help="Bills to backfill (default: %(default)s)")
    parser.add_argument(
        "--accounts", type=int, default=None, help="m3ter accounts / Stripe customers (default: bills/10)"
    )
    parser.add_argument(
        "--rps", type=int, default=100, help="requestsPerSecond, also the emulator's limit (default: %(default)s)"
    )
    parser.add_argument(
        "--latency", type=float, default=0.02, help="seconds added to every emulator request (default: %(default)s)"
    )
    parser.add_argument("--mode", choices=("invoice", "items", "both"), default="both", help="default: %(default)s")
    parser.add_argument("--lines", type=int, default=3, help="line items per Bill (default: %(default)s)")
    parser.add_argument(
        "--concurrency", type=int, default=16, help="Bills in flight (M3STRIPE_SYNC_CONCURRENCY; default: %(default)s)"
    )
    parser.add_argument(
        "--order",
        choices=("round-robin", "grouped"),
        default="round-robin",
        help="m3ter listing order: accounts interleaved, or each account's Bills in a row (default: %(default)s)",
    )
    parser.add_argument(
        "--emulators",
        choices=("process", "loop"),
        default="process",
        help="serve the emulators from a child process or on the engine's event loop (default: %(default)s)",
    )
    parser.add_argument(
        "--stripe-http",
        choices=("httpx", "aiohttp"),
        default="aiohttp",
        help="the stripe SDK's HTTP transport: aiohttp is what the operator uses (open_client); httpx is the "
        "comparison (default: %(default)s)",
    )
    parser.add_argument(
        "--scenario",
        choices=("history", "org", "few", "backfill", "all"),
        help="run the issue's scenarios (each run in a fresh interpreter) and print one table; "
        "without it, one run of the options below",
    )
    parser.add_argument(
        "--history", type=int, default=0, help="earlier invoices (or items) each customer holds in Stripe"
    )
    parser.add_argument(
        "--unchanged-bills",
        type=int,
        default=0,
        help="Bills in m3ter sent by an earlier pass and unchanged since (the pass starts from its watermark)",
    )
    parser.add_argument(
        "--last-pass", action="store_true", help="start from an earlier pass's watermark (incremental m3ter read)"
    )
    parser.add_argument(
        "--scale", type=float, default=1.0, help="with --scenario: multiply its Bill counts (a quick look; default 1)"
    )
    parser.add_argument("--label", default="", help=argparse.SUPPRESS)
    parser.add_argument("--summary-json", default="", help=argparse.SUPPRESS)
    parser.add_argument("--tracemalloc", action="store_true", help="also trace the Python heap (slows the engine)")
    parser.add_argument(
        "--profile", metavar="FILE", help="cProfile the engine process during the pass; write stats here"
    )
    return parser


SCENARIOS: dict[str, list[dict[str, Any]]] = {
    # (1) Customers already holding 0, 10, 100, 1,000 invoices (or items) of this integration in Stripe.
    "history": [
        {"label": f"history {h}", "bills": 300, "accounts": 10, "history": h, "rps": 100, "latency": 0.02}
        for h in (0, 10, 100, 1000)
    ],
    # (2) An organization of 100,000 Bills of which 1,000 changed since the last pass, against one of 1,000.
    "org": [
        {
            "label": "org 1,000 of 1,000",
            "bills": 1000,
            "accounts": 100,
            "last_pass": True,
            "rps": 100,
            "latency": 0.02,
            "modes": ["invoice"],
        },
        {
            "label": "org 1,000 of 100,000",
            "bills": 1000,
            "accounts": 100,
            "unchanged_bills": 99_000,
            "rps": 100,
            "latency": 0.02,
            "modes": ["invoice"],
        },
    ],
    # (3) Few customers: 2 x 500 Bills at 50 ms per request, Stripe's test-mode limit (25/s).
    "few": [{"label": "2 customers x 500", "bills": 1000, "accounts": 2, "rps": 25, "latency": 0.05}],
    # (4) The backfill: 10,000 Bills over 1,000 customers at 100 requests/s.
    "backfill": [{"label": "10,000 x 1,000", "bills": 10_000, "accounts": 1000, "rps": 100, "latency": 0.02}],
}


def _argv_for(args: argparse.Namespace, mode: Mode, run: dict[str, Any] | None = None) -> list[str]:
    run = dict(run or {})
    for key in ("bills", "unchanged_bills"):
        if key in run:
            run[key] = max(1 if key == "bills" else 0, round(run[key] * args.scale))
    argv = [
        f"--bills={run.get('bills', args.bills)}",
        f"--accounts={run.get('accounts', args.accounts)}",
        f"--rps={run.get('rps', args.rps)}",
        f"--latency={run.get('latency', args.latency)}",
        f"--mode={mode}",
        f"--lines={args.lines}",
        f"--concurrency={args.concurrency}",
        f"--order={args.order}",
        f"--emulators={args.emulators}",
        f"--stripe-http={args.stripe_http}",
        f"--history={run.get('history', args.history)}",
        f"--unchanged-bills={run.get('unchanged_bills', args.unchanged_bills)}",
        *(["--last-pass"] if run.get("last_pass", args.last_pass) else []),
        f"--label={run.get('label', args.label)}",
    ]
    if args.tracemalloc:
        argv.append("--tracemalloc")
    if args.profile:
        argv.append(f"--profile={args.profile}.{mode}")
    return argv


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.bills < 1 or args.lines < 1 or args.rps < 1 or args.concurrency < 1:
        raise SystemExit("--bills, --lines, --rps and --concurrency must be at least 1")
    if args.accounts is None:
        args.accounts = max(1, args.bills // 10)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.scenario is not None or args.mode == "both":
        if args.scenario is None:
            runs: list[dict[str, Any]] = [{}]
        elif args.scenario == "all":
            runs = [run for name in ("history", "org", "few", "backfill") for run in SCENARIOS[name]]
        else:
            runs = SCENARIOS[args.scenario]
        # A fresh interpreter per run: ru_maxrss is a high-water mark, so each run gets its own.
        failed = 0
        rows: list[Summary] = []
        with tempfile.TemporaryDirectory() as tmp:
            for n, run in enumerate(runs):
                modes = run.get("modes") or (["invoice", "items"] if args.mode == "both" else [args.mode])
                for mode in modes:
                    out = os.path.join(tmp, f"{n}-{mode}.json")
                    command = [
                        sys.executable,
                        os.path.abspath(__file__),
                        *_argv_for(args, mode, run),
                        f"--summary-json={out}",
                    ]
                    done = subprocess.run(command, check=False)
                    failed += done.returncode != 0
                    if os.path.exists(out):
                        rows.append(Summary.read(out))
        print(f"\n== m3stripe benchmarks ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs) ==")
        print(print_table(rows), flush=True)
        return 1 if failed else 0
    result = asyncio.run(run_mode(args, args.mode))
    print(render(result), flush=True)
    if args.summary_json:
        rep, st = result.report, result.stats
        Summary(
            scenario=args.label or "custom",
            mode=result.mode,
            bills=result.setup.bills,
            accounts=result.setup.accounts,
            lines=result.setup.lines,
            history=result.setup.history,
            unchanged_bills=result.setup.unchanged_bills,
            rps=result.knobs.rps,
            latency=result.knobs.latency,
            sent=rep.sent + rep.unchanged,
            elapsed=result.elapsed,
            stripe_requests=st.stripe_requests,
            m3ter_requests=st.m3ter_requests,
            peak_rss_bytes=result.cost.peak_rss_bytes,
            verified=result.verification.ok,
            failed=rep.failed,
            engine_cpu_seconds=result.cost.engine_cpu_seconds,
            emulator_cpu_seconds=st.cpu_seconds,
        ).write(args.summary_json)
    return 0 if result.verification.ok and result.report.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
