"""Map an m3ter Bill to what Stripe should hold for it: lines in minor units, invoice fields, metadata.

Pure functions: no I/O. Every Stripe object carries metadata linking it back to the integration, the
Bill, the Bill's version and (for lines) the m3ter line, which is how earlier attempts are found.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

from m3stripe.api.spec import CollectionMethod, SortLineItemsBy, StripeIntegrationSpec
from m3stripe.domain.billing import Bill, LineItem
from m3stripe.domain.money import MoneyError, format_money, to_minor_units

META_INTEGRATION = "m3stripe_integration"
META_BILL = "m3ter_bill_id"
META_VERSION = "m3ter_bill_version"
META_ACCOUNT = "m3ter_account_id"
META_LINE = "m3ter_line_id"
MAX_DESCRIPTION = 500  # Stripe's limit for line descriptions
MAX_CUSTOM_FIELD_VALUE = 140
MAX_METADATA_VALUE = 500


class MappingError(Exception):
    """The Bill cannot be represented in Stripe as it is; `message` says why and what to do."""


@dataclass(frozen=True)
class PlannedLine:
    line_id: str
    description: str
    amount: int  # minor units; negative for credits
    period: tuple[int, int] | None
    metadata: dict[str, str]
    price_data: dict[str, str] | None = None
    quantity: int | None = None

    def line_params(self) -> dict[str, Any]:
        """Parameters of one line for `add_lines` (invoice mode)."""
        params: dict[str, Any] = {"description": self.description, "metadata": self.metadata}
        if self.price_data is not None:
            params["price_data"] = self.price_data
            params["quantity"] = self.quantity
        else:
            params["amount"] = self.amount
            if self.amount < 0:
                params["discountable"] = False
        if self.period is not None:
            params["period"] = {"start": self.period[0], "end": self.period[1]}
        return params

    def invoice_item_params(self, customer: str, currency: str) -> dict[str, Any]:
        """Parameters of a pending invoice item (invoice-items mode)."""
        params = self.line_params()
        params["customer"] = customer
        if self.price_data is None:
            params["currency"] = currency
        return params


@dataclass(frozen=True)
class BillPlan:
    bill_id: str
    version: int
    account_id: str
    currency: str  # lower case, as Stripe writes it
    lines: tuple[PlannedLine, ...]
    total: int  # minor units of the lines sent
    metadata: dict[str, str]
    invoice_fields: dict[str, Any] = field(default_factory=dict)

    def invoice_create_params(self, customer: str) -> dict[str, Any]:
        return {
            "customer": customer,
            "currency": self.currency,
            "auto_advance": False,
            # Only this Bill's lines: never sweep up other pending items of the customer.
            "pending_invoice_items_behavior": "exclude",
            "metadata": self.metadata,
            **self.invoice_fields,
        }


def bill_metadata(bill: Bill, integration_id: str) -> dict[str, str]:
    return {
        META_INTEGRATION: integration_id,
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


def plan_bill(bill: Bill, spec: StripeIntegrationSpec, integration_id: str, *, today: date | None = None) -> BillPlan:
    """What Stripe should hold for this Bill, or MappingError explaining why it cannot."""
    currency = bill.currency
    try:
        _check_total(bill)
        lines = select_lines(bill.line_items, spec)
        if len(lines) > spec.maxLinesPerInvoice:
            raise MappingError(
                f"Bill {bill.id} has {len(lines)} lines after excludedLineItemTypes; a Stripe invoice holds at most "
                f"{spec.maxLinesPerInvoice} (spec.maxLinesPerInvoice). Not sent, not split: exclude line item types, "
                "or ask Stripe to raise the limit and set spec.maxLinesPerInvoice"
            )
        metadata = bill_metadata(bill, integration_id)
        planned = tuple(_plan_line(line, bill, metadata, spec) for line in lines)
    except MoneyError as err:
        raise MappingError(f"Bill {bill.id}: {err}") from None
    return BillPlan(
        bill_id=bill.id,
        version=bill.version,
        account_id=bill.account_id,
        currency=currency.lower(),
        lines=planned,
        total=sum(line.amount for line in planned),
        metadata=metadata,
        invoice_fields=_invoice_fields(bill, spec, today or datetime.now(UTC).date()),
    )


def _check_total(bill: Bill) -> None:
    if bill.bill_total is None:
        return
    lines_total = to_minor_units(bill.line_items_total, bill.currency)
    bill_total = to_minor_units(bill.bill_total, bill.currency)
    if lines_total != bill_total:
        raise MappingError(
            f"Bill {bill.id} total is {format_money(bill.bill_total, bill.currency)} but its "
            f"{len(bill.line_items)} lines add up to {format_money(bill.line_items_total, bill.currency)} "
            f"(difference {format_money(bill.line_items_total - bill.bill_total, bill.currency)}). Not sent: "
            "recalculate the Bill in m3ter"
        )


def _plan_line(line: LineItem, bill: Bill, bill_meta: dict[str, str], spec: StripeIntegrationSpec) -> PlannedLine:
    if line.currency and line.currency.upper() != bill.currency.upper():
        raise MappingError(
            f"Bill {bill.id} line {line.id} is in {line.currency} but the Bill is in {bill.currency}; "
            "a Stripe invoice holds one currency"
        )
    amount = to_minor_units(line.subtotal, bill.currency)
    metadata = {**bill_meta, META_LINE: line.id}
    price_data: dict[str, str] | None = None
    quantity: int | None = None
    if spec.priceDataProductId and amount >= 0:
        # Stripe prices cannot be negative, so credits stay plain amounts. The unit amount is chosen so
        # that quantity x unit is exactly the line's amount: Stripe then computes the same total.
        quantity = _integral_quantity(line.quantity, amount)
        price_data = {
            "currency": bill.currency.lower(),
            "product": spec.priceDataProductId,
            "unit_amount_decimal": str(amount // quantity),
        }
    return PlannedLine(
        line_id=line.id,
        description=_description(line),
        amount=amount,
        period=_period(line),
        metadata=metadata,
        price_data=price_data,
        quantity=quantity,
    )


def _integral_quantity(quantity: Decimal, amount: int) -> int:
    if quantity > 0 and quantity == quantity.to_integral_value() and amount % int(quantity) == 0:
        return int(quantity)
    return 1


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


def _invoice_fields(bill: Bill, spec: StripeIntegrationSpec, today: date) -> dict[str, Any]:
    fields: dict[str, Any] = {"description": f"m3ter Bill {bill.id}"[:MAX_DESCRIPTION]}
    if spec.collectionMethod is CollectionMethod.SEND_INVOICE:
        fields["collection_method"] = "send_invoice"
        if not (spec.sendDueDate and bill.due_date):
            fields["days_until_due"] = 30
    if spec.sendDueDate and bill.due_date is not None:
        if bill.due_date < today:
            raise MappingError(
                f"Bill {bill.id} is due {bill.due_date.isoformat()}, in the past; Stripe rejects past due dates. "
                "Update the Bill's due date in m3ter, or turn spec.sendDueDate off"
            )
        fields["due_date"] = int(datetime.combine(bill.due_date, time(23, 59, 59), UTC).timestamp())
    if spec.poNumberCustomField and bill.purchase_order_number:
        po = bill.purchase_order_number
        if len(po) > MAX_CUSTOM_FIELD_VALUE:
            raise MappingError(
                f"Bill {bill.id} purchase order number has {len(po)} characters; Stripe custom field values hold "
                f"at most {MAX_CUSTOM_FIELD_VALUE}. Shorten it in m3ter"
            )
        fields["custom_fields"] = [{"name": spec.poNumberCustomField, "value": po}]
    return fields
