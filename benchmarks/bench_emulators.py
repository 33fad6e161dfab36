"""The benchmark's emulators: the m3ter and Stripe emulators seeded for one scenario, in this process or a child.

Every method's result is picklable (it may cross a pipe to the child process).
"""

from __future__ import annotations

import asyncio
import dataclasses
import multiprocessing
import os
import resource
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from multiprocessing.connection import Connection
from typing import Any, Literal, Protocol

from bench_observe import peak_rss_bytes
from m3stripe.adapters.stripe_client import open_client
from m3stripe.domain.mapping import META_ACCOUNT, META_BILL, META_INTEGRATION, META_LINE, META_LINE_INDEX, META_VERSION
from m3stripe.domain.money import to_minor_units
from m3stripe.testing.m3ter_emulator import M3terEmulator
from m3stripe.testing.stripe_emulator import StripeEmulator

Mode = Literal["invoice", "items"]

ORG = "org-bench"
M3TER_CLIENT_ID = "bench-client"
M3TER_CLIENT_SECRET = "bench-secret"
STRIPE_KEY = "sk_test_51benchmarkSYNCTHROUGHPUT"
CURRENCY = "USD"
LINE_TYPES = ("USAGE", "STANDING_CHARGE", "MINIMUM_SPEND")
SEED_CONCURRENCY = 32
HISTORY_PREFIX = "history-"
# Earlier invoices (or items) are a month old; Bills the pass sends were created in m3ter today.
HISTORY_AGE = timedelta(days=30)
# Bills sent by an earlier pass were last modified a day ago; the watermark of that pass is an hour ago.
UNCHANGED_AGE = timedelta(days=1)
WATERMARK_AGE = timedelta(hours=1)

# --- the emulator side (in this process, or in a child process) ---------------------------------


async def create_customers(stripe_key: str, url: str, account_ids: list[str]) -> dict[str, str]:
    """One Stripe Customer per m3ter Account, made through the API as a person (or a CRM sync) would make them,
    carrying the Account's id in the metadata the operator maps by; returns each Account's Customer id."""
    slots = asyncio.Semaphore(SEED_CONCURRENCY)
    customer_of: dict[str, str] = {}
    async with open_client(stripe_key, api_base=url) as client:

        async def create(account_id: str) -> None:
            async with slots:
                customer = await client.v1.customers.create_async(
                    params={"name": f"Customer of {account_id}", "metadata": {META_ACCOUNT: account_id}}
                )
                customer_of[account_id] = customer.id

        await asyncio.gather(*(create(a) for a in account_ids))
    return customer_of


class CountingM3terEmulator(M3terEmulator):
    """The m3ter emulator with a request counter that never wraps (its request log is a bounded deque)."""

    def __init__(self, *, latency_seconds: float, clock: Callable[[], datetime] | None = None) -> None:
        super().__init__(latency_seconds=latency_seconds, clock=clock)
        self.request_total = 0
        self.kinds: Counter[str] = Counter()

    def record_request(self, method: str, path: str, query: dict[str, str]) -> None:
        self.request_total += 1
        parts = path.strip("/").split("/")
        if len(parts) >= 3 and parts[0] == "organizations":
            tail = "" if len(parts) <= 3 else "/search" if parts[3] == "search" else "/{id}"
            kind = f"{method} /{parts[2]}{tail}"
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
    history: int = 0  # earlier invoices (or items) each customer holds in Stripe
    unchanged_bills: int = 0  # Bills in m3ter that did not change since the last pass
    watermark: str | None = None  # the last pass's watermark (ISO 8601), when there was one


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


def bill_lines(subtotals: list[str]) -> list[dict[str, str]]:
    """A seeded Bill's line items: one per subtotal, their types in turn (LINE_TYPES)."""
    return [{"line_item_type": LINE_TYPES[i % len(LINE_TYPES)], "subtotal": s} for i, s in enumerate(subtotals)]


def expected_amounts(subtotals: list[str]) -> list[int]:
    """What Stripe must hold of a seeded Bill's lines: their amounts in minor units, sorted (check_stripe_state)."""
    return sorted(to_minor_units(Decimal(s), CURRENCY) for s in subtotals)


