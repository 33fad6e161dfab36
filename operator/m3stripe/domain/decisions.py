"""What a Bill needs in Stripe, decided from what Stripe holds and what it must hold, before anything is written.

Pure functions: the writer (domain.stripe_writer) reads what Stripe holds and executes a Decision; a plan
(domain.plan) only records it. What Stripe holds for a Bill is recognised by the Bill's durable identity
(`identifies`); each wanted line matches at most one held object by its signature, so a line is held exactly once.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

from m3stripe.domain.mapping import (
    META_BILL,
    META_CREDIT_COUPON,
    META_INTEGRATION,
    META_LINE,
    META_LINE_INDEX,
    META_ORGANIZATION,
    META_TAX_BEHAVIOR,
    META_VERSION,
    MappedBill,
    MappedLine,
)
from m3stripe.domain.ports import HeldInvoice, HeldLine
from m3stripe.domain.tax_forms import (
    Coupon,
    CreditsExceedCharges,
    LineForm,
    WantedLine,
    credits_coupon,
    taxed_invoice,
    wanted_lines,
)


def identifies(metadata: Mapping[str, str], organization_id: str, bill_id: str) -> bool:
    """Whether a Stripe object's metadata says it was written for this Bill of this m3ter Organization.

    The identity is what does not change when the Kubernetes object does (a new uid on re-creation, another name or
    namespace): the Organization and the Bill id; the Stripe account and mode are where the object was found. Objects
    written before the Organization was recorded carry the writing integration's uid instead; they are still this
    Bill's, since a Bill id is m3ter's UUID of the Bill ("The UUID of the entity", m3ter SDK types/bill_response.py),
    not reused by another Organization, and only this operator writes `m3stripe_integration`.
    """
    if metadata.get(META_BILL) != bill_id:
        return False
    organization = metadata.get(META_ORGANIZATION)
    if organization:
        return organization == organization_id
    return bool(metadata.get(META_INTEGRATION))


class Signature(NamedTuple):
    """What tells a line held in Stripe from another: its content, and the form it was sent in."""

    line_id: str
    position: str  # the position makes every line of a version unique: m3ter line ids and contents can repeat
    amount: int
    description: str
    version: str
    behavior: str  # the tax behaviour sent ("" when none)
    discountable: bool

    @property
    def content(self) -> tuple[str, str, int, str, str]:
        """The Bill's line, whatever form it was sent in."""
        return (self.line_id, self.position, self.amount, self.description, self.version)


def by_signature(entries: list[WantedLine], version: int) -> dict[Signature, WantedLine]:
    return {
        Signature(
            w.line.line_id,
            str(w.line.index),
            w.line.amount,
            w.line.description,
            str(version),
            w.behavior or "",
            w.discountable,
        ): w
        for w in entries
    }


def held_signature(obj: HeldLine) -> Signature:
    meta = obj.metadata
    return Signature(
        str(meta.get(META_LINE, "")),
        str(meta.get(META_LINE_INDEX, "")),
        obj.amount,
        obj.description,
        str(meta.get(META_VERSION, "")),
        str(meta.get(META_TAX_BEHAVIOR, "")),
        obj.discountable,
    )


def diff(
    wanted: dict[Signature, WantedLine], held: list[HeldLine]
) -> tuple[list[HeldLine], list[WantedLine], list[HeldLine]]:
    """(stale objects, missing lines, matched objects): each wanted line matches at most one object.

    A second object with the signature of a wanted line (a duplicate left by an earlier bug or by
    hand) is stale, so Stripe ends holding each line exactly once. A line held in another form than the one
    wanted (another tax behaviour, no longer discountable, a credit that is now the coupon's) is stale too.
    """
    stale: list[HeldLine] = []
    matched: dict[Signature, HeldLine] = {}
    for obj in held:
        sig = held_signature(obj)
        if sig in wanted and sig not in matched:
            matched[sig] = obj
        else:
            stale.append(obj)
    missing = [line for sig, line in wanted.items() if sig not in matched]
    return stale, missing, list(matched.values())


def item_lines(mapped: MappedBill) -> list[WantedLine]:
    """Items mode: every line a pending invoice item, carrying the spec's tax behaviour."""
    return [WantedLine(line, LineForm.ITEM, mapped.tax.behavior, False) for line in mapped.lines]


