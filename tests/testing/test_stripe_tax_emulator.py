"""Stripe Tax in the Stripe emulator, through the official stripe SDK over HTTP.

Each section is one rule of Stripe Tax as the emulator models it (operator/m3stripe/testing/
stripe_emulator/tax.py cites the source of each): tax settings and registrations, a customer's tax
location, automatic tax on invoices, the tax behaviour every line needs, negative lines, the tax on
each line, finalization, and the restricted-key permissions.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
import stripe

from m3stripe.testing.stripe_emulator import StripeEmulator
from tests.support.clock import Clock

KEY = "sk_test_taxEmulatorKey001abcd"
NOW = 1_800_000_000
GB = {"line1": "10 Downing Street", "city": "London", "postal_code": "SW1A 2AA", "country": "GB"}


@pytest.fixture
def clock() -> Clock:
    """The emulator's clock, moved by the tests (registrations start and expire by it)."""
    return Clock(NOW)


@pytest.fixture
async def emulator(clock: Clock) -> AsyncIterator[StripeEmulator]:
    async with StripeEmulator(seed=19, clock=clock, contract_mode=True) as emu:
        yield emu
        assert emu.contract_report() == ""


@pytest.fixture
def account(emulator: StripeEmulator) -> str:
    return emulator.add_api_key(KEY, country="GB", default_currency="gbp")


def make_client(emulator: StripeEmulator, key: str = KEY) -> Any:
    return stripe.StripeClient(
        key, base_addresses={"api": emulator.url}, http_client=stripe.HTTPXClient(), max_network_retries=0
    )


@pytest.fixture
def client(emulator: StripeEmulator, account: str) -> Any:
    return make_client(emulator)


@pytest.fixture
def taxed(emulator: StripeEmulator, account: str) -> str:
    """An account with Stripe Tax active (head office in GB, preset tax code) and registered in GB at 20%."""
    emulator.set_tax_settings(account, head_office="GB", tax_code="txcd_10000000")
    emulator.add_tax_registration(account, "GB", 20)
    return account


async def customer(client: Any, **params: Any) -> Any:
    return await client.v1.customers.create_async(params={"email": "billing@example.com", **params})


async def product(client: Any, **params: Any) -> Any:
    return await client.v1.products.create_async(params={"name": "Usage", **params})


async def taxed_draft(client: Any, buyer: Any, currency: str = "gbp", **params: Any) -> Any:
    return await client.v1.invoices.create_async(
        params={"customer": buyer.id, "currency": currency, "automatic_tax": {"enabled": True}, **params}
    )


def priced(prod: Any, unit: str, behavior: str | None = None, currency: str = "gbp", quantity: int = 1) -> Any:
    price_data: dict[str, Any] = {"currency": currency, "product": prod.id, "unit_amount_decimal": unit}
    if behavior is not None:
        price_data["tax_behavior"] = behavior
    return {"price_data": price_data, "quantity": quantity}


def refusal(error: pytest.ExceptionInfo[stripe.InvalidRequestError]) -> tuple[int | None, str | None, str]:
    return error.value.http_status, error.value.code, str(error.value.user_message)


# --- tax settings --------------------------------------------------------------------------------


async def test_a_new_accounts_tax_settings_are_pending_for_want_of_a_head_office(client: Any) -> None:
    settings = await client.v1.tax.settings.retrieve_async()
    assert settings.object == "tax.settings"
    assert settings.status == "pending"
    assert settings.status_details.pending.missing_fields == ["head_office"]
    assert (settings.defaults.tax_behavior, settings.defaults.tax_code, settings.defaults.provider) == (
        None,
        None,
        "stripe",
    )
    assert settings.head_office is None


async def test_a_head_office_makes_the_settings_active_and_defaults_are_kept(client: Any) -> None:
    settings = await client.v1.tax.settings.update_async(
        params={"defaults": {"tax_behavior": "exclusive", "tax_code": "txcd_10103001"}}
    )
    assert settings.status == "pending"
    settings = await client.v1.tax.settings.update_async(params={"head_office": {"address": {"country": "gb"}}})
    assert settings.status == "active"
    assert settings.status_details.to_dict() == {"active": {}}
    assert settings.head_office.address.country == "GB"
    # "none can be removed once set": a later update leaves what it does not name.
    assert (settings.defaults.tax_behavior, settings.defaults.tax_code) == ("exclusive", "txcd_10103001")
    settings = await client.v1.tax.settings.update_async(params={"defaults": {"tax_behavior": "inferred_by_currency"}})
    assert (settings.defaults.tax_behavior, settings.defaults.tax_code) == ("inferred_by_currency", "txcd_10103001")


async def test_a_malformed_tax_code_or_head_office_country_is_refused(client: Any) -> None:
    with pytest.raises(stripe.InvalidRequestError) as error:
        await client.v1.tax.settings.update_async(params={"defaults": {"tax_code": "general"}})
    assert error.value.param == "defaults[tax_code]"
    with pytest.raises(stripe.InvalidRequestError) as error:
        await client.v1.tax.settings.update_async(params={"head_office": {"address": {"country": "Britain"}}})
    assert error.value.param == "head_office[address][country]"
    assert (await client.v1.tax.settings.retrieve_async()).status == "pending"


async def test_test_and_live_mode_have_their_own_tax_settings(emulator: StripeEmulator, account: str) -> None:
    emulator.add_api_key("sk_live_taxEmulatorLive01abcd", account=account)
    emulator.set_tax_settings(account, head_office="GB", livemode=False)
    live = make_client(emulator, "sk_live_taxEmulatorLive01abcd")
    settings = await live.v1.tax.settings.retrieve_async()
    assert (settings.status, settings.livemode) == ("pending", True)


# --- registrations -------------------------------------------------------------------------------


