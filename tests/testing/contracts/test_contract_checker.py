"""The contract checker: a decoded Stripe request against the SDK's generated params TypedDict."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
import stripe
from stripe._encode import _api_encode

from m3stripe.domain.billing import Bill
from m3stripe.domain.mapping import map_bill
from m3stripe.testing.stripe_emulator import contract
from m3stripe.testing.stripe_emulator.forms import decode
from m3stripe.testing.stripe_emulator.routes import ROUTES
from tests.domain.builders import make_bill, make_line, make_spec


def wire(params: dict[str, Any]) -> dict[str, Any]:
    """``params`` as Stripe receives them: the SDK's own form encoding, decoded by the emulator."""
    return decode(urlencode(list(_api_encode(params))))


def problems(method: str, path: str, params: dict[str, Any]) -> list[str]:
    return [str(v) for v in contract.check(method, path, wire(params))]


def test_every_emulated_endpoint_has_the_sdks_params_type() -> None:
    for route in ROUTES:
        typed = contract.params_type(route.method, route.template)
        assert typed is not None, f"no SDK params type for {route.name}"
        assert typed.__module__.startswith("stripe.params"), typed


def test_the_table_comes_from_the_sdks_services() -> None:
    assert contract.params_type("POST", "/v1/invoices") is stripe.params.InvoiceCreateParams
    assert contract.params_type("POST", "/v1/invoices/{invoice}/add_lines") is stripe.params.InvoiceAddLinesParams
    assert contract.params_type("GET", "/v1/invoices/{id}/lines") is stripe.params.InvoiceLineItemListParams
    assert contract.params_type("DELETE", "/v1/invoiceitems/{x}") is stripe.params.InvoiceItemDeleteParams
    assert contract.params_type("GET", "/v1/no_such_thing") is None


def test_an_unknown_parameter_fails() -> None:
    assert problems("POST", "/v1/invoices", {"customer": "cus_1", "po_number": "1"}) == [
        "po_number: unknown parameter (not in InvoiceCreateParams)"
    ]


def test_request_options_are_not_form_parameters() -> None:
    assert problems("POST", "/v1/invoices", {"customer": "cus_1", "idempotency_key": "k"}) == [
        "idempotency_key: unknown parameter (not in InvoiceCreateParams)"
    ]


def test_a_value_outside_a_literal_enum_fails_even_where_the_sdk_widens_it_with_str() -> None:
    # collection_method is "Literal['charge_automatically', 'send_invoice']|str" in the SDK.
    assert problems("POST", "/v1/invoices", {"customer": "c", "collection_method": "invoice"}) == [
        "collection_method: 'invoice' is not one of 'charge_automatically', 'send_invoice'"
    ]
    nested = {"lines": [{"price_data": {"currency": "usd", "product": "prod_1", "tax_behavior": "sometimes"}}]}
    assert problems("POST", "/v1/invoices/{invoice}/add_lines", nested) == [
        "lines[0][price_data][tax_behavior]: 'sometimes' is not one of 'exclusive', 'inclusive', 'unspecified'"
    ]


def test_wrong_nesting_fails() -> None:
    assert problems("POST", "/v1/invoices/{invoice}/add_lines", {"lines": {"amount": 1}}) == [
        "lines: expected an array indexed 0..n-1, got the keys ['amount']"
    ]
    assert problems("POST", "/v1/invoices", {"customer": {"id": "c"}}) == ["customer: expected str, got a hash"]
    assert problems("POST", "/v1/invoices", {"customer": "c", "metadata": {"a": {"b": "c"}}}) == [
        "metadata[a]: expected a string, got a hash"
    ]
    assert problems("POST", "/v1/invoiceitems", {"customer": "c", "period": {"start": 1}}) == [
        "period[end]: required by the SDK's types but missing"
    ]


def test_scalars_must_parse_as_their_type() -> None:
    found = problems("POST", "/v1/invoices", {"customer": "c", "auto_advance": "yes", "days_until_due": "30d"})
    assert found == ["auto_advance: 'yes' is not a boolean (true/false)", "days_until_due: '30d' is not an integer"]


def test_an_empty_string_is_allowed_only_where_the_type_has_literal_empty() -> None:
    assert problems("POST", "/v1/invoices/{invoice}", {"custom_fields": "", "discounts": "", "metadata": ""}) == []
    assert problems("POST", "/v1/invoices/{invoice}", {"due_date": ""}) == [
        "due_date: an empty string unsets a parameter, and this one cannot be unset"
    ]
    assert problems("POST", "/v1/invoices/{invoice}", {"metadata": {"m3ter_po_field": ""}}) == []  # unsets one key


def test_the_money_engineers_unsets_are_valid() -> None:
    line = {"amount": 100, "description": "x", "discountable": False, "discounts": "", "metadata": {"k": "v"}}
    assert problems("POST", "/v1/invoices/{invoice}/add_lines", {"lines": [line]}) == []
    assert problems("POST", "/v1/invoiceitems", {"customer": "c", "currency": "usd", **line}) == []
    assert problems("POST", "/v1/invoices", {"customer": "c", "discounts": "", "custom_fields": ""}) == []


def test_a_request_to_an_endpoint_without_parameters_must_send_none() -> None:
    assert contract.check("GET", "/v1/account", {}) == []
    assert [str(v) for v in contract.check("GET", "/v1/account", {"limit": "1"})] == [
        "limit: unknown parameter (not in AccountRetrieveCurrentParams)"
    ]


def bill(po: str | None) -> Bill:
    start, end = datetime(2025, 5, 1, tzinfo=UTC), datetime(2025, 6, 1, tzinfo=UTC)
    lines = [
        make_line(
            f"l{i}",
            subtotal,
            line_type=kind,
            quantity=quantity,
            description=f"line {i}",
            product_name="Seats",
            start=start,
            end=end,
        )
        for i, (kind, quantity, subtotal) in enumerate(
            [("STANDING_CHARGE", "1", "100.00"), ("USAGE", "3", "10.50"), ("CREDIT_MEMO", "1", "-5.00")]
        )
    ]
    return make_bill(lines, version=3, due=(datetime.now(UTC) + timedelta(days=30)).date(), po=po, last_modified=start)


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"poNumberCustomField": "PO number", "collectionMethod": "SendInvoice", "sendDueDate": True},
        {"priceDataProductId": "prod_1"},
    ],
)
@pytest.mark.parametrize("po", [None, "PO-17"])
def test_the_operators_real_request_shapes_pass(fields: dict[str, Any], po: str | None) -> None:
    plan = map_bill(bill(po), make_spec(**fields), "int-1")
    assert problems("POST", "/v1/invoices", plan.invoice_create_params("cus_1")) == []
    assert problems("POST", "/v1/invoices/{invoice}/add_lines", {"lines": [p.line_params() for p in plan.lines]}) == []
    for line in plan.lines:
        assert problems("POST", "/v1/invoiceitems", line.invoice_item_params("cus_1", plan.currency)) == []
    update = getattr(plan, "invoice_update_params", None)
    if update is not None:
        fields_now = [{"name": "PO number", "value": "old"}, {"name": "Other", "value": "x"}]
        assert problems("POST", "/v1/invoices/{invoice}", update(fields_now, {"m3ter_po_field": "PO number"})) == []
    remove = {"lines": [{"id": "il_1", "behavior": "delete"}]}
    assert problems("POST", "/v1/invoices/{invoice}/remove_lines", remove) == []
    assert problems("GET", "/v1/invoices", {"customer": "cus_1", "limit": 100, "starting_after": "in_0"}) == []