class BillAction(enum.StrEnum):
    """What a Bill needs in Stripe, decided from what Stripe holds before anything is written."""

    CREATE_INVOICE = "CreateInvoice"
    UPDATE_DRAFT = "UpdateDraft"
    ADD_ITEMS = "AddItems"
    NOTHING = "Nothing"
    BLOCKED = "Blocked"  # the invoice can no longer be changed (AlreadyFinalized when executed)

    @property
    def writes(self) -> bool:
        return self in (BillAction.CREATE_INVOICE, BillAction.UPDATE_DRAFT, BillAction.ADD_ITEMS)


@dataclass(frozen=True)
class Decision:
    """The writer's decision for one Bill; `StripeWriter._execute_*` carries it out, a plan only records it."""

    action: BillAction
    reason: str
    stripe_id: str | None = None
    stale: tuple[HeldLine, ...] = ()  # Stripe objects to delete (lines or items of another version, duplicates)
    missing: tuple[WantedLine, ...] = ()  # lines to add, each in its form
    invoice: HeldInvoice | None = None  # the draft to update
    coupon: Coupon | None = None  # the coupon that carries the Bill's credits on a taxed invoice
    duplicates: tuple[HeldInvoice, ...] = ()  # other drafts of the Bill, deleted whatever the action

    def with_duplicates(self, duplicates: tuple[HeldInvoice, ...]) -> Decision:
        if not duplicates:
            return self
        ids = ", ".join(d.id for d in duplicates)
        return dataclasses.replace(
            self, reason=f"{self.reason}; delete duplicate draft(s) {ids}", duplicates=duplicates
        )

    @property
    def missing_lines(self) -> tuple[MappedLine, ...]:
        return tuple(w.line for w in self.missing)


@dataclass(frozen=True)
class HeldInvoices:
    """The Bill's invoices in Stripe, sorted out: the one it keeps, the drafts to delete, the copies to void."""

    invoice: HeldInvoice | None
    duplicates: tuple[HeldInvoice, ...] = ()
    copies: tuple[HeldInvoice, ...] = ()


def sort_out(held: list[HeldInvoice]) -> HeldInvoices:
    """One invoice per Bill, when Stripe holds several (two integrations wrote the Bill at once before either
    listing showed the other's invoice, or a copy by hand): the oldest finalized one, else the oldest draft.
    The other drafts are duplicates, deleted; another finalized invoice (void ones aside) is a copy only a person
    can void. Keeping the oldest makes every integration and every pass pick the same one."""
    ordered = sorted(held, key=lambda h: (h.created, h.id))
    live = [h for h in ordered if h.status not in ("draft", "void")]
    drafts = [h for h in ordered if h.status == "draft"]
    voided = [h for h in ordered if h.status == "void"]
    keep = live[0] if live else drafts[0] if drafts else voided[-1] if voided else None
    return HeldInvoices(keep, tuple(d for d in drafts if d is not keep), tuple(live[1:]))


def copies_message(mapped: MappedBill, held: HeldInvoices) -> str:
    ids = ", ".join(h.id for h in (held.invoice, *held.copies) if h is not None)
    return (
        f"Bill {mapped.bill_id} is on more than one finalized Stripe invoice ({ids}): it was invoiced more than once. "
        "Void the copies in Stripe, keeping one, then mark this event resolved"
    )


def finalized_message(mapped: MappedBill, invoice_id: str, status: str, *, items: bool = False) -> str:
    if items:
        return (
            f"Bill {mapped.bill_id} changed (version {mapped.version}) but its items are on Stripe invoice "
            f"{invoice_id}, which is already {status}; nothing was changed in Stripe. Adjust the "
            "invoice in Stripe by hand, then mark this event resolved"
        )
    return (
        f"Bill {mapped.bill_id} changed (version {mapped.version}) but its Stripe invoice {invoice_id} is already "
        f"{status}; nothing was changed in Stripe. Issue a credit note or a new invoice in Stripe "
        "by hand, then mark this event resolved"
    )


