"""One sync pass of one integration: read changed Bills from m3ter, choose, map, and write them to Stripe.

Memory stays flat: Bills stream page by page and at most MAX_QUEUED_BILLS are admitted at once. Up to
CUSTOMER_CONCURRENCY Bills of one Stripe Customer are written at once (the writer keeps the writes Stripe would
answer with lock_timeout one at a time per customer); a Bill waiting for its customer holds no slot:
`concurrency` bounds the Bills being read (m3ter, the customer) and, separately, the Bills being written, so one
customer's queue never starves the others. The pass reports every Bill's outcome and the state the next pass
starts from.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from m3stripe.api.spec import StripeIntegrationSpec
from m3stripe.domain.account_filter import AccountFilter
from m3stripe.domain.billing import Account, Bill, MalformedBill
from m3stripe.domain.candidates import Sweep, read_candidates
from m3stripe.domain.customers import CustomerResolver, Unmapped
from m3stripe.domain.mapping import MappedBill, MappingError, map_bill
from m3stripe.domain.overlap import Overlap, malformed_skip
from m3stripe.domain.plan import Planner
from m3stripe.domain.ports import (
    BillSource,
    BillSourceAuthError,
    BillSourceError,
    BillSourceUnavailable,
    Failure,
    FenceLost,
    Ledger,
    LedgerError,
    LedgerReader,
    TaxSettings,
)
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
from m3stripe.domain.selection import Selector, Skip
from m3stripe.domain.stripe_failures import classify, grant
from m3stripe.domain.stripe_writer import AlreadyFinalized, AmountMismatch, StripeWriter
from m3stripe.domain.sweep import sweep_due, sweep_since
from m3stripe.domain.tax_checks import (
    TaxProblem,
    location_problem,
    settings_problem,
    tax_code_problem,
    tax_mode,
    tax_note,
)
from m3stripe.domain.tax_forms import CreditsExceedCharges

MAX_RETRY_IDS = 1000
# Checkpointing: while a pass runs, the Bills it completed (as "<id>@<version>") are persisted this often, at
# most this many, so that a restart skips them instead of re-checking each in Stripe (two reads per Bill).
# m3ter lists Bills in no documented order (its list endpoint has no sort parameter), so no watermark can
# advance mid-pass; the completed set is the checkpoint. Beyond the cap a restart re-checks (costs reads only).
CHECKPOINT_SECONDS = 3.0
MAX_CHECKPOINT = 2000
MAX_STRIPE_IDS = 200
# Bills read ahead of their customer's queue (each holds its plan): enough for a few customers' backfills to
# run side by side, few enough that memory stays flat.
MAX_QUEUED_BILLS = 1000
# Bills of one customer written at once. A Bill is three dependent requests (a re-read, the invoice, its lines)
# and only the invoice's creation goes one at a time per customer (it changes the customer), so with three or four
# in flight a customer's creations follow each other back to back: one Bill per request latency instead of one per
# three (issue 22; at Stripe's quarter to half a second a request, the latency, not the rate limit, decided).
CUSTOMER_CONCURRENCY = 4


def _unfenced() -> None:
    return None


def _now() -> datetime:
    return datetime.now(UTC)


class _PassStopping(Exception):
    """The pass is stopping (an authentication error, the error budget spent): a queued Bill is not written."""


def _never() -> bool:
    return False


@dataclass(frozen=True)
class _Prepared:
    """A selected Bill ready to write: its plan, its Stripe customer, and the younger integrations that also select it."""

    mapped: MappedBill
    customer: str
    shared: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Slots:
    """`concurrency` Bills being read, and separately `concurrency` Bills being written."""

    read: asyncio.Semaphore
    write: asyncio.Semaphore
    # True once the pass stops: up to MAX_QUEUED_BILLS may be queued, and none of them is then written (the
    # watermark stays where it was, so they are read again), as when at most `concurrency` were in flight.
    stopping: Callable[[], bool] = _never


class SyncEngine:
    """One pass of one integration: reads candidates from the Bill source, selects, maps and hands each Bill
    to the writer (or planner), spends the error budget. It owns no I/O: its ports do, and the fence stops it."""

    def __init__(
        self,
        *,
        spec: StripeIntegrationSpec,
        account_filter: AccountFilter | None,
        integration_id: str,
        source: BillSource,
        ledger: Ledger | None,
        budget: ErrorBudget,
        concurrency: int = 8,
        clock: Callable[[], datetime] = _now,
        fence: Callable[[], None] = _unfenced,
        planner: Planner | None = None,
        overlap: Overlap | None = None,
    ) -> None:
        self.spec = spec
        self.integration_id = integration_id
        self.source = source
        self.ledger = ledger
        self.budget = budget
        self.concurrency = concurrency
        self.clock = clock
        # Raises FenceLost when this process may no longer write; checked right before each Bill's writes.
        self.fence = fence
        # Plan mode (spec.mode: Plan): a planner over a read-only Stripe port and no ledger, so no path of
        # the pass can write to Stripe; each Bill's decision is recorded instead of executed.
        if (planner is None) == (ledger is None):
            raise ValueError("a SyncEngine takes a ledger (Send) or a planner (Plan), not both")
        self.planner = planner
        self.selector = Selector(
            account_ids=frozenset(spec.accountIds),
            restricted_account_ids=frozenset(spec.restrictedAccountIds),
            account_filter=account_filter,
            only_approved=spec.onlySendBillOnApproval,
        )
        # Other integrations sending this Organization's Bills to the same Stripe account and mode (domain.overlap):
        # a Bill an older one also selects is left to it.
        self.overlap = overlap
        self._writer: StripeWriter | None = None
        self._tax_settings: TaxSettings | None = None  # read once per pass when spec.automaticTax is Enabled

    async def run_pass(
        self,
        state: SyncState,
        *,
        replay: frozenset[str] = frozenset(),
        completed: frozenset[str] = frozenset(),
        checkpoint: Callable[[list[str]], Awaitable[None]] | None = None,
    ) -> RunReport:
        """One pass. `completed`: Bills ("<id>@<version>") that interrupted passes since `state.watermark`
        finished, skipped here; `checkpoint` is called every CHECKPOINT_SECONDS with those and this pass's."""
        started = self.clock()
        report = RunReport(run_id=f"run-{started.strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:6]}", started=started)
        # Within a pass, retries reuse their idempotency keys, so a write whose reply was lost is not repeated.
        # Each pass first lists what Stripe holds (consistent list endpoints), so a new pass may use new keys:
        # that is what unblocks a write Stripe answered with a 500 saved under its key, and what lets a
        # replayed Bill be written again after a person deleted its invoice.
        reads: LedgerReader
        if self.ledger is not None:
            self._writer = StripeWriter(self.ledger, key_salt=report.run_id)
            reads = self.ledger
        else:
            assert self.planner is not None
            reads = self.planner.reader  # finding customers only lists them
        resolver = CustomerResolver(
            reads, self.source, use_external_mapping=self.spec.useExternalMappingAccountCode, with_tax=self.spec.tax_on
        )
        customer_locks: dict[str, asyncio.Semaphore] = {}
        abort: list[ErrorEvent] = []
        admitted = asyncio.Semaphore(MAX_QUEUED_BILLS)
        slots = _Slots(
            asyncio.Semaphore(self.concurrency),
            asyncio.Semaphore(self.concurrency),
            lambda: bool(abort) or self.budget.exhausted,
        )
        tasks: set[asyncio.Task[None]] = set()
        fence_lost: list[FenceLost] = []
        done: list[str] = list(completed)[:MAX_CHECKPOINT]
        last_checkpoint = time.monotonic()
        # The reconciliation sweep, when due. A first pass (no watermark) reads the full listing anyway: that
        # is a sweep. Plan passes keep no progress, so they never sweep (their lastSweep would not be kept).
        sweep: Sweep | None = None
        if (
            self.ledger is not None
            and state.watermark is not None
            and sweep_due(state.last_sweep, started, self.spec.reconcile_interval)
        ):
            sweep = Sweep(since=sweep_since(state.last_sweep))

        async def handle(bill: Bill | MalformedBill) -> None:
            try:
                result = await self._handle_bill(bill, report.run_id, resolver, customer_locks, slots)
            except FenceLost as err:
                fence_lost.append(err)
                return
            except _PassStopping:
                return
            finally:
                admitted.release()
            if self.planner is not None:
                self.planner.record(bill, result)
            report.add(result, keep_ids=MAX_STRIPE_IDS)
            # Only what cost Stripe requests: a Bill this integration does not select is cheap to skip again.
            if result.outcome in (Outcome.SENT, Outcome.UNCHANGED) and len(done) < MAX_CHECKPOINT:
                done.append(f"{bill.id}@{bill.version}")
            if result.event is not None:
                self.budget.error()
                if result.event.kind is EventKind.AUTHENTICATION and not abort:
                    abort.append(result.event)
            elif result.outcome is Outcome.SENT:
                self.budget.success()

        if self.spec.tax_on:
            # Once per pass, before any Bill: can Stripe Tax tax these invoices at all? (spec.automaticTax: Enabled)
            refused = await self._tax_ready(reads, report.run_id)
            if refused is not None:
                abort.append(refused)
                report.events.append(refused)
                self.budget.error()
        # A pass that cannot tax stops before it reads a Bill.
        candidates = _none() if abort else read_candidates(self.source, state, replay, completed, sweep)
        try:
            async for bill in candidates:
                if abort or self.budget.exhausted or fence_lost:
                    break
                if checkpoint is not None and time.monotonic() - last_checkpoint >= CHECKPOINT_SECONDS:
                    await checkpoint(list(done))
                    last_checkpoint = time.monotonic()
                await admitted.acquire()
                task = asyncio.create_task(handle(bill))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            while tasks:  # the last Bills in flight: keep checkpointing while they finish
                pending = list(tasks)
                await asyncio.wait(pending, timeout=CHECKPOINT_SECONDS if checkpoint is not None else None)
                for finished in pending:
                    error = finished.exception() if finished.done() and not finished.cancelled() else None
                    if error is not None:
                        raise error  # as gather did: a bug in handling one Bill ends the pass
                if tasks and checkpoint is not None:
                    await checkpoint(list(done))
                    last_checkpoint = time.monotonic()
        except BillSourceAuthError as err:
            abort.append(
                self._event(
                    EventKind.AUTHENTICATION,
                    report.run_id,
                    f"m3ter refused the credentials while reading Bills: {err}",
                    status=RunStatus.AUTH_FAILED,
                )
            )
            report.events.append(abort[-1])
            self.budget.error()
        except BillSourceUnavailable as err:
            event = self._event(
                EventKind.PERFORM,
                report.run_id,
                f"could not read Bills from m3ter: {err}",
                status=RunStatus.AWAITING_RETRY,
            )
            report.events.append(event)
            abort.append(event)
            self.budget.error()
        finally:
            for task in list(tasks):
                task.cancel()
        if fence_lost:
            raise fence_lost[0]
        report.completed = self.clock()
        retry_ids = list(dict.fromkeys(report.retry_bill_ids))
        if sweep is not None:
            report.swept_listed, report.swept_reread = sweep.listed, sweep.reread
        # lastSweep moves only when every Bill the sweep (or the full read) found was handled and owed retries
        # are remembered; otherwise the next pass sweeps again from the same point.
        swept = state.watermark is None or (sweep is not None and sweep.finished)
        complete = not abort and not self.budget.exhausted and len(retry_ids) <= MAX_RETRY_IDS
        report.last_sweep = started if swept and complete else state.last_sweep
        if abort or self.budget.exhausted:
            # Not every candidate was looked at: keep the old watermark, so nothing is skipped.
            report.watermark = state.watermark
            report.retry_bill_ids = list(dict.fromkeys([*state.retry_bill_ids, *retry_ids]))[:MAX_RETRY_IDS]
            report.stopped_early = abort[0].message if abort else "too many successive errors"
        else:
            report.watermark = started
            report.retry_bill_ids = retry_ids[:MAX_RETRY_IDS]
            if len(retry_ids) > MAX_RETRY_IDS:
                # Too many to remember one by one: re-read from the oldest instead (costs reads, loses nothing).
                report.watermark = state.watermark
        report.status = run_status(report, abort[0].status if abort else None)
        return report

    async def _tax_ready(self, reads: LedgerReader, run_id: str) -> ErrorEvent | None:
        """The Stripe account's Stripe Tax settings, read once per pass: an event when invoices cannot be taxed."""
        try:
            self._tax_settings = await reads.tax_settings()
        except LedgerError as err:
            if err.failure is Failure.PERMISSION:
                message = (
                    f"Stripe {err.endpoint}: {err}; {grant(err.permission or 'rak_tax_settings_read')}: with "
                    "spec.automaticTax: Enabled the operator reads the Stripe Tax settings before sending"
                )
                return self._event(EventKind.AUTHENTICATION, run_id, message, status=RunStatus.AUTH_FAILED)
            status = RunStatus.AWAITING_RETRY if err.failure is Failure.TRANSIENT else RunStatus.ERROR
            message = f"could not read the Stripe Tax settings (Stripe {err.endpoint}): {err}; retried on the next pass"
            return self._event(EventKind.PERFORM, run_id, message, status=status)
        problem = settings_problem(self.spec, self._tax_settings)
        if problem is not None:
            return self._event(EventKind.VALIDATION, run_id, problem)
        return None

    async def _handle_bill(
        self,
        bill: Bill | MalformedBill,
        run_id: str,
        resolver: CustomerResolver,
        locks: dict[str, asyncio.Semaphore],
        slots: _Slots | None = None,
    ) -> BillResult:
        slots = slots or _Slots(asyncio.Semaphore(1), asyncio.Semaphore(1))
        async with slots.read:
            if slots.stopping():
                raise _PassStopping
            prepared = await self._prepare(bill, run_id, resolver)
        if isinstance(prepared, BillResult):
            return prepared
        mapped, customer = prepared.mapped, prepared.customer
        assert isinstance(bill, Bill)
        if self.planner is not None:
            async with _slot(locks, customer), slots.write:
                try:
                    decision = await self.planner.decide(
                        mapped, customer, invoice_mode=self.spec.createStripeInvoice, not_before=bill.created
                    )
                except LedgerError as err:
                    return self._stripe_failure(bill, run_id, err)
                except CreditsExceedCharges as err:
                    return self._failed(bill, EventKind.VALIDATION, run_id, str(err), retry=True)
            return dataclasses.replace(self.planner.result(bill, decision), shared_with=prepared.shared)
        try:
            writer = self._writer
            assert writer is not None
            # The customer's slot first, then a write slot: a Bill queued behind its customer holds no slot.
            async with _slot(locks, customer), slots.write:
                if slots.stopping():
                    raise _PassStopping
                self.fence()  # after waiting for the customer's slot, right before the writes
                if self.spec.createStripeInvoice:
                    written = await writer.write_invoice(mapped, customer, not_before=bill.created)
                else:
                    written = await writer.write_items(mapped, customer, not_before=bill.created)
        except AlreadyFinalized as err:
            return self._failed(bill, EventKind.PERFORM, run_id, str(err), status=RunStatus.INVOICE_ALREADY_PAID)
        except CreditsExceedCharges as err:
            return self._failed(bill, EventKind.VALIDATION, run_id, str(err), retry=True)
        except AmountMismatch as err:
            return self._failed(bill, EventKind.PERFORM, run_id, str(err))
        except LedgerError as err:
            return self._stripe_failure(bill, run_id, err)
        outcome = Outcome.SENT if written.changed else Outcome.UNCHANGED
        tax = written.invoice.tax if written.invoice is not None and written.invoice.tax.enabled else None
        return BillResult(
            bill.id,
            bill.version,
            outcome,
            stripe_id=written.stripe_id,
            shared_with=prepared.shared,
            currency=mapped.currency,
            tax=tax.amount if tax is not None else None,
            detail=tax_note(tax),
        )

    async def _prepare(
        self, bill: Bill | MalformedBill, run_id: str, resolver: CustomerResolver
    ) -> BillResult | _Prepared:
        """Everything before the writes (m3ter reads, selection, the plan, the customer): a result, or what to write."""
        overlap = self.overlap
        peers_need_account = overlap is not None and overlap.needs_account
        if isinstance(bill, MalformedBill):
            # m3ter returned this Bill with a field that cannot be read: a validation error naming the Bill and the
            # field, raised only by the integrations whose selection could include it (another team's broken Bill
            # costs this integration nothing), and among overlapping ones by the owner only. Every other Bill goes
            # on. Not retried: it is read again once it changes.
            account: Account | None = None
            if bill.account_id is not None and (self.selector.needs_account or peers_need_account):
                account = await self.source.get_account(bill.account_id)
            why = malformed_skip(self.selector, bill, account)
            if why is not None:
                return BillResult(bill.id, bill.version, Outcome.SKIPPED, detail=why)
            owner = overlap.owner(bill, account) if overlap is not None else None
            if owner is not None:
                return self._left_to(bill, owner.where)
            return self._failed(bill, EventKind.VALIDATION, run_id, bill.message)
        skip = self.selector.by_bill(bill)
        account = None
        if skip is None and (self.selector.needs_account or peers_need_account):
            account = await self.source.get_account(bill.account_id)
            if account is None and self.selector.needs_account:
                return self._failed(
                    bill,
                    EventKind.VALIDATION,
                    run_id,
                    f"m3ter Account {bill.account_id} of Bill {bill.id} was not found",
                    retry=True,
                )
            if account is not None and self.selector.needs_account:
                skip = self.selector.by_account(account)
        if skip is not None:
            return BillResult(bill.id, bill.version, Outcome.SKIPPED, detail=str(skip))
        shared: tuple[str, ...] = ()
        if overlap is not None:
            owner = overlap.owner(bill, account)
            if owner is not None:
                return self._left_to(bill, owner.where)
            shared = tuple(p.where for p in overlap.sharers(bill, account))
        prepared = await self._prepare_selected(bill, run_id, resolver)
        if isinstance(prepared, BillResult):
            return dataclasses.replace(prepared, shared_with=shared) if shared else prepared
        return _Prepared(*prepared, shared=shared)

    def _left_to(self, bill: Bill | MalformedBill, owner: str) -> BillResult:
        detail = (
            f"left to {owner}, the older integration that also selects this Bill for the same m3ter Organization "
            "and Stripe account and mode (the older one sends the Bills both select)"
        )
        return BillResult(bill.id, bill.version, Outcome.SKIPPED, detail=detail, left_to=owner)

    async def _prepare_selected(
        self, bill: Bill, run_id: str, resolver: CustomerResolver
    ) -> BillResult | tuple[MappedBill, str]:
        """A selected Bill: m3ter's rounding, the plan, the Stripe customer; a result, or what to write."""
        try:
            # m3ter's per-currency rounding decides the total when lines are excluded (mapping.line_amounts).
            rounding = await self.source.rounding_for(bill.currency)
        except BillSourceUnavailable as err:
            message = f"could not read m3ter's currency rounding for Bill {bill.id}: {err}; retried on the next pass"
            return self._failed(bill, EventKind.PERFORM, run_id, message, retry=True, status=RunStatus.AWAITING_RETRY)
        except BillSourceAuthError:
            raise
        except BillSourceError as err:
            message = f"m3ter's currency {bill.currency} cannot be used for Bill {bill.id}: {err}"
            return self._failed(bill, EventKind.VALIDATION, run_id, message, retry=True)
        try:
            mapped = map_bill(bill, self.spec, self.integration_id, rounding=rounding)
        except MappingError as err:
            return self._failed(bill, EventKind.VALIDATION, run_id, str(err))
        if self.planner is not None:
            self.planner.mapped(mapped)
        if not mapped.lines:
            return BillResult(bill.id, bill.version, Outcome.SKIPPED, detail=str(Skip.NO_LINES))
        try:
            customer = await resolver.resolve(bill.account_id)
        except LedgerError as err:
            return self._stripe_failure(bill, run_id, err)
        if isinstance(customer, Unmapped):
            return self._failed(bill, EventKind.MISSING_ACCOUNT_MAPPING, run_id, customer.message, retry=True)
        if self.spec.tax_on:
            try:
                problem = await self._tax_problem(mapped, customer, resolver)
            except LedgerError as err:
                return self._stripe_failure(bill, run_id, err)
            if problem is not None:
                status = RunStatus.AWAITING_RETRY if problem.transient else RunStatus.ERROR
                kind = EventKind.PERFORM if problem.transient else EventKind.VALIDATION
                return self._failed(bill, kind, run_id, problem.message, retry=True, status=status)
        return mapped, customer

    async def _tax_problem(self, mapped: MappedBill, customer: str, resolver: CustomerResolver) -> TaxProblem | None:
        """Why the Bill cannot be written with automatic tax (its customer's location, a tax code), if it cannot."""
        code = tax_code_problem(mapped, self._tax_settings)
        if code is not None:
            return TaxProblem(code)
        return location_problem(mapped, customer, await resolver.tax_of(customer))

    def _stripe_failure(self, bill: Bill, run_id: str, err: LedgerError) -> BillResult:
        kind, status, message = classify(err, bill.id)
        return self._failed(bill, kind, run_id, message, retry=True, status=status)

    def _failed(
        self,
        bill: Bill | MalformedBill,
        kind: EventKind,
        run_id: str,
        message: str,
        *,
        retry: bool = False,
        status: RunStatus = RunStatus.ERROR,
    ) -> BillResult:
        event = self._event(kind, run_id, message, bill=bill, status=status)
        return BillResult(bill.id, bill.version, Outcome.FAILED, detail=message, event=event, retry=retry)

    def _event(
        self,
        kind: EventKind,
        run_id: str,
        message: str,
        *,
        bill: Bill | MalformedBill | None = None,
        status: RunStatus = RunStatus.ERROR,
    ) -> ErrorEvent:
        return ErrorEvent(
            kind=kind,
            message=message,
            run_id=run_id,
            time=self.clock(),
            bill_id=bill.id if bill else None,
            account_id=bill.account_id if bill else None,
            status=status,
        )


def _slot(slots: dict[str, asyncio.Semaphore], customer: str) -> asyncio.Semaphore:
    found = slots.get(customer)
    if found is None:
        found = slots[customer] = asyncio.Semaphore(CUSTOMER_CONCURRENCY)
    return found


async def _none() -> AsyncIterator[Bill | MalformedBill]:
    return
    yield  # an async generator that yields nothing


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
    overlap: Overlap | None = None,
) -> SyncEngine:
    """A Send engine over a `Ledger`, or (spec.mode: Plan) a planning engine over the reads of `stripe` only."""
    if spec.is_plan:
        ledger: Ledger | None = None
        planner: Planner | None = Planner(stripe, tax_mode(spec))
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
        overlap=overlap,
    )
