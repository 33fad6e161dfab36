"""Map an m3ter Bill to what Stripe should hold for it: lines in minor units, invoice fields, metadata.

Pure functions: no I/O. Every Stripe object carries metadata linking it back to the m3ter Organization,
the Bill, the Bill's version and (for lines) the m3ter line and its position, which is how what Stripe
already holds is found again, by any integration and after any re-creation (see `stripe_writer.identifies`).
The integration that wrote it is recorded too, for people, never for finding it.

Amounts. m3ter prices usage at fractions of a cent, so line subtotals can be finer than the currency's
minor unit while ``billTotal`` is rounded. The customer owes the Bill's total, so the lines are rounded
*together* (largest remainder, see ``allocate_steps``) to add up to exactly that total, each within one
chargeable step of its exact subtotal. Rounding each line on its own would not do: 40 lines of 0.4 cents
round to 0.00 each while the Bill says 0.16.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import Any

from m3stripe.api.spec import AutomaticTax, CollectionMethod, SortLineItemsBy, StripeIntegrationSpec
from m3stripe.domain.billing import Bill, CurrencyRounding, LineItem
from m3stripe.domain.money import (
    MoneyError,
    format_money,
    from_minor_units,
    max_charge_minor_units,
    minor_unit_step,
    normalize_currency,
    round_steps,
    step_places,
    to_steps_exact,
)

# Which StripeIntegration (its Kubernetes uid) wrote the object: for a person reading Stripe, never for finding it.
META_INTEGRATION = "m3stripe_integration"
# The m3ter Organization the Bill belongs to: with the Bill id, a Bill's identity that survives the re-creation
# of the Kubernetes object (a new uid), a rename or a move to another namespace.
META_ORGANIZATION = "m3ter_organization_id"
META_BILL = "m3ter_bill_id"
META_VERSION = "m3ter_bill_version"
META_ACCOUNT = "m3ter_account_id"
META_LINE = "m3ter_line_id"
# The line's position among the lines sent for this Bill version: two lines with the same id and
# content stay two lines (an id alone can repeat).
META_LINE_INDEX = "m3ter_line_index"
# m3ter's quantity, when Stripe is sent another one (quantity 1 at the line amount, see _price_data).
META_QUANTITY = "m3ter_quantity"
# Name of the invoice custom field that holds the PO number we wrote, so a later version can remove it.
META_PO_FIELD = "m3ter_po_custom_field"
# The tax_behavior a line or item was sent with (absent: none), so a changed spec or form is seen on a draft.
META_TAX_BEHAVIOR = "m3ter_tax_behavior"
# The coupon that carries the Bill version's credits on a taxed invoice (domain.tax_forms), on the invoice.
META_CREDIT_COUPON = "m3ter_credit_coupon"
MAX_DESCRIPTION = 500  # Stripe's limit for line descriptions
MAX_CUSTOM_FIELD_VALUE = 140
MAX_CUSTOM_FIELDS = 4  # invoices/update: "A list of up to 4 custom fields"
MAX_METADATA_VALUE = 500
DEFAULT_DAYS_UNTIL_DUE = 30


class MappingError(Exception):
    """The Bill cannot be represented in Stripe as it is; `message` says why and what to do."""


@dataclass(frozen=True)
class TaxPlan:
    """What the spec asks of Stripe Tax for a Bill's invoice and lines (spec.automaticTax, taxBehavior, taxCode)."""

    automatic: bool | None = None  # automatic_tax[enabled] to send; None: leave it out (the account's default)
    behavior: str | None = None  # tax_behavior to send on lines and items ("exclusive", "inclusive"); None: none
    code: str | None = None  # tax_code for items without a product

    @classmethod
    def of(cls, spec: StripeIntegrationSpec) -> TaxPlan:
        automatic = {AutomaticTax.ENABLED: True, AutomaticTax.DISABLED: False}.get(spec.automaticTax)
        return cls(automatic, spec.tax_behavior, spec.taxCode)