def decide_invoice(mapped: MappedBill, invoice: HeldInvoice | None, lines: list[HeldLine]) -> Decision:
    """Invoice mode: `invoice` is the Bill's newest invoice (None: none), `lines` its lines of this Bill.

    Raises CreditsExceedCharges when the invoice is taxed and the Bill's credits exceed its charges."""
    if invoice is None:
        taxed = taxed_invoice(mapped, None)
        coupon = credits_coupon(mapped, taxed)
        reason = f"new draft invoice with {len(mapped.lines)} line(s)"
        return Decision(BillAction.CREATE_INVOICE, reason, missing=tuple(wanted_lines(mapped, taxed)), coupon=coupon)
    version = str(invoice.metadata.get(META_VERSION, ""))
    if invoice.status != "draft":
        # A finalized invoice is judged by what it holds, in the tax form it was finalized in: the spec's tax settings
        # decide how a draft is written, so turning tax on (or another behaviour) leaves an invoice holding this
        # version as it is, with no error; only another version or other lines are a change it cannot take.
        if version == str(mapped.version) and _holds_content(mapped, invoice, lines):
            return Decision(
                BillAction.NOTHING, f"invoice ({invoice.status}) {invoice.id} already holds this version", invoice.id
            )
        return Decision(BillAction.BLOCKED, finalized_message(mapped, invoice.id, invoice.status), invoice.id)
    taxed = taxed_invoice(mapped, invoice.tax.enabled)
    coupon = credits_coupon(mapped, taxed)
    stale, missing, _ = diff(by_signature(wanted_lines(mapped, taxed), mapped.version), lines)
    held_coupon = str(invoice.metadata.get(META_CREDIT_COUPON) or "")
    coupon_ok = held_coupon == (coupon.id if coupon else "")
    tax_ok = mapped.tax.automatic is None or invoice.tax.enabled == mapped.tax.automatic
    if version == str(mapped.version) and not stale and not missing and coupon_ok and tax_ok:
        return Decision(BillAction.NOTHING, f"draft {invoice.id} already holds this version", invoice.id)
    changes = [f"version {version or '?'} -> {mapped.version}"] if version != str(mapped.version) else []
    if stale:
        changes.append(f"remove {len(stale)} line(s)")
    if missing:
        changes.append(f"add {len(missing)} line(s)")
    if not coupon_ok:
        changes.append("set the credits' discount" if coupon else "remove the credits' discount")
    if not tax_ok:
        changes.append(f"automatic tax {'on' if mapped.tax.automatic else 'off'}")
    reason = f"draft {invoice.id}: {', '.join(changes)}"
    return Decision(BillAction.UPDATE_DRAFT, reason, invoice.id, tuple(stale), tuple(missing), invoice, coupon)


def _holds_content(mapped: MappedBill, invoice: HeldInvoice, lines: list[HeldLine]) -> bool:
    """Whether the invoice holds each of the Bill's lines once and its credits, in the invoice's own tax form."""
    taxed = bool(invoice.tax.enabled)
    try:
        coupon = credits_coupon(mapped, taxed)
    except CreditsExceedCharges:
        return False  # no taxed invoice can hold these credits
    if str(invoice.metadata.get(META_CREDIT_COUPON) or "") != (coupon.id if coupon else ""):
        return False
    wanted = sorted(sig.content for sig in by_signature(wanted_lines(mapped, taxed), mapped.version))
    return wanted == sorted(held_signature(line).content for line in lines)


def decide_items(mapped: MappedBill, items: list[HeldLine], invoiced: dict[str, str]) -> Decision:
    """Items mode: `items` are the customer's invoice items of this Bill; `invoiced` maps the invoice of
    each stale item that is on one to that invoice's status."""
    stale, missing, matched = diff(by_signature(item_lines(mapped), mapped.version), items)
    held = matched[0].id if matched else None
    if not stale and not missing:
        return Decision(BillAction.NOTHING, f"{len(matched)} pending item(s) already hold this version", held)
    for item in stale:
        if item.invoice and invoiced.get(item.invoice, "draft") != "draft":
            message = finalized_message(mapped, item.invoice, invoiced[item.invoice], items=True)
            return Decision(BillAction.BLOCKED, message, item.invoice)
    reason = f"add {len(missing)} pending item(s)"
    if stale:
        reason += f", delete {len(stale)} of another version"
    return Decision(BillAction.ADD_ITEMS, reason, held, tuple(stale), tuple(missing))
