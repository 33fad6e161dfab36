"""What a pass does with a Bill that is ready to go: write it to Stripe (Send), or decide what a write would do and
record it (Plan). One executor per pass; the rest of a pass is the same in both modes."""

from __future__ import annotations

from typing import Protocol

from m3stripe.domain.billing import Bill, MalformedBill
from m3stripe.domain.mapping import MappedBill
from m3stripe.domain.plan import Planner
from m3stripe.domain.ports import Ledger, LedgerReader
from m3stripe.domain.runs import BillResult, Outcome
from m3stripe.domain.stripe_writer import StripeWriter
from m3stripe.domain.tax_checks import tax_note


class Executor(Protocol):
    """Carries out, or only decides, each prepared Bill of one pass. Raises the writer's domain errors
    (AlreadyFinalized, CreditsExceedCharges, AmountMismatch) and LedgerError; the engine turns them into events."""

    @property
    def reads(self) -> LedgerReader:
        """The read side of the Stripe port (customers, tax settings)."""
        ...

    @property
    def sweeps(self) -> bool:
        """Whether the pass keeps progress, so a reconciliation sweep it makes counts."""
        ...

    def begin(self, run_id: str) -> None: ...
    async def execute(self, bill: Bill, mapped: MappedBill, customer: str, *, invoice_mode: bool) -> BillResult: ...
    def record(self, bill: Bill | MalformedBill, result: BillResult) -> None: ...


class SendExecutor:
    """Writes each Bill through a StripeWriter over the ledger, one writer per pass."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self._writer: StripeWriter | None = None

    @property
    def reads(self) -> LedgerReader:
        return self.ledger

    @property
    def sweeps(self) -> bool:
        return True

    def begin(self, run_id: str) -> None:
        # Within a pass, retries reuse their idempotency keys, so a write whose reply was lost is not repeated. Each
        # pass first lists what Stripe holds (consistent list endpoints), so a new pass may use new keys: that is what
        # unblocks a write Stripe answered with a 500 saved under its key, and what lets a replayed Bill be written
        # again after a person deleted its invoice.
        self._writer = StripeWriter(self.ledger, key_salt=run_id)

    async def execute(self, bill: Bill, mapped: MappedBill, customer: str, *, invoice_mode: bool) -> BillResult:
        writer = self._writer
        assert writer is not None, "begin() first"
        if invoice_mode:
            written = await writer.write_invoice(mapped, customer, not_before=bill.created)
        else:
            written = await writer.write_items(mapped, customer, not_before=bill.created)
        outcome = Outcome.SENT if written.changed else Outcome.UNCHANGED
        tax = written.invoice.tax if written.invoice is not None and written.invoice.tax.enabled else None
        return BillResult(
            bill.id,
            bill.version,
            outcome,
            stripe_id=written.stripe_id,
            currency=mapped.currency,
            tax=tax.amount if tax is not None else None,
            untaxed=tax is not None and tax.not_collecting,
            detail=tax_note(tax),
        )

    def record(self, bill: Bill | MalformedBill, result: BillResult) -> None:
        return None


class PlanExecutor:
    """Decides each Bill through the planner's writer over the read-only port, and records the decision."""

    def __init__(self, planner: Planner) -> None:
        self.planner = planner

    @property
    def reads(self) -> LedgerReader:
        return self.planner.reader

    @property
    def sweeps(self) -> bool:
        return False  # a plan keeps no progress: its lastSweep would not be kept

    def begin(self, run_id: str) -> None:
        return None

    async def execute(self, bill: Bill, mapped: MappedBill, customer: str, *, invoice_mode: bool) -> BillResult:
        decision = await self.planner.decide(mapped, customer, invoice_mode=invoice_mode, not_before=bill.created)
        return self.planner.result(bill, decision)

    def record(self, bill: Bill | MalformedBill, result: BillResult) -> None:
        self.planner.record(bill, result)