async def test_a_registration_is_scheduled_active_then_expired_by_its_dates(
    client: Any, emulator: StripeEmulator, account: str, clock: Clock
) -> None:
    emulator.set_tax_rate("GB", 20)
    emulator.set_tax_rate("DE", 19)
    now = await client.v1.tax.registrations.create_async(
        params={"active_from": "now", "country": "GB", "country_options": {"gb": {"type": "standard"}}}
    )
    assert (now.object, now.status, now.active_from, now.expires_at) == ("tax.registration", "active", NOW, None)
    later = await client.v1.tax.registrations.create_async(
        params={
            "active_from": NOW + 3600,
            "country": "DE",
            "country_options": {"de": {"type": "standard", "standard": {"place_of_supply_scheme": "standard"}}},
        }
    )
    assert later.status == "scheduled"
    listed = await client.v1.tax.registrations.list_async(params={"status": "active"})
    assert [r.id for r in listed.data] == [now.id]
    clock.advance(3600)
    assert (await client.v1.tax.registrations.retrieve_async(later.id)).status == "active"
    expired = await client.v1.tax.registrations.update_async(now.id, params={"expires_at": "now"})
    assert expired.status == "expired"
    assert [r.id for r in (await client.v1.tax.registrations.list_async()).data] == [later.id, now.id]
    assert [r.id for r in (await client.v1.tax.registrations.list_async(params={"status": "expired"})).data] == [now.id]


async def test_a_registration_takes_only_its_own_countrys_options_and_a_us_one_names_its_state(client: Any) -> None:
    with pytest.raises(stripe.InvalidRequestError) as error:
        await client.v1.tax.registrations.create_async(
            params={"active_from": "now", "country": "GB", "country_options": {"ie": {"type": "standard"}}}
        )
    assert error.value.param == "country_options"
    with pytest.raises(stripe.InvalidRequestError) as error:
        await client.v1.tax.registrations.create_async(
            params={"active_from": NOW - 1, "country": "GB", "country_options": {"gb": {"type": "standard"}}}
        )
    assert error.value.param == "active_from"


async def test_registering_where_the_emulator_knows_no_rate_names_the_admin_call_to_make(client: Any) -> None:
    with pytest.raises(stripe.InvalidRequestError) as error:
        await client.v1.tax.registrations.create_async(
            params={"active_from": "now", "country": "FR", "country_options": {"fr": {"type": "standard"}}}
        )
    assert "StripeEmulator.set_tax_rate" in str(error.value.user_message)


# --- the customer's tax location -----------------------------------------------------------------


async def test_a_customers_tax_is_returned_only_when_expanded_on_retrieve_list_create_and_update(
    client: Any, taxed: str
) -> None:
    buyer = await customer(client, address=GB)
    assert "tax" not in buyer
    assert "tax" not in await client.v1.customers.retrieve_async(buyer.id)
    expanded = await client.v1.customers.retrieve_async(buyer.id, params={"expand": ["tax"]})
    assert expanded.tax.to_dict() == {
        "automatic_tax": "supported",
        "ip_address": None,
        "location": {"country": "GB", "source": "billing_address", "state": None},
        "provider": "stripe",
    }
    listed = await client.v1.customers.list_async(params={"expand": ["data.tax"]})
    assert [c.tax.automatic_tax for c in listed.data] == ["supported"]
    created = await client.v1.customers.create_async(params={"name": "No address", "expand": ["tax"]})
    assert created.tax.automatic_tax == "unrecognized_location"
    updated = await client.v1.customers.update_async(created.id, params={"address": GB, "expand": ["tax"]})
    assert updated.tax.automatic_tax == "supported"
    assert "tax" not in await client.v1.customers.retrieve_async(created.id)


async def test_a_customer_is_supported_where_the_account_is_registered_and_not_collecting_elsewhere(
    client: Any, taxed: str
) -> None:
    french = await customer(client, address={"country": "FR", "postal_code": "75001"}, expand=["tax"])
    assert french.tax.automatic_tax == "not_collecting"
    assert french.tax.location.country == "FR"


@pytest.mark.parametrize(
    ("address", "status"),
    [
        ({"country": "US", "state": "CA"}, "unrecognized_location"),  # "the US require a 5-digit postal code"
        ({"country": "US", "postal_code": "9410"}, "unrecognized_location"),
        ({"country": "US", "postal_code": "94107", "state": "CA"}, "not_collecting"),
        ({"country": "CA", "city": "Toronto"}, "unrecognized_location"),  # "either the province or postal code"
        ({"country": "CA", "state": "ON"}, "not_collecting"),
        ({"city": "London", "line1": "1 High Street"}, "unrecognized_location"),  # no country
        ({"country": "DE"}, "not_collecting"),  # "at least a country-level address"
    ],
)
async def test_an_address_too_imprecise_for_tax_is_an_unrecognized_location(
    client: Any, taxed: str, address: dict[str, str], status: str
) -> None:
    buyer = await customer(client, address=address, expand=["tax"])
    assert buyer.tax.automatic_tax == status


async def test_a_non_empty_shipping_address_decides_even_when_it_is_too_imprecise(client: Any, taxed: str) -> None:
    buyer = await customer(
        client, address=GB, shipping={"name": "Depot", "address": {"country": "US", "state": "NY"}}, expand=["tax"]
    )
    assert (buyer.tax.automatic_tax, buyer.tax.location) == ("unrecognized_location", None)
    moved = await client.v1.customers.update_async(
        buyer.id, params={"shipping": {"name": "Depot", "address": GB}, "expand": ["tax"]}
    )
    assert (moved.tax.automatic_tax, moved.tax.location.source) == ("supported", "shipping_destination")


async def test_without_an_address_the_ip_address_locates_the_customer(
    client: Any, emulator: StripeEmulator, taxed: str
) -> None:
    emulator.set_ip_location("81.2.69.160", "GB")
    buyer = await customer(client, tax={"ip_address": "81.2.69.160"}, expand=["tax"])
    assert buyer.tax.to_dict() == {
        "automatic_tax": "supported",
        "ip_address": "81.2.69.160",
        "location": {"country": "GB", "source": "ip_address", "state": None},
        "provider": "stripe",
    }
    unknown = await customer(client, tax={"ip_address": "192.0.2.1"}, expand=["tax"])
    assert unknown.tax.automatic_tax == "unrecognized_location"