@dataclass(frozen=True)
class MappedLine:
    """One invoice line (or item) as Stripe must hold it, in minor units, with the metadata that finds it again."""

    line_id: str
    index: int  # position among this Bill version's lines sent to Stripe
    description: str
    amount: int  # minor units; negative for credits
    period: tuple[int, int] | None
    metadata: dict[str, str]
    price_data: dict[str, str] | None = None
    quantity: int | None = None
    subtotal: Decimal = Decimal(0)  # m3ter's exact subtotal, before rounding

    def line_params(self, *, tax_behavior: str | None = None, discountable: bool = False) -> dict[str, Any]:
        """Parameters of one line for `add_lines` (invoice mode). `tax_behavior` goes into price_data (add_lines has
        no other place for it: SDK _invoice_add_lines_params.py); `discountable` only where the Bill's own credits
        are a discount on the invoice (domain.tax_forms)."""
        behavior = tax_behavior if self.price_data is not None else None
        params: dict[str, Any] = {
            "description": self.description,
            "metadata": self.sent_metadata(behavior),
            # m3ter has priced the Bill: no Stripe coupon may take anything off it. Lines default to
            # discountable for positive amounts (invoices/add_lines, invoiceitems/create: "Defaults to
            # false for prorations or negative line items, and true for all other line items").
            # The line's own `discounts` is left out: it only lists "The coupons, promotion codes &
            # existing discounts which apply to the line item" (add_lines; invoiceitems/create alike)
            # with no inheritance from the customer documented, and "" only removes earlier ones.
            "discountable": discountable,
        }
        if self.price_data is not None:
            params["price_data"] = {**self.price_data, "tax_behavior": behavior} if behavior else self.price_data
            params["quantity"] = self.quantity
        else:
            params["amount"] = self.amount
        if self.period is not None:
            params["period"] = {"start": self.period[0], "end": self.period[1]}
        return params

    def invoice_item_params(
        self,
        customer: str,
        currency: str,
        *,
        tax_behavior: str | None = None,
        tax_code: str | None = None,
        invoice: str | None = None,
        discountable: bool = False,
    ) -> dict[str, Any]:
        """Parameters of an invoice item: pending (invoice-items mode), or attached to the draft `invoice`.

        invoiceitems/create takes `tax_behavior` and `tax_code` at the top for an `amount` item, and the behaviour
        inside `price_data` for a priced one (SDK _invoice_item_create_params.py); both together are not sent,
        as Stripe does not say which wins."""
        params = self.line_params(discountable=discountable)
        params["customer"] = customer
        if invoice is not None:
            params["invoice"] = invoice
        if self.price_data is None:
            params["currency"] = currency
            if tax_behavior:
                params["tax_behavior"] = tax_behavior
            if tax_code:
                params["tax_code"] = tax_code
        elif tax_behavior:
            params["price_data"] = {**self.price_data, "tax_behavior": tax_behavior}
        params["metadata"] = self.sent_metadata(tax_behavior)
        return params

    def sent_metadata(self, tax_behavior: str | None) -> dict[str, str]:
        """The metadata as sent: with the tax behaviour the line carries in Stripe, if any."""
        return {**self.metadata, META_TAX_BEHAVIOR: tax_behavior} if tax_behavior else self.metadata


def lines_total(lines: Iterable[MappedLine]) -> int:
    """Minor units of `lines` together."""
    return sum(line.amount for line in lines)


