"""What Stripe ends up holding for a Bill: planned by mapping, written by StripeWriter, over HTTP to the emulator.

Each test drives the operator's own code (plan_bill, StripeWriter, the official stripe SDK) against the
shipped Stripe emulator, and reads back what Stripe would show the customer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
import stripe

from m3stripe.adapters.stripe_client import open_client
from m3stripe.adapters.stripe_gateway import RetryPolicy, StripeGateway
from m3stripe.adapters.stripe_ledger import StripeLedger
from m3stripe.domain.mapping import MappingError, map_bill
from m3stripe.domain.stripe_writer import StripeWriter
from m3stripe.testing.stripe_emulator import StripeEmulator
from tests.domain.builders import make_bill as bill
from tests.domain.builders import make_line as line
from tests.domain.builders import make_spec

KEY = "sk_test_moneyRules0001"
INTEGRATION = "int-money"
TODAY = date(2025, 6, 15)


@pytest.fixture
async def emulator() -> AsyncIterator[StripeEmulator]:
    async with StripeEmulator(seed=11) as emu:
        emu.add_api_key(KEY)
        yield emu


@pytest.fixture
async def client(emulator: StripeEmulator) -> AsyncIterator[Any]:
    async with open_client(KEY, api_base=emulator.url) as c:
        yield c


@pytest.fixture
def writer(client: Any) -> StripeWriter:
    gateway = StripeGateway(client, retry=RetryPolicy(max_attempts=1, base_delay=0, max_delay=0))
    return StripeWriter(StripeLedger(gateway))


async def new_customer(client: Any) -> str:
    return str((await client.v1.customers.create_async(params={"name": "Acme"})).id)


async def invoice_lines(client: Any, invoice_id: str) -> list[Any]:
    page = await client.v1.invoices.line_items.list_async(invoice_id, params={"limit": 100})
    return list(page.data)


async def pending_items(client: Any, customer: str) -> list[Any]:
    page = await client.v1.invoice_items.list_async(params={"customer": customer, "pending": True, "limit": 100})
    return list(page.data)


# --------------------------------------------------------------------------- totals


async def test_an_invoice_of_lines_finer_than_a_cent_totals_the_bill(client: Any, writer: StripeWriter) -> None:
    customer = await new_customer(client)
    plan = map_bill(bill([line(f"u{i}", "0.0037") for i in range(40)], total="0.15"), make_spec(), INTEGRATION)
    written = await writer.write_invoice(plan, customer)
    invoice = await client.v1.invoices.retrieve_async(written.stripe_id)
    assert invoice.total == 15
    assert len(await invoice_lines(client, invoice.id)) == 40


async def test_a_ugx_bill_reaches_stripe_in_two_decimal_minor_units(client: Any, writer: StripeWriter) -> None:
    customer = await new_customer(client)
    plan = map_bill(bill([line("a", "150000", currency="UGX")], currency="UGX"), make_spec(), INTEGRATION)
    invoice = await client.v1.invoices.retrieve_async((await writer.write_invoice(plan, customer)).stripe_id)
    assert (invoice.currency, invoice.total) == ("ugx", 15_000_000)  # 150,000 USh, not 1,500 USh


async def test_the_emulator_refuses_ugx_and_isk_amounts_that_are_not_whole_units(client: Any) -> None:
    customer = await new_customer(client)
    for currency in ("ugx", "isk"):
        with pytest.raises(stripe.InvalidRequestError) as error:
            await client.v1.invoice_items.create_async(
                params={"customer": customer, "amount": 150, "currency": currency}
            )
        assert error.value.param == "amount"


async def test_the_emulator_refuses_amounts_over_eight_digits(client: Any) -> None:
    customer = await new_customer(client)
    with pytest.raises(stripe.InvalidRequestError) as error:
        await client.v1.invoice_items.create_async(
            params={"customer": customer, "amount": 100_000_000, "currency": "usd"}
        )
    assert error.value.code == "amount_too_large"
    with pytest.raises(stripe.InvalidRequestError) as idr:
        await client.v1.invoice_items.create_async(
            params={"customer": customer, "amount": 100_000_000, "currency": "idr"}
        )
    assert idr.value.code == "amount_too_large"  # no documented IDR exception: as strict as Stripe could be
    ok = await client.v1.invoice_items.create_async(
        params={"customer": customer, "amount": 99_999_999, "currency": "idr"}
    )
    assert ok.amount == 99_999_999


async def test_an_isk_unit_price_of_half_a_krona_is_refused_and_the_operator_never_sends_one(
    client: Any, writer: StripeWriter
) -> None:
    customer = await new_customer(client)
    product = await client.v1.products.create_async(params={"name": "Usage"})
    with pytest.raises(stripe.InvalidRequestError) as error:
        await client.v1.invoice_items.create_async(
            params={
                "customer": customer,
                "price_data": {"currency": "isk", "product": product.id, "unit_amount_decimal": "50"},
                "quantity": 4,
            }
        )
    assert error.value.param == "price_data[unit_amount_decimal]"
    spec = make_spec(priceDataProductId=product.id)
    plan = map_bill(bill([line("u", "2", currency="ISK", quantity="4")], currency="ISK"), spec, INTEGRATION)
    invoice = await client.v1.invoices.retrieve_async((await writer.write_invoice(plan, customer)).stripe_id)
    assert invoice.total == 200
    (sent,) = await invoice_lines(client, invoice.id)
    assert (sent.quantity, sent.metadata["m3ter_quantity"]) == (1, "4")


# --------------------------------------------------------------------------- discounts


async def _customer_with_coupon(client: Any, emulator: StripeEmulator, percent: str = "20") -> str:
    customer = await new_customer(client)
    coupon = await client.v1.coupons.create_async(params={"percent_off": float(percent), "duration": "forever"})
    account = emulator.accounts()[0]
    emulator.apply_customer_discount(account, customer, coupon.id)
    return customer


async def test_the_emulator_applies_a_customers_coupon_to_new_invoices_by_default(
    client: Any, emulator: StripeEmulator
) -> None:
    customer = await _customer_with_coupon(client, emulator)
    invoice = await client.v1.invoices.create_async(params={"customer": customer})
    await client.v1.invoice_items.create_async(
        params={"customer": customer, "invoice": invoice.id, "amount": 1000, "currency": "usd"}
    )
    await client.v1.invoice_items.create_async(
        params={"customer": customer, "invoice": invoice.id, "amount": 500, "currency": "usd", "discountable": False}
    )
    discounted = await client.v1.invoices.retrieve_async(invoice.id)
    assert (discounted.subtotal, discounted.total) == (1500, 1300)  # 20% of the discountable 10.00 only
    assert discounted.total_discount_amounts[0].amount == 200
    plain = await client.v1.invoices.create_async(params={"customer": customer, "discounts": ""})
    assert plain.discounts == []


async def test_a_customer_with_a_coupon_gets_an_invoice_equal_to_the_bill(
    client: Any, emulator: StripeEmulator, writer: StripeWriter
) -> None:
    customer = await _customer_with_coupon(client, emulator)
    plan = map_bill(bill([line("a", "100.00"), line("b", "23.45")]), make_spec(), INTEGRATION)
    invoice_id = (await writer.write_invoice(plan, customer)).stripe_id
    invoice = await client.v1.invoices.finalize_invoice_async(invoice_id)
    assert (invoice.total, invoice.amount_due, invoice.discounts) == (12345, 12345, [])


async def test_pending_items_keep_their_amount_when_a_discounted_invoice_sweeps_them_up(
    client: Any, emulator: StripeEmulator, writer: StripeWriter
) -> None:
    customer = await _customer_with_coupon(client, emulator)
    plan = map_bill(bill([line("a", "100.00"), line("b", "23.45")]), make_spec(createStripeInvoice=False), "i")
    await writer.write_items(plan, customer)
    # What Stripe Subscriptions do with pending items: an invoice that includes them, coupon inherited.
    swept = await client.v1.invoices.create_async(
        params={"customer": customer, "pending_invoice_items_behavior": "include"}
    )
    assert len(swept.discounts) == 1
    assert swept.total == 12345


# --------------------------------------------------------------------------- line identity


async def test_two_identical_lines_become_two_pending_items(client: Any, writer: StripeWriter) -> None:
    customer = await new_customer(client)
    spec = make_spec(createStripeInvoice=False)
    plan = map_bill(bill([line("same", "5.00"), line("same", "5.00")], total="10.00"), spec, INTEGRATION)
    await writer.write_items(plan, customer)
    assert sum(item.amount for item in await pending_items(client, customer)) == 1000
    again = await writer.write_items(plan, customer)
    assert again.changed is False
    assert len(await pending_items(client, customer)) == 2


async def test_two_identical_lines_survive_a_regeneration_in_invoice_mode(client: Any, writer: StripeWriter) -> None:
    customer = await new_customer(client)
    first = bill([line("same", "5.00"), line("same", "5.00"), line("x", "1.00")], total="11.00")
    await writer.write_invoice(map_bill(first, make_spec(), INTEGRATION), customer)
    for version in (2, 3):
        again = replace(first, version=version, line_items=first.line_items[:2], bill_total=Decimal("10.00"))
        invoice_id = (await writer.write_invoice(map_bill(again, make_spec(), INTEGRATION), customer)).stripe_id
        invoice = await client.v1.invoices.retrieve_async(invoice_id)
        assert invoice.total == 1000
        held = await invoice_lines(client, invoice_id)
        assert [li.metadata["m3ter_bill_version"] for li in held] == [str(version)] * 2


# --------------------------------------------------------------------------- updates clear what a version dropped


async def test_a_version_without_po_number_or_due_date_clears_both_on_the_draft(
    client: Any, writer: StripeWriter
) -> None:
    customer = await new_customer(client)
    spec = make_spec(collectionMethod="SendInvoice", sendDueDate=True, poNumberCustomField="PO number")
    first = bill([line("a", "10.00")], po="PO-1", due=date(2099, 1, 31))
    invoice_id = (await writer.write_invoice(map_bill(first, spec, INTEGRATION, today=TODAY), customer)).stripe_id
    before = await client.v1.invoices.retrieve_async(invoice_id)
    assert [(f.name, f.value) for f in before.custom_fields] == [("PO number", "PO-1")]
    assert before.due_date == int(datetime(2099, 1, 31, 23, 59, 59, tzinfo=UTC).timestamp())
    second = replace(first, version=2, purchase_order_number=None, due_date=None, line_items=(line("a", "12.00"),))
    await writer.write_invoice(map_bill(second, spec, INTEGRATION, today=TODAY), customer)
    after = await client.v1.invoices.retrieve_async(invoice_id)
    assert after.custom_fields is None
    assert after.due_date == after.created + 30 * 86400  # days_until_due replaced the Bill's old date
    assert "m3ter_po_custom_field" not in after.metadata
    assert after.total == 1200


async def test_switching_to_charge_automatically_reaches_an_existing_draft(client: Any, writer: StripeWriter) -> None:
    customer = await new_customer(client)
    first = bill([line("a", "10.00")])
    invoice_id = (
        await writer.write_invoice(map_bill(first, make_spec(collectionMethod="SendInvoice"), INTEGRATION), customer)
    ).stripe_id
    assert (await client.v1.invoices.retrieve_async(invoice_id)).collection_method == "send_invoice"
    await writer.write_invoice(map_bill(replace(first, version=2), make_spec(), INTEGRATION), customer)
    after = await client.v1.invoices.retrieve_async(invoice_id)
    assert (after.collection_method, after.due_date) == ("charge_automatically", None)


async def test_an_update_keeps_custom_fields_that_are_not_the_po_number(client: Any, writer: StripeWriter) -> None:
    customer = str(
        (
            await client.v1.customers.create_async(
                params={"name": "Acme", "invoice_settings": {"custom_fields": [{"name": "VAT", "value": "GB123"}]}}
            )
        ).id
    )
    spec = make_spec(poNumberCustomField="PO")
    first = bill([line("a", "1.00")])
    invoice_id = (await writer.write_invoice(map_bill(first, spec, INTEGRATION), customer)).stripe_id
    invoice = await client.v1.invoices.retrieve_async(invoice_id)
    assert [(f.name, f.value) for f in invoice.custom_fields] == [("VAT", "GB123")]  # inherited from the customer
    await writer.write_invoice(
        map_bill(replace(first, version=2, purchase_order_number="PO-9"), spec, INTEGRATION), customer
    )
    invoice = await client.v1.invoices.retrieve_async(invoice_id)
    assert [(f.name, f.value) for f in invoice.custom_fields] == [("VAT", "GB123"), ("PO", "PO-9")]
    await writer.write_invoice(map_bill(replace(first, version=3), spec, INTEGRATION), customer)
    invoice = await client.v1.invoices.retrieve_async(invoice_id)
    assert [(f.name, f.value) for f in invoice.custom_fields] == [("VAT", "GB123")]


def test_a_bill_over_stripes_limit_never_reaches_the_writer() -> None:
    with pytest.raises(MappingError, match="99999999"):
        map_bill(bill([line("a", "999999.99"), line("b", "0.01")]), make_spec(), INTEGRATION)


async def test_the_emulator_refuses_to_finalize_an_invoice_over_the_largest_charge(client: Any) -> None:
    customer = await new_customer(client)
    invoice = await client.v1.invoices.create_async(params={"customer": customer, "discounts": ""})
    for _ in range(2):
        await client.v1.invoice_items.create_async(
            params={"customer": customer, "invoice": invoice.id, "amount": 60_000_000, "currency": "usd"}
        )
    with pytest.raises(stripe.InvalidRequestError) as error:
        await client.v1.invoices.finalize_invoice_async(invoice.id)
    assert error.value.code == "amount_too_large"
