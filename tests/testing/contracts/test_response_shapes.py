"""What the Stripe emulator answers has the shape of Stripe's own published fixture of each object.

`fixtures/stripe_fixtures.json` holds Stripe's example objects (stripe/openapi, `fixtures3.json`,
the objects Stripe's own mock server answers with). Every field the emulator returns must be one of
the fixture's, with the same JSON type, recursively; a field the fixture lacks is allowed only where
the installed SDK's resource class declares it (the fixture is a few API versions older than the SDK,
and Stripe adds fields with every version), and each such field is listed below.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import stripe

from m3stripe.testing.stripe_emulator import StripeEmulator

FIXTURES: dict[str, Any] = json.loads((Path(__file__).parent / "fixtures" / "stripe_fixtures.json").read_text())[
    "resources"
]
KEY = "sk_test_shapesKey0001abcd"

# Fields the emulator returns that the fixture (2026-08-21) lacks, each declared by the SDK's resource
# class for its API version (checked below): (object kind, dotted path) -> the SDK class declaring it.
NEWER_THAN_FIXTURE: dict[tuple[str, str], tuple[type, str]] = {
    ("customer", "business_name"): (stripe.Customer, "business_name"),
    ("customer", "customer_account"): (stripe.Customer, "customer_account"),
    ("customer", "individual_name"): (stripe.Customer, "individual_name"),
    ("invoice", "amount_paid_off_stripe"): (stripe.Invoice, "amount_paid_off_stripe"),
    ("invoice", "confirmation_secret"): (stripe.Invoice, "confirmation_secret"),
    ("invoice", "lines.data[].pricing.price_details"): (stripe.InvoiceLineItem.Pricing, "price_details"),
    ("line_item", "pricing.price_details"): (stripe.InvoiceLineItem.Pricing, "price_details"),
    ("invoiceitem", "pricing.price_details"): (stripe.InvoiceItem.Pricing, "price_details"),
    ("invoiceitem", "proration_details"): (stripe.InvoiceItem, "proration_details"),
    ("customer_with_tax", "business_name"): (stripe.Customer, "business_name"),
    ("customer_with_tax", "customer_account"): (stripe.Customer, "customer_account"),
    ("customer_with_tax", "individual_name"): (stripe.Customer, "individual_name"),
    ("customer_with_tax", "tax"): (stripe.Customer, "tax"),
    ("taxed_invoice", "amount_paid_off_stripe"): (stripe.Invoice, "amount_paid_off_stripe"),
    ("taxed_invoice", "confirmation_secret"): (stripe.Invoice, "confirmation_secret"),
    ("taxed_invoice", "lines.data[].pricing.price_details"): (stripe.InvoiceLineItem.Pricing, "price_details"),
}
# Known disagreements, each owned by the emulator module that renders the object (strict xfail: the
# test turns red the day they are fixed, so this list cannot go stale).
KNOWN_DISAGREEMENTS: frozenset[tuple[str, str]] = frozenset()

# What the operator reads from each object (operator/m3stripe/domain/stripe_writer.py, customers.py,
# adapters/stripe_client.py and stripe_gateway.py): the emulator must return every one of them.
OPERATOR_READS = {
    "account": {"id"},
    "customer": {"id", "metadata"},
    "invoice": {"id", "status", "created", "metadata", "custom_fields", "customer"},
    "line_item": {"id", "amount", "description", "metadata"},
    "invoiceitem": {"id", "amount", "description", "metadata", "invoice"},
    "deleted_invoiceitem": {"id", "deleted"},
    "list": {"data", "has_more"},
    # Stripe Tax (issue 19; docs/api-contracts.md). The customer's `tax` is newer than the fixture and
    # checked above through NEWER_THAN_FIXTURE.
    "tax_settings": {"status", "defaults"},
    "taxed_invoice": {"automatic_tax", "total", "total_excluding_tax", "total_taxes", "amount_due"},
}


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return {str: "string", list: "array", dict: "object"}[type(value)]


def differences(emulated: dict[str, Any], fixture: dict[str, Any], path: str = "") -> list[tuple[str, str]]:
    """(path, problem) for every emulator field the fixture lacks or types differently (nulls match anything)."""
    found: list[tuple[str, str]] = []
    for name, value in emulated.items():
        where = f"{path}.{name}" if path else name
        if name not in fixture:
            found.append((where, f"not in Stripe's fixture (emulator: {json_type(value)})"))
            continue
        expected = fixture[name]
        if value is None or expected is None:
            continue  # nullable: the fixture's null says nothing of the type, and vice versa
        if json_type(value) != json_type(expected):
            found.append((where, f"emulator {json_type(value)}, Stripe {json_type(expected)}"))
        elif isinstance(value, dict) and name != "metadata":  # metadata keys are the caller's own
            found.extend(differences(value, expected, where))
        elif isinstance(value, list) and value and expected and isinstance(expected[0], dict):
            for item in value:
                if isinstance(item, dict):
                    found.extend(differences(item, expected[0], f"{where}[]"))
    return found


def omitted(emulated: dict[str, Any], fixture: dict[str, Any]) -> set[str]:
    return set(fixture) - set(emulated)


@pytest.fixture(scope="module")
def objects() -> dict[str, Any]:
    return asyncio.run(make_objects())


async def make_objects() -> dict[str, Any]:
    """One of each object kind the emulator returns, as raw JSON, made through its public API."""
    async with StripeEmulator(seed=3) as emulator:
        emulator.add_api_key(KEY)
        async with httpx.AsyncClient(base_url=emulator.url, headers={"Authorization": f"Bearer {KEY}"}) as http:

            async def call(method: str, url: str, data: dict[str, str] | None = None) -> dict[str, Any]:
                response = await http.request(method, url, data=data)
                assert response.status_code == 200, response.text
                body: dict[str, Any] = response.json()
                return body

            found: dict[str, Any] = {"account": await call("GET", "/v1/account")}
            found["balance"] = await call("GET", "/v1/balance")
            customer = found["customer"] = await call(
                "POST", "/v1/customers", {"name": "Acme", "email": "billing@example.com", "metadata[k]": "v"}
            )
            product = found["product"] = await call("POST", "/v1/products", {"name": "Seats"})
            invoice = await call(
                "POST",
                "/v1/invoices",
                {
                    "customer": customer["id"],
                    "currency": "usd",
                    "auto_advance": "false",
                    "pending_invoice_items_behavior": "exclude",
                    "collection_method": "send_invoice",
                    "days_until_due": "30",
                    "custom_fields[0][name]": "PO number",
                    "custom_fields[0][value]": "PO-1",
                    "metadata[m3ter_bill_id]": "b1",
                },
            )
            found["invoice"] = await call(
                "POST",
                f"/v1/invoices/{invoice['id']}/add_lines",
                {
                    "lines[0][amount]": "100",
                    "lines[0][description]": "Standing charge",
                    "lines[0][period][start]": "1700000000",
                    "lines[0][period][end]": "1700086400",
                    "lines[1][price_data][currency]": "usd",
                    "lines[1][price_data][product]": product["id"],
                    "lines[1][price_data][unit_amount_decimal]": "12.5",
                    "lines[1][quantity]": "2",
                },
            )
            found["list"] = await call("GET", f"/v1/invoices/{invoice['id']}/lines")
            found["line_item"] = found["list"]["data"][1]
            item = found["invoiceitem"] = await call(
                "POST",
                "/v1/invoiceitems",
                {"customer": customer["id"], "amount": "5", "currency": "usd", "description": "Usage"},
            )
            found["deleted_invoiceitem"] = await call("DELETE", f"/v1/invoiceitems/{item['id']}")
            other = await call("POST", "/v1/customers", {"name": "Gone"})
            found["deleted_customer"] = await call("DELETE", f"/v1/customers/{other['id']}")
            draft = await call("POST", "/v1/invoices", {"customer": customer["id"], "currency": "usd"})
            found["deleted_invoice"] = await call("DELETE", f"/v1/invoices/{draft['id']}")
            # Stripe Tax: active settings, a US registration (the fixture's), a located customer and
            # an invoice taxed on both behaviours.
            emulator.set_tax_rate("US", "7.25", state="CA")
            found["tax_settings"] = await call(
                "POST",
                "/v1/tax/settings",
                {
                    "head_office[address][country]": "US",
                    "head_office[address][state]": "CA",
                    "defaults[tax_code]": "txcd_10000000",
                },
            )
            found["tax_registration"] = await call(
                "POST",
                "/v1/tax/registrations",
                {
                    "active_from": "now",
                    "country": "US",
                    "country_options[us][state]": "CA",
                    "country_options[us][type]": "state_sales_tax",
                },
            )
            located = await call(
                "POST",
                "/v1/customers",
                {"address[country]": "US", "address[postal_code]": "94107", "address[state]": "CA"},
            )
            found["customer_with_tax"] = await call("GET", f"/v1/customers/{located['id']}?expand[]=tax")
            taxed = await call(
                "POST", "/v1/invoices", {"customer": located["id"], "currency": "usd", "automatic_tax[enabled]": "true"}
            )
            found["taxed_invoice"] = await call(
                "POST",
                f"/v1/invoices/{taxed['id']}/add_lines",
                {
                    "lines[0][price_data][currency]": "usd",
                    "lines[0][price_data][product]": product["id"],
                    "lines[0][price_data][unit_amount_decimal]": "1000",
                    "lines[0][price_data][tax_behavior]": "exclusive",
                    "lines[1][price_data][currency]": "usd",
                    "lines[1][price_data][product]": product["id"],
                    "lines[1][price_data][unit_amount_decimal]": "1000",
                    "lines[1][price_data][tax_behavior]": "inclusive",
                },
            )
            prices = emulator.state(emulator.accounts()[0])["prices"]
            found["price"] = next(iter(prices.values()))
            return found


FIXTURE_OF = {
    "account": "account",
    "balance": "balance",
    "customer": "customer",
    "product": "product",
    "price": "price",
    "invoice": "invoice",
    "line_item": "line_item",
    "invoiceitem": "invoiceitem",
    "deleted_invoiceitem": "deleted_invoiceitem",
    "deleted_customer": "deleted_customer",
    "deleted_invoice": "deleted_invoice",
    "tax_settings": "tax.settings",
    "tax_registration": "tax.registration",
    "customer_with_tax": "customer",
    "taxed_invoice": "invoice",
}


@pytest.mark.parametrize("kind", sorted(FIXTURE_OF))
def test_each_field_the_emulator_returns_is_in_stripes_fixture_with_the_same_json_type(
    objects: dict[str, Any], kind: str
) -> None:
    found = [
        (path, problem)
        for path, problem in differences(objects[kind], FIXTURES[FIXTURE_OF[kind]])
        if (kind, path) not in NEWER_THAN_FIXTURE and (kind, path) not in KNOWN_DISAGREEMENTS
    ]
    assert found == [], f"{kind}: the emulator disagrees with Stripe's fixture: {found}"


def test_the_list_envelope_has_stripes_fields(objects: dict[str, Any]) -> None:
    # The list envelope of Stripe's fixtures (invoice.lines): object, data, has_more, url.
    envelope = {k: v for k, v in FIXTURES["invoice"]["lines"].items() if k != "data"}
    listed = {k: v for k, v in objects["list"].items() if k != "data"}
    assert differences(listed, envelope) == []
    assert set(listed) == set(envelope)


def test_the_invoice_lines_envelope_is_stripes(objects: dict[str, Any]) -> None:
    assert set(objects["invoice"]["lines"]) == set(FIXTURES["invoice"]["lines"])


def test_fields_newer_than_the_fixture_are_declared_by_the_sdk_for_its_api_version() -> None:
    for (kind, path), (sdk_class, field) in NEWER_THAN_FIXTURE.items():
        assert field in sdk_class.__annotations__, f"{kind}.{path}: {sdk_class.__name__} has no {field}"


@pytest.mark.parametrize("kind", sorted(OPERATOR_READS))
def test_the_fields_the_operator_reads_are_present(objects: dict[str, Any], kind: str) -> None:
    missing = OPERATOR_READS[kind] - set(objects[kind])
    assert not missing, f"{kind} lacks {missing}, which the operator reads"
    fixture = FIXTURES[FIXTURE_OF.get(kind, "invoice")] if kind != "list" else FIXTURES["invoice"]["lines"]
    assert OPERATOR_READS[kind] <= set(fixture), f"the operator reads {kind} fields Stripe does not return"


def test_the_fixture_fields_the_emulator_omits_are_none_the_operator_reads(objects: dict[str, Any]) -> None:
    # The emulator leaves out what it does not model (e.g. invoice.payment_settings' deeper options);
    # none of it may be something the operator reads.
    for kind, fixture_kind in FIXTURE_OF.items():
        left_out = omitted(objects[kind], FIXTURES[fixture_kind])
        assert not (left_out & OPERATOR_READS.get(kind, set())), (kind, sorted(left_out))
