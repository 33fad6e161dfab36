"""What a Bill needs in Stripe, decided from what Stripe holds and what it must hold, before anything is written.

Pure functions: the writer (domain.stripe_writer) reads what Stripe holds and executes a Decision; a plan
(domain.plan) only records it. What Stripe holds for a Bill is recognised by the Bill's durable identity
(`identifies`); each wanted line matches at most one held object by its signature, so a line is held exactly once.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

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
from m3stripe.domain.tax_forms import Coupon, LineForm, WantedLine, credits_coupon, taxed_invoice, wanted_lines


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


# (m3ter line id, position, amount, description, Bill version, tax behaviour sent, discountable)
Signature = tuple[str, str, int, str, str, str, bool]


def by_signature(entries: list[WantedLine], version: int) -> dict[Signature, WantedLine]:
    # The position makes every line of a version unique: m3ter line ids and contents can repeat.
    return {
        (
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
    return (
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

    @property
    def missing_lines(self) -> tuple[MappedLine, ...]:
        return tuple(w.line for w in self.missing)


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
    taxed = taxed_invoice(mapped, invoice.tax.enabled)
    coupon = credits_coupon(mapped, taxed)
    stale, missing, _ = diff(by_signature(wanted_lines(mapped, taxed), mapped.version), lines)
    held_coupon = str(invoice.metadata.get(META_CREDIT_COUPON) or "")
    coupon_ok = held_coupon == (coupon.id if coupon else "")
    tax_ok = mapped.tax.automatic is None or invoice.tax.enabled == mapped.tax.automatic
    if version == str(mapped.version) and not stale and not missing and coupon_ok and tax_ok:
        held = "draft" if invoice.status == "draft" else f"invoice ({invoice.status})"
        return Decision(BillAction.NOTHING, f"{held} {invoice.id} already holds this version", invoice.id)
    if invoice.status != "draft":
        return Decision(BillAction.BLOCKED, finalized_message(mapped, invoice.id, invoice.status), invoice.id)
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