async def test_a_failed_location_lookup_is_reported_until_it_recovers(
    client: Any, emulator: StripeEmulator, taxed: str
) -> None:
    buyer = await customer(client, address=GB)
    emulator.fail_customer_tax(taxed, buyer.id)
    assert (
        await client.v1.customers.retrieve_async(buyer.id, params={"expand": ["tax"]})
    ).tax.automatic_tax == "failed"
    emulator.fail_customer_tax(taxed, buyer.id, False)
    assert (
        await client.v1.customers.retrieve_async(buyer.id, params={"expand": ["tax"]})
    ).tax.automatic_tax == "supported"


async def test_validate_location_immediately_refuses_a_customer_stripe_cannot_place(client: Any, taxed: str) -> None:
    with pytest.raises(stripe.InvalidRequestError) as error:
        await customer(client, address={"country": "US", "state": "CA"}, tax={"validate_location": "immediately"})
    assert refusal(error) == (
        400,
        "customer_tax_location_invalid",
        "The customer's location isn't recognized. Set a valid customer address in order to automatically "
        "calculate tax.",
    )
    assert (await client.v1.customers.list_async()).data == []
    buyer = await customer(client, address=GB, tax={"validate_location": "immediately"})
    with pytest.raises(stripe.InvalidRequestError) as error:
        await client.v1.customers.update_async(
            buyer.id, params={"address": {"country": "US"}, "tax": {"validate_location": "immediately"}}
        )
    assert error.value.code == "customer_tax_location_invalid"
    assert (await client.v1.customers.retrieve_async(buyer.id)).address.country == "GB"  # nothing changed
    deferred = await customer(client, address={"country": "US"}, tax={"validate_location": "deferred"})
    assert deferred.address.country == "US"


async def test_the_admin_helper_gives_a_customer_an_address_as_the_api_would(
    client: Any, emulator: StripeEmulator, taxed: str
) -> None:
    buyer = await customer(client)
    status = emulator.set_customer_location(taxed, buyer.id, address=GB)
    assert status["automatic_tax"] == "supported"
    assert (await client.v1.customers.retrieve_async(buyer.id)).address.postal_code == "SW1A 2AA"


async def test_expanding_an_invoices_customer_tax_leaves_the_stored_customer_as_it_was(
    client: Any, emulator: StripeEmulator, taxed: str
) -> None:
    buyer = await customer(client, address=GB)
    draft = await client.v1.invoices.create_async(params={"customer": buyer.id, "expand": ["customer.tax"]})
    assert draft.customer.tax.automatic_tax == "supported"
    assert "tax" not in emulator.state(taxed)["customers"][buyer.id]


# --- automatic tax on invoices -------------------------------------------------------------------


async def test_an_invoice_has_automatic_tax_only_when_it_asks_and_it_is_shaped_as_this_api_version(
    client: Any, taxed: str
) -> None:
    buyer = await customer(client, address=GB)
    plain = await client.v1.invoices.create_async(params={"customer": buyer.id})
    assert plain.automatic_tax.to_dict() == {
        "disabled_reason": None,
        "enabled": False,
        "liability": None,
        "provider": None,
        "status": None,
    }
    taxed_invoice = await taxed_draft(client, buyer, automatic_tax={"enabled": True, "liability": {"type": "self"}})
    assert taxed_invoice.automatic_tax.to_dict() == {
        "disabled_reason": None,
        "enabled": True,
        "liability": {"type": "self"},
        "provider": "stripe",
        "status": "complete",
    }


async def test_asking_for_automatic_tax_before_stripe_tax_is_active_is_stripe_tax_inactive(
    client: Any, emulator: StripeEmulator, account: str
) -> None:
    buyer = await customer(client, address=GB)
    with pytest.raises(stripe.InvalidRequestError) as error:
        await taxed_draft(client, buyer)
    assert refusal(error) == (400, "stripe_tax_inactive", "Stripe Tax has not been activated on your account.")
    assert emulator.state(account)["invoices"] == {}
    draft = await client.v1.invoices.create_async(params={"customer": buyer.id})
    with pytest.raises(stripe.InvalidRequestError) as error:
        await client.v1.invoices.update_async(draft.id, params={"automatic_tax": {"enabled": True}})
    assert error.value.code == "stripe_tax_inactive"
    # Turning it off needs nothing.
    await client.v1.invoices.update_async(draft.id, params={"automatic_tax": {"enabled": False}})


async def test_a_connected_accounts_liability_is_refused(client: Any, taxed: str) -> None:
    buyer = await customer(client, address=GB)
    with pytest.raises(stripe.InvalidRequestError) as error:
        await taxed_draft(client, buyer, automatic_tax={"enabled": True, "liability": {"type": "account"}})
    assert error.value.param == "automatic_tax[liability][account]"
    with pytest.raises(stripe.InvalidRequestError) as error:
        await taxed_draft(
            client, buyer, automatic_tax={"enabled": True, "liability": {"type": "account", "account": "acct_other"}}
        )
    assert error.value.param == "automatic_tax[liability][account]"


async def test_the_account_default_turns_automatic_tax_on_when_possible_and_silently_off_otherwise(
    client: Any, emulator: StripeEmulator, taxed: str
) -> None:
    emulator.set_invoice_automatic_tax_default(taxed, "enabled_when_possible")
    located = await customer(client, address=GB)
    unlocated = await customer(client)
    on = await client.v1.invoices.create_async(params={"customer": located.id})
    off = await client.v1.invoices.create_async(params={"customer": unlocated.id})
    assert (on.automatic_tax.enabled, off.automatic_tax.enabled) == (True, False)
    assert off.automatic_tax.disabled_reason is None
    # Whatever the request says about automatic_tax "always takes precedence".
    explicit = await client.v1.invoices.create_async(
        params={"customer": located.id, "automatic_tax": {"enabled": False}}
    )
    assert explicit.automatic_tax.enabled is False
    # A default-taxed invoice holds lines to the same rule as an explicit one.
    with pytest.raises(stripe.InvalidRequestError):
        await client.v1.invoices.add_lines_async(on.id, params={"lines": [{"amount": 1000}]})