def _current_rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def check_stripe_state(
    snapshot: Any,
    *,
    expected: dict[str, tuple[str, list[int]]],
    customer_of: dict[str, str],
    mode: Mode,
    integration_id: str,
    violations: list[str],
) -> Verification:
    """Stripe's state against the Bills: exactly one draft invoice per Bill with the right customer, lines and total
    (invoice mode), or exactly the Bill's lines as pending invoice items (items mode); no contract violation.

    `snapshot` is one account's `StripeEmulator.state` (in this process, or `GET /_emulator/state` of another);
    `expected` maps each Bill id to its m3ter account and sorted amounts, `customer_of` each account to its customer.
    """
    problems: list[str] = []
    items_of_invoice: dict[str, list[int]] = {}
    items_of_bill: dict[str, list[dict[str, Any]]] = {}
    for item in snapshot["invoice_items"].values():
        if str(item["metadata"].get(META_BILL, "")).startswith(HISTORY_PREFIX):
            continue
        if item.get("invoice"):
            items_of_invoice.setdefault(item["invoice"], []).append(int(item["amount"]))
        items_of_bill.setdefault(str(item["metadata"].get(META_BILL)), []).append(item)
    invoices_of_bill: dict[str, list[dict[str, Any]]] = {}
    for invoice in snapshot["invoices"].values():
        if str(invoice["metadata"].get(META_BILL, "")).startswith(HISTORY_PREFIX):
            continue
        invoices_of_bill.setdefault(str(invoice["metadata"].get(META_BILL)), []).append(invoice)
    if mode == "invoice":
        objects = sum(len(v) for v in invoices_of_bill.values())
        strays = set(invoices_of_bill) - set(expected)
        if strays:
            problems.append(f"{sum(len(invoices_of_bill[s]) for s in strays)} invoices belong to no Bill")
    else:
        objects = sum(len(v) for v in items_of_bill.values())
        if invoices_of_bill:
            problems.append(f"items mode created {sum(len(v) for v in invoices_of_bill.values())} invoices")
        strays = set(items_of_bill) - set(expected)
        if strays:
            problems.append(f"{sum(len(items_of_bill[s]) for s in strays)} invoice items belong to no Bill")
    for bill_id, (account_id, amounts) in expected.items():
        customer = customer_of[account_id]
        if mode == "invoice":
            found = invoices_of_bill.get(bill_id, [])
            if len(found) != 1:
                problems.append(f"Bill {bill_id}: {len(found)} invoices, expected exactly 1")
                continue
            invoice = found[0]
            got = sorted(items_of_invoice.get(invoice["id"], []))
            if invoice["customer"] != customer:
                problems.append(f"Bill {bill_id}: invoice {invoice['id']} is on {invoice['customer']}, not {customer}")
            if invoice["status"] != "draft" or invoice["metadata"].get(META_INTEGRATION) != integration_id:
                problems.append(f"Bill {bill_id}: invoice {invoice['id']} is {invoice['status']} / wrong metadata")
            if got != amounts or invoice["total"] != sum(amounts):
                problems.append(f"Bill {bill_id}: invoice lines {got} (total {invoice['total']}), expected {amounts}")
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
    problems[:0] = [f"Stripe contract: {v}" for v in violations[:5]]
    return Verification(not problems, len(expected), objects, problems[:10])


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
        self,
        *,
        bills: int,
        accounts: int,
        lines: int,
        latency: float,
        order: str,
        integration_id: str = "",
        history: int = 0,
        history_mode: Mode = "invoice",
        unchanged_bills: int = 0,
        last_pass: bool = False,
        seed: int = 2026,
    ) -> SetupInfo:
        """`bills` new Bills over `accounts` accounts, each account's Stripe Customer already holding `history`
        invoices (or items) of this integration, and `unchanged_bills` Bills sent by an earlier pass (with
        `last_pass`, or any unchanged Bills, the pass starts from that earlier pass's watermark)."""
        started = time.perf_counter()
        stripe_shift, m3ter_shift = [0.0], [timedelta(0)]
        # No limit and no latency while seeding; contract mode checks every request against the SDK's types.
        stripe_emulator = self.stripe = StripeEmulator(
            seed=seed, contract_mode=True, clock=lambda: time.time() + stripe_shift[0]
        )
        m3ter = self.m3ter = CountingM3terEmulator(
            latency_seconds=0.0, clock=lambda: datetime.now(UTC) + m3ter_shift[0]
        )
        last_pass = last_pass or unchanged_bills > 0
        if last_pass:
            # m3ter's stamps only increase (the emulator's _stamp), so what predates the last pass comes first.
            m3ter_shift[0] = -UNCHANGED_AGE
        await stripe_emulator.start()
        await m3ter.start()
        self.account = stripe_emulator.add_api_key(STRIPE_KEY)
        m3ter.add_client(M3TER_CLIENT_ID, M3TER_CLIENT_SECRET, ORG)
        account_ids = [
            m3ter.add_account(ORG, name=f"Account {i}", code=f"acct-{i:05d}", currency=CURRENCY)
            for i in range(accounts)
        ]
        self.customer_of.update(await create_customers(STRIPE_KEY, stripe_emulator.url, account_ids))
        if history:
            stripe_shift[0] = -HISTORY_AGE.total_seconds()
            await self._create_history(stripe_emulator.url, integration_id, history, history_mode)
            stripe_shift[0] = 0.0
        watermark = None
        if last_pass:
            for n in range(unchanged_bills):
                m3ter.add_bill(
                    ORG,
                    account_id=account_ids[n % accounts],
                    lines=[{"line_item_type": "USAGE", "subtotal": s} for s in _line_amounts(n, 1)],
                )
            m3ter_shift[0] = timedelta(0)
            watermark = (datetime.now(UTC) - WATERMARK_AGE).isoformat()
        for n in range(bills):
            # round-robin: consecutive Bills belong to different accounts; grouped: an account's Bills in a row
            account_id = account_ids[n % accounts] if order == "round-robin" else account_ids[n * accounts // bills]
            subtotals = _line_amounts(n, lines)
            bill_id = m3ter.add_bill(ORG, account_id=account_id, lines=bill_lines(subtotals))
            self.expected[bill_id] = (account_id, expected_amounts(subtotals))
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
            history=history,
            unchanged_bills=unchanged_bills,
            watermark=watermark,
        )

    async def _create_history(self, url: str, integration_id: str, per_customer: int, mode: Mode) -> None:
        """Earlier invoices (or items) of this integration for other Bills, a month old, on every customer."""
        slots = asyncio.Semaphore(SEED_CONCURRENCY)
        async with open_client(STRIPE_KEY, api_base=url) as client:

            async def create(customer: str, n: int) -> None:
                meta = {
                    META_INTEGRATION: integration_id,
                    META_BILL: f"{HISTORY_PREFIX}{customer}-{n}",
                    META_VERSION: "1",
                    META_LINE: "line",
                    META_LINE_INDEX: "0",
                }
                async with slots:
                    if mode == "invoice":
                        params: dict[str, Any] = {"customer": customer, "metadata": meta, "auto_advance": False}
                        await client.v1.invoices.create_async(params=params)  # type: ignore[arg-type]
                    else:
                        params = {"customer": customer, "amount": 100, "currency": "usd", "metadata": meta}
                        await client.v1.invoice_items.create_async(params=params)  # type: ignore[arg-type]

            await asyncio.gather(*(create(c, n) for c in self.customer_of.values() for n in range(per_customer)))

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
            peak_rss_bytes=peak_rss_bytes(),
        )

    async def verify(self, *, mode: Mode, integration_id: str) -> Verification:
        assert self.stripe is not None
        return check_stripe_state(
            self.stripe.state(self.account),
            expected=self.expected,
            customer_of=self.customer_of,
            mode=mode,
            integration_id=integration_id,
            violations=[str(v) for v in self.stripe.violations],  # check_stripe_state keeps the first 5
        )

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