@dataclass(frozen=True)
class MappedBill:
    """What Stripe must hold for one Bill version: its lines and invoice fields. Built from the Bill alone."""

    bill_id: str
    version: int
    account_id: str
    currency: str  # lower case, as Stripe writes it
    organization_id: str
    lines: tuple[MappedLine, ...]
    metadata: dict[str, str]
    invoice_fields: dict[str, Any] = field(default_factory=dict)
    po_field: dict[str, str] | None = None  # the PO custom field, when this version has one
    tax: TaxPlan = field(default_factory=lambda: TaxPlan())

    @property
    def total(self) -> int:
        """Minor units of the lines sent: the Bill's total, before any tax Stripe adds."""
        return lines_total(self.lines)

    def invoice_create_params(self, customer: str, *, coupon: str | None = None) -> dict[str, Any]:
        """invoices/create; `coupon`: the coupon carrying the Bill's credits on a taxed invoice (domain.tax_forms)."""
        params: dict[str, Any] = {
            "customer": customer,
            "currency": self.currency,
            "auto_advance": False,
            # Only this Bill's lines: never sweep up other pending items of the customer.
            "pending_invoice_items_behavior": "exclude",
            # invoices/create: discounts "If not specified, inherits the discount from the invoice's
            # customer. Pass an empty string to avoid inheriting any discounts." m3ter priced the Bill.
            "discounts": [{"coupon": coupon}] if coupon else "",
            "metadata": {**self.metadata, META_PO_FIELD: self.po_field["name"]} if self.po_field else self.metadata,
            **self.invoice_fields,
        }
        if coupon:
            params["metadata"] = {**params["metadata"], META_CREDIT_COUPON: coupon}
        if self.tax.automatic is not None:
            # "If your integration passes automatic_tax[enabled] at all, that value always takes precedence" over the
            # account's default (https://docs.stripe.com/tax/invoicing/automatic-tax-default); left out, it decides.
            params["automatic_tax"] = {"enabled": self.tax.automatic}
        if self.po_field is not None:
            params["custom_fields"] = [self.po_field]
        return params

    def invoice_update_params(
        self,
        current_custom_fields: Sequence[Mapping[str, Any]] | None,
        current_metadata: Mapping[str, Any],
        *,
        coupon: str | None = None,
    ) -> dict[str, Any]:
        """Parameters that make an existing draft hold this version, clearing what it no longer has.

        Stripe keeps every field an update does not name (invoices/update), so everything this Bill
        decides is sent explicitly: the description, the collection method with its due date or
        days until due, the custom fields (replaced as a whole; "Pass an empty string to remove
        previously-defined fields") and no discounts ("Pass an empty string to remove
        previously-defined discounts").
        """
        ours = {str(current_metadata.get(META_PO_FIELD) or ""), self.po_field["name"] if self.po_field else ""}
        kept = [
            {"name": str(f.get("name")), "value": str(f.get("value"))}
            for f in current_custom_fields or ()
            if str(f.get("name")) not in ours
        ]
        wanted = [*kept[: MAX_CUSTOM_FIELDS - 1], self.po_field] if self.po_field else kept[:MAX_CUSTOM_FIELDS]
        held_coupon = str(current_metadata.get(META_CREDIT_COUPON) or "")
        # "" unsets a metadata key (invoices/update, metadata).
        metadata = {**self.metadata, META_PO_FIELD: self.po_field["name"] if self.po_field else ""}
        if coupon or held_coupon:
            metadata[META_CREDIT_COUPON] = coupon or ""
        params: dict[str, Any] = {"auto_advance": False}
        if not (coupon and coupon == held_coupon):
            # The credits' coupon, or none ("Pass an empty string to remove previously-defined discounts"); the
            # coupon the draft already holds stays as it is (naming it again would redeem it again).
            params["discounts"] = [{"coupon": coupon}] if coupon else ""
        params.update(metadata=metadata, custom_fields=wanted or "", **self.invoice_fields)
        if self.tax.automatic is not None:
            params["automatic_tax"] = {"enabled": self.tax.automatic}
        return params


def bill_metadata(bill: Bill, integration_id: str, organization_id: str) -> dict[str, str]:
    return {
        META_INTEGRATION: integration_id,
        META_ORGANIZATION: organization_id,
        META_BILL: bill.id,
        META_VERSION: str(bill.version),
        META_ACCOUNT: bill.account_id,
    }


def select_lines(lines: Sequence[LineItem], spec: StripeIntegrationSpec) -> list[LineItem]:
    excluded = {t.value for t in spec.excludedLineItemTypes}
    kept = [line for line in lines if line.line_item_type not in excluded]
    if spec.sortLineItemsBy is SortLineItemsBy.SUBTOTAL:
        kept.sort(key=lambda line: line.subtotal)
    elif spec.sortLineItemsBy is SortLineItemsBy.AGGREGATION_ID:
        # Lines without an aggregation (standing charges, credits) go last; ties keep m3ter's order.
        kept.sort(key=lambda line: (line.aggregation_id is None, line.aggregation_id or ""))
    return kept


