"""M3terSource.rounding_for: m3ter's currency picklist, read over HTTP through the SDK."""

from __future__ import annotations

import asyncio
import decimal

import aiohttp
import pytest

from m3stripe.adapters.m3ter_source import M3terSource
from m3stripe.adapters.m3ter_token import M3terSourceError
from m3stripe.adapters.stripe_client import open_client
from m3stripe.domain.billing import CurrencyRounding
from m3stripe.domain.mapping import META_ACCOUNT
from m3stripe.domain.runs import ErrorBudget, EventKind
from m3stripe.testing.m3ter_emulator import M3terEmulator
from m3stripe.testing.stripe_emulator import StripeEmulator
from tests.adapters.service_user import CREDS, ORG
from tests.domain.builders import engine_spec
from tests.support.clock import Clock
from tests.support.engine_world import send_pass
from tests.support.world import m3ter_source


async def test_the_picklist_gives_each_currency_its_decimal_places_and_rounding_mode(
    emulator: M3terEmulator, source: M3terSource
) -> None:
    assert await source.rounding_for("USD") == CurrencyRounding("USD", 2, decimal.ROUND_HALF_UP)
    assert await source.rounding_for("JPY") == CurrencyRounding("JPY", 0, decimal.ROUND_HALF_UP)
    kwd = await source.rounding_for("KWD")
    assert kwd is not None and kwd.max_decimal_places == 3
    requests = emulator.requests_to("/picklists/currency")
    assert requests and all(r.query["pageSize"] == "100" for r in requests), "List Currencies allows 1..100"


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("UP", decimal.ROUND_UP),
        ("DOWN", decimal.ROUND_DOWN),
        ("CEILING", decimal.ROUND_CEILING),
        ("FLOOR", decimal.ROUND_FLOOR),
        ("HALF_UP", decimal.ROUND_HALF_UP),
        ("HALF_DOWN", decimal.ROUND_HALF_DOWN),
        ("HALF_EVEN", decimal.ROUND_HALF_EVEN),
        ("UNNECESSARY", decimal.ROUND_HALF_EVEN),
    ],
)
async def test_every_rounding_mode_m3ter_documents_maps_to_a_decimal_constant(
    emulator: M3terEmulator, source: M3terSource, mode: str, expected: str
) -> None:
    emulator.set_currency(ORG, "gbp", max_decimal_places=4, rounding_mode=mode)
    rule = await source.rounding_for("GBP")
    assert rule is not None
    assert rule == CurrencyRounding("GBP", 4, expected)
    assert decimal.Decimal("1.00005").quantize(decimal.Decimal("0.0001"), rounding=rule.rounding_mode)


async def test_codes_are_upper_case_and_currencies_without_a_rule_are_left_out(
    emulator: M3terEmulator, source: M3terSource
) -> None:
    emulator.set_currency(ORG, "xts", max_decimal_places=None, rounding_mode="HALF_UP", unchecked=True)
    emulator.set_currency(ORG, "xxx", max_decimal_places=2, rounding_mode=None, unchecked=True)
    emulator.set_currency(ORG, "btc", max_decimal_places=5, rounding_mode="DOWN")
    assert await source.rounding_for("XTS") is None and await source.rounding_for("xxx") is None
    assert await source.rounding_for("btc") == CurrencyRounding("BTC", 5, decimal.ROUND_DOWN)


async def test_an_undocumented_rounding_mode_is_a_clear_error(emulator: M3terEmulator, source: M3terSource) -> None:
    emulator.set_currency(ORG, "EUR", max_decimal_places=2, rounding_mode="HALF_ODD", unchecked=True)
    with pytest.raises(M3terSourceError, match=r"EUR has roundingMode 'HALF_ODD'.*HALF_UP"):
        await source.rounding_for("eur")


async def test_one_unusable_currency_is_an_error_for_that_currency_only_and_is_cached(
    emulator: M3terEmulator,
) -> None:
    emulator.set_currency(ORG, "XTS", max_decimal_places=2, rounding_mode="BANKERS", unchecked=True)
    emulator.set_currency(ORG, "USD", max_decimal_places=2, rounding_mode="HALF_UP")
    clock = Clock()
    async with m3ter_source(CREDS, emulator.url, clock=clock) as source:
        for _ in range(3):
            with pytest.raises(M3terSourceError, match=r"XTS has roundingMode 'BANKERS'"):
                await source.rounding_for("XTS")
            assert await source.rounding_for("usd") == CurrencyRounding("USD", 2, decimal.ROUND_HALF_UP)
        assert len(emulator.requests_to("/picklists/currency")) == 1, "the failure is cached like a rule"
        emulator.set_currency(ORG, "XTS", max_decimal_places=2, rounding_mode="HALF_EVEN")
        clock.advance(3601)
        assert await source.rounding_for("XTS") == CurrencyRounding("XTS", 2, decimal.ROUND_HALF_EVEN)