async def test_the_default_does_not_apply_where_pending_items_it_would_pull_in_are_incompatible(
    client: Any, emulator: StripeEmulator, taxed: str
) -> None:
    emulator.set_invoice_automatic_tax_default(taxed, "enabled_when_possible")
    buyer = await customer(client, address=GB)
    await client.v1.invoice_items.create_async(params={"customer": buyer.id, "amount": 1000, "currency": "gbp"})
    invoice = await client.v1.invoices.create_async(
        params={"customer": buyer.id, "pending_invoice_items_behavior": "include"}
    )
    assert (invoice.automatic_tax.enabled, invoice.total) == (False, 1000)


async def test_automatic_tax_can_be_turned_off_on_a_draft_but_not_changed_once_finalized(
    client: Any, taxed: str
) -> None:
    buyer = await customer(client, address=GB)
    draft = await taxed_draft(client, buyer)
    off = await client.v1.invoices.update_async(draft.id, params={"automatic_tax": {"enabled": False}})
    assert (off.automatic_tax.enabled, off.automatic_tax.status) == (False, None)
    on = await client.v1.invoices.update_async(draft.id, params={"automatic_tax": {"enabled": True}})
    assert on.automatic_tax.status == "complete"
    await client.v1.invoices.finalize_invoice_async(draft.id)
    with pytest.raises(stripe.InvalidRequestError) as error:
        await client.v1.invoices.update_async(draft.id, params={"automatic_tax": {"enabled": False}})
    assert error.value.code == "invoice_not_editable"


# --- every line needs a tax behaviour (and a tax code) -------------------------------------------


async def test_a_price_data_line_without_tax_behavior_is_refused_at_add_lines_and_nothing_is_added(
    client: Any, emulator: StripeEmulator, taxed: str
) -> None:
    buyer, prod = await customer(client, address=GB), await product(client)
    draft = await taxed_draft(client, buyer)
    with pytest.raises(stripe.InvalidRequestError) as error:
        await client.v1.invoices.add_lines_async(
            draft.id, params={"lines": [priced(prod, "1000", "exclusive"), priced(prod, "500")]}
        )
    status, code, message = refusal(error)
    assert (status, code, error.value.param) == (400, None, "lines[1]")
    assert message.startswith("The price `price_") and message.endswith(
        "does not have a `tax_behavior` set which is required for automatic tax computation. Please visit "
        "https://stripe.com/docs/tax/products-prices-tax-categories-tax-behavior#tax-behavior for more information."
    )
    assert emulator.state(taxed)["invoice_items"] == {}
    unspecified = priced(prod, "500", "unspecified")
    with pytest.raises(stripe.InvalidRequestError):
        await client.v1.invoices.add_lines_async(draft.id, params={"lines": [unspecified]})


async def test_an_amount_line_is_refused_without_an_account_default_and_taxed_by_the_default_with_one(
    client: Any, emulator: StripeEmulator, taxed: str
) -> None:
    buyer = await customer(client, address=GB)
    draft = await taxed_draft(client, buyer)
    with pytest.raises(stripe.InvalidRequestError) as error:
        await client.v1.invoices.add_lines_async(draft.id, params={"lines": [{"amount": 1000}]})
    assert "`tax_behavior`" in refusal(error)[2]
    emulator.set_tax_settings(taxed, tax_behavior="inclusive")
    invoice = await client.v1.invoices.add_lines_async(draft.id, params={"lines": [{"amount": 1200}]})
    assert (invoice.total, invoice.total_excluding_tax) == (1200, 1000)
    assert invoice.lines.data[0].taxes[0].tax_behavior == "inclusive"


async def test_an_invoice_item_added_to_an_automatic_tax_invoice_needs_a_tax_behavior(client: Any, taxed: str) -> None:
    buyer, prod = await customer(client, address=GB), await product(client)
    draft = await taxed_draft(client, buyer)
    base = {"customer": buyer.id, "invoice": draft.id}
    with pytest.raises(stripe.InvalidRequestError):
        await client.v1.invoice_items.create_async(params={**base, "amount": 1000, "currency": "gbp"})
    with pytest.raises(stripe.InvalidRequestError):
        await client.v1.invoice_items.create_async(
            params={**base, "amount": 1000, "currency": "gbp", "tax_behavior": "unspecified"}
        )
    with pytest.raises(stripe.InvalidRequestError):
        await client.v1.invoice_items.create_async(
            params={**base, "price_data": {"currency": "gbp", "product": prod.id, "unit_amount": 1000}}
        )
    item = await client.v1.invoice_items.create_async(
        params={**base, "amount": 1000, "currency": "gbp", "tax_behavior": "exclusive", "tax_code": "txcd_10103001"}
    )
    invoice = await client.v1.invoices.retrieve_async(draft.id)
    assert (invoice.lines.data[0].invoice, invoice.total_excluding_tax, invoice.total) == (draft.id, 1000, 1200)
    assert item.amount == 1000


async def test_top_level_tax_behavior_or_tax_code_with_price_data_is_refused(client: Any, taxed: str) -> None:
    buyer, prod = await customer(client, address=GB), await product(client)
    price_data = {"currency": "gbp", "product": prod.id, "unit_amount": 1000, "tax_behavior": "exclusive"}
    for extra in ({"tax_behavior": "exclusive"}, {"tax_code": "txcd_10103001"}):
        with pytest.raises(stripe.InvalidRequestError) as error:
            await client.v1.invoice_items.create_async(params={"customer": buyer.id, "price_data": price_data, **extra})
        assert error.value.code == "parameters_exclusive"


async def test_an_invoice_items_tax_behavior_cannot_change_once_inclusive_or_exclusive(client: Any, taxed: str) -> None:
    buyer = await customer(client, address=GB)
    item = await client.v1.invoice_items.create_async(
        params={"customer": buyer.id, "amount": 1000, "currency": "gbp", "tax_behavior": "unspecified"}
    )
    item = await client.v1.invoice_items.update_async(item.id, params={"tax_behavior": "inclusive"})
    with pytest.raises(stripe.InvalidRequestError) as error:
        await client.v1.invoice_items.update_async(item.id, params={"tax_behavior": "exclusive"})
    assert error.value.param == "tax_behavior"
    await client.v1.invoice_items.update_async(item.id, params={"tax_behavior": "inclusive", "amount": 900})


