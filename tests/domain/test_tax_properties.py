"""Property: with automatic tax, for any lines (credits included) and any rate, exclusive or inclusive, the amount
Stripe holds before tax is exactly the Bill's total, and the tax is the rate of each line within one minor unit.

Bills are generated, planned and written by the operator's StripeWriter through the official stripe SDK over HTTP
to an in-process StripeEmulator modelling Stripe Tax (a GB registration at the drawn rate), and read back."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from m3stripe.adapters.stripe_client import open_client
from m3stripe.adapters.stripe_gateway import RetryPolicy, StripeGateway
from m3stripe.adapters.stripe_ledger import StripeLedger
from m3stripe.domain.mapping import MappingError, map_bill
from m3stripe.domain.stripe_writer import StripeWriter
from m3stripe.domain.tax_forms import CreditsExceedCharges
from m3stripe.testing.stripe_emulator import StripeEmulator
from tests.domain.builders import make_bill, make_line, make_spec

KEY = "sk_test_taxProperties01"
PRODUCT = "prod_TaxProps"
GB = {"line1": "1 High Street", "city": "London", "postal_code": "SW1A 1AA", "country": "GB"}
SETTINGS = settings(
    max_examples=30,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@dataclass(frozen=True)
class Case:
    subtotals: list[Decimal]
    rate: Decimal  # percent
    inclusive: bool
    priced: bool  # priceDataProductId set (else amount lines become attached items)


@st.composite
def cases(draw: st.DrawFn) -> Case:
    count = draw(st.integers(1, 12))
    subtotals = [
        Decimal(draw(st.integers(-50_000, 500_000))) / Decimal(draw(st.sampled_from([1, 100, 1000])))
        for _ in range(count)
    ]
    rate = Decimal(draw(st.integers(0, 2750))) / 100
    return Case(subtotals, rate, draw(st.booleans()), draw(st.booleans()))


@pytest.fixture(scope="module")
def emulator() -> Iterator[StripeEmulator]:
    emu = StripeEmulator(seed=23)
    emu.add_api_key(KEY, country="GB", default_currency="gbp")
    with emu.in_thread():
        asyncio.run(_product(emu))
        yield emu


async def _product(emulator: StripeEmulator) -> None:
    async with open_client(KEY, api_base=emulator.url) as client:
        await client.v1.products.create_async(params={"id": PRODUCT, "name": "Usage", "tax_code": "txcd_10103001"})


async def write(emulator: StripeEmulator, case: Case) -> tuple[int, int, int, list[tuple[int, int]]] | None:
    """(the Bill's total in pence, invoice total, exclusive tax, [(line amount after its discount share, line tax)]); None when the
    Bill cannot be taxed this way (credits above the charges, or nothing to send)."""
    account = emulator.accounts()[0]
    emulator.set_tax_settings(account, head_office=GB)
    emulator.add_tax_registration(account, "GB", case.rate)  # the drawn rate for this example
    lines = [make_line(f"l{i}", s, currency="GBP", description=f"line {i}") for i, s in enumerate(case.subtotals)]
    # m3ter's billTotal: the lines' sum, rounded to pence (HALF_UP, m3ter's default rounding mode).
    bill_total = sum(case.subtotals, Decimal(0)).quantize(Decimal("0.01"), ROUND_HALF_UP)
    bill = make_bill(
        lines,
        bill_id=f"bill-{uuid.uuid4().hex[:10]}",
        currency="GBP",
        total=bill_total,
        last_modified=datetime.now(UTC),
    )
    spec = make_spec(
        organization="org",
        automaticTax="Enabled",
        taxBehavior="Inclusive" if case.inclusive else "Exclusive",
        taxCode="txcd_10103001",
        priceDataProductId=PRODUCT if case.priced else None,
    )
    try:
        plan = map_bill(bill, spec, "int-tax-prop")
    except MappingError:
        return None  # above Stripe's largest amount: refused before any write (test_mapping)
    if not plan.lines:
        return None
    async with open_client(KEY, api_base=emulator.url) as client:
        customer = (await client.v1.customers.create_async(params={"address": GB})).id
        writer = StripeWriter(StripeLedger(StripeGateway(client, retry=RetryPolicy(max_attempts=1))))
        try:
            written = await writer.write_invoice(plan, customer)
        except CreditsExceedCharges:
            return None
        invoice = emulator.state(account)["invoices"][written.stripe_id]
    exclusive = sum(t["amount"] for t in invoice["total_taxes"] if t["tax_behavior"] == "exclusive")
    shares = [
        (
            line["amount"] - sum(d["amount"] for d in line["discount_amounts"]),
            sum(t["amount"] for t in line["taxes"]),
        )
        for line in invoice["lines"]["data"]
    ]
    return int(bill_total * 100), int(invoice["total"]), exclusive, shares


@SETTINGS
@given(case=cases())
@example(case=Case([Decimal("20.00"), Decimal("-5.00")], Decimal(20), False, True))
@example(case=Case([Decimal("0.004")] * 7 + [Decimal("-0.01")], Decimal("17.5"), True, False))
def test_the_amount_before_tax_is_exactly_the_bill_total_and_each_line_is_taxed_at_the_rate(
    emulator: StripeEmulator, case: Case
) -> None:
    result = asyncio.run(write(emulator, case))
    if result is None:
        return
    bill_total, total, exclusive, shares = result
    assert total - exclusive == bill_total
    rate = case.rate / 100
    for taxable, tax in shares:
        expected = taxable * rate / (1 + rate) if case.inclusive else taxable * rate
        assert abs(Decimal(tax) - expected) <= 1, (taxable, tax, expected)
