"""Builders of the domain's values: a valid spec, line items and Bills, every field defaulted but what a test names;
the error events and reports of runs; the peers an integration overlaps with."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from m3stripe.api.spec import StripeIntegrationSpec
from m3stripe.domain.account_filter import parse_filter
from m3stripe.domain.billing import Bill, LineItem
from m3stripe.domain.overlap import Peer
from m3stripe.domain.runs import ErrorEvent, EventKind, RunReport, RunStatus
from m3stripe.domain.selection import Selector

MODIFIED = datetime(2025, 6, 1, tzinfo=UTC)
T0 = datetime(2026, 1, 1, tzinfo=UTC)  # when the peers of the overlap tests were created, give or take
RUN_START = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)  # when the runs built here start


def make_spec(*, organization: str = "org1", **fields: Any) -> StripeIntegrationSpec:
    """The smallest valid spec (no credentialRef unless given), with `fields` laid over it."""
    raw: dict[str, Any] = {
        "destination": "StripeTestMode",
        "m3ter": {"organizationId": organization, "credentialsRef": {"name": "m3ter"}},
    }
    raw.update(fields)
    return StripeIntegrationSpec.model_validate(raw)


def engine_spec(organization: str, **fields: Any) -> StripeIntegrationSpec:
    """A spec a Send pass can run: with the Stripe key's credentialRef."""
    return make_spec(organization=organization, credentialRef={"name": "stripe"}, **fields)


def make_line(
    line_id: str,
    subtotal: str | Decimal,
    *,
    line_type: str = "USAGE",
    currency: str = "USD",
    quantity: str | Decimal = "1",
    description: str | None = None,
    aggregation_id: str | None = None,
    product_name: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> LineItem:
    return LineItem(
        id=line_id,
        line_item_type=line_type,
        description=description if description is not None else f"line {line_id}",
        quantity=Decimal(quantity),
        subtotal=Decimal(subtotal),
        unit_price=None,
        currency=currency,
        aggregation_id=aggregation_id,
        product_name=product_name,
        service_period_start=start,
        service_period_end=end,
        sequence_number=None,
    )


def make_bill(
    lines: Iterable[LineItem],
    *,
    bill_id: str = "bill-1",
    version: int = 1,
    account_id: str = "acc-1",
    account_code: str | None = "ACME",
    currency: str = "USD",
    total: str | Decimal | None = None,
    due: date | None = None,
    po: str | None = None,
    last_modified: datetime = MODIFIED,
    created: datetime | None = None,
) -> Bill:
    return Bill(
        id=bill_id,
        version=version,
        account_id=account_id,
        account_code=account_code,
        status="APPROVED",
        currency=currency,
        bill_total=Decimal(total) if total is not None else None,
        due_date=due,
        bill_date=None,
        purchase_order_number=po,
        last_modified=last_modified,
        line_items=tuple(lines),
        external_invoice_reference=None,
        locked=False,
        created=created,
    )


def selector(spec: StripeIntegrationSpec) -> Selector:
    """The selection of Bills `spec` makes."""
    return Selector(
        account_ids=frozenset(spec.accountIds),
        restricted_account_ids=frozenset(spec.restrictedAccountIds),
        account_filter=parse_filter(spec.accountFilter),
        only_approved=spec.onlySendBillOnApproval,
    )


def peer(name: str, spec: StripeIntegrationSpec, *, created: datetime, namespace: str = "billing") -> Peer:
    """Another integration, of `spec`, created at `created`."""
    return Peer(namespace, name, f"uid-{name}", created, selector(spec))


def event(
    message: str = "boom",
    *,
    kind: EventKind = EventKind.PERFORM,
    bill_id: str | None = "bill-1",
    account_id: str | None = "acc-1",
    run_id: str = "run-1",
    at: datetime = RUN_START,
) -> ErrorEvent:
    return ErrorEvent(kind=kind, message=message, run_id=run_id, time=at, bill_id=bill_id, account_id=account_id)


def report(run_id: str = "run-1", *, status: RunStatus = RunStatus.COMPLETE, **fields: Any) -> RunReport:
    """A run of five seconds from RUN_START, with `fields` of RunReport set."""
    r = RunReport(run_id=run_id, started=RUN_START, completed=RUN_START + timedelta(seconds=5), status=status)
    for name, value in fields.items():
        setattr(r, name, value)
    return r
