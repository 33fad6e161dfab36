"""One malformed m3ter Bill never stops the others (issue 12): read over HTTP through the SDK, then a pass."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from m3stripe.adapters.m3ter_source import M3terSource
from m3stripe.adapters.stripe_client import open_client
from m3stripe.adapters.stripe_gateway import metadata_of
from m3stripe.domain.billing import Bill, MalformedBill
from m3stripe.domain.mapping import META_ACCOUNT, META_BILL
from m3stripe.domain.runs import EventKind
from m3stripe.testing.m3ter_emulator import M3terEmulator
from m3stripe.testing.stripe_emulator import StripeEmulator
from tests.adapters.service_user import CREDS, ORG
from tests.domain.builders import engine_spec
from tests.support.engine_world import send_pass
from tests.support.world import m3ter_source

STRIPE_KEY = "sk_test_51malformedBILLSneverSTOP"

# (what m3ter sends, the field the error must name). JSON NaN and Infinity are bare tokens, as a
# careless producer writes them; Python's parser (and so the SDK's) accepts them.
CORRUPTIONS: list[tuple[dict[str, Any], list[str], str]] = [
    ({"lineItems[0].subtotal": float("nan")}, [], "lineItems[0].subtotal is nan, not a finite number"),
    ({"lineItems[0].subtotal": float("inf")}, [], "lineItems[0].subtotal is inf, not a finite number"),
    ({"lineItems[0].subtotal": "12,50"}, [], "lineItems[0].subtotal is '12,50', not a number"),
    ({"lineItems[0].subtotal": {"amount": 1}}, [], "lineItems[0].subtotal is {'amount': 1}, not a number"),
    ({"lineItems[1]": None}, [], "lineItems[1] is None, not a line item"),
    ({}, ["lineItems[0].subtotal"], "lineItems[0].subtotal is missing"),
    ({"lineItems[0].subtotal": None}, [], "lineItems[0].subtotal is missing"),
    ({"version": 1.5}, [], "version is 1.5, not a whole number"),
    ({"version": "two"}, [], "version is 'two', not a whole number"),
    ({"billTotal": "lots"}, [], "billTotal is 'lots', not a number"),
    ({"dueDate": "tomorrow"}, [], "dueDate"),
    # An empty time is not an absent one: the Bill is refused, not read with a neighbouring date or no period.
    ({"dtLastModified": ""}, [], "dtLastModified"),
    ({"lineItems[0].servicePeriodStartDate": ""}, [], "lineItems[0].servicePeriodStartDate"),
    ({"lineItems": "none"}, [], "lineItems is 'none', not a list"),
    ({"lineItems[0].sequenceNumber": 2.5}, [], "lineItems[0].sequenceNumber is 2.5, not a whole number"),
]


def _lines() -> list[dict[str, Any]]:
    return [{"line_item_type": "USAGE", "subtotal": "10.00"}, {"line_item_type": "STANDING_CHARGE", "subtotal": "5"}]


@pytest.mark.parametrize(("overrides", "removals", "named"), CORRUPTIONS)
async def test_a_malformed_bill_is_reported_by_field_and_its_neighbours_still_read(
    emulator: M3terEmulator, source: M3terSource, overrides: dict[str, Any], removals: list[str], named: str
) -> None:
    account = emulator.add_account(ORG, name="Acme", code="acme", currency="USD")
    before, bad, after = (emulator.add_bill(ORG, account_id=account, lines=_lines()) for _ in range(3))
    emulator.corrupt_bill(ORG, bad, set=overrides, remove=removals)

    read = [bill async for bill in source.iter_bills(modified_since=None)]
    assert [bill.id for bill in read] == [before, bad, after]
    assert isinstance(read[0], Bill) and isinstance(read[2], Bill)
    malformed = read[1]
    assert isinstance(malformed, MalformedBill)
    assert malformed.message.startswith(f"m3ter Bill {bad}: {named}")
    assert malformed.account_id == account
    assert await source.get_bill(bad) == malformed, "a Bill read by id is converted the same way"


async def test_a_line_without_a_subtotal_is_never_read_as_zero(emulator: M3terEmulator, source: M3terSource) -> None:
    account = emulator.add_account(ORG, name="Acme", code="acme", currency="USD")
    bill_id = emulator.add_bill(ORG, account_id=account, lines=_lines())
    emulator.corrupt_bill(ORG, bill_id, remove=["lineItems[1].subtotal"])
    bill = await source.get_bill(bill_id)
    assert isinstance(bill, MalformedBill) and "lineItems[1].subtotal is missing" in bill.message


async def test_a_sequence_number_of_zero_is_a_number_like_any_other(
    emulator: M3terEmulator, source: M3terSource
) -> None:
    account = emulator.add_account(ORG, name="Acme", code="acme", currency="USD")
    bill_id = emulator.add_bill(ORG, account_id=account, lines=[{"subtotal": "1", "sequence_number": 0}])
    bill = await source.get_bill(bill_id)
    assert isinstance(bill, Bill) and bill.line_items[0].sequence_number == 0


async def test_the_admin_api_serves_a_corrupted_bill(emulator: M3terEmulator, source: M3terSource) -> None:
    account = emulator.add_account(ORG, name="Acme", code="acme", currency="USD")
    bill_id = emulator.add_bill(ORG, account_id=account, lines=_lines())
    async with aiohttp.ClientSession(emulator.url) as http:
        response = await http.post(
            f"/_emulator/organizations/{ORG}/bills/{bill_id}/corrupt",
            data='{"set": {"lineItems[0].subtotal": NaN}}',
            headers={"Content-Type": "application/json"},
        )
        assert response.status == 200
    bill = await source.get_bill(bill_id)
    assert isinstance(bill, MalformedBill) and "not a finite number" in bill.message


async def test_a_pass_sends_every_good_bill_and_reports_the_malformed_one(emulator: M3terEmulator) -> None:
    account = emulator.add_account(ORG, name="Acme", code="acme", currency="USD")
    good = [emulator.add_bill(ORG, account_id=account, lines=_lines()) for _ in range(4)]
    bad = emulator.add_bill(ORG, account_id=account, lines=_lines())
    emulator.corrupt_bill(ORG, bad, set={"lineItems[0].subtotal": float("nan")})
    async with StripeEmulator() as stripe_emulator:
        stripe_emulator.add_api_key(STRIPE_KEY)
        async with open_client(STRIPE_KEY, api_base=stripe_emulator.url) as client:
            await client.v1.customers.create_async(params={"name": "Acme", "metadata": {META_ACCOUNT: account}})
            async with m3ter_source(CREDS, emulator.url) as source:
                report = await send_pass(engine_spec(ORG), source=source, client=client)
            invoices = await client.v1.invoices.list_async(params={"limit": 100})
    assert report.sent == 4 and report.failed == 1
    assert sorted(str(metadata_of(invoice)[META_BILL]) for invoice in invoices.data) == sorted(good)
    [event] = report.events
    assert event.kind is EventKind.VALIDATION and event.bill_id == bad and event.account_id == account
    assert "lineItems[0].subtotal is nan, not a finite number" in event.message
    assert report.stopped_early is None and report.watermark is not None


@pytest.mark.parametrize("account", [None, "", "  "])
async def test_a_bill_without_an_account_id_is_malformed_naming_the_field_not_an_unmapped_customer(
    emulator: M3terEmulator, source: M3terSource, account: str | None
) -> None:
    acme = emulator.add_account(ORG, name="Acme", code="acme", currency="USD")
    bill_id = emulator.add_bill(ORG, account_id=acme, lines=_lines())
    if account is None:
        emulator.corrupt_bill(ORG, bill_id, remove=["accountId"])
    else:
        emulator.corrupt_bill(ORG, bill_id, set={"accountId": account})
    bill = await source.get_bill(bill_id)
    assert isinstance(bill, MalformedBill), bill
    assert bill.message.startswith(f"m3ter Bill {bill_id}: accountId is "), bill.message
    assert "cannot be sent to any Stripe Customer" in bill.message
    assert bill.account_id is None