def map_bill(
    bill: Bill,
    spec: StripeIntegrationSpec,
    integration_id: str,
    *,
    today: date | None = None,
    rounding: CurrencyRounding | None = None,
) -> MappedBill:
    """What Stripe should hold for this Bill, or MappingError explaining why it cannot.

    ``rounding`` is m3ter's rule for the Bill's currency (``GET /picklists/currency``), when known.
    """
    currency = bill.currency
    try:
        code = normalize_currency(currency)
        for line in bill.line_items:
            if line.currency and line.currency.upper() != code:
                raise MappingError(
                    f"Bill {bill.id} line {line.id} is in {line.currency} but the Bill is in {bill.currency}; "
                    "a Stripe invoice holds one currency"
                )
        lines = select_lines(bill.line_items, spec)
        if len(lines) > spec.maxLinesPerInvoice:
            raise MappingError(
                f"Bill {bill.id} has {len(lines)} lines after excludedLineItemTypes; a Stripe invoice holds at most "
                f"{spec.maxLinesPerInvoice} (spec.maxLinesPerInvoice). Not sent, not split: exclude line item types, "
                "or ask Stripe to raise the limit and set spec.maxLinesPerInvoice"
            )
        amounts = line_amounts(bill, lines, rounding)
        metadata = bill_metadata(bill, integration_id, spec.m3ter.organizationId)
        planned = tuple(
            _plan_line(line, index, amount, bill, metadata, spec)
            for index, (line, amount) in enumerate(zip(lines, amounts, strict=True))
        )
    except MoneyError as err:
        raise MappingError(f"Bill {bill.id}: {err}") from None
    _check_charge_limit(bill, planned)
    fields, po_field = _invoice_fields(bill, spec, today or datetime.now(UTC).date())
    return MappedBill(
        bill_id=bill.id,
        version=bill.version,
        account_id=bill.account_id,
        currency=currency.lower(),
        organization_id=spec.m3ter.organizationId,
        lines=planned,
        metadata=metadata,
        invoice_fields=fields,
        po_field=po_field,
        tax=TaxPlan.of(spec),
    )


# --------------------------------------------------------------------------- amounts


def line_amounts(bill: Bill, kept: Sequence[LineItem], rounding: CurrencyRounding | None = None) -> list[int]:
    """Minor units of the kept lines: they add up to the Bill's total, each within one step of its subtotal.

    The total is ``billTotal`` when every line is kept, else the kept lines' exact sum rounded with
    m3ter's rounding mode (HALF_UP when unknown). m3ter's ``maxDecimalPlaces`` applies where it is
    coarser than Stripe's step (lines and total are then whole m3ter units); where it is finer,
    Stripe's step wins, as Stripe cannot hold the extra digits.
    """
    code = normalize_currency(bill.currency)
    mode = rounding.rounding_mode if rounding is not None else ROUND_HALF_UP
    places = step_places(code)
    coarser = 0  # how many decimal places m3ter's unit is coarser than Stripe's step
    if rounding is not None and 0 <= rounding.max_decimal_places < places:
        coarser = places - rounding.max_decimal_places
    factor = 10**coarser
    step = minor_unit_step(code)
    # The tolerance is half a chargeable *step* per line (the "half a minor unit per line",
    # counted in what Stripe can charge): rounding lines one by one moves a total by at most that.
    # The step is Stripe's minor unit except where Stripe's step rules make it coarser
    # (docs.stripe.com/currencies: three-decimal amounts must end in 0, so KWD lines can only land on
    # 0.010 and the tolerance is 0.005 KWD a line; ISK and UGX amounts are whole units, so 0.5 kr a
    # line), or where m3ter's maxDecimalPlaces is coarser still (whole m3ter units).
    unit = from_minor_units(step * factor, code)
    exact_all = bill.line_items_total
    if bill.bill_total is not None:
        tolerance = unit * max(len(bill.line_items), 1) / 2
        if abs(exact_all - bill.bill_total) > tolerance:
            raise MappingError(
                f"Bill {bill.id} total is {format_money(bill.bill_total, code)} but its "
                f"{len(bill.line_items)} lines add up to {format_money(exact_all, code)} "
                f"(difference {format_money(exact_all - bill.bill_total, code)}; rounding {len(bill.line_items)} "
                f"lines explains at most {format_money(tolerance, code)}). Not sent: recalculate the Bill in m3ter"
            )
    every_line_kept = len(kept) == len(bill.line_items)
    if every_line_kept and bill.bill_total is not None:
        target_exact = bill.bill_total
    else:
        target_exact = sum((line.subtotal for line in kept), Decimal(0))
    # Counted in units (one Stripe step, or m3ter's coarser unit): lines are whole units, as m3ter shows them.
    target = round_steps(to_steps_exact(target_exact, code).scaleb(-coarser), mode)
    units = allocate_steps([to_steps_exact(line.subtotal, code).scaleb(-coarser) for line in kept], target)
    if units is None:
        kept_total = sum((li.subtotal for li in kept), Decimal(0))
        raise MappingError(
            f"Bill {bill.id}: its {len(kept)} lines sent ({format_money(kept_total, code)}) "
            f"cannot be rounded to {format_money(from_minor_units(target * step * factor, code), code)} with each line "
            f"within {format_money(unit, code)} of its subtotal. Not sent: recalculate the Bill in m3ter"
        )
    return [u * step * factor for u in units]