async def test_pending_items_are_held_to_the_rule_by_the_automatic_tax_invoice_that_takes_them(
    client: Any, emulator: StripeEmulator, taxed: str
) -> None:
    buyer = await customer(client, address=GB)
    loose = await client.v1.invoice_items.create_async(params={"customer": buyer.id, "amount": 1000, "currency": "gbp"})
    with pytest.raises(stripe.InvalidRequestError) as error:
        await taxed_draft(client, buyer, pending_invoice_items_behavior="include")
    assert error.value.param == "pending_invoice_items_behavior"
    assert emulator.state(taxed)["invoices"] == {}
    await client.v1.invoice_items.update_async(loose.id, params={"tax_behavior": "exclusive"})
    invoice = await taxed_draft(client, buyer, pending_invoice_items_behavior="include")
    assert (invoice.total_excluding_tax, invoice.total) == (1000, 1200)


async def test_turning_automatic_tax_on_is_refused_while_the_draft_holds_a_line_without_tax_behavior(
    client: Any, taxed: str
) -> None:
    buyer = await customer(client, address=GB)
    draft = await client.v1.invoices.create_async(params={"customer": buyer.id})
    await client.v1.invoices.add_lines_async(draft.id, params={"lines": [{"amount": 1000}]})
    with pytest.raises(stripe.InvalidRequestError) as error:
        await client.v1.invoices.update_async(draft.id, params={"automatic_tax": {"enabled": True}})
    assert error.value.param == "automatic_tax[enabled]"
    assert (await client.v1.invoices.retrieve_async(draft.id)).automatic_tax.enabled is False


async def test_a_line_with_no_tax_code_anywhere_is_refused_and_a_product_or_preset_code_lets_it_through(
    client: Any, emulator: StripeEmulator, account: str
) -> None:
    emulator.set_tax_settings(account, head_office="GB")  # active, but no preset tax code
    emulator.add_tax_registration(account, "GB", 20)
    buyer, bare, coded = await customer(client, address=GB), await product(client), await product(client)
    await client.v1.products.update_async(coded.id, params={"tax_code": "txcd_10103001"})
    draft = await taxed_draft(client, buyer)
    with pytest.raises(stripe.InvalidRequestError) as error:
        await client.v1.invoices.add_lines_async(draft.id, params={"lines": [priced(bare, "1000", "exclusive")]})
    assert refusal(error)[2].startswith("You must specify a tax code in all line items")
    await client.v1.invoices.add_lines_async(draft.id, params={"lines": [priced(coded, "1000", "exclusive")]})
    emulator.set_tax_settings(account, tax_code="txcd_10000000")
    invoice = await client.v1.invoices.add_lines_async(draft.id, params={"lines": [priced(bare, "1000", "exclusive")]})
    assert invoice.total == 2400


async def test_invoices_without_automatic_tax_take_any_line(client: Any, taxed: str) -> None:
    buyer = await customer(client, address=GB)
    draft = await client.v1.invoices.create_async(params={"customer": buyer.id})
    invoice = await client.v1.invoices.add_lines_async(draft.id, params={"lines": [{"amount": 1000}, {"amount": -300}]})
    assert (invoice.total, invoice.total_excluding_tax, invoice.total_taxes) == (700, 700, [])
    assert [line.taxes for line in invoice.lines.data] == [[], []]


# --- negative lines ------------------------------------------------------------------------------


async def test_negative_lines_are_refused_on_automatic_tax_invoices_in_every_form(
    client: Any, emulator: StripeEmulator, taxed: str
) -> None:
    emulator.set_tax_settings(taxed, tax_behavior="exclusive")
    buyer = await customer(client, address=GB)
    draft = await taxed_draft(client, buyer)
    with pytest.raises(stripe.InvalidRequestError) as error:
        await client.v1.invoices.add_lines_async(draft.id, params={"lines": [{"amount": 1000}, {"amount": -300}]})
    assert (error.value.param, "negative amount" in refusal(error)[2]) == ("lines[1]", True)
    credit = {"customer": buyer.id, "amount": -300, "currency": "gbp", "tax_behavior": "exclusive"}
    with pytest.raises(stripe.InvalidRequestError):
        await client.v1.invoice_items.create_async(params={**credit, "invoice": draft.id, "tax_code": "txcd_10103001"})
    item = await client.v1.invoice_items.create_async(
        params={
            "customer": buyer.id,
            "invoice": draft.id,
            "amount": 300,
            "currency": "gbp",
            "tax_behavior": "exclusive",
        }
    )
    with pytest.raises(stripe.InvalidRequestError):
        await client.v1.invoice_items.update_async(item.id, params={"amount": -300})
    plain = await client.v1.invoices.create_async(params={"customer": buyer.id})
    await client.v1.invoice_items.create_async(params={**credit, "invoice": plain.id})
    with pytest.raises(stripe.InvalidRequestError):
        await client.v1.invoices.update_async(plain.id, params={"automatic_tax": {"enabled": True}})
    assert (await client.v1.invoices.retrieve_async(draft.id)).total_excluding_tax == 300


async def test_an_account_known_to_accept_negative_lines_gets_them_taxed_negatively(
    client: Any, emulator: StripeEmulator, taxed: str
) -> None:
    emulator.allow_negative_lines_with_automatic_tax(taxed)
    buyer = await customer(client, address=GB)
    draft = await taxed_draft(client, buyer)
    for amount in (1010, -1010):
        await client.v1.invoice_items.create_async(
            params={
                "customer": buyer.id,
                "invoice": draft.id,
                "amount": amount,
                "currency": "gbp",
                "tax_behavior": "exclusive",
                "tax_code": "txcd_10103001",
            }
        )
    invoice = await client.v1.invoices.retrieve_async(draft.id)
    assert [line.taxes[0].amount for line in invoice.lines.data] == [202, -202]
    assert (invoice.total_excluding_tax, invoice.total, invoice.total_taxes[0].amount) == (0, 0, 0)


