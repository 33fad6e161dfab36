"""The sync engine of one integration: each Bill read from m3ter is selected, mapped and handed to the executor
(written to Stripe in Send mode, decided and recorded in Plan mode), every failure becoming m3ter's error event.

A pass (domain.sync_pass) streams the Bills through `handle_bill`. Up to CUSTOMER_CONCURRENCY Bills of one Stripe
Customer are written at once (their invoice creations too, until Stripe answers one with lock_timeout:
domain.customer_writes); a Bill waiting for its customer holds no slot: `concurrency` bounds the Bills being read (m3ter, the
customer) and, separately, the Bills being written, so one customer's queue never starves the others.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from m3stripe.api.spec import StripeIntegrationSpec
from m3stripe.domain.account_filter import AccountFilter
from m3stripe.domain.billing import Account, Bill, MalformedBill
from m3stripe.domain.customers import CustomerResolver, Unmapped
from m3stripe.domain.executors import Executor, PlanExecutor, SendExecutor
from m3stripe.domain.mapping import MappedBill, MappingError, map_bill
from m3stripe.domain.overlap import Overlap, malformed_skip
from m3stripe.domain.plan import Planner
from m3stripe.domain.ports import (
    BillSource,
    BillSourceAuthError,
    BillSourceError,
    BillSourceUnavailable,
    Failure,
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
)
from m3stripe.domain.selection import Selector, Skip
from m3stripe.domain.stripe_failures import classify, grant
from m3stripe.domain.stripe_writer import AlreadyFinalized, AmountMismatch
from m3stripe.domain.sync_pass import PassStopping, Slots, SyncPass
from m3stripe.domain.tax_checks import (
    TaxProblem,
    location_problem,
    settings_problem,
    tax_code_problem,
    tax_mode,
)
from m3stripe.domain.tax_forms import CreditsExceedCharges

# Bills of one customer written at once. A Bill is three dependent requests (a re-read, the invoice, its lines).
# Where Stripe locks the customer for an invoice's creation, the creations go one at a time per customer
# (domain.customer_writes), and with three or four Bills in flight they follow each other back to back: one Bill per
# request latency instead of one per three (issue 22; at Stripe's quarter to half a second a request, the latency,
# not the rate limit, decided). Where it does not, four Bills per latency of three requests.
CUSTOMER_CONCURRENCY = 4


def _unfenced() -> None:
    return None


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class _Prepared:
    """A selected Bill ready to write: its plan, its Stripe customer, and the younger integrations that also select it."""

    mapped: MappedBill
    customer: str
    shared: tuple[str, ...] = ()


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
        self.budget = budget
        self.concurrency = concurrency
        self.clock = clock
        # Raises FenceLost when this process may no longer write; checked right before each Bill's writes.
        self.fence = fence
        # Plan mode (spec.mode: Plan): a planner over a read-only Stripe port and no ledger, so no path of
        # the pass can write to Stripe; each Bill's decision is recorded instead of executed.
        if (planner is None) == (ledger is None):
            raise ValueError("a SyncEngine takes a ledger (Send) or a planner (Plan), not both")
        self.executor: Executor
        if ledger is not None:
            self.executor = SendExecutor(ledger)
        else:
            assert planner is not None
            self.executor = PlanExecutor(planner)
        self.selector = Selector(
            account_ids=frozenset(spec.accountIds),
            restricted_account_ids=frozenset(spec.restrictedAccountIds),
            account_filter=account_filter,
            only_approved=spec.onlySendBillOnApproval,
        )
        # Other integrations sending this Organization's Bills to the same Stripe account and mode (domain.overlap):
        # a Bill an older one also selects is left to it.
        self.overlap = overlap
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
        return await SyncPass(self, state, replay=replay, completed=completed, checkpoint=checkpoint).run()

    @property
    def ledger(self) -> Ledger | None:
        """The ledger a Send pass writes to (None in Plan mode)."""
        return self.executor.ledger if isinstance(self.executor, SendExecutor) else None

    @property
    def planner(self) -> Planner | None:
        """The planner a Plan pass records its decisions in (None in Send mode)."""
        return self.executor.planner if isinstance(self.executor, PlanExecutor) else None

    async def tax_ready(self, run_id: str) -> ErrorEvent | None:
        """The Stripe account's Stripe Tax settings, read once per pass: an event when invoices cannot be taxed."""
        try:
            self._tax_settings = await self.executor.reads.tax_settings()
        except LedgerError as err:
            if err.failure is Failure.PERMISSION:
                message = (
                    f"Stripe {err.endpoint}: {err}; {grant(err.permission or 'rak_tax_settings_read')}: with "
                    "spec.automaticTax: Enabled the operator reads the Stripe Tax settings before sending"
                )
                return self.event(EventKind.AUTHENTICATION, run_id, message, status=RunStatus.AUTH_FAILED)
            status = RunStatus.AWAITING_RETRY if err.failure is Failure.TRANSIENT else RunStatus.ERROR
            message = f"could not read the Stripe Tax settings (Stripe {err.endpoint}): {err}; retried on the next pass"
            return self.event(EventKind.PERFORM, run_id, message, status=status)
        problem = settings_problem(self.spec, self._tax_settings)
        if problem is not None:
            return self.event(EventKind.VALIDATION, run_id, problem)
        return None

    async def handle_bill(
        self,
        bill: Bill | MalformedBill,
        run_id: str,
        resolver: CustomerResolver,
        customer_slots: dict[str, asyncio.Semaphore],
        slots: Slots,
    ) -> BillResult:
        """One Bill of a pass: prepared under a read slot, then written (or decided) under its customer's slot and a
        write slot; every failure becomes the Bill's result with m3ter's event."""
        async with slots.read:
            if slots.stopping():
                raise PassStopping
            prepared = await self._prepare(bill, run_id, resolver)
        if isinstance(prepared, BillResult):
            return prepared
        assert isinstance(bill, Bill)
        try:
            # The Bill's own lock, the customer's slot, then a write slot: a Bill queued holds no slot.
            async with slots.bills.hold(bill.id), _slot(customer_slots, prepared.customer), slots.write:
                if slots.stopping():
                    raise PassStopping
                self.fence()  # after waiting for the customer's slot, right before the writes
                result = await self.executor.execute(
                    bill, prepared.mapped, prepared.customer, invoice_mode=self.spec.createStripeInvoice
                )
        except AlreadyFinalized as err:
            return self._failed(bill, EventKind.PERFORM, run_id, str(err), status=RunStatus.INVOICE_ALREADY_PAID)
        except CreditsExceedCharges as err:
            return self._failed(bill, EventKind.VALIDATION, run_id, str(err), retry=True)
        except AmountMismatch as err:
            return self._failed(bill, EventKind.PERFORM, run_id, str(err))
        except LedgerError as err:
            return self._stripe_failure(bill, run_id, err)
        return dataclasses.replace(result, shared_with=prepared.shared) if prepared.shared else result

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
            if owner is not None and owner.excluded != frozenset(self.spec.excludedLineItemTypes):
                return self._failed(bill, EventKind.VALIDATION, run_id, _excluded_conflict(bill, owner.where))
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
        event = self.event(kind, run_id, message, bill=bill, status=status)
        return BillResult(bill.id, bill.version, Outcome.FAILED, detail=message, event=event, retry=retry)

    def event(
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


def _excluded_conflict(bill: Bill, owner: str) -> str:
    # Leaving the Bill silently would send it without lines this integration sends (or with lines it excludes).
    return (
        f"Bill {bill.id} is also selected by the older {owner}, which sends it (same m3ter Organization, Stripe "
        "account and mode) but excludes other line item types (spec.excludedLineItemTypes) than this integration: "
        "the Bill would reach Stripe with lines this integration's settings would not send, or without lines they "
        "would. Make the two integrations' excludedLineItemTypes the same, or narrow spec.accountIds, "
        "spec.restrictedAccountIds or spec.accountFilter so that each Bill is selected once"
    )


def _slot(slots: dict[str, asyncio.Semaphore], customer: str) -> asyncio.Semaphore:
    found = slots.get(customer)
    if found is None:
        found = slots[customer] = asyncio.Semaphore(CUSTOMER_CONCURRENCY)
    return found


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