def allocate_steps(exact: Sequence[Decimal], target: int) -> list[int] | None:
    """Integers adding up to ``target``, each within one step of its exact value; None if impossible.

    Largest remainder (Hamilton's method), in whichever direction the total needs. Every value starts
    at its floor. If the floors fall short, the values with the largest fractional parts get one more;
    a whole value (fraction 0) comes last and then goes one step above itself. If the floors overshoot,
    only whole values can go lower (a fractional value's floor is already a step below it), so whole
    values go one step below themselves. Either way each value stays in [ceil(x) - 1, floor(x) + 1] and
    the lines move as little as possible from their exact values. Any total m3ter can arrive at by
    rounding (each line on its own, or their sum) is reachable; a ``target`` outside
    [sum(ceil(x) - 1), sum(floor(x) + 1)] is not, and gives None.

    Ties go to the earlier line: position is what a Bill version fixes, so the same version always gets
    the same amounts (a regeneration diff stays stable), and two equal lines are never left to hash or
    sort-order chance.
    """
    floors = [int(value.to_integral_value(rounding=ROUND_FLOOR)) for value in exact]
    extra = target - sum(floors)
    if extra >= 0:
        if extra > len(exact):
            return None
        # Largest fractional part first (floor - x is minus the fraction); whole values last.
        order = sorted(range(len(exact)), key=lambda i: (floors[i] - exact[i], i))
        for i in order[:extra]:
            floors[i] += 1
        return floors
    whole = [i for i, value in enumerate(exact) if floors[i] == value]
    if -extra > len(whole):
        return None
    for i in whole[:-extra]:
        floors[i] -= 1
    return floors


def _check_charge_limit(bill: Bill, lines: Sequence[MappedLine]) -> None:
    """Refuse a Bill whose total or any line is over Stripe's largest amount (money.max_charge_minor_units).

    Stripe documents the limit for a *charge* (the invoice total, when paid). For invoice line and item
    amounts it is silent (the SDK's ``amount`` docs of add_lines and invoiceitems/create state no
    limit), so each line is held to it too. That is stricter than the charge rule: a line over the
    limit offset by credits to a chargeable total is refused, where Stripe might have taken it. The
    strict side is chosen because a line Stripe refused would fail mid-write, leaving a partial draft.
    """
    code = normalize_currency(bill.currency)
    limit = max_charge_minor_units(code)
    total = lines_total(lines)
    largest = max((abs(line.amount) for line in lines), default=0)
    if abs(total) > limit or largest > limit:
        what = "total" if abs(total) > limit else "largest line"
        amount = total if abs(total) > limit else largest
        raise MappingError(
            f"Bill {bill.id} {what} is {format_money(from_minor_units(amount, code), code)}, above Stripe's largest "
            f"amount in {code}: {format_money(from_minor_units(limit, code), code)} ({limit} minor units; "
            "docs.stripe.com/currencies, minimum and maximum charge amounts). Not sent: split the Bill in m3ter "
            "or bill in another currency"
        )


# --------------------------------------------------------------------------- lines


