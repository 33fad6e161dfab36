"""Stripe Tax for real (issue 19), through the engine over HTTP: m3ter Bills through the official m3ter SDK, Stripe through
the official stripe SDK, the Stripe emulator modelling Stripe Tax (settings, registrations, customer locations,
automatic_tax, the tax-behaviour rule, per-line tax) in contract mode."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

from m3stripe.domain.runs import EventKind, RunStatus, SyncState
from tests.domain.request_log import normalized
from tests.support.tax_world import ORG, PRODUCT, TAXED, UK, taxes, world


async def test_exclusive_tax_is_added_and_the_amount_before_tax_is_the_bills_total() -> None:
    async with world() as w:
        account, _ = await w.customer("gb")
        bill_id = w.bill(account, "10.00", "2.35", "0.004")
        report = await w.run(**TAXED)
        assert (report.status, report.sent) == (RunStatus.COMPLETE, 1), report.events
        (invoice,) = w.invoices_of(bill_id)
        exclusive, inclusive = taxes(invoice)
        assert invoice["automatic_tax"]["enabled"] is True and inclusive == 0
        assert invoice["total"] - exclusive == 1235 == invoice["total_excluding_tax"]
        lines = invoice["lines"]["data"]
        for line in lines:  # each line taxed at 20%, within one minor unit
            assert abs(sum(t["amount"] for t in line["taxes"]) - line["amount"] * Decimal("0.2")) <= 1
        assert report.taxes == {"gbp": exclusive} and exclusive == 247


async def test_inclusive_tax_is_inside_the_lines_and_the_invoices_total_is_the_bills_total() -> None:
    async with world() as w:
        account, _ = await w.customer("gb")
        bill_id = w.bill(account, "12.00")
        report = await w.run(**{**TAXED, "taxBehavior": "Inclusive"})
        (invoice,) = w.invoices_of(bill_id)
        exclusive, inclusive = taxes(invoice)
        assert (invoice["total"], exclusive, inclusive) == (1200, 0, 200)
        assert report.taxes == {"gbp": 200}


async def test_lines_without_a_product_are_attached_invoice_items_carrying_tax_behavior_and_tax_code() -> None:
    async with world() as w:
        account, _ = await w.customer("gb")
        bill_id = w.bill(account, "10.00", "5.00")
        report = await w.run(automaticTax="Enabled", taxBehavior="Exclusive", taxCode="txcd_10103001")
        assert report.sent == 1, report.events
        (invoice,) = w.invoices_of(bill_id)
        items = w.items_of(bill_id)
        assert len(items) == 2 and {i["invoice"] for i in items} == {invoice["id"]}
        assert {i["metadata"]["m3ter_tax_behavior"] for i in items} == {"exclusive"}
        assert {t["tax_behavior"] for line in invoice["lines"]["data"] for t in line["taxes"]} == {"exclusive"}
        assert invoice["total_excluding_tax"] == 1500 and taxes(invoice) == (300, 0)


async def test_a_credit_is_a_discount_taken_off_before_tax_and_nothing_is_refused() -> None:
    async with world() as w:
        account, _ = await w.customer("gb")
        lines = [
            {"line_item_type": "STANDING_CHARGE", "subtotal": "20.00", "description": "Platform fee"},
            {"line_item_type": "CREDIT_MEMO", "subtotal": "-5.00", "description": "Goodwill credit"},
        ]
        bill_id = w.m3ter.add_bill(ORG, account_id=account, lines=lines, currency="GBP")
        report = await w.run(**TAXED)
        assert (report.sent, report.events) == (1, []), report.events
        (invoice,) = w.invoices_of(bill_id)
        assert invoice["total_excluding_tax"] == 1500  # the Bill's total: 20.00 - 5.00
        assert taxes(invoice) == (300, 0)  # 20% of what is left after the credit
        assert [d["amount"] for d in invoice["total_discount_amounts"]] == [500]
        assert all(line["amount"] > 0 for line in invoice["lines"]["data"])
        # The same version again: nothing to do; the coupon is not redeemed a second time.
        again = await w.run(**TAXED)
        assert (again.sent, again.unchanged) == (0, 1)


async def test_credits_larger_than_the_charges_are_a_validation_event_and_nothing_is_sent() -> None:
    async with world() as w:
        account, _ = await w.customer("gb")
        bill_id = w.usage_and_credit(account, "5.00", "-8.00")
        report = await w.run(**TAXED)
        (event,) = report.events
        assert event.kind is EventKind.VALIDATION and "credits of" in event.message and bill_id in event.message
        assert w.invoices_of(bill_id) == []


async def test_a_customer_without_an_address_is_an_event_naming_what_to_add_and_the_other_bills_are_sent() -> None:
    async with world() as w:
        placed, _ = await w.customer("gb")
        unplaced, customer = await w.customer("nowhere", address=None)
        good = w.bill(placed, "10.00")
        bad = w.bill(unplaced, "10.00")
        report = await w.run(**TAXED)
        assert report.sent == 1 and len(w.invoices_of(good)) == 1 and w.invoices_of(bad) == []
        (event,) = report.events
        assert event.kind is EventKind.VALIDATION and event.bill_id == bad
        assert customer in event.message and "address with a country" in event.message
        assert report.retry_bill_ids == [bad]
        # The address is added in Stripe: the next pass sends it.
        w.stripe.set_customer_location(w.account, customer, address=UK)
        state = SyncState(watermark=report.watermark, retry_bill_ids=tuple(report.retry_bill_ids))
        again = await w.run(state=state, **TAXED)
        assert again.sent == 1 and len(w.invoices_of(bad)) == 1


async def test_a_country_without_a_registration_is_sent_and_the_run_says_no_tax_was_due() -> None:
    async with world(registered=False) as w:
        account, _ = await w.customer("gb")
        bill_id = w.bill(account, "10.00")
        report = await w.run(**TAXED)
        assert (report.sent, report.events) == (1, [])
        (invoice,) = w.invoices_of(bill_id)
        assert invoice["automatic_tax"]["enabled"] is True and taxes(invoice) == (0, 0)
        assert invoice["total"] == 1000 and report.taxes == {"gbp": 0}
        assert report.untaxed == 1 and "no tax due on 1 invoice(s)" in report.summary()


async def test_stripe_tax_not_active_stops_the_pass_with_one_event_and_sends_nothing() -> None:
    async with world(tax=False, seed=3) as w:  # no head office: Stripe Tax is pending
        gb, _ = await w.customer("gb")
        w.bill(gb, "10.00")
        report = await w.run(automaticTax="Enabled", taxBehavior="Exclusive")
        assert w.stripe.state(w.account)["invoices"] == {}
    (event,) = report.events
    assert event.kind is EventKind.VALIDATION and "Stripe Tax is not active" in event.message
    assert "head_office" in event.message and report.sent == 0 and report.stopped_early


async def test_no_tax_behavior_in_spec_or_account_is_refused_before_sending() -> None:
    async with world() as w:
        account, _ = await w.customer("gb")
        w.bill(account, "10.00")
        report = await w.run(automaticTax="Enabled", priceDataProductId=PRODUCT)
        (event,) = report.events
        assert "spec.taxBehavior is AccountDefault" in event.message and report.sent == 0


async def test_a_regenerated_taxed_bill_updates_its_draft_and_stripe_recomputes_the_tax() -> None:
    async with world() as w:
        account, _ = await w.customer("gb")
        bill_id = w.bill(account, "10.00")
        first = await w.run(**TAXED)
        (draft,) = w.invoices_of(bill_id)
        assert taxes(draft) == (200, 0)
        w.m3ter.regenerate_bill(
            ORG,
            bill_id,
            lines=[
                {"line_item_type": "USAGE", "subtotal": "30.00"},
                {"line_item_type": "CREDIT_MEMO", "subtotal": "-10.00"},
            ],
        )
        second = await w.run(state=SyncState(watermark=first.watermark), **TAXED)
        assert second.sent == 1, second.events
        (updated,) = w.invoices_of(bill_id)
        assert updated["id"] == draft["id"] and updated["total_excluding_tax"] == 2000 and taxes(updated) == (400, 0)


async def test_a_finalized_taxed_invoice_is_still_left_alone() -> None:
    async with world() as w:
        account, _ = await w.customer("gb")
        bill_id = w.bill(account, "10.00")
        first = await w.run(**TAXED)
        (draft,) = w.invoices_of(bill_id)
        await w.sdk.v1.invoices.finalize_invoice_async(draft["id"])
        w.m3ter.regenerate_bill(ORG, bill_id, lines=[{"line_item_type": "USAGE", "subtotal": "99.00"}])
        second = await w.run(state=SyncState(watermark=first.watermark), **TAXED)
        assert second.status is RunStatus.INVOICE_ALREADY_PAID
        (final,) = w.invoices_of(bill_id)
        assert final["total"] == 1200 and final["status"] == "open"


async def test_a_restricted_key_without_the_tax_settings_permission_is_named() -> None:
    async with world() as w:
        account, _ = await w.customer("gb")
        w.bill(account, "10.00")
        restricted = "rk_test_51taxNoSettings"
        w.stripe.add_api_key(
            restricted,
            w.account,
            permissions=["rak_invoice_write", "rak_invoiceitem_write", "rak_customer_read", "rak_coupon_write"],
        )
        report = await w.run(key=restricted, **TAXED)
        (event,) = report.events
        assert event.kind is EventKind.AUTHENTICATION and "rak_tax_settings_read" in event.message
        assert report.status is RunStatus.AUTH_FAILED and report.sent == 0


async def test_the_account_default_turning_tax_on_makes_the_lines_take_their_taxed_forms() -> None:
    async with world() as w:
        w.taxed_by_the_account_default()
        account, _ = await w.customer("gb")
        bill_id = w.usage_and_credit(account, "10.00", "-2.00")
        report = await w.run()  # automaticTax: AccountDefault, taxBehavior: AccountDefault
        assert (report.sent, report.events) == (1, []), report.events
        (invoice,) = w.invoices_of(bill_id)
        assert invoice["automatic_tax"]["enabled"] is True
        assert invoice["total_excluding_tax"] == 800 and taxes(invoice) == (160, 0)


async def test_items_mode_sends_pending_items_with_their_tax_behavior_and_product() -> None:
    async with world() as w:
        account, customer = await w.customer("gb")
        bill_id = w.bill(account, "10.00")
        report = await w.run(createStripeInvoice=False, taxBehavior="Exclusive", priceDataProductId=PRODUCT)
        assert report.sent == 1, report.events
        (item,) = w.items_of(bill_id)
        assert item["customer"] == customer and item["invoice"] is None
        assert item["pricing"]["price_details"]["product"] == PRODUCT
        price = w.stripe.state(w.account)["prices"][item["pricing"]["price_details"]["price"]]
        assert price["tax_behavior"] == "exclusive"
        again = await w.run(createStripeInvoice=False, taxBehavior="Exclusive", priceDataProductId=PRODUCT)
        assert (again.sent, again.unchanged) == (0, 1)


async def test_a_plan_with_tax_decides_as_a_send_pass_and_writes_nothing() -> None:
    async with world() as w:
        account, _ = await w.customer("gb")
        unplaced, _ = await w.customer("nowhere", address=None)
        w.bill(account, "10.00")
        w.bill(unplaced, "10.00")
        report = await w.run(mode="Plan", **TAXED)
        assert (report.sent, report.failed) == (1, 1)
        assert w.stripe.state(w.account)["invoices"] == {}


# --------------------------------------------------------------------------- tax off: today's requests

GOLDEN = Path(__file__).parent / "fixtures" / "requests_without_tax.json"


async def requests_of_a_bills_life(**spec: Any) -> list[str]:
    """Every request a Bill's life sends to Stripe, normalized: created (a charge and a credit), regenerated, and in
    items mode; on an account without Stripe Tax settings, as before issue 19."""
    async with world(tax=False, seed=5, record_bodies=True) as w:
        gb, _ = await w.customer("gb")
        lines = [
            {"line_item_type": "USAGE", "subtotal": "10.00", "description": "usage"},
            {"line_item_type": "CREDIT_MEMO", "subtotal": "-1.00", "description": "credit"},
        ]
        bill_id = w.m3ter.add_bill(ORG, account_id=gb, lines=lines, currency="GBP")
        start = len(w.stripe.requests)
        first = await w.run(**spec)
        w.m3ter.regenerate_bill(ORG, bill_id, lines=[{"line_item_type": "USAGE", "subtotal": "12.00"}])
        await w.run(state=SyncState(watermark=first.watermark), **spec)
        items = w.bill(gb, "3.00")
        await w.run(createStripeInvoice=False, state=SyncState(watermark=first.watermark), **spec)
        assert w.items_of(items)
        recorded = list(w.stripe.requests)[start:]
    return normalized(r for r in recorded if r.method == "POST")


async def test_the_account_default_sends_the_requests_of_before_tax_byte_for_byte() -> None:
    expected = json.loads(GOLDEN.read_text(encoding="utf-8"))
    assert await requests_of_a_bills_life() == expected
    assert await requests_of_a_bills_life(automaticTax="AccountDefault", taxBehavior="AccountDefault") == expected


async def test_tax_disabled_adds_only_automatic_tax_enabled_false_to_the_invoices_it_creates_and_updates() -> None:
    expected = json.loads(GOLDEN.read_text(encoding="utf-8"))
    disabled = await requests_of_a_bills_life(automaticTax="Disabled")
    assert len(disabled) == len(expected)
    for sent, before in zip(disabled, expected, strict=True):
        if sent != before:
            assert re.fullmatch(r"/v1/invoices(/<id[0-9]+>)?", sent.split(" ")[1]), (sent, before)
            assert sent.endswith("&automatic_tax[enabled]=false"), (sent, before)
            assert sent.removesuffix("&automatic_tax[enabled]=false") == before
