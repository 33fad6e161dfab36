"""Make Stripe hold exactly one Bill version: find what earlier attempts wrote, then add or fix the rest.

Invoice mode: one draft invoice per Bill (`pending_invoice_items_behavior=exclude`, so it never sweeps
up other pending items), its lines added in bulk. Items mode: pending invoice items on the customer.
Either way every write has a deterministic idempotency key, and before writing we look at what exists
through list endpoints (read-after-write consistent; the Search API is not).

What Stripe holds for a Bill is recognised by the Bill's durable identity (`identifies`): its m3ter Organization and
Bill id in the object's metadata, never the Kubernetes object that wrote it. So a re-created integration (a cluster
rebuilt from git, `kubectl replace`, a rename, another namespace), or another integration on the same Bills, finds
what was sent and never invoices a Bill twice.

Finding what exists costs O(1) requests per Bill, whatever the customer's history (`CustomerIndex`):
each customer's invoices (or items) are listed once per pass, from a `created` time no earlier write of
a Bill of the pass can precede, and before each later Bill only what was created since is re-read.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from m3stripe.domain.customer_writes import CustomerWrites
from m3stripe.domain.decisions import (
    BillAction,
    Decision,
    by_signature,
    copies_message,
    decide_invoice,
    decide_items,
    diff,
    identifies,
    item_lines,
    sort_out,
)
from m3stripe.domain.idempotency_keys import idempotency_key
from m3stripe.domain.mapping import (
    META_BILL,
    META_CREDIT_COUPON,
    MappedBill,
)
from m3stripe.domain.ports import Failure, HeldInvoice, HeldLine, Ledger, LedgerError, LedgerReader
from m3stripe.domain.tax_forms import (
    Coupon,
    CreditsExceedCharges,
    LineForm,
    WantedLine,
    credits_coupon,
    taxed_invoice,
    wanted_lines,
)

ADD_LINES_CHUNK = 50

# m3ter stamps dtCreated with its clock, Stripe stamps `created` with its own; neither vendor documents
# how far apart they may be. An hour is far beyond NTP-synchronised drift, and costs at most one hour of
# the customer's earlier invoices in the first list.
CLOCK_SKEW = timedelta(hours=1)
# An index (or its extension) reaches this much further back than the Bill that asks for it: m3ter lists
# changed Bills newest first, so the customer's next Bills are a little older, and without the reach each
# one would extend the index by a second or two, one more list request each. A day of a customer's
# invoices is at most a page for daily billing.
INDEX_REACH = timedelta(days=1)
# How far back (in Stripe's `created`) each re-read of a customer's index reaches behind the newest object
# it has seen. An object shows in list endpoints once the request that created it completes, and it carries
# the time Stripe created it, so an object missed by the previous list was created less than one request's
# duration before that list. Stripe documents no bound on that (the vendor is silent); the emulator's is
# zero. Writes of this pass are recorded as they are made, so the window only has to catch a write by an
# earlier pass or process still in flight (a request timed out on our side, a killed process).
REREAD_OVERLAP_SECONDS = 5
Kind = Literal["invoice", "item"]


class AlreadyFinalized(Exception):
    """The Bill's Stripe invoice can no longer be changed (m3ter's INVOICE_ALREADY_PAID)."""

    def __init__(self, message: str, stripe_id: str) -> None:
        super().__init__(message)
        self.stripe_id = stripe_id


@dataclass(frozen=True)
class WriteResult:
    stripe_id: str
    changed: bool  # False when Stripe already held exactly this version
    invoice: HeldInvoice | None = None  # the invoice as Stripe holds it after the writes (invoice mode), with its tax


class AmountMismatch(Exception):
    """After the writes, the invoice's amount before tax is not the Bill's total (a bug, or a hand-made change)."""

    def __init__(self, message: str, stripe_id: str) -> None:
        super().__init__(message)
        self.stripe_id = stripe_id


@dataclass
class CustomerIndex:
    """This integration's invoices (or items) of one customer created at or after `since`, by Bill id.

    Why it never misses an earlier write of a Bill it is asked about (`since` <= that Bill's bound):
    - every write for a Bill happens after the operator read that Bill from m3ter, so after m3ter created
      it (dtCreated, the same for every version): with `since` <= dtCreated - CLOCK_SKEW, no earlier
      write of the Bill, of any version, is older (a Bill without dtCreated lowers `since` to None: all);
    - a Bill whose bound is older than `since` extends the index downwards before it is used;
    - what this pass writes is recorded here as it is written; a write whose reply was lost fails its
      Bill, and should m3ter's listing yield that Bill again in this pass, the retry carries the same
      idempotency key (one key per pass; or the one the Ledger derived from it, where Stripe saved a refusal
      under the key), so Stripe replays the first write instead of making a second;
    - before each Bill that did not wait for the first listing, what was created since the newest object a
      listing showed, less REREAD_OVERLAP_SECONDS, is listed again, which catches what others (an earlier
      pass's request still in flight, another process) created meanwhile, as the per-Bill list did before.
      Only listings move `newest`, never this pass's own writes, so a burst of them cannot push the window
      past what others may still be writing.
    Bills of one customer are decided and written concurrently: each is one Bill id, written by one task of the
    pass, and every change of the index is made without awaiting in between; the first listing is single flight
    and an extension downwards is made under `extending`.
    """

    kind: Kind
    since: int | None
    newest: int = 0
    by_bill: dict[str, dict[str, Any]] = field(default_factory=dict)  # HeldInvoice or HeldLine, by kind
    listed: asyncio.Event = field(default_factory=asyncio.Event)  # set once the first listing is in
    extending: asyncio.Lock = field(default_factory=asyncio.Lock)

    def add(self, held: HeldInvoice | HeldLine, bill_id: str) -> None:
        self.by_bill.setdefault(bill_id, {})[held.id] = held

    def remove(self, bill_id: str, object_id: str) -> None:
        self.by_bill.get(bill_id, {}).pop(object_id, None)

    def held(self, mapped: MappedBill) -> list[Any]:
        """What Stripe holds for the mapped Bill, by its durable identity (`identifies`)."""
        found = self.by_bill.get(mapped.bill_id, {}).values()
        return [obj for obj in found if identifies(obj.metadata, mapped.organization_id, mapped.bill_id)]


class StripeWriter:
    """Writes Bills for one pass, several Bills of one customer at once (the engine bounds how many).

    Exactly once holds per Bill: each Bill is decided from what Stripe holds and written by one task with keys that
    derive from it. Everything of a Bill touches its own invoice or items only, but for the write made for its customer
    (creating its invoice, or a pending invoice item), made through `CustomerWrites`: concurrent until Stripe
    answers one with lock_timeout, then one at a time per customer.
    """

    def __init__(self, ledger: Ledger | LedgerReader, *, key_salt: str | None = None) -> None:
        """Given a LedgerReader (Plan mode) the writer only decides: it holds no ledger to execute with."""
        self._ledger: Ledger | None = ledger if isinstance(ledger, Ledger) else None
        # Deciding reads only, through the read side of the port.
        self._reads: LedgerReader = ledger
        self._salt = key_salt
        self._indexes: dict[tuple[Kind, str], CustomerIndex] = {}
        self.customer_writes = CustomerWrites()
        self.list_requests = 0  # list pages read to find earlier writes (for the benchmarks)

    def _key(self, mapped: MappedBill, step: str, params: Any = None) -> str:
        material = params if self._salt is None else [self._salt, params]
        return idempotency_key(mapped.organization_id, mapped.bill_id, mapped.version, step, material)

    # What Stripe holds, per customer
    async def _list(self, kind: Kind, customer: str, created: dict[str, int] | None) -> list[HeldInvoice | HeldLine]:
        # invoices/list and invoiceitems/list: `created` "Only return ... that were created during the given
        # date interval" (gte/lt, Unix seconds); results are "sorted by creation date, with the most recently
        # created ... appearing first" (https://docs.stripe.com/api/invoices/list,
        # https://docs.stripe.com/api/invoiceitems/list; SDK params/_invoice_list_params.py).
        found: list[HeldInvoice | HeldLine] = []
        pages_before = self._reads.requests
        if kind == "invoice":
            async for invoice in self._reads.invoices(customer, created or None):
                found.append(invoice)
        else:
            async for item in self._reads.items(customer, created or None):
                found.append(item)
        self.list_requests += self._reads.requests - pages_before
        return found

    def _take(self, index: CustomerIndex, objects: list[HeldInvoice | HeldLine]) -> None:
        # Indexed by Bill id whoever wrote it; `CustomerIndex.held` keeps only what identifies the Bill asked about.
        for obj in objects:
            index.newest = max(index.newest, obj.created)
            bill_id = obj.metadata.get(META_BILL)
            if bill_id:
                index.add(obj, bill_id)

    async def _index(self, kind: Kind, customer: str, not_before: datetime | None) -> CustomerIndex:
        """The customer's index, complete for a Bill first created at `not_before` (see CustomerIndex)."""
        needed = None if not_before is None else not_before - CLOCK_SKEW
        since = None if needed is None else max(0, int((needed - INDEX_REACH).timestamp()))
        index = self._indexes.get((kind, customer))
        if index is None:
            index = self._indexes[kind, customer] = CustomerIndex(kind, since)
            try:
                self._take(index, await self._list(kind, customer, None if since is None else {"gte": since}))
            except BaseException:
                del self._indexes[kind, customer]  # the next Bill lists again
                index.listed.set()
                raise
            index.listed.set()
            return index  # just listed: this Bill needs no re-read
        joined = not index.listed.is_set()
        if joined:
            await index.listed.wait()  # the first listing, in flight: it is as fresh as a re-read
            if self._indexes.get((kind, customer)) is not index:
                return await self._index(kind, customer, not_before)  # it failed: list again
        async with index.extending:
            if index.since is not None and (needed is None or needed.timestamp() < index.since):
                older = {"lt": index.since} if since is None else {"gte": since, "lt": index.since}
                self._take(index, await self._list(kind, customer, older))
                index.since = since
        if joined:
            return index
        reread = max(index.since or 0, index.newest - REREAD_OVERLAP_SECONDS)
        self._take(index, await self._list(kind, customer, {"gte": reread} if reread > 0 else None))
        return index

    # Either mode: `not_before` is when m3ter created the Bill (no earlier write of it can be older); None: unknown.
    async def write_invoice(
        self, mapped: MappedBill, customer: str, *, not_before: datetime | None = None
    ) -> WriteResult:
        return await self._write("invoice", mapped, customer, not_before)

    async def write_items(
        self, mapped: MappedBill, customer: str, *, not_before: datetime | None = None
    ) -> WriteResult:
        return await self._write("item", mapped, customer, not_before)

    async def decide(
        self, kind: Kind, mapped: MappedBill, customer: str, *, not_before: datetime | None = None
    ) -> Decision:
        """What the Bill needs in Stripe (kind "invoice": invoice mode, "item": items mode), from reads only."""
        return await self._decide(kind, mapped, await self._index(kind, customer, not_before))

    async def _write(self, kind: Kind, mapped: MappedBill, customer: str, not_before: datetime | None) -> WriteResult:
        index = await self._index(kind, customer, not_before)
        decision = await self._decide(kind, mapped, index)
        self._writes()  # a writer on the read-only port refuses every write, even one that needs nothing
        for duplicate in decision.duplicates:
            await self._delete_draft(duplicate.id, index, mapped.bill_id)
        if decision.action is BillAction.NOTHING and decision.duplicates:
            return WriteResult(decision.stripe_id or "", True, await self._reads.invoice(decision.stripe_id or ""))
        if decision.action is BillAction.NOTHING:
            held = (
                next((i for i in index.held(mapped) if i.id == decision.stripe_id), None) if kind == "invoice" else None
            )
            return WriteResult(decision.stripe_id or "", False, held)
        if decision.action is BillAction.BLOCKED:
            raise AlreadyFinalized(decision.reason, decision.stripe_id or "")
        execute = self._execute_invoice if kind == "invoice" else self._execute_items
        return await execute(mapped, customer, index, decision)

    async def _decide(self, kind: Kind, mapped: MappedBill, index: CustomerIndex) -> Decision:
        return await (self._decide_invoice if kind == "invoice" else self._decide_items)(mapped, index)

    # Invoice mode
    async def _decide_invoice(self, mapped: MappedBill, index: CustomerIndex) -> Decision:
        held = sort_out(index.held(mapped))
        invoice = held.invoice
        if invoice is None:
            return decide_invoice(mapped, None, [])
        if held.copies:
            return Decision(BillAction.BLOCKED, copies_message(mapped, held), invoice.id)
        lines = await self._invoice_lines(mapped, invoice)
        decision = decide_invoice(mapped, invoice, lines)
        if decision.action is BillAction.UPDATE_DRAFT:
            # The index may be older than a person's finalize: read the status fresh before changing anything.
            invoice = await self._reads.invoice(invoice.id)
            index.add(invoice, mapped.bill_id)
            decision = decide_invoice(mapped, invoice, lines)
        return decision.with_duplicates(held.duplicates)

    async def _execute_invoice(
        self, mapped: MappedBill, customer: str, index: CustomerIndex, decision: Decision
    ) -> WriteResult:
        """Carry out a decision that writes (CreateInvoice or UpdateDraft); `_write` settles the others."""
        ledger = self._writes()
        if decision.action is BillAction.CREATE_INVOICE:
            if decision.coupon is not None:
                await self._coupon(mapped, decision.coupon)
            coupon_id = decision.coupon.id if decision.coupon else None
            params = mapped.invoice_create_params(customer, coupon=coupon_id)
            key = self._key(mapped, "invoice", params)
            create = functools.partial(ledger.create_invoice, params, idempotency_key=key)
            created = await self.customer_writes.write(customer, create)
            # Its lines are added next: what the creation answered of them is out of date at once.
            index.add(dataclasses.replace(created, lines=None), mapped.bill_id)
            wanted = list(decision.missing)
            taxed = taxed_invoice(mapped, created.tax.enabled)
            if taxed and mapped.tax.automatic is None:
                # The account's default for API invoices turned automatic tax on (best effort, no error when it does
                # not: https://docs.stripe.com/tax/invoicing/automatic-tax-default): the lines take their taxed forms.
                wanted = wanted_lines(mapped, taxed)
                try:
                    coupon = credits_coupon(mapped, taxed)
                except CreditsExceedCharges:
                    # Only now known (the account's default decided): the empty draft is deleted, so Stripe holds no
                    # invoice of the Bill that the next pass would meet as stale.
                    await self._delete_draft(created.id, index, mapped.bill_id)
                    raise
                if coupon is not None:
                    await self._coupon(mapped, coupon)
                    params = {"discounts": [{"coupon": coupon.id}], "metadata": {META_CREDIT_COUPON: coupon.id}}
                    await ledger.update_invoice(
                        created.id, params, idempotency_key=self._key(mapped, "credits", params)
                    )
            final = await self._add(mapped, customer, created.id, wanted) or created
            return WriteResult(created.id, True, self._verified(mapped, final))
        invoice = decision.invoice
        assert invoice is not None and decision.action is BillAction.UPDATE_DRAFT
        invoice_id = invoice.id
        if decision.stale:
            remove = {"lines": [{"id": li.id, "behavior": "delete"} for li in decision.stale]}
            await ledger.remove_lines(invoice_id, remove, idempotency_key=self._key(mapped, "remove", remove))
        held_coupon = str(invoice.metadata.get(META_CREDIT_COUPON) or "")
        if decision.coupon is not None and decision.coupon.id != held_coupon:
            await self._coupon(mapped, decision.coupon)
        update = mapped.invoice_update_params(
            [dict(f) for f in invoice.custom_fields],
            dict(invoice.metadata),
            coupon=decision.coupon.id if decision.coupon else None,
        )
        # The stale lines are gone. Turning automatic tax on comes after the adds, turning it off before them: either
        # way every line is added in the form the invoice has when it arrives (a taxed draft refuses a negative line
        # or one without a tax behaviour: SDK `InvoiceCreateParamsAutomaticTax.enabled`, see domain.tax_forms).
        turning_off = invoice.tax.enabled and mapped.tax.automatic is False
        updated: HeldInvoice | None = None
        if turning_off:
            updated = await ledger.update_invoice(
                invoice_id, update, idempotency_key=self._key(mapped, "update", update)
            )
        added = None
        if decision.missing:
            added = await self._add(mapped, customer, invoice_id, list(decision.missing), read_after=turning_off)
        if turning_off:
            updated = added or updated
        else:
            updated = await ledger.update_invoice(
                invoice_id, update, idempotency_key=self._key(mapped, "update", update)
            )
        assert updated is not None
        index.add(updated, mapped.bill_id)
        return WriteResult(invoice_id, True, self._verified(mapped, updated))

    async def _coupon(self, mapped: MappedBill, coupon: Coupon) -> None:
        await self._writes().create_coupon(coupon.params, idempotency_key=self._key(mapped, "coupon", coupon.params))

    async def _add(
        self, mapped: MappedBill, customer: str, invoice_id: str, wanted: list[WantedLine], *, read_after: bool = True
    ) -> HeldInvoice | None:
        """Add the lines in the Bill's order: runs of add_lines lines in bulk, invoice items one by one. The invoice as
        it is afterwards (None when nothing was added; read again after items only when `read_after`)."""
        ledger = self._writes()
        final: HeldInvoice | None = None
        run: list[WantedLine] = []

        async def flush() -> HeldInvoice | None:
            last: HeldInvoice | None = None
            for start in range(0, len(run), ADD_LINES_CHUNK):
                chunk = {"lines": [w.add_params() for w in run[start : start + ADD_LINES_CHUNK]]}
                last = await ledger.add_lines(invoice_id, chunk, idempotency_key=self._key(mapped, "lines", chunk))
            run.clear()
            return last

        item_last = False
        for entry in wanted:
            if entry.form is LineForm.LINE:
                run.append(entry)
                continue
            final = await flush() or final
            params = entry.item_params(mapped, customer, invoice_id)
            key = self._key(mapped, f"item-{entry.line.index}-{entry.line.line_id}", params)
            await ledger.create_item(params, idempotency_key=key)
            item_last = True
        if run:
            final, item_last = await flush(), False
        if item_last and read_after:
            final = await self._reads.invoice(invoice_id)  # an item's answer is the item: the invoice is read
        return final

    def _verified(self, mapped: MappedBill, invoice: HeldInvoice) -> HeldInvoice:
        """The invoice, once its amount before tax (total less the tax added on top) is the Bill's total."""
        if invoice.total is None:
            return invoice
        before_tax = invoice.total - invoice.tax.exclusive
        if before_tax != mapped.total:
            raise AmountMismatch(
                f"Stripe invoice {invoice.id} holds {before_tax} minor units of {mapped.currency.upper()} before tax "
                f"after the writes for Bill {mapped.bill_id} (version {mapped.version}), whose total is {mapped.total}; "
                "it is left as a draft: compare it with the Bill (a line or discount added by hand?), fix it in "
                "Stripe, then replay the Bill",
                invoice.id,
            )
        return invoice

    def _writes(self) -> Ledger:
        if self._ledger is None:
            raise RuntimeError("this StripeWriter was given a read-only Stripe port: it decides, it cannot write")
        return self._ledger

    async def _invoice_lines(self, mapped: MappedBill, invoice: HeldInvoice) -> list[HeldLine]:
        """The invoice's lines of this Bill: those Stripe embedded in the invoice when it embedded them all (no
        request), else listed."""
        if invoice.lines is not None:
            return [line for line in invoice.lines if identifies(line.metadata, mapped.organization_id, mapped.bill_id)]
        held: list[HeldLine] = []
        async for line in self._reads.invoice_lines(invoice.id):
            if identifies(line.metadata, mapped.organization_id, mapped.bill_id):
                held.append(line)
        return held

    # Invoice-items mode
    async def _decide_items(self, mapped: MappedBill, index: CustomerIndex) -> Decision:
        items: list[HeldLine] = index.held(mapped)
        stale, _, _ = diff(by_signature(item_lines(mapped), mapped.version), items)
        invoiced: dict[str, str] = {}
        for ii in stale:
            if ii.invoice and ii.invoice not in invoiced:
                invoiced[ii.invoice] = (await self._reads.invoice(ii.invoice)).status
                if invoiced[ii.invoice] != "draft":
                    break  # the first finalized one blocks the Bill
        return decide_items(mapped, items, invoiced)

    async def _execute_items(
        self, mapped: MappedBill, customer: str, index: CustomerIndex, decision: Decision
    ) -> WriteResult:
        """Carry out an AddItems decision; `_write` settles the others."""
        ledger = self._writes()
        created: list[str] = []
        for ii in decision.stale:
            await self._delete_item(ii.id)
            index.remove(mapped.bill_id, ii.id)
        for wanted in decision.missing:
            line = wanted.line
            params = wanted.item_params(mapped, customer, None)
            key = self._key(mapped, f"item-{line.index}-{line.line_id}", params)
            item = await self.customer_writes.write(
                customer, functools.partial(ledger.create_item, params, idempotency_key=key)
            )
            index.add(item, mapped.bill_id)
            created.append(item.id)
        return WriteResult(created[0] if created else decision.stripe_id or "", True)

    async def _delete_draft(self, invoice_id: str, index: CustomerIndex, bill_id: str) -> None:
        try:
            await self._writes().delete_invoice(invoice_id)
        except LedgerError as err:
            if err.failure is not Failure.NOT_FOUND:  # deleted by an earlier attempt whose reply was lost
                raise
        index.remove(bill_id, invoice_id)

    async def _delete_item(self, item_id: str) -> None:
        try:
            await self._writes().delete_item(item_id)
        except LedgerError as err:
            if err.failure is not Failure.NOT_FOUND:  # deleted by an earlier attempt whose reply was lost
                raise