def _plan_line(
    line: LineItem, index: int, amount: int, bill: Bill, bill_meta: dict[str, str], spec: StripeIntegrationSpec
) -> MappedLine:
    metadata = {**bill_meta, META_LINE: line.id, META_LINE_INDEX: str(index)}
    price_data: dict[str, str] | None = None
    quantity: int | None = None
    if spec.priceDataProductId and amount >= 0:
        # Stripe prices cannot be negative, so credits stay plain amounts.
        quantity = _integral_quantity(line.quantity, amount, minor_unit_step(bill.currency))
        price_data = {
            "currency": bill.currency.lower(),
            "product": spec.priceDataProductId,
            "unit_amount_decimal": str(amount // quantity),
        }
        if Decimal(quantity) != line.quantity:
            metadata[META_QUANTITY] = _plain(line.quantity)[:MAX_METADATA_VALUE]
    return MappedLine(
        line_id=line.id,
        index=index,
        description=_description(line),
        amount=amount,
        period=_period(line),
        metadata=metadata,
        price_data=price_data,
        quantity=quantity,
        subtotal=line.subtotal,
    )


def _integral_quantity(quantity: Decimal, amount: int, step: int) -> int:
    """m3ter's quantity when quantity x unit is exactly the amount with a unit in whole steps, else 1.

    Stripe computes the line as quantity x unit_amount_decimal, so the unit must divide the amount; and
    in ISK, UGX and the three-decimal currencies a unit price must itself be a chargeable amount (the
    step rules of docs.stripe.com/currencies): 2 kr x 4 is sent as 1 x 2 kr, never 4 x 0.50 kr.
    """
    if quantity > 0 and quantity == quantity.to_integral_value():
        count = int(quantity)
        if amount % count == 0 and (amount // count) % step == 0:
            return count
    return 1


def _plain(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return text


def _description(line: LineItem) -> str:
    text = line.description or line.product_name or line.line_item_type
    if line.quantity and line.quantity != 1 and line.line_item_type in ("USAGE", "OVERAGE_USAGE"):
        text = f"{text} ({line.quantity.normalize():f} units)"
    return text if len(text) <= MAX_DESCRIPTION else text[: MAX_DESCRIPTION - 1] + "…"


def _period(line: LineItem) -> tuple[int, int] | None:
    if line.service_period_start is None or line.service_period_end is None:
        return None
    start = int(line.service_period_start.timestamp())
    end = int(line.service_period_end.timestamp())
    return (start, max(start, end))


# --------------------------------------------------------------------------- invoice fields


def _invoice_fields(
    bill: Bill, spec: StripeIntegrationSpec, today: date
) -> tuple[dict[str, Any], dict[str, str] | None]:
    """The invoice fields this Bill decides (all sent on every update), and the PO custom field."""
    fields: dict[str, Any] = {"description": f"m3ter Bill {bill.id}"[:MAX_DESCRIPTION]}
    if spec.collectionMethod is CollectionMethod.SEND_INVOICE:
        fields["collection_method"] = "send_invoice"
        if not (spec.sendDueDate and bill.due_date):
            # days_until_due and due_date are "Only valid for invoices where collection_method=send_invoice"
            # (invoices/create, invoices/update); sending days_until_due on update also replaces a due date
            # an earlier version set, which Stripe would otherwise keep.
            fields["days_until_due"] = DEFAULT_DAYS_UNTIL_DUE
    else:
        # Explicit, so a draft made while the spec said SendInvoice is switched back (Stripe keeps
        # the old method otherwise, and then drops the due date itself).
        fields["collection_method"] = "charge_automatically"
    if spec.sendDueDate and bill.due_date is not None:
        if bill.due_date < today:
            raise MappingError(
                f"Bill {bill.id} is due {bill.due_date.isoformat()}, in the past; Stripe rejects past due dates. "
                "Update the Bill's due date in m3ter, or turn spec.sendDueDate off"
            )
        fields["due_date"] = int(datetime.combine(bill.due_date, time(23, 59, 59), UTC).timestamp())
    po_field: dict[str, str] | None = None
    if spec.poNumberCustomField and bill.purchase_order_number:
        po = bill.purchase_order_number
        if len(po) > MAX_CUSTOM_FIELD_VALUE:
            raise MappingError(
                f"Bill {bill.id} purchase order number has {len(po)} characters; Stripe custom field values hold "
                f"at most {MAX_CUSTOM_FIELD_VALUE}. Shorten it in m3ter"
            )
        po_field = {"name": spec.poNumberCustomField, "value": po}
    return fields, po_field
