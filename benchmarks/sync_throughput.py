"""Sync throughput: a backfill of m3ter Bills through the real SyncEngine into the Stripe emulator.

Run from the repository root with the project's virtualenv::

    python benchmarks/sync_throughput.py --bills 10000 --rps 100 --latency 0.02 --mode both

What is measured
----------------
One sync pass (``SyncEngine.run_pass``), built the way ``m3stripe.kube.syncing`` builds it: the
official stripe SDK through ``open_client`` and ``StripeGateway`` with the client-side limiter from
``LimiterRegistry`` (``spec.requestsPerSecond``), and ``M3terSource`` on the official m3ter SDK. The
Stripe emulator enforces the same limit server-side (a token bucket per account, 429 + Retry-After
above it) and both emulators add a fixed latency to every request. The pass reads every Bill from the
m3ter emulator, finds each Bill's Stripe Customer by ``m3ter_account_id`` metadata, and writes it.

Printed: Bills, lines per Bill, elapsed time, Bills/s, Stripe requests (the emulator's own counters),
requests per Bill, achieved requests/s as a share of the configured limit, 429s, peak RSS (and, with
``--tracemalloc``, the Python heap peak), CPU used by each side, and m3ter requests and tokens. At
the end Stripe's state is checked: the figures only count if the work is right.

"The fewest requests per Bill that Stripe's API allows"
--------------------------------------------------------
For a Bill that Stripe does not hold yet, and keeping the operator's exactly-once rule (before
writing, list what an earlier, possibly interrupted attempt wrote; list endpoints are read-after-write
consistent, the Search API is not):

* invoice mode (``createStripeInvoice: true``): 1 ``GET /v1/invoices?customer=`` (find before create)
  + 1 ``POST /v1/invoices`` (a draft with ``pending_invoice_items_behavior=exclude``; Stripe's create
  takes no lines) + ceil(lines / 50) ``POST /v1/invoices/{id}/add_lines`` (at most 50 lines a call).
  Three requests for a Bill of up to 50 lines.
* invoice-items mode (``createStripeInvoice: false``): 1 ``GET /v1/invoiceitems?customer=`` + 1
  ``POST /v1/invoiceitems`` per line (Stripe has no bulk create for invoice items). 1 + lines.

In both modes the Customer index costs ceil(customers / 100) ``GET /v1/customers`` pages once per
pass (Stripe cannot filter customers by metadata), amortised over the pass's Bills. That sum is the
"minimum" printed next to the measured requests per Bill; the Bills/s ceiling is the rate limit
divided by it. Each list above is one page only while the customer holds at most 100 invoices (or
invoice items, invoiced or not); beyond that the find-before-create walks more pages.

Where the emulators run
-----------------------
``--emulators process`` (the default) serves both emulators from a child process (its own event
loop, its own core), so the engine's event loop, its CPU time and its peak RSS are the operator's
alone. ``--emulators loop`` runs everything on one event loop, as the tests do; the README has the
numbers for both. ``--mode both`` runs each mode in a fresh interpreter, so each peak RSS is its own.

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
import math
import multiprocessing
import os
import pstats
import resource
import subprocess
import sys
import time
import tracemalloc
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from multiprocessing.connection import Connection
from typing import Any, Literal, Protocol

import stripe

from m3stripe.adapters.m3ter_source import M3terCredentials, M3terSource
from m3stripe.adapters.stripe_credentials import STRIPE_API_VERSION, open_client
from m3stripe.adapters.stripe_gateway import LimiterRegistry, StripeGateway
from m3stripe.api.spec import StripeIntegrationSpec
from m3stripe.domain.mapping import META_ACCOUNT, META_BILL, META_INTEGRATION
from m3stripe.domain.money import to_minor_units
from m3stripe.domain.runs import RunReport, SyncState
from m3stripe.domain.stripe_writer import ADD_LINES_CHUNK
from m3stripe.domain.sync import ErrorBudget, SyncEngine
from m3stripe.testing.m3ter_emulator import M3terEmulator
from m3stripe.testing.stripe_emulator import StripeEmulator

Mode = Literal["invoice", "items"]
Placement = Literal["process", "loop"]

ORG = "org-bench"
M3TER_CLIENT_ID = "bench-client"
M3TER_CLIENT_SECRET = "bench-secret"
STRIPE_KEY = "sk_test_51benchmarkSYNCTHROUGHPUT"
CURRENCY = "USD"
CUSTOMER_PAGE = 100  # Stripe's largest list page
LINE_TYPES = ("USAGE", "STANDING_CHARGE", "MINIMUM_SPEND")
PROGRESS_EVERY_SECONDS = 30.0
SEED_CONCURRENCY = 32


# --- the emulator side (in this process, or in a child process) ---------------------------------


class CountingM3terEmulator(M3terEmulator):
    """The m3ter emulator with a request counter that never wraps (its request log is a bounded deque)."""

    def __init__(self, *, latency_seconds: float) -> None:
        super().__init__(latency_seconds=latency_seconds)
        self.request_total = 0
        self.kinds: Counter[str] = Counter()

    def record_request(self, method: str, path: str, query: dict[str, str]) -> None:
        self.request_total += 1
        parts = path.strip("/").split("/")
        if len(parts) >= 3 and parts[0] == "organizations":
            kind = f"{method} /{parts[2]}" + ("/{id}" if len(parts) > 3 else "")
        else:
            kind = f"{method} {path}"
        self.kinds[kind] += 1
        super().record_request(method, path, query)


@dataclasses.dataclass(frozen=True)
class SetupInfo:
    stripe_url: str
    m3ter_url: str
    stripe_account: str
    bills: int
    accounts: int
    lines: int
    seconds: float


@dataclasses.dataclass(frozen=True)
class EmulatorStats:
    stripe_requests: int
    stripe_endpoints: dict[str, int]
    stripe_statuses: dict[int, int]
    m3ter_requests: int
    m3ter_kinds: dict[str, int]
    m3ter_tokens_issued: int
    cpu_seconds: float  # CPU time of the emulators' process since arm(); includes the engine when in-process
    peak_rss_bytes: int  # of the emulators' process


@dataclasses.dataclass(frozen=True)
class Verification:
    ok: bool
    checked_bills: int
    stripe_objects: int
    problems: list[str]


def _line_amounts(bill_number: int, lines: int) -> list[str]:
    """Deterministic, varied subtotals (cents never zero) so totals are checkable."""
    return [str(Decimal(1 + (bill_number * 7919 + i * 104_729) % 500_000) / 100) for i in range(lines)]


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _current_rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class EmulatorHost:
    """Both emulators, seeded with a backfill; every method's result is picklable (it may cross a pipe)."""

    def __init__(self) -> None:
        self.stripe: StripeEmulator | None = None
        self.m3ter: CountingM3terEmulator | None = None
        self.account = ""
        self.customer_of: dict[str, str] = {}  # m3ter account id -> Stripe customer id
        self.expected: dict[str, tuple[str, list[int]]] = {}  # bill id -> (account id, sorted amounts)
        self.cpu_armed = 0.0

    async def setup(
        self, *, bills: int, accounts: int, lines: int, latency: float, order: str, seed: int = 2026
    ) -> SetupInfo:
        started = time.perf_counter()
        # No limit and no latency while seeding; contract mode checks every request against the SDK's types.
        stripe_emulator = self.stripe = StripeEmulator(seed=seed, contract_mode=True)
        m3ter = self.m3ter = CountingM3terEmulator(latency_seconds=0.0)
        await stripe_emulator.start()
        await m3ter.start()
        self.account = stripe_emulator.add_api_key(STRIPE_KEY)
        m3ter.add_client(M3TER_CLIENT_ID, M3TER_CLIENT_SECRET, ORG)
        account_ids = [
            m3ter.add_account(ORG, name=f"Account {i}", code=f"acct-{i:05d}", currency=CURRENCY)
            for i in range(accounts)
        ]
        await self._create_customers(stripe_emulator.url, account_ids)
        for n in range(bills):
            # round-robin: consecutive Bills belong to different accounts; grouped: an account's Bills in a row
            account_id = account_ids[n % accounts] if order == "round-robin" else account_ids[n * accounts // bills]
            subtotals = _line_amounts(n, lines)
            bill_id = m3ter.add_bill(
                ORG,
                account_id=account_id,
                lines=[
                    {"line_item_type": LINE_TYPES[i % len(LINE_TYPES)], "subtotal": s} for i, s in enumerate(subtotals)
                ],
            )
            self.expected[bill_id] = (account_id, sorted(to_minor_units(Decimal(s), CURRENCY) for s in subtotals))
        stripe_emulator.latency_seconds = latency
        m3ter.latency_seconds = latency
        return SetupInfo(
            stripe_url=stripe_emulator.url,
            m3ter_url=m3ter.url,
            stripe_account=self.account,
            bills=bills,
            accounts=accounts,
            lines=lines,
            seconds=time.perf_counter() - started,
        )

    async def _create_customers(self, url: str, account_ids: list[str]) -> None:
        """Customers are made through the API, as a person (or a CRM sync) would make them."""
        slots = asyncio.Semaphore(SEED_CONCURRENCY)
        async with open_client(STRIPE_KEY, api_base=url) as client:

            async def create(account_id: str) -> None:
                async with slots:
                    customer = await client.v1.customers.create_async(
                        params={"name": f"Customer of {account_id}", "metadata": {META_ACCOUNT: account_id}}
                    )
                    self.customer_of[account_id] = customer.id

            await asyncio.gather(*(create(a) for a in account_ids))

    async def arm(self, *, rps: float, endpoint_rps: float) -> None:
        """Switch the rate limit on (a full bucket) and zero the counters: the measured pass starts now."""
        assert self.stripe is not None and self.m3ter is not None
        self.stripe.set_rate_limit(rps)
        # The per-endpoint limit (Stripe's 25/s, scaled like the client's for a raised account).
        self.stripe.set_endpoint_rate_limit(endpoint_rps)
        self.stripe.reset_counters()
        self.m3ter.request_total = 0
        self.m3ter.kinds.clear()
        self.m3ter.tokens_issued = 0
        self.cpu_armed = _cpu_seconds()

    async def stats(self) -> EmulatorStats:
        assert self.stripe is not None and self.m3ter is not None
        return EmulatorStats(
            stripe_requests=self.stripe.request_count,
            stripe_endpoints=dict(self.stripe.endpoint_counts),
            stripe_statuses=dict(self.stripe.status_counts),
            m3ter_requests=self.m3ter.request_total,
            m3ter_kinds=dict(self.m3ter.kinds),
            m3ter_tokens_issued=self.m3ter.tokens_issued,
            cpu_seconds=_cpu_seconds() - self.cpu_armed,
            peak_rss_bytes=_peak_rss_bytes(),
        )

    async def verify(self, *, mode: Mode, integration_id: str) -> Verification:
        assert self.stripe is not None
        snapshot = self.stripe.state(self.account)
        problems: list[str] = []
        items_of_invoice: dict[str, list[int]] = {}
        items_of_bill: dict[str, list[dict[str, Any]]] = {}
        for item in snapshot["invoice_items"].values():
            if item.get("invoice"):
                items_of_invoice.setdefault(item["invoice"], []).append(int(item["amount"]))
            items_of_bill.setdefault(str(item["metadata"].get(META_BILL)), []).append(item)
        invoices_of_bill: dict[str, list[dict[str, Any]]] = {}
        for invoice in snapshot["invoices"].values():
            invoices_of_bill.setdefault(str(invoice["metadata"].get(META_BILL)), []).append(invoice)
        if mode == "invoice":
            objects = len(snapshot["invoices"])
            strays = set(invoices_of_bill) - set(self.expected)
            if strays:
                problems.append(f"{sum(len(invoices_of_bill[s]) for s in strays)} invoices belong to no Bill")
        else:
            objects = len(snapshot["invoice_items"])
            if snapshot["invoices"]:
                problems.append(f"items mode created {len(snapshot['invoices'])} invoices")
            strays = set(items_of_bill) - set(self.expected)
            if strays:
                problems.append(f"{sum(len(items_of_bill[s]) for s in strays)} invoice items belong to no Bill")
        for bill_id, (account_id, amounts) in self.expected.items():
            customer = self.customer_of[account_id]
            if mode == "invoice":
                found = invoices_of_bill.get(bill_id, [])
                if len(found) != 1:
                    problems.append(f"Bill {bill_id}: {len(found)} invoices, expected exactly 1")
                    continue
                invoice = found[0]
                got = sorted(items_of_invoice.get(invoice["id"], []))
                if invoice["customer"] != customer:
                    problems.append(
                        f"Bill {bill_id}: invoice {invoice['id']} is on {invoice['customer']}, not {customer}"
                    )
                if invoice["status"] != "draft" or invoice["metadata"].get(META_INTEGRATION) != integration_id:
                    problems.append(f"Bill {bill_id}: invoice {invoice['id']} is {invoice['status']} / wrong metadata")
                if got != amounts or invoice["total"] != sum(amounts):
                    problems.append(
                        f"Bill {bill_id}: invoice lines {got} (total {invoice['total']}), expected {amounts}"
                    )
            else:
                items = items_of_bill.get(bill_id, [])
                got = sorted(int(i["amount"]) for i in items)
                if got != amounts:
                    problems.append(f"Bill {bill_id}: invoice items {got}, expected {amounts}")
                if any(i["customer"] != customer or i.get("invoice") for i in items):
                    problems.append(f"Bill {bill_id}: an item is on the wrong customer or already invoiced")
                if any(i["metadata"].get(META_INTEGRATION) != integration_id for i in items):
                    problems.append(f"Bill {bill_id}: an item lacks this integration's metadata")
        # A request that breaks Stripe's contract (the SDK's params types and API version) fails the run.
        problems[:0] = [f"Stripe contract: {v}" for v in self.stripe.violations[:5]]
        return Verification(not problems, len(self.expected), objects, problems[:10])

    async def close(self) -> None:
        if self.stripe is not None:
            await self.stripe.stop()
        if self.m3ter is not None:
            await self.m3ter.stop()


class Emulators(Protocol):
    async def setup(self, **kwargs: Any) -> SetupInfo: ...
    async def arm(self, *, rps: float, endpoint_rps: float) -> None: ...
    async def stats(self) -> EmulatorStats: ...
    async def verify(self, *, mode: Mode, integration_id: str) -> Verification: ...
    async def aclose(self) -> None: ...


class InLoopEmulators:
    """The emulators on the engine's own event loop."""

    def __init__(self) -> None:
        self.host = EmulatorHost()

    async def setup(self, **kwargs: Any) -> SetupInfo:
        return await self.host.setup(**kwargs)

    async def arm(self, *, rps: float, endpoint_rps: float) -> None:
        await self.host.arm(rps=rps, endpoint_rps=endpoint_rps)

    async def stats(self) -> EmulatorStats:
        return await self.host.stats()

    async def verify(self, *, mode: Mode, integration_id: str) -> Verification:
        return await self.host.verify(mode=mode, integration_id=integration_id)

    async def aclose(self) -> None:
        await self.host.close()


def _emulator_process_main(conn: Connection) -> None:
    asyncio.run(_serve_host(conn))


async def _serve_host(conn: Connection) -> None:
    host = EmulatorHost()
    loop = asyncio.get_running_loop()
    try:
        while True:
            try:
                method, kwargs = await loop.run_in_executor(None, conn.recv)
            except EOFError:
                return
            if method == "close":
                await host.close()
                conn.send(("ok", None))
                return
            try:
                result = await getattr(host, method)(**kwargs)
            except Exception as err:
                conn.send(("error", f"{type(err).__name__}: {err}"))
            else:
                # Plain dicts cross the pipe: classes of a spawned child's __main__ do not unpickle here.
                conn.send(
                    (
                        "ok",
                        dataclasses.asdict(result)
                        if dataclasses.is_dataclass(result) and not isinstance(result, type)
                        else result,
                    )
                )
    finally:
        await host.close()


class ProcessEmulators:
    """The emulators in a child process with its own event loop; calls go over a pipe."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(
            target=_emulator_process_main, args=(child,), name="bench-emulators", daemon=True
        )
        self._process.start()
        child.close()

    def _call(self, method: str, kwargs: dict[str, Any]) -> Any:
        self._conn.send((method, kwargs))
        status, value = self._conn.recv()
        if status != "ok":
            raise RuntimeError(f"emulator process failed in {method}: {value}")
        return value

    async def _remote(self, method: str, **kwargs: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, self._call, method, kwargs)

    async def setup(self, **kwargs: Any) -> SetupInfo:
        return SetupInfo(**await self._remote("setup", **kwargs))

    async def arm(self, *, rps: float, endpoint_rps: float) -> None:
        await self._remote("arm", rps=rps, endpoint_rps=endpoint_rps)

    async def stats(self) -> EmulatorStats:
        return EmulatorStats(**await self._remote("stats"))

    async def verify(self, *, mode: Mode, integration_id: str) -> Verification:
        return Verification(**await self._remote("verify", mode=mode, integration_id=integration_id))

    async def aclose(self) -> None:
        try:
            await self._remote("close")
        finally:
            await asyncio.get_running_loop().run_in_executor(None, self._process.join, 10)
            if self._process.is_alive():
                self._process.terminate()


# --- the engine side --------------------------------------------------------------------------------


class CountingObserver:
    """A StripeObserver that keeps what the gateway saw: statuses, retries, time queued at the limiter."""

    def __init__(self) -> None:
        self.statuses: Counter[int] = Counter()
        self.retries: Counter[str] = Counter()
        self.limiter_waits = 0
        self.limiter_wait_seconds = 0.0
        self.round_trips: list[float] = []

    def request(self, endpoint: str, status: int, seconds: float) -> None:
        self.statuses[status] += 1
        self.round_trips.append(seconds)

    def retry(self, endpoint: str, reason: str) -> None:
        self.retries[reason] += 1

    def rate_limit_wait(self, seconds: float) -> None:
        self.limiter_waits += 1
        self.limiter_wait_seconds += seconds


def minimum_requests_per_bill(mode: Mode, *, lines: int, bills: int, customers: int) -> float:
    """The fewest Stripe requests per new Bill the API allows (see the module docstring)."""
    customer_pages = max(1, math.ceil(customers / CUSTOMER_PAGE)) / bills
    if mode == "invoice":
        return 2 + math.ceil(lines / ADD_LINES_CHUNK) + customer_pages
    return 1 + lines + customer_pages


@dataclasses.dataclass(frozen=True)
class Result:
    mode: Mode
    placement: Placement
    setup: SetupInfo
    rps: int
    latency: float
    concurrency: int
    order: str
    stripe_http: str
    elapsed: float
    report: RunReport
    stats: EmulatorStats
    observer: CountingObserver
    loop_lag: LoopLag
    verification: Verification
    engine_cpu_seconds: float
    rss_before_bytes: int
    peak_rss_bytes: int
    heap_peak_bytes: int | None
    m3ter_tokens_fetched: int
    profile: str | None


def _quantiles_ms(samples: list[float]) -> str:
    if not samples:
        return "no samples"
    ordered = sorted(samples)

    def at(q: float) -> float:
        return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return f"mean {1000 * sum(ordered) / len(ordered):.1f}, p50 {at(0.5):.1f}, p99 {at(0.99):.1f}, max {at(1.0):.1f} ms"


class LoopLag:
    """How late the engine's event loop runs a 10 ms timer: a busy loop is late to read every reply too."""

    def __init__(self) -> None:
        self.samples: list[float] = []

    async def run(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(0.01)
            self.samples.append(max(0.0, time.perf_counter() - before - 0.01))


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
            f"[{mode}] seeding {args.bills} Bills x {args.lines} lines over {args.accounts} accounts "
            f"(emulators: {args.emulators}) ...",
            file=sys.stderr,
            flush=True,
        )
        setup = await emulators.setup(
            bills=args.bills,
            accounts=args.accounts,
            lines=args.lines,
            latency=args.latency,
            order=args.order,
        )
        print(f"[{mode}] seeded in {setup.seconds:.1f} s; running the pass", file=sys.stderr, flush=True)
        spec = StripeIntegrationSpec.model_validate(
            {
                "destination": "StripeTestMode",
                "credentialRef": {"name": "stripe"},
                "m3ter": {"organizationId": ORG, "credentialsRef": {"name": "m3ter"}},
                "requestsPerSecond": args.rps,
                "createStripeInvoice": mode == "invoice",
                "autoDisableThreshold": 1000,
            }
        )
        integration_id = str(uuid.uuid4())
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
            cpu_started = time.process_time()
            started = time.perf_counter()
            if profiler is not None:
                profiler.enable()
            async with stripe_client(args.stripe_http, setup.stripe_url, 30.0) as client:
                gateway = StripeGateway(client, limiter=limiter, observer=observer)
                engine = SyncEngine(
                    spec=spec,
                    account_filter=None,
                    integration_id=integration_id,
                    source=source,
                    gateway=gateway,
                    budget=ErrorBudget(spec.autoDisableThreshold),
                    concurrency=args.concurrency,
                )
                watchers = [
                    asyncio.create_task(_progress(started, gateway, observer)),
                    asyncio.create_task(lag.run()),
                ]
                try:
                    report = await engine.run_pass(SyncState())
                finally:
                    for watcher in watchers:
                        watcher.cancel()
            elapsed = time.perf_counter() - started
            if profiler is not None:
                profiler.disable()
            engine_cpu = time.process_time() - cpu_started
            heap_peak = tracemalloc.get_traced_memory()[1] if args.tracemalloc else None
            if args.tracemalloc:
                tracemalloc.stop()
            peak_rss = _peak_rss_bytes()
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
        placement=args.emulators,
        setup=setup,
        rps=args.rps,
        latency=args.latency,
        concurrency=args.concurrency,
        order=args.order,
        stripe_http=args.stripe_http,
        elapsed=elapsed,
        report=report,
        stats=stats,
        observer=observer,
        loop_lag=lag,
        verification=verification,
        engine_cpu_seconds=engine_cpu,
        rss_before_bytes=rss_before,
        peak_rss_bytes=peak_rss,
        heap_peak_bytes=heap_peak,
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
    ceiling = result.rps / minimum
    endpoint_width = max((len(e) for e in st.stripe_endpoints), default=0)
    rows: list[tuple[str, str]] = [
        ("mode", f"{result.mode} (createStripeInvoice: {str(result.mode == 'invoice').lower()})"),
        (
            "setup",
            f"{s.bills} Bills x {s.lines} lines over {s.accounts} accounts ({result.order}); limit {result.rps} req/s "
            f"(client and emulator); latency {result.latency * 1000:.0f} ms per request; concurrency "
            f"{result.concurrency}; emulators in {'a child process' if result.placement == 'process' else 'the same loop'}; "
            f"stripe SDK on {result.stripe_http}",
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
            f"{100 * served / result.elapsed / result.rps:.1f}% of the {result.rps} req/s ceiling",
        ),
        ("429s received", f"{rate_limited} (gateway retries: {dict(obs.retries) or 'none'})"),
        (
            "client limiter",
            f"{obs.limiter_waits} waits, {obs.limiter_wait_seconds:.0f} s queued in total",
        ),
        ("Stripe round trip", _quantiles_ms(obs.round_trips) + " (as the gateway sees it, after the limiter)"),
        ("event-loop lag", _quantiles_ms(result.loop_lag.samples) + " (engine loop, 10 ms timer)"),
        (
            "m3ter",
            f"{st.m3ter_requests} requests ({', '.join(f'{k} {v}' for k, v in sorted(st.m3ter_kinds.items()))}); "
            f"tokens issued {st.m3ter_tokens_issued} (client fetched {result.m3ter_tokens_fetched})",
        ),
        (
            "peak RSS (engine)",
            f"{_mib(result.peak_rss_bytes)} (RSS before the pass {_mib(result.rss_before_bytes)}"
            + ("; includes the emulators and their objects" if result.placement == "loop" else "")
            + ")",
        ),
    ]
    if result.heap_peak_bytes is not None:
        rows.append(("tracemalloc peak", f"{_mib(result.heap_peak_bytes)} (Python heap allocated during the pass)"))
    if result.placement == "process":
        rows.append(("peak RSS (emulators)", _mib(st.peak_rss_bytes)))
        rows.append(
            (
                "CPU",
                f"engine {result.engine_cpu_seconds:.1f} s ({100 * result.engine_cpu_seconds / result.elapsed:.0f}% of "
                f"one core), emulators {st.cpu_seconds:.1f} s ({100 * st.cpu_seconds / result.elapsed:.0f}%)",
            )
        )
    else:
        rows.append(
            (
                "CPU",
                f"{result.engine_cpu_seconds:.1f} s for engine and emulators together "
                f"({100 * result.engine_cpu_seconds / result.elapsed:.0f}% of one core)",
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
    parser.add_argument("--tracemalloc", action="store_true", help="also trace the Python heap (slows the engine)")
    parser.add_argument(
        "--profile", metavar="FILE", help="cProfile the engine process during the pass; write stats here"
    )
    return parser


def _argv_for(args: argparse.Namespace, mode: Mode) -> list[str]:
    argv = [
        f"--bills={args.bills}",
        f"--accounts={args.accounts}",
        f"--rps={args.rps}",
        f"--latency={args.latency}",
        f"--mode={mode}",
        f"--lines={args.lines}",
        f"--concurrency={args.concurrency}",
        f"--order={args.order}",
        f"--emulators={args.emulators}",
        f"--stripe-http={args.stripe_http}",
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
    if args.mode == "both":
        # A fresh interpreter per mode: ru_maxrss is a high-water mark, so each mode gets its own.
        failed = 0
        for mode in ("invoice", "items"):
            done = subprocess.run([sys.executable, os.path.abspath(__file__), *_argv_for(args, mode)], check=False)
            failed += done.returncode != 0
        return 1 if failed else 0
    result = asyncio.run(run_mode(args, args.mode))
    print(render(result), flush=True)
    return 0 if result.verification.ok and result.report.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
