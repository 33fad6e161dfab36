"""One pass, as an object: admits the candidate Bills, runs each through the engine with bounded concurrency,
checkpoints what it completed, stops early on an authentication error or a spent error budget, and works out the
state the next pass starts from. The same for Send and Plan passes: what differs is the engine's executor."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from m3stripe.api.spec import StripeIntegrationSpec
from m3stripe.domain.billing import Bill, MalformedBill
from m3stripe.domain.candidates import Sweep, read_candidates
from m3stripe.domain.customers import CustomerResolver
from m3stripe.domain.executors import Executor
from m3stripe.domain.ports import BillSource, BillSourceAuthError, BillSourceUnavailable, FenceLost
from m3stripe.domain.runs import (
    BillResult,
    ErrorBudget,
    ErrorEvent,
    EventKind,
    Outcome,
    RunReport,
    RunStatus,
    SyncState,
    run_status,
)
from m3stripe.domain.sweep import sweep_due, sweep_since

MAX_RETRY_IDS = 1000
# Checkpointing: while a pass runs, the Bills it completed (as "<id>@<version>") are persisted this often, at
# most this many, so that a restart skips them instead of re-checking each in Stripe (two reads per Bill).
# m3ter lists Bills in no documented order (its list endpoint has no sort parameter), so no watermark can
# advance mid-pass; the completed set is the checkpoint. Beyond the cap a restart re-checks (costs reads only).
CHECKPOINT_SECONDS = 3.0
MAX_CHECKPOINT = 2000
MAX_STRIPE_IDS = 200
# Bills read ahead of their customer's queue (each holds its mapping): enough for a few customers' backfills to
# run side by side, few enough that memory stays flat.
MAX_QUEUED_BILLS = 1000


class PassStopping(Exception):
    """The pass is stopping (an authentication error, the error budget spent): a queued Bill is not written."""


@dataclass(frozen=True)
class Slots:
    """`concurrency` Bills being read, and separately `concurrency` Bills being written."""

    read: asyncio.Semaphore
    write: asyncio.Semaphore
    # True once the pass stops: up to MAX_QUEUED_BILLS may be queued, and none of them is then written (the
    # watermark stays where it was, so they are read again), as when at most `concurrency` were in flight.
    stopping: Callable[[], bool]
    bills: BillLocks


class BillLocks:
    """One writer at a time per Bill id. A changed-Bill scan can meet one Bill at two versions in a pass (it was
    regenerated while m3ter paged, and candidates are told apart by id and version): written at once, each would
    find no invoice and create one. One after the other, the second finds the first's invoice and updates it."""

    def __init__(self) -> None:
        self._held: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, bill_id: str) -> AsyncIterator[None]:
        lock, users = self._held.get(bill_id, (asyncio.Lock(), 0))
        self._held[bill_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._held[bill_id]
            if users == 1:
                del self._held[bill_id]  # a pass of 100,000 Bills keeps only the locks in use
            else:
                self._held[bill_id] = (lock, users - 1)


class PassEngine(Protocol):
    """What a pass needs of its engine (domain.sync_engine.SyncEngine): the Bill-by-Bill work and its settings."""

    spec: StripeIntegrationSpec
    source: BillSource
    executor: Executor
    budget: ErrorBudget
    concurrency: int
    clock: Callable[[], datetime]

    async def tax_ready(self, run_id: str) -> ErrorEvent | None: ...
    def event(self, kind: EventKind, run_id: str, message: str, *, status: RunStatus = ...) -> ErrorEvent: ...
    async def handle_bill(
        self,
        bill: Bill | MalformedBill,
        run_id: str,
        resolver: CustomerResolver,
        customer_slots: dict[str, asyncio.Semaphore],
        slots: Slots,
    ) -> BillResult: ...


class SyncPass:
    """One pass of one engine: its report, the Bills in flight, the checkpoint, and why it stopped, if it did."""

    def __init__(
        self,
        engine: PassEngine,
        state: SyncState,
        *,
        replay: frozenset[str],
        completed: frozenset[str],
        checkpoint: Callable[[list[str]], Awaitable[None]] | None,
    ) -> None:
        self.engine = engine
        self.state = state
        self.replay = replay
        self.completed = completed
        self.checkpoint = checkpoint
        self.started = engine.clock()
        run_id = f"run-{self.started.strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:6]}"
        self.report = RunReport(run_id=run_id, started=self.started)
        engine.executor.begin(run_id)
        spec = engine.spec
        self.resolver = CustomerResolver(
            engine.executor.reads,
            engine.source,
            use_external_mapping=spec.useExternalMappingAccountCode,
            with_tax=spec.tax_on,
        )
        self.customer_slots: dict[str, asyncio.Semaphore] = {}
        self.abort: list[ErrorEvent] = []
        self.admitted = asyncio.Semaphore(MAX_QUEUED_BILLS)
        self.slots = Slots(
            asyncio.Semaphore(engine.concurrency),
            asyncio.Semaphore(engine.concurrency),
            lambda: bool(self.abort) or engine.budget.exhausted,
            BillLocks(),
        )
        self.tasks: set[asyncio.Task[None]] = set()
        self.fence_lost: list[FenceLost] = []
        self.done: list[str] = list(completed)[:MAX_CHECKPOINT]
        self.last_checkpoint = time.monotonic()
        # The reconciliation sweep, when due. A first pass (no watermark) reads the full listing anyway: that is a
        # sweep. Plan passes keep no progress, so they never sweep.
        self.sweep: Sweep | None = None
        if (
            engine.executor.sweeps
            and state.watermark is not None
            and sweep_due(state.last_sweep, self.started, spec.reconcile_interval)
        ):
            self.sweep = Sweep(since=sweep_since(state.last_sweep))

    async def run(self) -> RunReport:
        engine, report = self.engine, self.report
        if engine.spec.tax_on:
            # Once per pass, before any Bill: can Stripe Tax tax these invoices at all? (spec.automaticTax: Enabled)
            refused = await engine.tax_ready(report.run_id)
            if refused is not None:
                self._stop(refused)
        # A pass that cannot tax stops before it reads a Bill.
        candidates = _none() if self.abort else self._candidates()
        try:
            await self._admit(candidates)
            await self._drain()
        except BillSourceAuthError as err:
            message = f"m3ter refused the credentials while reading Bills: {err}"
            self._stop(engine.event(EventKind.AUTHENTICATION, report.run_id, message, status=RunStatus.AUTH_FAILED))
        except BillSourceUnavailable as err:
            message = f"could not read Bills from m3ter: {err}"
            self._stop(engine.event(EventKind.PERFORM, report.run_id, message, status=RunStatus.AWAITING_RETRY))
        finally:
            for task in list(self.tasks):
                task.cancel()
        if self.fence_lost:
            raise self.fence_lost[0]
        return self._finish()

    def _candidates(self) -> AsyncIterator[Bill | MalformedBill]:
        return read_candidates(self.engine.source, self.state, self.replay, self.completed, self.sweep)

    def _stop(self, event: ErrorEvent) -> None:
        self.abort.append(event)
        self.report.events.append(event)
        self.engine.budget.error()

    async def _admit(self, candidates: AsyncIterator[Bill | MalformedBill]) -> None:
        async for bill in candidates:
            if self.abort or self.engine.budget.exhausted or self.fence_lost:
                break
            if self.checkpoint is not None and time.monotonic() - self.last_checkpoint >= CHECKPOINT_SECONDS:
                await self._save()
            await self.admitted.acquire()
            task = asyncio.create_task(self._handle(bill))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _drain(self) -> None:
        """The last Bills in flight: keep checkpointing while they finish."""
        while self.tasks:
            pending = list(self.tasks)
            await asyncio.wait(pending, timeout=CHECKPOINT_SECONDS if self.checkpoint is not None else None)
            for finished in pending:
                error = finished.exception() if finished.done() and not finished.cancelled() else None
                if error is not None:
                    raise error  # as gather did: a bug in handling one Bill ends the pass
            if self.tasks and self.checkpoint is not None:
                await self._save()

    async def _save(self) -> None:
        assert self.checkpoint is not None
        await self.checkpoint(list(self.done))
        self.last_checkpoint = time.monotonic()

    async def _handle(self, bill: Bill | MalformedBill) -> None:
        engine = self.engine
        try:
            result = await engine.handle_bill(bill, self.report.run_id, self.resolver, self.customer_slots, self.slots)
        except FenceLost as err:
            self.fence_lost.append(err)
            return
        except PassStopping:
            return
        finally:
            self.admitted.release()
        engine.executor.record(bill, result)
        self.report.add(result, keep_ids=MAX_STRIPE_IDS)
        # Only what cost Stripe requests: a Bill this integration does not select is cheap to skip again.
        if result.outcome in (Outcome.SENT, Outcome.UNCHANGED) and len(self.done) < MAX_CHECKPOINT:
            self.done.append(f"{bill.id}@{bill.version}")
        if result.event is not None:
            engine.budget.error()
            if result.event.kind is EventKind.AUTHENTICATION and not self.abort:
                self.abort.append(result.event)
        elif result.outcome is Outcome.SENT:
            engine.budget.success()

    def _finish(self) -> RunReport:
        """The state the next pass starts from: the watermark, the Bills owed a retry, the last complete sweep."""
        report, state, budget, abort = self.report, self.state, self.engine.budget, self.abort
        report.completed = self.engine.clock()
        retry_ids = list(dict.fromkeys(report.retry_bill_ids))
        if self.sweep is not None:
            report.swept_listed, report.swept_reread = self.sweep.listed, self.sweep.reread
        # lastSweep moves only when every Bill the sweep (or the full read) found was handled and owed retries
        # are remembered; otherwise the next pass sweeps again from the same point.
        swept = state.watermark is None or (self.sweep is not None and self.sweep.finished)
        complete = not abort and not budget.exhausted and len(retry_ids) <= MAX_RETRY_IDS
        report.last_sweep = self.started if swept and complete else state.last_sweep
        if abort or budget.exhausted:
            # Not every candidate was looked at: keep the old watermark, so nothing is skipped.
            report.watermark = state.watermark
            report.retry_bill_ids = list(dict.fromkeys([*state.retry_bill_ids, *retry_ids]))[:MAX_RETRY_IDS]
            report.stopped_early = abort[0].message if abort else "too many successive errors"
        else:
            report.watermark = self.started
            report.retry_bill_ids = retry_ids[:MAX_RETRY_IDS]
            if len(retry_ids) > MAX_RETRY_IDS:
                # Too many to remember one by one: re-read from the oldest instead (costs reads, loses nothing).
                report.watermark = state.watermark
        report.status = run_status(report, abort[0].status if abort else None)
        return report


async def _none() -> AsyncIterator[Bill | MalformedBill]:
    return
    yield  # an async generator that yields nothing