async def test_a_credit_sent_as_an_amount_off_coupon_is_taken_off_before_tax(
    client: Any, emulator: StripeEmulator, taxed: str
) -> None:
    buyer, prod = await customer(client, address=GB), await product(client)
    credit = await client.v1.coupons.create_async(
        params={"id": "bill-1-credit", "amount_off": 301, "currency": "gbp", "duration": "once"}
    )
    draft = await taxed_draft(client, buyer, discounts=[{"coupon": credit.id}])
    invoice = await client.v1.invoices.add_lines_async(
        draft.id, params={"lines": [priced(prod, "1000", "exclusive"), priced(prod, "2000", "exclusive")]}
    )
    assert invoice.total_discount_amounts[0].amount == 301
    # Each discountable line carries its share (proportional, the remainder to the larger remainder).
    shares = [line.discount_amounts[0].amount for line in invoice.lines.data]
    assert shares == [100, 201]
    assert [line.taxes[0].taxable_amount for line in invoice.lines.data] == [900, 1799]
    assert [line.taxes[0].amount for line in invoice.lines.data] == [180, 360]
    assert (invoice.subtotal, invoice.total_excluding_tax, invoice.total) == (3000, 2699, 3239)


# --- the tax on each line ------------------------------------------------------------------------


async def test_exclusive_tax_is_added_on_top_of_each_line_rounded_per_line_half_away_from_zero(
    client: Any, emulator: StripeEmulator, taxed: str
) -> None:
    emulator.set_tax_rate("GB", "5")
    buyer, prod = await customer(client, address=GB), await product(client)
    draft = await taxed_draft(client, buyer)
    invoice = await client.v1.invoices.add_lines_async(
        draft.id,
        params={
            "lines": [
                priced(prod, "1010", "exclusive"),
                priced(prod, "1009", "exclusive"),
                priced(prod, "3", "exclusive"),
            ]
        },
    )
    taxes = [line.taxes[0] for line in invoice.lines.data]
    assert [t.amount for t in taxes] == [51, 50, 0]  # 50.5 -> 51, 50.45 -> 50, 0.15 -> 0
    assert [t.taxable_amount for t in taxes] == [1010, 1009, 3]
    assert {(t.tax_behavior, t.taxability_reason, t.type) for t in taxes} == {
        ("exclusive", "standard_rated", "tax_rate_details")
    }
    assert taxes[0].tax_rate_details.tax_rate.startswith("txr_")
    assert (invoice.subtotal, invoice.subtotal_excluding_tax) == (2022, 2022)
    assert (invoice.total_excluding_tax, invoice.total, invoice.amount_due) == (2022, 2123, 2123)
    assert [(t.amount, t.taxable_amount, t.tax_behavior) for t in invoice.total_taxes] == [(101, 2022, "exclusive")]


async def test_inclusive_tax_is_extracted_from_each_line_and_the_total_is_the_lines(client: Any, taxed: str) -> None:
    buyer, prod = await customer(client, address=GB), await product(client)
    draft = await taxed_draft(client, buyer)
    invoice = await client.v1.invoices.add_lines_async(
        draft.id, params={"lines": [priced(prod, "1234", "inclusive"), priced(prod, "1", "inclusive")]}
    )
    taxes = [line.taxes[0] for line in invoice.lines.data]
    assert [(t.amount, t.taxable_amount) for t in taxes] == [(206, 1028), (0, 1)]  # 205.67 -> 206; 0.17 -> 0
    assert [line.amount for line in invoice.lines.data] == [1234, 1]
    assert (invoice.subtotal, invoice.subtotal_excluding_tax) == (1235, 1029)
    assert (invoice.total, invoice.total_excluding_tax, invoice.amount_due) == (1235, 1029, 1235)


async def test_tax_in_a_currency_with_a_step_is_a_whole_step_so_the_invoice_can_be_charged(
    client: Any, emulator: StripeEmulator, taxed: str
) -> None:
    emulator.set_tax_rate("GB", "5")
    buyer, prod = await customer(client, address=GB), await product(client)
    draft = await taxed_draft(client, buyer, currency="kwd")
    invoice = await client.v1.invoices.add_lines_async(
        draft.id,
        params={
            "lines": [
                priced(prod, "1010", "exclusive", currency="kwd"),
                priced(prod, "1070", "inclusive", currency="kwd"),
            ]
        },
    )
    # 50.5 fils -> 50 (five steps of 10: 5.05 steps rounds to 5); 50.95 fils inside 1.070 KWD -> 50.
    assert [line.taxes[0].amount for line in invoice.lines.data] == [50, 50]
    assert (invoice.total, invoice.total_excluding_tax) == (2130, 2030)
    assert (await client.v1.invoices.finalize_invoice_async(draft.id)).amount_due == 2130


async def test_inferred_by_currency_is_exclusive_for_usd_and_inclusive_for_gbp(
    client: Any, emulator: StripeEmulator, taxed: str
) -> None:
    emulator.set_tax_settings(taxed, tax_behavior="inferred_by_currency")
    buyer, other = await customer(client, address=GB), await customer(client, address=GB)
    pounds = await taxed_draft(client, buyer)
    dollars = await taxed_draft(client, other, currency="usd")
    pounds = await client.v1.invoices.add_lines_async(pounds.id, params={"lines": [{"amount": 1200}]})
    dollars = await client.v1.invoices.add_lines_async(dollars.id, params={"lines": [{"amount": 1200}]})
    assert (pounds.total, pounds.total_excluding_tax, pounds.total_taxes[0].tax_behavior) == (1200, 1000, "inclusive")
    assert (dollars.total, dollars.total_excluding_tax, dollars.total_taxes[0].tax_behavior) == (
        1440,
        1200,
        "exclusive",
    )


async def test_where_the_account_is_not_registered_the_tax_is_zero_and_not_collecting(client: Any, taxed: str) -> None:
    buyer, prod = await customer(client, address={"country": "FR"}), await product(client)
    draft = await taxed_draft(client, buyer)
    invoice = await client.v1.invoices.add_lines_async(draft.id, params={"lines": [priced(prod, "1000", "exclusive")]})
    assert invoice.automatic_tax.status == "complete"
    assert [(t.amount, t.taxability_reason) for t in invoice.total_taxes] == [(0, "not_collecting")]
    assert invoice.total == 1000


