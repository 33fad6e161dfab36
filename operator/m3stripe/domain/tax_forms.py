"""The form each line of a Bill takes in Stripe when the invoice is taxed, so that Stripe Tax accepts and taxes it.

With automatic tax off, every line is added with `add_lines` as ever. With it on (https://docs.stripe.com/tax/invoicing):
- a priced line (`priceDataProductId`) stays an `add_lines` line, its `price_data.tax_behavior` set from the spec;
- an amount line has no place for a tax behaviour in `add_lines`, so it becomes an invoice item attached to the
  draft (`POST /v1/invoiceitems` with `invoice=`), with `tax_behavior` and `tax_code` at the top (SDK
  _invoice_item_create_params.py), as OpenMeter does "to handle taxBehavior and taxCode properly"
  (openmeterio/openmeter#2148);
- a credit (a negative line) cannot be a price (prices are never negative), and "incompatible invoice items
  (invoice items with manually specified tax rates, negative amounts, or tax_behavior=unspecified) cannot be added
  to automatic tax invoices" (SDK `InvoiceCreateParamsAutomaticTax.enabled`). Integrators report negative items
  accepted, Stripe's reference says otherwise: the form Stripe documents is an invoice discount. The Bill's credits
  become one `amount_off` coupon, `duration=once` (coupons/create), redeemed on the invoice (`discounts`), and the
  charges are sent `discountable=true` so that it reaches them. Stripe takes invoice discounts off before tax
  (`total_excluding_tax`: "including all discounts but excluding all tax", SDK _invoice.py), so the amount before
  tax is still the Bill's total, to the minor unit.
"""

from __future__ import annotations

import enum
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from m3stripe.domain.mapping import (
    META_ACCOUNT,
    META_BILL,
    META_ORGANIZATION,
    META_VERSION,
    MappedBill,
    MappedLine,
    lines_total,
)
from m3stripe.domain.money import format_money, from_minor_units

# coupons/create: `name` "Name of the coupon displayed to customers on, for instance invoices or receipts. By
# default the id is shown if name is not set" (SDK _coupon_create_params.py); Stripe limits it to 40 characters.
MAX_COUPON_NAME = 40


class LineForm(enum.Enum):
    LINE = "line"  # an add_lines line: an amount, or price_data
    ITEM = "item"  # an invoice item attached to the draft, with tax_behavior and tax_code at the top
    CREDIT = "credit"  # part of the Bill's credits coupon


class CreditsExceedCharges(Exception):
    """A taxed invoice cannot carry these credits: a discount cannot take more than the charges it applies to."""


def form_of(line: MappedLine, taxed: bool) -> LineForm:
    if not taxed or line.price_data is not None:
        return LineForm.LINE
    return LineForm.CREDIT if line.amount < 0 else LineForm.ITEM


@dataclass(frozen=True)
class WantedLine:
    """A line as Stripe must hold it on a draft: its form, and what it is sent with."""

    line: MappedLine
    form: LineForm
    behavior: str | None  # the tax_behavior it carries (and records in its metadata)
    discountable: bool

    def add_params(self) -> dict[str, Any]:
        return self.line.line_params(tax_behavior=self.behavior, discountable=self.discountable)

    def item_params(self, mapped: MappedBill, customer: str, invoice: str | None) -> dict[str, Any]:
        """An invoice item's parameters: attached to the draft `invoice`, or pending (None, items mode)."""
        return self.line.invoice_item_params(
            customer,
            mapped.currency,
            tax_behavior=self.behavior,
            tax_code=mapped.tax.code,
            invoice=invoice,
            discountable=self.discountable,
        )


@dataclass(frozen=True)
class Coupon:
    """The coupon that carries a Bill version's credits on a taxed invoice; its id derives from what it holds."""

    id: str
    params: dict[str, Any]


def wanted_lines(mapped: MappedBill, taxed: bool) -> list[WantedLine]:
    """The lines a draft must hold (credits excepted when taxed: they are the coupon's)."""
    has_credits = taxed and any(form_of(line, taxed) is LineForm.CREDIT for line in mapped.lines)
    wanted: list[WantedLine] = []
    for line in mapped.lines:
        form = form_of(line, taxed)
        if form is LineForm.CREDIT:
            continue
        # An amount line added with add_lines has nowhere to carry a tax behaviour.
        behavior = mapped.tax.behavior if form is LineForm.ITEM or line.price_data is not None else None
        wanted.append(WantedLine(line, form, behavior, discountable=has_credits))
    return wanted


def credits_coupon(mapped: MappedBill, taxed: bool) -> Coupon | None:
    """The coupon for the Bill's credits on a taxed invoice, or None (no credits, or not taxed).

    Raises CreditsExceedCharges when the credits take more than the charges: a discount applies to the discountable
    lines and never beyond them, so the invoice could not equal the Bill."""
    credits = [line for line in mapped.lines if form_of(line, taxed) is LineForm.CREDIT]
    if not credits:
        return None
    off = -lines_total(credits)
    charges = mapped.total + off
    if off > charges:
        money = format_money(from_minor_units(off, mapped.currency), mapped.currency)
        against = format_money(from_minor_units(charges, mapped.currency), mapped.currency)
        raise CreditsExceedCharges(
            f"Bill {mapped.bill_id} (version {mapped.version}) has credits of {money} against charges of {against}: with "
            "automatic tax the credits are a discount on the invoice, which cannot take more than its charges. Not "
            "sent: issue the credit in Stripe by hand (a credit note or the customer's balance), or set "
            "spec.automaticTax: Disabled for this integration"
        )
    digest = hashlib.sha256(
        json.dumps(
            [mapped.organization_id, mapped.bill_id, mapped.version, [(c.index, c.line_id, c.amount) for c in credits]]
        ).encode()
    ).hexdigest()[:32]
    names = sorted({c.description for c in credits})
    name = names[0] if len(names) == 1 else f"Credits ({len(credits)})"
    metadata = {
        META_ORGANIZATION: mapped.organization_id,
        META_BILL: mapped.bill_id,
        META_VERSION: str(mapped.version),
        META_ACCOUNT: mapped.account_id,
        "m3ter_credit_lines": ",".join(f"{c.index}:{c.line_id}" for c in credits)[:500],
    }
    coupon_id = f"m3stripe-credit-{digest}"
    params = {
        "id": coupon_id,
        "amount_off": off,
        "currency": mapped.currency,
        # Applied to the one invoice it is redeemed on (coupons/create `duration`: "once").
        "duration": "once",
        "name": name if len(name) <= MAX_COUPON_NAME else name[: MAX_COUPON_NAME - 1] + "…",
        "metadata": metadata,
    }
    return Coupon(coupon_id, params)


def taxed_invoice(mapped: MappedBill, enabled_on_invoice: bool | None) -> bool:
    """Whether the Bill's invoice is taxed: as the spec asks, or (the account's default) as Stripe made it."""
    if mapped.tax.automatic is not None:
        return mapped.tax.automatic
    return bool(enabled_on_invoice)