@pytest.mark.parametrize("places", [6, -1, 2.5])
async def test_max_decimal_places_outside_m3ters_range_0_to_5_is_an_error_naming_the_value(
    emulator: M3terEmulator, source: M3terSource, places: object
) -> None:
    emulator.set_currency(ORG, "JPY", max_decimal_places=places, rounding_mode="HALF_UP", unchecked=True)  # type: ignore[arg-type]
    emulator.set_currency(ORG, "USD", max_decimal_places=2, rounding_mode="HALF_UP")
    with pytest.raises(M3terSourceError, match=rf"JPY has maxDecimalPlaces {places}; expected a whole number 0..5"):
        await source.rounding_for("JPY")
    # The other currencies keep their rules.
    assert await source.rounding_for("USD") == CurrencyRounding("USD", 2, decimal.ROUND_HALF_UP)


async def test_the_picklist_is_cached_for_an_hour_then_read_again(emulator: M3terEmulator) -> None:
    clock = Clock()
    async with m3ter_source(CREDS, emulator.url, clock=clock) as source:
        first = await source.rounding_for("USD")
        emulator.set_currency(ORG, "USD", max_decimal_places=4, rounding_mode="HALF_EVEN")
        clock.advance(3599)
        assert await source.rounding_for("USD") == first
        assert len(emulator.requests_to("/picklists/currency")) == 1
        clock.advance(2)
        assert await source.rounding_for("USD") == CurrencyRounding("USD", 4, decimal.ROUND_HALF_EVEN)
        assert len(emulator.requests_to("/picklists/currency")) == 2


@pytest.mark.looptime
async def test_concurrent_callers_share_one_read(emulator: M3terEmulator, source: M3terSource) -> None:
    emulator.latency_seconds = 0.05
    results = await asyncio.gather(*(source.rounding_for("USD") for _ in range(10)))
    assert all(result == results[0] for result in results)
    assert len(emulator.requests_to("/picklists/currency")) == 1


async def test_a_long_picklist_is_read_page_by_page(emulator: M3terEmulator, source: M3terSource) -> None:
    for index in range(230):
        emulator.set_currency(ORG, f"Z{index:02d}", max_decimal_places=index % 6, rounding_mode="FLOOR")
    assert await source.rounding_for("Z229") == CurrencyRounding("Z229", 229 % 6, decimal.ROUND_FLOOR)
    assert len(emulator.requests_to("/picklists/currency")) == 3  # 248 currencies, 100 a page


async def test_the_admin_api_sets_a_currency_rule(emulator: M3terEmulator, source: M3terSource) -> None:
    async with aiohttp.ClientSession(emulator.url) as http:
        response = await http.put(
            f"/_emulator/organizations/{ORG}/currencies/chf", json={"max_decimal_places": 1, "rounding_mode": "UP"}
        )
        assert response.status == 200
        response = await http.put(f"/_emulator/organizations/{ORG}/currencies/chf", json={"rounding_mode": "SIDEWAYS"})
        assert response.status == 400 and "rounding_mode" in (await response.json())["message"]
    assert await source.rounding_for("CHF") == CurrencyRounding("CHF", 1, decimal.ROUND_UP)


async def test_a_sync_pass_sends_every_bill_but_those_in_the_currency_whose_picklist_entry_is_unusable() -> None:
    key = "sk_test_currencyCascade01"
    stripe_emulator = StripeEmulator(seed=5, contract_mode=True)
    stripe_emulator.add_api_key(key)
    async with stripe_emulator, M3terEmulator() as m3ter:
        m3ter.add_client(CREDS.client_id, CREDS.client_secret, ORG)
        m3ter.set_currency(ORG, "EUR", max_decimal_places=2, rounding_mode="BANKERS", unchecked=True)
        accounts = {
            currency: m3ter.add_account(ORG, name=currency, code=currency.lower(), currency=currency)
            for currency in ("USD", "EUR")
        }
        usd_bills = [
            m3ter.add_bill(ORG, account_id=accounts["USD"], currency="USD", lines=[{"subtotal": f"{n}.00"}])
            for n in (1, 2, 3)
        ]
        eur_bill = m3ter.add_bill(ORG, account_id=accounts["EUR"], currency="EUR", lines=[{"subtotal": "4.00"}])
        async with m3ter_source(CREDS, m3ter.url) as source, open_client(key, api_base=stripe_emulator.url) as client:
            for account in accounts.values():
                await client.v1.customers.create_async(params={"metadata": {META_ACCOUNT: account}})
            report = await send_pass(
                engine_spec(ORG), source=source, client=client, integration_id="int-currency", budget=ErrorBudget(10)
            )
        picklist_reads = len(m3ter.requests_to("/picklists/currency"))
    assert report.sent == len(usd_bills)
    [event] = report.events
    assert event.bill_id == eur_bill and event.kind is EventKind.VALIDATION
    assert "EUR" in event.message and "'BANKERS'" in event.message
    assert picklist_reads == 1