@pytest.mark.parametrize(("exempt", "reason"), [("exempt", "customer_exempt"), ("reverse", "reverse_charge")])
async def test_exempt_and_reverse_charge_customers_pay_no_tax_and_say_why(
    client: Any, taxed: str, exempt: str, reason: str
) -> None:
    buyer, prod = await customer(client, address=GB, tax_exempt=exempt), await product(client)
    draft = await taxed_draft(client, buyer)
    invoice = await client.v1.invoices.add_lines_async(draft.id, params={"lines": [priced(prod, "1000", "exclusive")]})
    assert [(t.amount, t.taxability_reason) for t in invoice.lines.data[0].taxes] == [(0, reason)]


async def test_a_us_registration_taxes_its_own_state_at_its_rate(
    client: Any, emulator: StripeEmulator, taxed: str
) -> None:
    emulator.add_tax_registration(taxed, "US", "7.25", state="CA")
    emulator.set_tax_rate("US", 4, state="NY")
    california = await customer(client, address={"country": "US", "state": "CA", "postal_code": "94107"})
    new_york = await customer(client, address={"country": "US", "state": "NY", "postal_code": "10001"})
    prod = await product(client)
    totals = []
    for buyer in (california, new_york):
        draft = await taxed_draft(client, buyer, currency="usd")
        invoice = await client.v1.invoices.add_lines_async(
            draft.id, params={"lines": [priced(prod, "1005", "exclusive", currency="usd")]}
        )
        totals.append((invoice.total, invoice.total_taxes[0].taxability_reason))
    assert totals == [(1078, "standard_rated"), (1005, "not_collecting")]  # 72.86 -> 73


async def test_total_taxes_add_up_the_lines_per_rate_behaviour_and_reason(client: Any, taxed: str) -> None:
    buyer, prod = await customer(client, address=GB), await product(client)
    nontaxable = await product(client, tax_code="txcd_00000000")
    draft = await taxed_draft(client, buyer)
    lines = [
        priced(prod, "1000", "exclusive"),
        priced(prod, "1001", "exclusive"),
        priced(prod, "600", "inclusive"),
        priced(nontaxable, "700", "exclusive"),
    ]
    invoice = await client.v1.invoices.add_lines_async(draft.id, params={"lines": lines})
    summary = [(t.amount, t.taxable_amount, t.tax_behavior, t.taxability_reason) for t in invoice.total_taxes]
    assert summary == [
        (400, 2001, "exclusive", "standard_rated"),
        (100, 500, "inclusive", "standard_rated"),
        (0, 700, "exclusive", "not_subject_to_tax"),
    ]
    assert (invoice.total_excluding_tax, invoice.total) == (3201, 3701)
    listed = await client.v1.invoices.line_items.list_async(draft.id)
    assert [line.taxes[0].amount for line in listed.data] == [200, 200, 100, 0]


async def test_a_draft_is_retaxed_as_registrations_change_and_a_finalized_invoice_keeps_its_tax(
    client: Any, emulator: StripeEmulator, taxed: str, clock: Clock
) -> None:
    buyer, prod = await customer(client, address=GB), await product(client)
    first, second = await taxed_draft(client, buyer), await taxed_draft(client, buyer)
    for draft in (first, second):
        await client.v1.invoices.add_lines_async(draft.id, params={"lines": [priced(prod, "1000", "exclusive")]})
    finalized = await client.v1.invoices.finalize_invoice_async(first.id)
    assert (finalized.status, finalized.total, finalized.automatic_tax.status) == ("open", 1200, "complete")
    registration = next(iter(emulator.state(taxed)["tax_registrations"]))
    await client.v1.tax.registrations.update_async(registration, params={"expires_at": "now"})
    still = await client.v1.invoices.retrieve_async(first.id)
    draft = await client.v1.invoices.retrieve_async(second.id)
    assert (still.total, still.lines.data[0].taxes[0].amount) == (1200, 200)
    assert (draft.total, draft.total_taxes[0].taxability_reason) == (1000, "not_collecting")


# --- finalization --------------------------------------------------------------------------------


async def test_asking_for_automatic_tax_for_a_customer_stripe_cannot_place_is_customer_tax_location_invalid(
    client: Any, emulator: StripeEmulator, taxed: str
) -> None:
    unplaced = await customer(client, address={"country": "US", "state": "CA"})
    with pytest.raises(stripe.InvalidRequestError) as error:
        await taxed_draft(client, unplaced)
    assert refusal(error) == (
        400,
        "customer_tax_location_invalid",
        "When `automatic_tax[enabled]=true`, enough customer location information must be provided to accurately "
        "determine tax rates for the customer.",
    )
    assert emulator.state(taxed)["invoices"] == {}
    draft = await client.v1.invoices.create_async(params={"customer": unplaced.id})
    with pytest.raises(stripe.InvalidRequestError) as error:
        await client.v1.invoices.update_async(draft.id, params={"automatic_tax": {"enabled": True}})
    assert error.value.code == "customer_tax_location_invalid"


async def unplaced_draft(client: Any) -> tuple[Any, Any]:
    """A taxed draft whose customer lost their address after it was made: (customer, draft)."""
    buyer, prod = await customer(client, address=GB), await product(client)
    draft = await taxed_draft(client, buyer)
    await client.v1.invoices.add_lines_async(draft.id, params={"lines": [priced(prod, "1000", "exclusive")]})
    await client.v1.customers.update_async(buyer.id, params={"address": ""})
    return buyer, await client.v1.invoices.retrieve_async(draft.id)


