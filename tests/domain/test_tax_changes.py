"""Tax settings that change under Bills already in Stripe (issue 19, from the review): a draft follows the spec, a
finalized invoice is judged by what it holds, credits move between lines and the coupon, and a run counts only the tax
of what it wrote."""

from __future__ import annotations

from urllib.parse import parse_qs

import pytest

from m3stripe.domain.runs import EventKind, SyncState
from tests.support.tax_world import ORG, PRODUCT, TAXED, TaxWorld, taxes, world

FEE_AND_CREDIT = [
    {"line_item_type": "STANDING_CHARGE", "subtotal": "20.00", "description": "Platform fee"},
    {"line_item_type": "CREDIT_MEMO", "subtotal": "-5.00", "description": "Goodwill credit"},
]


async def fee_and_credit(w: TaxWorld) -> str:
    account, _ = await w.customer("gb")
    return w.m3ter.add_bill(ORG, account_id=account, lines=FEE_AND_CREDIT, currency="GBP")


async def test_turning_tax_off_reaches_a_taxed_draft_whose_credits_are_a_coupon() -> None:
    async with world() as w:
        bill_id = await fee_and_credit(w)
        assert (await w.run(**TAXED)).sent == 1
        (draft,) = w.invoices_of(bill_id)
        assert draft["discounts"] and draft["automatic_tax"]["enabled"] is True
        # Turned off before the credit line is added back: a taxed draft refuses a negative line.
        off = await w.run(state=SyncState(), **{**TAXED, "automaticTax": "Disabled"})
        assert (off.sent, off.events) == (1, [])
        (invoice,) = w.invoices_of(bill_id)
        assert invoice["id"] == draft["id"] and invoice["automatic_tax"]["enabled"] is False
        assert not invoice["discounts"] and invoice["total"] == 1500
        assert sorted(line["amount"] for line in invoice["lines"]["data"]) == [-500, 2000]


async def test_turning_tax_off_reaches_a_taxed_draft_of_lines_without_a_product() -> None:
    async with world() as w:
        account, _ = await w.customer("gb")
        bill_id = w.bill(account, "10.00", "5.00")
        spec = {"automaticTax": "Enabled", "taxBehavior": "Exclusive", "taxCode": "txcd_10103001"}
        assert (await w.run(**spec)).sent == 1
        off = await w.run(state=SyncState(), **{**spec, "automaticTax": "Disabled"})
        assert (off.sent, off.events) == (1, [])
        (invoice,) = w.invoices_of(bill_id)
        assert invoice["automatic_tax"]["enabled"] is False and invoice["total"] == 1500 and taxes(invoice) == (0, 0)


async def test_turning_tax_on_moves_a_drafts_credit_line_into_the_coupon() -> None:
    async with world() as w:
        bill_id = await fee_and_credit(w)
        assert (await w.run(**{**TAXED, "automaticTax": "Disabled"})).sent == 1
        on = await w.run(state=SyncState(), **TAXED)
        assert (on.sent, on.events) == (1, [])
        (invoice,) = w.invoices_of(bill_id)
        assert invoice["automatic_tax"]["enabled"] is True and invoice["discounts"]
        assert invoice["total_excluding_tax"] == 1500 and taxes(invoice) == (300, 0)


async def test_a_tax_code_is_sent_when_the_tax_behaviour_is_the_accounts() -> None:
    async with world(record_bodies=True) as w:
        w.stripe.set_tax_settings(w.account, tax_behavior="exclusive")  # no default product tax code
        account, _ = await w.customer("gb")
        w.bill(account, "10.00")
        report = await w.run(automaticTax="Enabled", taxCode="txcd_10103001")  # taxBehavior: AccountDefault
        assert (report.sent, report.events) == (1, [])
        (item,) = [r for r in w.stripe.requests if r.method == "POST" and r.path == "/v1/invoiceitems"]
        body = parse_qs(item.body or "")
        assert body["tax_code"] == ["txcd_10103001"] and "tax_behavior" not in body


