"""Records to the JSON bodies m3ter returns (field names as in the SDK's response models)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from .state import AccountRecord, BillRecord, CurrencyRecord, LineRecord, MappingRecord

_SYSTEM_USER = "service-user"


def _num(value: Decimal) -> float | int:
    # JSON has no decimal type; the shortest float repr round-trips any value with <= 15 significant
    # digits, which is what the client's Decimal(str(x)) relies on.
    return int(value) if value == value.to_integral_value() and abs(value) < 2**53 else float(value)


def dt_text(value: datetime | None) -> str | None:
    """A timestamp as m3ter writes it (UTC, milliseconds, ``Z``)."""
    return _dt(value)


def _dt(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _d(value: date | None) -> str | None:
    return None if value is None else value.isoformat()


def _custom_value(value: Any) -> Any:
    return _num(value) if isinstance(value, Decimal) else value


def _compact(body: dict[str, Any]) -> dict[str, Any]:
    """Drop nulls, as m3ter omits unset fields rather than sending null."""
    return {key: value for key, value in body.items() if value is not None}


def account(record: AccountRecord) -> dict[str, Any]:
    return _compact(
        {
            "id": record.id,
            "version": record.version,
            "name": record.name,
            "code": record.code,
            "currency": record.currency,
            "emailAddress": record.email_address,
            "purchaseOrderNumber": record.purchase_order_number,
            "parentAccountId": record.parent_account_id,
            "address": _compact(dict(record.address)) or None,
            "customFields": {key: _custom_value(value) for key, value in record.custom_fields.items()},
            "dtCreated": _dt(record.dt_created),
            "dtLastModified": _dt(record.dt_last_modified),
            "createdBy": _SYSTEM_USER,
            "lastModifiedBy": _SYSTEM_USER,
        }
    )


def line_item(line: LineRecord, bill: BillRecord | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": line.id,
        "lineItemType": line.line_item_type,
        "description": line.description,
        "quantity": _num(line.quantity),
        "units": _num(line.units),
        "unit": line.unit,
        "subtotal": _num(line.subtotal),
        "convertedSubtotal": _num(line.subtotal),
        "conversionRate": 1,
        "averageUnitPrice": _num(line.unit_price) if line.unit_price is not None else 0,
        "currency": line.currency,
        "aggregationId": line.aggregation_id,
        "productId": line.product_id,
        "productName": line.product_name,
        "productCode": line.product_code,
        "servicePeriodStartDate": _dt(line.service_period_start),
        "servicePeriodEndDate": _dt(line.service_period_end),
        "sequenceNumber": line.sequence_number,
    }
    if bill is not None:
        # Only the standalone line item resource carries these.
        body["billId"] = bill.id
        body["version"] = bill.version
    return _compact(body)


def bill(record: BillRecord, *, include_total: bool = True, include_lines: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": record.id,
        "version": record.version,
        "accountId": record.account_id,
        "accountCode": record.account_code,
        "status": record.status,
        "currency": record.currency,
        "billDate": _d(record.bill_date),
        "dueDate": _d(record.due_date),
        "startDate": _d(record.start_date),
        "endDate": _d(record.end_date),
        "startDateTimeUTC": _dt(_midnight(record.start_date)),
        "endDateTimeUTC": _dt(_midnight(record.end_date)),
        "externalInvoiceDate": _d(record.end_date),
        "billingFrequency": record.billing_frequency,
        "billFrequencyInterval": 1,
        "timezone": "UTC",
        "purchaseOrderNumber": record.purchase_order_number,
        "externalInvoiceReference": record.external_invoice_reference,
        "locked": record.locked,
        "dtCreated": _dt(record.dt_created),
        "createdDate": _dt(record.dt_created),
        "dtLastModified": _dt(record.dt_last_modified),
        "lastCalculatedDate": _dt(record.dt_last_modified),
        "dtApproved": _dt(record.dt_approved),
        "dtLocked": _dt(record.dt_locked),
        "createdBy": _SYSTEM_USER,
        "lastModifiedBy": _SYSTEM_USER,
        "csvStatementGenerated": False,
        "jsonStatementGenerated": False,
    }
    if include_total:
        body["billTotal"] = _num(record.total)
    if include_lines:
        body["lineItems"] = [line_item(line) for line in record.lines]
    body = _compact(body)
    for path, value in record.json_overrides.items():
        if include_lines or not path.startswith("lineItems"):
            _edit(body, path, value)
    for path in record.json_removals:
        if include_lines or not path.startswith("lineItems"):
            _edit(body, path, _REMOVE)
    return body


_REMOVE = object()


def _edit(body: dict[str, Any], path: str, value: Any) -> None:
    """Set (or remove) ``path`` such as ``lineItems[2].subtotal`` in a rendered body."""
    steps: list[str | int] = []
    for part in path.split("."):
        name, _, rest = part.partition("[")
        if name:
            steps.append(name)
        for index in rest.rstrip("]").split("][") if rest else ():
            steps.append(int(index))
    target: Any = body
    for step in steps[:-1]:
        target = target[step]
    last = steps[-1]
    if value is _REMOVE:
        if isinstance(target, dict):
            target.pop(last, None)
        elif isinstance(last, int) and last < len(target):
            del target[last]
    else:
        target[last] = value


def _midnight(value: date | None) -> datetime | None:
    return None if value is None else datetime(value.year, value.month, value.day, tzinfo=UTC)


def mapping(record: MappingRecord) -> dict[str, Any]:
    return _compact(
        {
            "id": record.id,
            "version": record.version,
            "m3terEntity": record.m3ter_entity,
            "m3terId": record.m3ter_id,
            "externalSystem": record.external_system,
            "externalTable": record.external_table,
            "externalId": record.external_id,
            "integrationConfigId": record.integration_config_id,
            "dtCreated": _dt(record.dt_created),
            "dtLastModified": _dt(record.dt_last_modified),
            "createdBy": _SYSTEM_USER,
            "lastModifiedBy": _SYSTEM_USER,
        }
    )


def currency(record: CurrencyRecord) -> dict[str, Any]:
    # Field names as in m3ter's List Currencies response (https://docs.m3ter.com/api/currency/list-currencies).
    return _compact(
        {
            "id": record.id,
            "version": record.version,
            "code": record.code,
            "name": record.name,
            "archived": record.archived,
            "maxDecimalPlaces": record.max_decimal_places,
            "roundingMode": record.rounding_mode,
            "dtCreated": _dt(record.dt_created),
            "dtLastModified": _dt(record.dt_last_modified),
            "createdBy": _SYSTEM_USER,
            "lastModifiedBy": _SYSTEM_USER,
        }
    )


def error(message: str) -> dict[str, Any]:
    return {"message": message}