async def test_a_draft_whose_customer_cannot_be_placed_any_more_cannot_be_finalized(client: Any, taxed: str) -> None:
    buyer, draft = await unplaced_draft(client)
    assert (draft.automatic_tax.status, draft.total_taxes, draft.total) == ("requires_location_inputs", [], 1000)
    with pytest.raises(stripe.InvalidRequestError) as error:
        await client.v1.invoices.finalize_invoice_async(draft.id, params={"auto_advance": True})
    assert refusal(error) == (
        400,
        "customer_tax_location_invalid",
        "When `automatic_tax[enabled]=true`, enough customer location information must be provided to accurately "
        "determine tax rates for the customer.",
    )
    after = await client.v1.invoices.retrieve_async(draft.id)
    assert (after.status, after.auto_advance) == ("draft", False)
    # Stripe's recovery: give the customer an address (or turn automatic tax off), then finalize.
    await client.v1.customers.update_async(
        buyer.id, params={"address": GB, "tax": {"validate_location": "immediately"}}
    )
    assert (await client.v1.invoices.finalize_invoice_async(draft.id)).total == 1200


async def test_turning_automatic_tax_off_lets_an_unplaced_customers_invoice_finalize_untaxed(
    client: Any, taxed: str
) -> None:
    _, draft = await unplaced_draft(client)
    await client.v1.invoices.update_async(draft.id, params={"automatic_tax": {"enabled": False}})
    finalized = await client.v1.invoices.finalize_invoice_async(draft.id)
    assert (finalized.total, finalized.total_taxes, finalized.automatic_tax.enabled) == (1000, [], False)


async def test_finalizing_while_the_location_lookup_fails_is_taxes_calculation_failed(
    client: Any, emulator: StripeEmulator, taxed: str
) -> None:
    buyer, prod = await customer(client, address=GB), await product(client)
    draft = await taxed_draft(client, buyer)
    await client.v1.invoices.add_lines_async(draft.id, params={"lines": [priced(prod, "1000", "exclusive")]})
    emulator.fail_customer_tax(taxed, buyer.id)
    assert (await client.v1.invoices.retrieve_async(draft.id)).automatic_tax.status == "failed"
    with pytest.raises(stripe.InvalidRequestError) as error:
        await client.v1.invoices.finalize_invoice_async(draft.id)
    assert error.value.code == "taxes_calculation_failed"


# --- restricted keys -----------------------------------------------------------------------------


async def test_a_restricted_key_reads_tax_settings_only_with_rak_tax_settings_read(
    emulator: StripeEmulator, taxed: str
) -> None:
    key = "rk_test_taxReaderKey000wxyz"
    emulator.add_api_key(key, account=taxed, permissions=["rak_customer_read", "rak_invoice_write"])
    restricted = make_client(emulator, key)
    with pytest.raises(stripe.PermissionError) as error:
        await restricted.v1.tax.settings.retrieve_async()
    assert error.value.http_status == 403
    assert str(error.value.user_message).endswith(
        f"on account '{taxed}'. Having the 'rak_tax_settings_read' permission would allow this request to continue."
    )
    with pytest.raises(stripe.PermissionError, match="rak_tax_registration_read"):
        await restricted.v1.tax.registrations.list_async()
    # The customer's own read permission covers its tax status.
    listed = await restricted.v1.customers.list_async(params={"expand": ["data.tax"]})
    assert listed.data == []
    emulator.add_api_key("rk_test_taxSettingsKey00wxyz", account=taxed, permissions=["rak_tax_settings_write"])
    writer = make_client(emulator, "rk_test_taxSettingsKey00wxyz")
    assert (await writer.v1.tax.settings.retrieve_async()).status == "active"


async def test_credits_as_coupons_need_the_coupon_write_permission(emulator: StripeEmulator, taxed: str) -> None:
    key = "rk_test_noCouponsKey0000wxyz"
    emulator.add_api_key(key, account=taxed, permissions=["rak_invoice_write"])
    with pytest.raises(stripe.PermissionError, match="rak_coupon_write"):
        await make_client(emulator, key).v1.coupons.create_async(
            params={"amount_off": 100, "currency": "gbp", "duration": "once"}
        )


# --- the emulator's own helpers ------------------------------------------------------------------


def test_a_us_registration_through_the_helper_needs_a_state(emulator: StripeEmulator, taxed: str) -> None:
    with pytest.raises(ValueError, match="state"):
        emulator.add_tax_registration(taxed, "US", 5)


async def test_the_snapshot_holds_the_tax_settings_and_registrations(emulator: StripeEmulator, taxed: str) -> None:
    snapshot = emulator.state(taxed)
    assert snapshot["tax_settings"]["status"] == "active"
    assert [r["country"] for r in snapshot["tax_registrations"].values()] == ["GB"]
    assert emulator.world.tax_rates[("GB", None)] == Decimal(20)


async def test_a_tax_rate_set_as_a_float_is_kept_exactly(emulator: StripeEmulator) -> None:
    emulator.set_tax_rate("se", 25.5)
    assert emulator.world.tax_rates[("SE", None)] == Decimal("25.5")


def declared(cls: type) -> set[str]:
    fields: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        fields.update(getattr(klass, "__annotations__", {}))
    return {k for k in fields if not k.startswith("_") and k != "OBJECT_NAME"}


async def test_the_tax_objects_use_only_the_fields_the_sdk_declares_and_all_it_requires(
    client: Any, emulator: StripeEmulator, taxed: str
) -> None:
    buyer, prod = await customer(client, address=GB), await product(client)
    draft = await taxed_draft(client, buyer)
    invoice = (
        await client.v1.invoices.add_lines_async(draft.id, params={"lines": [priced(prod, "1000", "exclusive")]})
    ).to_dict()
    snapshot = emulator.state(taxed)
    tax = (await client.v1.customers.retrieve_async(buyer.id, params={"expand": ["tax"]})).to_dict()["tax"]
    samples: list[tuple[type, dict[str, Any]]] = [
        (stripe.tax.Settings, snapshot["tax_settings"]),
        (stripe.tax.Registration, next(iter(snapshot["tax_registrations"].values()))),
        (stripe.Customer.Tax, tax),
        (stripe.Customer.Tax.Location, tax["location"]),
        (stripe.Invoice.AutomaticTax, invoice["automatic_tax"]),
        (stripe.Invoice.TotalTax, invoice["total_taxes"][0]),
        (stripe.InvoiceLineItem.Tax, invoice["lines"]["data"][0]["taxes"][0]),
    ]
    for cls, obj in samples:
        assert set(obj) == declared(cls), cls.__qualname__