async def test_turning_tax_on_leaves_a_finalized_invoice_of_the_same_version_alone_without_an_error() -> None:
    async with world() as w:
        account, _ = await w.customer("gb")
        bill_id = w.bill(account, "10.00")
        assert (await w.run(taxBehavior="Exclusive", priceDataProductId=PRODUCT)).sent == 1
        (draft,) = w.invoices_of(bill_id)
        await w.sdk.v1.invoices.finalize_invoice_async(draft["id"])
        # Finance turns tax on and the integration reads every Bill again (re-created, or its status lost).
        again = await w.run(state=SyncState(), **TAXED)
        assert (again.sent, again.unchanged, again.events) == (0, 1, [])
        (invoice,) = w.invoices_of(bill_id)
        assert invoice["status"] == "open" and invoice["automatic_tax"]["enabled"] is False


async def test_a_finalized_invoice_of_the_same_version_with_credits_over_charges_is_no_error_once_tax_is_on() -> None:
    async with world() as w:
        account, _ = await w.customer("gb")
        bill_id = w.usage_and_credit(account, "5.00", "-8.00")
        assert (await w.run(priceDataProductId=PRODUCT)).sent == 1
        (draft,) = w.invoices_of(bill_id)
        await w.sdk.v1.invoices.finalize_invoice_async(draft["id"])
        again = await w.run(state=SyncState(), **TAXED)
        assert (again.unchanged, again.events) == (1, [])


async def test_when_the_accounts_default_taxes_a_bill_whose_credits_exceed_its_charges_its_empty_draft_is_deleted() -> (
    None
):
    async with world() as w:
        w.taxed_by_the_account_default()
        account, _ = await w.customer("gb")
        bill_id = w.usage_and_credit(account, "5.00", "-8.00")
        report = await w.run()  # automaticTax: AccountDefault
        (event,) = report.events
        assert event.kind is EventKind.VALIDATION and "credits of" in event.message
        assert w.invoices_of(bill_id) == [], "the empty draft the account's default taxed is left behind"
        # The event's advice works: with tax off the Bill is sent whole.
        after = await w.run(automaticTax="Disabled")
        assert (after.sent, after.events) == (1, [])
        (invoice,) = w.invoices_of(bill_id)
        assert invoice["total"] == -300 and invoice["automatic_tax"]["enabled"] is False


async def test_credits_gone_from_a_regenerated_bill_take_the_coupon_off_and_new_credits_bring_a_new_one() -> None:
    async with world() as w:
        bill_id = await fee_and_credit(w)
        first = await w.run(**TAXED)
        w.m3ter.regenerate_bill(ORG, bill_id, lines=FEE_AND_CREDIT[:1])
        second = await w.run(state=SyncState(watermark=first.watermark), **TAXED)
        (invoice,) = w.invoices_of(bill_id)
        assert (second.sent, invoice["total_excluding_tax"], invoice["discounts"]) == (1, 2000, [])
        credit = {"line_item_type": "CREDIT_MEMO", "subtotal": "-7.00", "description": "Goodwill credit"}
        w.m3ter.regenerate_bill(ORG, bill_id, lines=[FEE_AND_CREDIT[0], credit])
        third = await w.run(state=SyncState(watermark=second.watermark), **TAXED)
        (invoice,) = w.invoices_of(bill_id)
        assert (third.sent, invoice["total_excluding_tax"], len(invoice["discounts"])) == (1, 1300, 1)


async def test_a_bill_found_as_it_should_be_does_not_count_its_tax_again() -> None:
    async with world() as w:
        account, _ = await w.customer("gb")
        w.bill(account, "10.00")
        first = await w.run(**TAXED)
        assert dict(first.taxes) == {"gbp": 200}
        again = await w.run(**TAXED)  # a progress reset or a replay: nothing written
        assert (again.unchanged, dict(again.taxes), again.bill_taxes) == (1, {}, [])


@pytest.mark.looptime
async def test_a_customers_tax_location_is_read_once_per_pass_however_many_of_its_bills_are_prepared_at_once() -> None:
    async with world() as w:
        account, customer = await w.customer("gb")
        w.m3ter.add_external_mapping(ORG, account, customer)
        bills = [w.bill(account, f"{i}.00") for i in range(1, 7)]
        w.stripe.latency_seconds = 0.05  # so that the Bills' preparations overlap, as at Stripe's latency
        w.stripe.requests.clear()
        report = await w.run(useExternalMappingAccountCode=True, **TAXED)
        assert report.sent == len(bills)
        reads = [r for r in w.stripe.requests if r.method == "GET" and r.path.startswith(f"/v1/customers/{customer}")]
        assert len(reads) == 1, [r.path for r in reads]
