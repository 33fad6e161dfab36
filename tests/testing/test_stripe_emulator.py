"""The Stripe emulator, exercised through the official stripe SDK (and raw HTTP where the SDK hides things).

Each section covers one behaviour of Stripe's API reference that the emulator promises.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
import stripe

from m3stripe.adapters.stripe_client import open_client
from m3stripe.testing.stripe_emulator import Fault, StripeEmulator
from m3stripe.testing.stripe_emulator.__main__ import _parser
from m3stripe.testing.stripe_emulator.forms import decode
from m3stripe.testing.stripe_emulator.locks import objects_written
from m3stripe.testing.stripe_emulator.params import Arr, Obj
from m3stripe.testing.stripe_emulator.routes import ROUTES

KEY = "sk_test_emulatorKey0001abcd"
OTHER_KEY = "sk_test_otherAccountKey9wxyz"

# The SDK's HTTPXClient posts form bodies as str, which httpx 0.28 deprecates; not our concern here.
pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")


def make_client(emulator: StripeEmulator, key: str = KEY, *, retries: int = 0, timeout: float = 10.0) -> Any:
    http = stripe.HTTPXClient(timeout=timeout)
    client = stripe.StripeClient(
        key, base_addresses={"api": emulator.url}, http_client=http, max_network_retries=retries
    )
    return client


@pytest.fixture
async def emulator() -> AsyncIterator[StripeEmulator]:
    async with StripeEmulator(seed=7) as emu:
        yield emu


@pytest.fixture
def account(emulator: StripeEmulator) -> str:
    return emulator.add_api_key(KEY)


@pytest.fixture
def client(emulator: StripeEmulator, account: str) -> Any:
    return make_client(emulator)


@pytest.fixture
async def raw(emulator: StripeEmulator, account: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=emulator.url, headers={"Authorization": f"Bearer {KEY}"}) as http:
        yield http


async def make_customer(client: Any, **params: Any) -> Any:
    return await client.v1.customers.create_async(params={"email": "billing@example.com", **params})


async def make_product(client: Any, name: str = "Usage") -> Any:
    return await client.v1.products.create_async(params={"name": name})


async def make_draft(client: Any, customer: Any, **params: Any) -> Any:
    return await client.v1.invoices.create_async(params={"customer": customer.id, **params})


async def add_item(client: Any, customer: Any, invoice: Any | None = None, **params: Any) -> Any:
    body: dict[str, Any] = {"customer": customer.id, "amount": 1000, "currency": "usd", **params}
    if invoice is not None:
        body["invoice"] = invoice.id
    return await client.v1.invoice_items.create_async(params=body)


# --- 1. form encoding ----------------------------------------------------------------------------


def test_decode_nests_brackets_and_arrays() -> None:
    decoded = decode(
        "metadata[k]=v&price_data[product]=prod_1&custom_fields[0][name]=PO&custom_fields[0][value]=42"
        "&expand[]=customer&expand[]=invoice&plain=a%20b"
    )
    assert decoded == {
        "metadata": {"k": "v"},
        "price_data": {"product": "prod_1"},
        "custom_fields": {"0": {"name": "PO", "value": "42"}},
        "expand": {"0": "customer", "1": "invoice"},
        "plain": "a b",
    }


async def test_sdk_nested_params_are_stored(client: Any, emulator: StripeEmulator, account: str) -> None:
    customer = await make_customer(client, metadata={"tenant": "t1", "org": "o1"})
    invoice = await make_draft(
        client,
        customer,
        collection_method="send_invoice",
        days_until_due=14,
        custom_fields=[{"name": "PO number", "value": "PO-1"}, {"name": "Bill", "value": "b-1"}],
        metadata={"bill_id": "b-1"},
        auto_advance=False,
    )
    stored = emulator.state(account)["invoices"][invoice.id]
    assert stored["custom_fields"] == [{"name": "PO number", "value": "PO-1"}, {"name": "Bill", "value": "b-1"}]
    assert stored["metadata"] == {"bill_id": "b-1"}
    assert stored["due_date"] == stored["created"] + 14 * 86400
    assert emulator.state(account)["customers"][customer.id]["metadata"] == {"tenant": "t1", "org": "o1"}


async def test_get_params_come_from_the_query_string(raw: httpx.AsyncClient, client: Any) -> None:
    customer = await make_customer(client)
    invoice = await make_draft(client, customer)
    response = await raw.get("/v1/invoices", params=[("limit", "1"), ("expand[]", "data.customer")])
    assert response.status_code == 200, response.text
    listed = response.json()
    assert listed["data"][0]["id"] == invoice.id
    assert listed["data"][0]["customer"]["id"] == customer.id
    response = await raw.get("/v1/customers", params={"created[gte]": str(customer.created + 3600)})
    assert response.json()["data"] == []


async def test_metadata_keys_are_merged_and_unset(client: Any) -> None:
    customer = await make_customer(client, metadata={"a": "1", "b": "2"})
    updated = await client.v1.customers.update_async(customer.id, params={"metadata": {"a": "", "c": "3"}})
    assert updated.metadata.to_dict() == {"b": "2", "c": "3"}
    cleared = await client.v1.customers.update_async(customer.id, params={"metadata": ""})
    assert cleared.metadata.to_dict() == {}


# --- 2. errors -----------------------------------------------------------------------------------


async def test_unknown_parameter_is_rejected_with_stripes_envelope(raw: httpx.AsyncClient) -> None:
    response = await raw.post("/v1/customers", data={"email": "a@example.com", "emial": "typo"})
    assert response.status_code == 400
    assert response.headers["Request-Id"].startswith("req_")
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "parameter_unknown"
    assert error["param"] == "emial"
    assert error["message"] == "Received unknown parameter: emial"
    assert error["doc_url"] == "https://stripe.com/docs/error-codes/parameter-unknown"


async def test_unknown_nested_parameter_names_its_full_path(raw: httpx.AsyncClient, client: Any) -> None:
    customer = await make_customer(client)
    product = await make_product(client)
    response = await raw.post(
        "/v1/invoiceitems",
        data={
            "customer": customer.id,
            "price_data[currency]": "usd",
            "price_data[product]": product.id,
            "price_data[unit_amount]": "5",
            "price_data[colour]": "red",
        },
    )
    assert response.json()["error"]["param"] == "price_data[colour]"
    assert response.json()["error"]["message"] == "Received unknown parameter: price_data[colour]"


async def test_missing_and_invalid_parameters(client: Any, raw: httpx.AsyncClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as missing:
        await client.v1.invoices.create_async(params={"auto_advance": False})
    assert (missing.value.http_status, missing.value.code, missing.value.param) == (
        400,
        "parameter_missing",
        "customer",
    )
    assert missing.value.user_message == "Missing required param: customer."

    customer = await make_customer(client)
    response = await raw.post("/v1/invoiceitems", data={"customer": customer.id, "amount": "12.5", "currency": "usd"})
    assert response.json()["error"]["code"] == "parameter_invalid_integer"
    assert response.json()["error"]["param"] == "amount"
    response = await raw.post("/v1/invoiceitems", data={"customer": "", "amount": "1"})
    assert response.json()["error"]["code"] == "parameter_invalid_empty"
    response = await raw.post("/v1/invoices", data={"customer": customer.id, "collection_method": "by_carrier"})
    assert response.status_code == 400 and response.json()["error"]["param"] == "collection_method"
    response = await raw.post("/v1/customers", data={"email": "not-an-email"})
    assert response.json()["error"]["code"] == "email_invalid"


async def test_unknown_ids_are_resource_missing(client: Any) -> None:
    with pytest.raises(stripe.InvalidRequestError) as retrieve:
        await client.v1.invoices.retrieve_async("in_doesnotexist")
    assert retrieve.value.http_status == 404
    assert retrieve.value.code == "resource_missing"
    assert retrieve.value.param == "invoice"
    assert retrieve.value.user_message == "No such invoice: 'in_doesnotexist'"

    with pytest.raises(stripe.InvalidRequestError) as reference:
        await client.v1.invoice_items.create_async(params={"customer": "cus_nope", "amount": 1, "currency": "usd"})
    assert (reference.value.http_status, reference.value.code, reference.value.param) == (
        400,
        "resource_missing",
        "customer",
    )


async def test_price_data_product_must_exist(client: Any) -> None:
    customer = await make_customer(client)
    with pytest.raises(stripe.InvalidRequestError) as error:
        await client.v1.invoice_items.create_async(
            params={"customer": customer.id, "price_data": {"currency": "usd", "product": "prod_x", "unit_amount": 5}}
        )
    assert (error.value.code, error.value.param) == ("resource_missing", "price_data[product]")


async def test_every_response_has_a_request_id_and_unknown_urls_404(raw: httpx.AsyncClient) -> None:
    response = await raw.get("/v1/charges_please")
    assert response.status_code == 404
    assert response.headers["Request-Id"].startswith("req_")
    assert response.json()["error"]["message"].startswith("Unrecognized request URL (GET: /v1/charges_please)")
    ok = await raw.get("/v1/account")
    assert ok.headers["Request-Id"].startswith("req_") and ok.headers["Request-Id"] != response.headers["Request-Id"]


async def test_expand_rejects_unknown_paths_before_writing(client: Any, emulator: StripeEmulator, account: str) -> None:
    with pytest.raises(stripe.InvalidRequestError) as error:
        await client.v1.customers.create_async(params={"name": "x", "expand": ["sources"]})
    assert error.value.user_message == "This property cannot be expanded (sources)."
    assert emulator.state(account)["customers"] == {}


# --- 3. authentication ---------------------------------------------------------------------------


async def test_missing_unknown_and_revoked_keys_get_401(emulator: StripeEmulator, account: str) -> None:
    async with httpx.AsyncClient(base_url=emulator.url) as http:
        response = await http.get("/v1/account")
        assert response.status_code == 401
        assert response.json()["error"]["message"].startswith("You did not provide an API key.")
        response = await http.get("/v1/account", headers={"Authorization": "Bearer sk_test_unknownkey1234wxyz"})
        assert response.status_code == 401
        assert response.json()["error"] == {
            "message": "Invalid API Key provided: sk_test_" + "*" * 14 + "wxyz",
            "type": "invalid_request_error",
        }
        # curl -u sk_test_...: sends Basic auth with the key as the user name.
        response = await http.get("/v1/account", auth=(KEY, ""))
        assert response.status_code == 200

    client = make_client(emulator)
    assert (await client.v1.accounts.retrieve_current_async()).id == account
    emulator.revoke_api_key(KEY)
    with pytest.raises(stripe.AuthenticationError) as revoked:
        await client.v1.accounts.retrieve_current_async()
    assert revoked.value.http_status == 401
    assert revoked.value.user_message == "Invalid API Key provided: sk_test_" + "*" * 15 + "abcd"


async def test_keys_share_an_account_and_modes_stay_apart(emulator: StripeEmulator) -> None:
    account = emulator.add_api_key(KEY)
    assert emulator.add_api_key("rk_test_restrictedSameAccount", account=account) == account
    assert emulator.add_api_key("sk_live_liveKeySameAccount1", account=account) == account
    other = emulator.add_api_key(OTHER_KEY)
    assert other != account

    created = await make_customer(make_client(emulator))
    assert created.livemode is False
    restricted = make_client(emulator, "rk_test_restrictedSameAccount")
    assert (await restricted.v1.customers.retrieve_async(created.id)).id == created.id
    live = make_client(emulator, "sk_live_liveKeySameAccount1")
    assert (await live.v1.customers.list_async()).data == []
    live_customer = await make_customer(live)
    assert live_customer.livemode is True
    assert list(emulator.state(account, livemode=True)["customers"]) == [live_customer.id]
    with pytest.raises(stripe.InvalidRequestError):
        await make_client(emulator, OTHER_KEY).v1.customers.retrieve_async(created.id)


async def test_stripe_account_header_for_another_account_is_forbidden(raw: httpx.AsyncClient) -> None:
    response = await raw.get("/v1/account", headers={"Stripe-Account": "acct_someoneelse"})
    assert response.status_code == 403


# --- 4. idempotency ------------------------------------------------------------------------------


async def test_same_key_and_params_replays_the_first_response(
    client: Any, emulator: StripeEmulator, account: str
) -> None:
    first = await client.v1.customers.create_async(params={"name": "Acme"}, options={"idempotency_key": "k-1"})
    second = await client.v1.customers.create_async(params={"name": "Acme"}, options={"idempotency_key": "k-1"})
    assert second.id == first.id
    assert second.last_response.headers["Idempotent-Replayed"] == "true"
    assert second.last_response.headers["Original-Request"] == first.last_response.request_id
    assert "Idempotent-Replayed" not in first.last_response.headers
    assert len(emulator.state(account)["customers"]) == 1


async def test_same_key_with_other_params_or_endpoint_is_an_idempotency_error(client: Any) -> None:
    await client.v1.customers.create_async(params={"name": "Acme"}, options={"idempotency_key": "k-2"})
    with pytest.raises(stripe.IdempotencyError) as params_error:
        await client.v1.customers.create_async(params={"name": "Other"}, options={"idempotency_key": "k-2"})
    assert params_error.value.http_status == 400
    assert params_error.value.user_message.startswith(
        "Keys for idempotent requests can only be used with the same parameters they were first used with."
    )
    with pytest.raises(stripe.IdempotencyError) as endpoint_error:
        await client.v1.products.create_async(params={"name": "Acme"}, options={"idempotency_key": "k-2"})
    assert "same endpoint" in endpoint_error.value.user_message


@pytest.mark.looptime
async def test_concurrent_request_with_an_in_flight_key_gets_409(
    emulator: StripeEmulator, raw: httpx.AsyncClient
) -> None:
    emulator.inject(Fault.TIMEOUT, delay_seconds=0.4, times=1)
    headers = {"Idempotency-Key": "k-inflight"}
    first = asyncio.create_task(raw.post("/v1/customers", data={"name": "A"}, headers=headers))
    await asyncio.sleep(0.1)
    concurrent = await raw.post("/v1/customers", data={"name": "A"}, headers=headers)
    assert concurrent.status_code == 409
    assert concurrent.json()["error"]["type"] == "idempotency_error"
    assert concurrent.json()["error"]["code"] == "idempotency_key_in_use"
    original = await first
    assert original.status_code == 200
    replay = await raw.post("/v1/customers", data={"name": "A"}, headers=headers)
    assert replay.json()["id"] == original.json()["id"]
    assert replay.headers["Idempotent-Replayed"] == "true"


async def test_idempotency_key_longer_than_255_is_rejected(raw: httpx.AsyncClient) -> None:
    ok = await raw.post("/v1/customers", data={"name": "A"}, headers={"Idempotency-Key": "k" * 255})
    assert ok.status_code == 200
    response = await raw.post("/v1/customers", data={"name": "A"}, headers={"Idempotency-Key": "k" * 256})
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


async def test_validation_failures_auth_failures_and_429s_are_not_saved(
    emulator: StripeEmulator, raw: httpx.AsyncClient
) -> None:
    key = {"Idempotency-Key": "k-not-saved"}
    invalid = await raw.post("/v1/customers", data={"nmae": "typo"}, headers=key)
    assert invalid.status_code == 400
    emulator.inject(Fault.RATE_LIMIT, times=1)
    limited = await raw.post("/v1/customers", data={"name": "A"}, headers=key)
    assert limited.status_code == 429
    unauthenticated = await raw.post(
        "/v1/customers", data={"name": "A"}, headers={**key, "Authorization": "Bearer sk_test_wrongwrongwrong"}
    )
    assert unauthenticated.status_code == 401
    created = await raw.post("/v1/customers", data={"name": "A"}, headers=key)
    assert created.status_code == 200
    assert "Idempotent-Replayed" not in created.headers


async def test_errors_after_execution_began_are_saved_and_replayed(client: Any, raw: httpx.AsyncClient) -> None:
    customer = await make_customer(client)
    invoice = await make_draft(client, customer)
    await client.v1.invoices.finalize_invoice_async(invoice.id)
    key = {"Idempotency-Key": "k-finalize-again"}
    first = await raw.post(f"/v1/invoices/{invoice.id}/finalize", headers=key)
    assert first.status_code == 400
    replay = await raw.post(f"/v1/invoices/{invoice.id}/finalize", headers=key)
    assert replay.status_code == 400
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.content == first.content


async def test_keys_are_scoped_per_account(emulator: StripeEmulator, account: str) -> None:
    emulator.add_api_key(OTHER_KEY)
    mine = await make_client(emulator).v1.customers.create_async(
        params={"name": "A"}, options={"idempotency_key": "same"}
    )
    theirs = await make_client(emulator, OTHER_KEY).v1.customers.create_async(
        params={"name": "A"}, options={"idempotency_key": "same"}
    )
    assert mine.id != theirs.id
    assert "Idempotent-Replayed" not in theirs.last_response.headers


async def test_get_requests_ignore_idempotency_keys(raw: httpx.AsyncClient) -> None:
    await raw.post("/v1/customers", data={"name": "A"}, headers={"Idempotency-Key": "k-get"})
    response = await raw.get("/v1/customers", headers={"Idempotency-Key": "k-get"})
    assert response.status_code == 200 and "Idempotent-Replayed" not in response.headers


@pytest.mark.looptime
async def test_sdk_retry_after_a_lost_reply_gets_the_replay(emulator: StripeEmulator, account: str) -> None:
    client = make_client(emulator, retries=2)
    emulator.inject(Fault.DROP_AFTER_WRITE, path_prefix="/v1/customers", times=1)
    customer = await client.v1.customers.create_async(params={"name": "Once"})
    assert customer.last_response.headers["Idempotent-Replayed"] == "true"
    assert list(emulator.state(account)["customers"]) == [customer.id]
    attempts = [r for r in emulator.requests if r.endpoint == "POST /v1/customers"]
    assert len(attempts) == 2 and attempts[0].dropped and attempts[0].idempotency_key == attempts[1].idempotency_key


# --- 5. pagination -------------------------------------------------------------------------------


async def test_lists_paginate_newest_first(client: Any) -> None:
    created = [(await client.v1.customers.create_async(params={"name": f"c{i}"})).id for i in range(25)]
    newest_first = created[::-1]
    page = await client.v1.customers.list_async()
    assert [c.id for c in page.data] == newest_first[:10]
    assert page.has_more is True and page.url == "/v1/customers" and page.object == "list"
    after = await client.v1.customers.list_async(params={"limit": 10, "starting_after": newest_first[9]})
    assert [c.id for c in after.data] == newest_first[10:20]
    last = await client.v1.customers.list_async(params={"limit": 10, "starting_after": newest_first[19]})
    assert [c.id for c in last.data] == newest_first[20:] and last.has_more is False
    before = await client.v1.customers.list_async(params={"limit": 3, "ending_before": newest_first[10]})
    assert [c.id for c in before.data] == newest_first[7:10] and before.has_more is True
    everything = [c.id async for c in (await client.v1.customers.list_async(params={"limit": 7})).auto_paging_iter()]
    assert everything == newest_first


async def test_list_limits_and_cursors_are_validated(raw: httpx.AsyncClient) -> None:
    for limit in ("0", "101"):
        response = await raw.get("/v1/customers", params={"limit": limit})
        assert response.status_code == 400 and response.json()["error"]["param"] == "limit"
    assert (await raw.get("/v1/customers", params={"limit": "100"})).status_code == 200
    response = await raw.get("/v1/customers", params={"starting_after": "cus_missing"})
    assert response.status_code == 400
    assert (response.json()["error"]["code"], response.json()["error"]["param"]) == (
        "resource_missing",
        "starting_after",
    )
    response = await raw.get("/v1/customers", params={"starting_after": "cus_a", "ending_before": "cus_b"})
    assert response.json()["error"]["code"] == "parameters_exclusive"


async def test_list_filters(client: Any) -> None:
    alice = await make_customer(client, email="alice@example.com")
    bob = await make_customer(client, email="bob@example.com")
    assert [c.id for c in (await client.v1.customers.list_async(params={"email": "alice@example.com"})).data] == [
        alice.id
    ]
    invoice = await make_draft(client, alice)
    attached = await add_item(client, alice, invoice)
    pending = await add_item(client, alice)
    bobs = await add_item(client, bob)

    async def ids(**params: Any) -> list[str]:
        return [i.id for i in (await client.v1.invoice_items.list_async(params=params)).data]

    assert await ids(customer=alice.id) == [pending.id, attached.id]
    assert await ids(customer=alice.id, pending=True) == [pending.id]
    assert await ids(pending=False) == [attached.id]
    assert await ids(invoice=invoice.id) == [attached.id]
    assert await ids() == [bobs.id, pending.id, attached.id]
    await make_draft(client, bob)
    assert [i.id for i in (await client.v1.invoices.list_async(params={"customer": alice.id})).data] == [invoice.id]
    assert len((await client.v1.invoices.list_async(params={"status": "draft"})).data) == 2
    assert (await client.v1.invoices.list_async(params={"status": "open"})).data == []


async def test_invoice_lines_page_in_invoice_order(client: Any) -> None:
    customer = await make_customer(client)
    product = await make_product(client)
    invoice = await make_draft(client, customer)
    lines = [{"price_data": {"currency": "usd", "product": product.id, "unit_amount": i + 1}} for i in range(23)]
    invoice = await client.v1.invoices.add_lines_async(invoice.id, params={"lines": lines})
    assert len(invoice.lines.data) == 10 and invoice.lines.has_more is True
    assert invoice.lines.url == f"/v1/invoices/{invoice.id}/lines"
    page = await client.v1.invoices.line_items.list_async(invoice.id)
    assert [line.amount for line in page.data] == list(range(1, 11))
    every = [line.amount async for line in page.auto_paging_iter()]
    assert every == list(range(1, 24))
    wide = await client.v1.invoices.line_items.list_async(invoice.id, params={"limit": 100})
    assert len(wide.data) == 23 and wide.has_more is False
    item = await client.v1.invoice_items.retrieve_async(wide.data[0].parent.invoice_item_details.invoice_item)
    assert item.invoice == invoice.id


# --- 6. invoice lifecycle ------------------------------------------------------------------------


async def test_draft_to_open_to_paid_with_totals(client: Any, emulator: StripeEmulator, account: str) -> None:
    customer = await make_customer(client)
    product = await make_product(client)
    invoice = await make_draft(client, customer, auto_advance=False)
    assert invoice.status == "draft" and invoice.auto_advance is False and invoice.total == 0
    await add_item(client, customer, invoice, amount=2500, description="Platform fee")
    await client.v1.invoice_items.create_async(
        params={
            "customer": customer.id,
            "invoice": invoice.id,
            "price_data": {"currency": "usd", "product": product.id, "unit_amount_decimal": "0.125"},
            "quantity": 1000,
            "period": {"start": 1_700_000_000, "end": 1_702_592_000},
        }
    )
    await add_item(client, customer, invoice, amount=-500, description="Credit")
    draft = await client.v1.invoices.retrieve_async(invoice.id)
    assert (draft.subtotal, draft.total, draft.amount_due) == (2125, 2125, 2125)
    opened = await client.v1.invoices.finalize_invoice_async(invoice.id)
    assert opened.status == "open" and opened.number and opened.status_transitions.finalized_at
    assert opened.amount_due == 2125 and opened.amount_remaining == 2125
    paid = await client.v1.invoices.pay_async(invoice.id, params={"paid_out_of_band": True})
    assert (paid.status, paid.amount_paid, paid.amount_remaining) == ("paid", 2125, 0)
    assert emulator.state(account)["invoices"][invoice.id]["status"] == "paid"


async def test_finalizing_an_invoice_with_nothing_due_marks_it_paid(client: Any) -> None:
    customer = await make_customer(client)
    invoice = await make_draft(client, customer)
    await add_item(client, customer, invoice, amount=-300)
    finalized = await client.v1.invoices.finalize_invoice_async(invoice.id)
    assert (finalized.status, finalized.total, finalized.amount_due, finalized.ending_balance) == (
        "paid",
        -300,
        0,
        -300,
    )
    assert (await client.v1.customers.retrieve_async(customer.id)).balance == -300


async def test_only_draft_invoices_can_be_deleted_and_drafts_cannot_be_voided(client: Any) -> None:
    customer = await make_customer(client)
    draft = await make_draft(client, customer)
    item = await add_item(client, customer, draft)
    with pytest.raises(stripe.InvalidRequestError) as void_draft:
        await client.v1.invoices.void_invoice_async(draft.id)
    assert void_draft.value.http_status == 400
    deleted = await client.v1.invoices.delete_async(draft.id)
    assert deleted.deleted is True
    with pytest.raises(stripe.InvalidRequestError):
        await client.v1.invoice_items.retrieve_async(item.id)

    invoice = await make_draft(client, customer)
    await add_item(client, customer, invoice)
    await client.v1.invoices.finalize_invoice_async(invoice.id)
    with pytest.raises(stripe.InvalidRequestError) as delete_open:
        await client.v1.invoices.delete_async(invoice.id)
    assert delete_open.value.http_status == 400
    with pytest.raises(stripe.InvalidRequestError):
        await client.v1.invoices.finalize_invoice_async(invoice.id)
    uncollectible = await client.v1.invoices.mark_uncollectible_async(invoice.id)
    assert uncollectible.status == "uncollectible"
    voided = await client.v1.invoices.void_invoice_async(invoice.id)
    assert voided.status == "void" and voided.status_transitions.voided_at
    with pytest.raises(stripe.InvalidRequestError):
        await client.v1.invoices.pay_async(invoice.id)


async def test_items_of_finalized_invoices_are_frozen(client: Any) -> None:
    customer = await make_customer(client)
    invoice = await make_draft(client, customer)
    item = await add_item(client, customer, invoice)
    updated = await client.v1.invoice_items.update_async(item.id, params={"amount": 1500, "description": "x"})
    assert updated.amount == 1500
    await client.v1.invoices.finalize_invoice_async(invoice.id)
    for call in (
        client.v1.invoice_items.update_async(item.id, params={"amount": 1}),
        client.v1.invoice_items.delete_async(item.id),
        client.v1.invoice_items.create_async(
            params={"customer": customer.id, "invoice": invoice.id, "amount": 1, "currency": "usd"}
        ),
    ):
        with pytest.raises(stripe.InvalidRequestError) as error:
            await call
        assert (error.value.http_status, error.value.code) == (400, "invoice_not_editable")


async def test_pending_items_can_change_and_are_pulled_in_only_when_asked(client: Any) -> None:
    customer = await make_customer(client)
    pending = await add_item(client, customer, amount=700)
    pending = await client.v1.invoice_items.update_async(pending.id, params={"metadata": {"bill": "b1"}})
    excluded = await make_draft(client, customer)
    assert excluded.lines.data == [] and (await client.v1.invoice_items.retrieve_async(pending.id)).invoice is None
    included = await make_draft(client, customer, pending_invoice_items_behavior="include")
    assert [line.parent.invoice_item_details.invoice_item for line in included.lines.data] == [pending.id]
    assert included.total == 700
    removed = await client.v1.invoice_items.delete_async((await add_item(client, customer)).id)
    assert removed.deleted is True


async def test_invoice_parameter_rules(client: Any) -> None:
    customer = await make_customer(client)
    for params in (
        {"days_until_due": 30},
        {"collection_method": "charge_automatically", "due_date": int(time.time()) + 86400},
    ):
        with pytest.raises(stripe.InvalidRequestError) as error:
            await make_draft(client, customer, **params)
        assert error.value.param in ("days_until_due", "due_date")
    fields = [{"name": f"n{i}", "value": "v"} for i in range(5)]
    with pytest.raises(stripe.InvalidRequestError) as too_many:
        await make_draft(client, customer, custom_fields=fields)
    assert too_many.value.param == "custom_fields"
    with pytest.raises(stripe.InvalidRequestError) as long_name:
        await make_draft(client, customer, custom_fields=[{"name": "n" * 41, "value": "v"}])
    assert long_name.value.param == "custom_fields[0][name]"
    with pytest.raises(stripe.InvalidRequestError) as long_value:
        await make_draft(client, customer, custom_fields=[{"name": "n", "value": "v" * 141}])
    assert long_value.value.param == "custom_fields[0][value]"
    with pytest.raises(stripe.InvalidRequestError) as long_description:
        await add_item(client, customer, description="d" * 5001)
    assert long_description.value.param == "description"

    invoice = await make_draft(client, customer, collection_method="send_invoice", days_until_due=7)
    await client.v1.invoices.update_async(invoice.id, params={"footer": "Thanks", "collection_method": "send_invoice"})
    await add_item(client, customer, invoice)
    assert (await client.v1.invoices.finalize_invoice_async(invoice.id)).status == "open"
    updated = await client.v1.invoices.update_async(invoice.id, params={"description": "Memo", "metadata": {"a": "b"}})
    assert updated.description == "Memo"
    with pytest.raises(stripe.InvalidRequestError) as frozen:
        await client.v1.invoices.update_async(invoice.id, params={"collection_method": "charge_automatically"})
    assert frozen.value.code == "invoice_not_editable"


async def test_an_invoice_holds_at_most_250_items(client: Any) -> None:
    customer = await make_customer(client)
    invoice = await make_draft(client, customer)
    await client.v1.invoices.add_lines_async(
        invoice.id, params={"lines": [{"amount": 1, "description": f"line {i}"} for i in range(250)]}
    )
    with pytest.raises(stripe.InvalidRequestError) as error:
        await add_item(client, customer, invoice)
    assert error.value.http_status == 400 and "250" in error.value.user_message
    await add_item(client, customer)  # pending items are not limited
    trimmed = await client.v1.invoices.remove_lines_async(
        invoice.id,
        params={
            "lines": [
                {"id": line.id, "behavior": "unassign"}
                for line in (await client.v1.invoices.line_items.list_async(invoice.id)).data[:2]
            ]
        },
    )
    assert trimmed.total == 248
    remaining = await client.v1.invoices.line_items.list_async(invoice.id, params={"limit": 100})
    assert len([line async for line in remaining.auto_paging_iter()]) == 248


# --- 7. currencies -------------------------------------------------------------------------------


async def test_currency_rules(client: Any) -> None:
    customer = await make_customer(client)
    product = await make_product(client)
    yen = await add_item(client, customer, amount=500, currency="JPY")
    assert (yen.amount, yen.currency) == (500, "jpy")
    assert (await add_item(client, customer, amount=5120, currency="kwd")).amount == 5120
    assert (await add_item(client, customer, amount=500, currency="isk")).amount == 500
    for amount, currency in ((5124, "kwd"), (5121, "bhd"), (550, "isk")):
        with pytest.raises(stripe.InvalidRequestError) as error:
            await add_item(client, customer, amount=amount, currency=currency)
        assert error.value.param == "amount"
    with pytest.raises(stripe.InvalidRequestError) as unit:
        await client.v1.invoice_items.create_async(
            params={
                "customer": customer.id,
                "price_data": {"currency": "omr", "product": product.id, "unit_amount": 15},
            }
        )
    assert unit.value.param == "price_data[unit_amount]"
    with pytest.raises(stripe.InvalidRequestError) as unsupported:
        await add_item(client, customer, currency="xyz")
    assert unsupported.value.param == "currency" and "Invalid currency: xyz" in unsupported.value.user_message


async def test_items_of_an_invoice_share_its_currency(client: Any) -> None:
    customer = await make_customer(client)
    invoice = await make_draft(client, customer, currency="eur")
    assert invoice.currency == "eur"
    assert (await add_item(client, customer, invoice, currency="eur")).currency == "eur"
    with pytest.raises(stripe.InvalidRequestError) as error:
        await add_item(client, customer, invoice, currency="usd")
    assert error.value.param == "currency"
    defaulted = await client.v1.invoice_items.create_async(
        params={"customer": customer.id, "invoice": invoice.id, "amount": 5}
    )
    assert defaulted.currency == "eur"


async def test_decimal_unit_amounts_and_quantities(client: Any) -> None:
    customer = await make_customer(client)
    product = await make_product(client)

    async def amount(unit: str, **extra: Any) -> Any:
        return await client.v1.invoice_items.create_async(
            params={
                "customer": customer.id,
                "price_data": {"currency": "usd", "product": product.id, "unit_amount_decimal": unit},
                **extra,
            }
        )

    half = await amount("0.5", quantity=3)
    assert (half.amount, half.quantity, half.pricing.unit_amount_decimal) == (2, 3, Decimal("0.5"))
    precise = await amount("0.000000000001", quantity_decimal="1000000000000")
    assert precise.amount == 1 and precise.quantity == 1000000000000
    with pytest.raises(stripe.InvalidRequestError) as places:
        await amount("0.0000000000001")
    assert places.value.param == "price_data[unit_amount_decimal]"
    with pytest.raises(stripe.InvalidRequestError) as both:
        await client.v1.invoice_items.create_async(
            params={"customer": customer.id, "amount": 5, "currency": "usd", "quantity": 2}
        )
    assert both.value.code == "parameters_exclusive"
    price = await client.v1.invoice_items.retrieve_async(half.id)
    assert price.pricing.price_details.product == product.id


# --- 8. rate limiting ----------------------------------------------------------------------------


async def test_token_bucket_rate_limit_per_account(emulator: StripeEmulator, account: str) -> None:
    emulator.add_api_key(OTHER_KEY)
    emulator.set_rate_limit(per_second=5)
    client = make_client(emulator)
    for _ in range(5):
        await client.v1.balance.retrieve_async()
    with pytest.raises(stripe.RateLimitError) as error:
        await client.v1.customers.create_async(params={"name": "x"}, options={"idempotency_key": "k-429"})
    body: Any = error.value.json_body
    assert error.value.http_status == 429
    assert (body["error"]["type"], body["error"]["code"]) == ("invalid_request_error", "rate_limit")
    assert error.value.headers is not None and error.value.headers["Retry-After"] == "1"
    await make_client(emulator, OTHER_KEY).v1.balance.retrieve_async()  # another account has its own bucket
    await asyncio.sleep(0.25)  # 5/s refills a token every 0.2 s
    retried = await client.v1.customers.create_async(params={"name": "x"}, options={"idempotency_key": "k-429"})
    assert "Idempotent-Replayed" not in retried.last_response.headers
    emulator.set_rate_limit(None)
    for _ in range(20):
        await client.v1.balance.retrieve_async()


# --- 9. faults -----------------------------------------------------------------------------------


async def test_server_error_happens_before_any_write(client: Any, emulator: StripeEmulator, account: str) -> None:
    emulator.inject(Fault.SERVER_ERROR, method="POST", path_prefix="/v1/customers", times=2)
    await client.v1.balance.retrieve_async()  # does not match the rule
    for _ in range(2):
        with pytest.raises(stripe.APIError) as error:
            await client.v1.customers.create_async(params={"name": "x"}, options={"idempotency_key": "k-500"})
        body: Any = error.value.json_body
        assert (error.value.http_status, body["error"]["type"]) == (500, "api_error")
    assert emulator.state(account)["customers"] == {}
    created = await client.v1.customers.create_async(params={"name": "x"}, options={"idempotency_key": "k-500"})
    assert "Idempotent-Replayed" not in created.last_response.headers
    assert emulator.faults.fired[Fault.SERVER_ERROR] == 2


async def test_server_error_after_execution_began_is_replayed(emulator: StripeEmulator, raw: httpx.AsyncClient) -> None:
    emulator.inject(Fault.SERVER_ERROR_SAVED)
    key = {"Idempotency-Key": "k-saved-500"}
    first = await raw.post("/v1/customers", data={"name": "x"}, headers=key)
    assert first.status_code == 500 and first.headers["Stripe-Should-Retry"] == "false"
    again = await raw.post("/v1/customers", data={"name": "x"}, headers=key)
    assert again.status_code == 500 and again.headers["Idempotent-Replayed"] == "true"


@pytest.mark.looptime
async def test_timeout_still_performs_the_write(emulator: StripeEmulator, account: str) -> None:
    emulator.inject(Fault.TIMEOUT, delay_seconds=0.5)
    impatient = make_client(emulator, timeout=0.1)
    with pytest.raises(stripe.APIConnectionError):
        await impatient.v1.customers.create_async(params={"name": "slow"}, options={"idempotency_key": "k-slow"})
    assert emulator.state(account)["customers"] == {}
    # The write completes on the server after its 0.5 s delay; on a loaded machine that may take longer.
    for _ in range(100):
        if emulator.state(account)["customers"]:
            break
        await asyncio.sleep(0.1)
    (customer,) = emulator.state(account)["customers"].values()
    retry = await make_client(emulator).v1.customers.create_async(
        params={"name": "slow"}, options={"idempotency_key": "k-slow"}
    )
    assert retry.id == customer["id"] and retry.last_response.headers["Idempotent-Replayed"] == "true"


async def test_drops_before_and_after_the_write(client: Any, emulator: StripeEmulator, account: str) -> None:
    emulator.inject(Fault.DROP_BEFORE_WRITE)
    with pytest.raises(stripe.APIConnectionError):
        await client.v1.customers.create_async(params={"name": "a"}, options={"idempotency_key": "k-drop-1"})
    assert emulator.state(account)["customers"] == {}
    emulator.inject(Fault.DROP_AFTER_WRITE)
    with pytest.raises(stripe.APIConnectionError):
        await client.v1.customers.create_async(params={"name": "b"}, options={"idempotency_key": "k-drop-2"})
    (customer,) = emulator.state(account)["customers"].values()
    replay = await client.v1.customers.create_async(params={"name": "b"}, options={"idempotency_key": "k-drop-2"})
    assert replay.id == customer["id"]


async def test_fault_rules_until_cleared_and_random_chaos(client: Any, emulator: StripeEmulator) -> None:
    emulator.inject(Fault.RATE_LIMIT, method="GET", times=None)
    for _ in range(3):
        with pytest.raises(stripe.RateLimitError):
            await client.v1.balance.retrieve_async()
    emulator.clear_faults()
    await client.v1.balance.retrieve_async()

    def chaos_run() -> list[str | None]:
        emulator.inject_random({Fault.SERVER_ERROR: 0.3, Fault.RATE_LIMIT: 0.2}, seed=42)
        return [
            None if (t := emulator.faults.pick("GET", "/v1/balance", "acct")) is None else t.fault.value
            for _ in range(200)
        ]

    first, second = chaos_run(), chaos_run()
    assert first == second
    assert 40 <= first.count("server_error") <= 80 and 20 <= first.count("rate_limit") <= 60
    with pytest.raises(ValueError):
        emulator.inject_random({Fault.SERVER_ERROR: 0.7, Fault.RATE_LIMIT: 0.7})


# --- 10. latency, logs and ways to run it --------------------------------------------------------


@pytest.mark.looptime
async def test_latency_and_request_log(emulator: StripeEmulator, client: Any) -> None:
    emulator.latency_seconds = 0.15
    loop = asyncio.get_running_loop()  # on fake time (looptime): the latency is the emulator's sleep, nothing else
    started = loop.time()
    await client.v1.accounts.retrieve_current_async()
    assert loop.time() - started >= 0.15
    emulator.latency_seconds = 0.0
    await client.v1.customers.create_async(params={"name": "x"}, options={"idempotency_key": "k-log"})
    assert emulator.request_count == 2
    assert emulator.endpoint_counts["GET /v1/account"] == 1
    last = emulator.requests[-1]
    assert (last.method, last.path, last.status, last.idempotency_key) == ("POST", "/v1/customers", 200, "k-log")


async def test_control_endpoint_state(emulator: StripeEmulator, client: Any, account: str) -> None:
    customer = await make_customer(client)
    async with httpx.AsyncClient(base_url=emulator.url) as http:
        state = (await http.get("/_emulator/state", params={"account": account})).json()
        stats = (await http.get("/_emulator/stats")).json()
    assert list(state["customers"]) == [customer.id]
    assert stats["endpoints"] == {"POST /v1/customers": 1}


def test_in_thread_serves_synchronous_callers() -> None:
    emulator = StripeEmulator()
    account = emulator.add_api_key(KEY)
    with emulator.in_thread():
        client = stripe.StripeClient(
            KEY, base_addresses={"api": emulator.url}, http_client=stripe.HTTPXClient(allow_sync_methods=True)
        )
        assert client.v1.accounts.retrieve_current().id == account


def test_command_line_server() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "m3stripe.testing.stripe_emulator", "--port", "0", "--api-key", KEY],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        client = stripe.StripeClient(
            KEY, base_addresses={"api": url}, http_client=stripe.HTTPXClient(allow_sync_methods=True)
        )
        assert client.v1.customers.create(params={"name": "cli"}).id.startswith("cus_")
    finally:
        process.terminate()
        process.wait(timeout=10)


# --- fidelity to the SDK -------------------------------------------------------------------------


def _sdk_params_class(route_name: str) -> type | None:
    """The SDK's TypedDict for an endpoint, found from its module naming convention."""
    names = {
        "GET /v1/account": "_account_retrieve_current_params.AccountRetrieveCurrentParams",
        "GET /v1/balance": "_balance_retrieve_params.BalanceRetrieveParams",
        "POST /v1/customers": "_customer_create_params.CustomerCreateParams",
        "GET /v1/customers": "_customer_list_params.CustomerListParams",
        "GET /v1/customers/{customer}": "_customer_retrieve_params.CustomerRetrieveParams",
        "POST /v1/customers/{customer}": "_customer_update_params.CustomerUpdateParams",
        "POST /v1/products": "_product_create_params.ProductCreateParams",
        "GET /v1/products": "_product_list_params.ProductListParams",
        "GET /v1/products/{id}": "_product_retrieve_params.ProductRetrieveParams",
        "POST /v1/products/{id}": "_product_update_params.ProductUpdateParams",
        "POST /v1/invoiceitems": "_invoice_item_create_params.InvoiceItemCreateParams",
        "GET /v1/invoiceitems": "_invoice_item_list_params.InvoiceItemListParams",
        "GET /v1/invoiceitems/{invoiceitem}": "_invoice_item_retrieve_params.InvoiceItemRetrieveParams",
        "POST /v1/invoiceitems/{invoiceitem}": "_invoice_item_update_params.InvoiceItemUpdateParams",
        "POST /v1/invoices": "_invoice_create_params.InvoiceCreateParams",
        "GET /v1/invoices": "_invoice_list_params.InvoiceListParams",
        "GET /v1/invoices/{invoice}": "_invoice_retrieve_params.InvoiceRetrieveParams",
        "POST /v1/invoices/{invoice}": "_invoice_update_params.InvoiceUpdateParams",
        "POST /v1/invoices/{invoice}/finalize": "_invoice_finalize_invoice_params.InvoiceFinalizeInvoiceParams",
        "POST /v1/invoices/{invoice}/pay": "_invoice_pay_params.InvoicePayParams",
        "POST /v1/invoices/{invoice}/void": "_invoice_void_invoice_params.InvoiceVoidInvoiceParams",
        "POST /v1/invoices/{invoice}/mark_uncollectible": (
            "_invoice_mark_uncollectible_params.InvoiceMarkUncollectibleParams"
        ),
        "POST /v1/invoices/{invoice}/send": "_invoice_send_invoice_params.InvoiceSendInvoiceParams",
        "POST /v1/invoices/{invoice}/add_lines": "_invoice_add_lines_params.InvoiceAddLinesParams",
        "POST /v1/invoices/{invoice}/remove_lines": "_invoice_remove_lines_params.InvoiceRemoveLinesParams",
        "GET /v1/invoices/{invoice}/lines": "_invoice_line_item_list_params.InvoiceLineItemListParams",
        "POST /v1/coupons": "_coupon_create_params.CouponCreateParams",
        "GET /v1/coupons/{coupon}": "_coupon_retrieve_params.CouponRetrieveParams",
        "GET /v1/tax/settings": "tax._settings_retrieve_params.SettingsRetrieveParams",
        "POST /v1/tax/settings": "tax._settings_update_params.SettingsUpdateParams",
        "GET /v1/tax/registrations": "tax._registration_list_params.RegistrationListParams",
        "POST /v1/tax/registrations": "tax._registration_create_params.RegistrationCreateParams",
        "GET /v1/tax/registrations/{id}": "tax._registration_retrieve_params.RegistrationRetrieveParams",
        "POST /v1/tax/registrations/{id}": "tax._registration_update_params.RegistrationUpdateParams",
    }
    dotted = names.get(route_name)
    if dotted is None:
        return None
    module, _, cls = dotted.rpartition(".")
    found: type = getattr(importlib.import_module(f"stripe.params.{module}"), cls)
    return found


def _nested_sdk_type(annotation: Any, namespace: dict[str, Any]) -> type | None:
    """The TypedDict an SDK annotation refers to, e.g. ``NotRequired["InvoiceCreateParamsCustomField"]``."""
    text = annotation if isinstance(annotation, str) else repr(annotation)
    for name in re.findall(r"\b([A-Z]\w*Params\w*)\b", text):
        value = namespace.get(name)
        if isinstance(value, type):
            return value
    return None


def _check_against_sdk(param: Obj, sdk: type, path: str, problems: list[str]) -> None:
    fields: dict[str, Any] = {}
    for klass in reversed(sdk.__mro__):
        fields.update(getattr(klass, "__annotations__", {}))
    namespace = vars(importlib.import_module(sdk.__module__))
    for name, child in param.fields.items():
        if name not in fields:
            problems.append(f"{path}{name} is not a parameter of {sdk.__name__}")
            continue
        while isinstance(child, Arr):
            child = child.item
        if isinstance(child, Obj):
            nested = _nested_sdk_type(fields[name], namespace)
            if nested is None:
                problems.append(f"{path}{name} is a hash here but not in {sdk.__name__}")
            else:
                _check_against_sdk(child, nested, f"{path}{name}.", problems)


def test_every_accepted_parameter_exists_in_the_sdk() -> None:
    problems: list[str] = []
    checked = 0
    for route in ROUTES:
        sdk = _sdk_params_class(route.name)
        if sdk is None:
            continue
        checked += 1
        _check_against_sdk(route.schema.obj, sdk, f"{route.name}: ", problems)
    # Every route but the DELETEs, whose SDK types lack the `expand` every emulated endpoint takes.
    assert checked == len([route for route in ROUTES if route.method != "DELETE"])
    assert problems == []


async def test_objects_only_use_fields_the_sdk_declares(client: Any, emulator: StripeEmulator, account: str) -> None:
    customer = await make_customer(client)
    product = await make_product(client)
    invoice = await make_draft(client, customer)
    await client.v1.invoice_items.create_async(
        params={
            "customer": customer.id,
            "invoice": invoice.id,
            "price_data": {"currency": "usd", "product": product.id, "unit_amount": 5},
        }
    )
    await client.v1.invoices.finalize_invoice_async(invoice.id)
    snapshot = emulator.state(account)
    rendered = snapshot["invoices"][invoice.id]
    samples: list[tuple[type, dict[str, Any]]] = [
        (stripe.Customer, snapshot["customers"][customer.id]),
        (stripe.Product, snapshot["products"][product.id]),
        (stripe.Invoice, rendered),
        (stripe.InvoiceItem, next(iter(snapshot["invoice_items"].values()))),
        (stripe.InvoiceLineItem, rendered["lines"]["data"][0]),
        (stripe.Price, next(iter(snapshot["prices"].values()))),
        (stripe.Account, snapshot["account"]),
    ]
    for cls, obj in samples:
        declared: dict[str, Any] = {}
        for klass in reversed(cls.__mro__):
            declared.update(getattr(klass, "__annotations__", {}))
        public = {k: str(v) for k, v in declared.items() if not k.startswith("_") and k != "OBJECT_NAME"}
        assert set(obj) - set(public) == set(), cls.__name__
        required = {k for k, v in public.items() if "Optional" not in v and k != "deleted"}
        assert required - set(obj) == set(), cls.__name__
        assert obj["object"] == cls.OBJECT_NAME  # type: ignore[attr-defined]


# --- the rest of the surface ---------------------------------------------------------------------


async def test_deleted_customers_answer_with_a_stub_and_take_no_new_items(client: Any) -> None:
    customer = await make_customer(client)
    assert (await client.v1.customers.delete_async(customer.id)).deleted is True
    stub = await client.v1.customers.retrieve_async(customer.id)
    assert stub.deleted is True
    with pytest.raises(stripe.InvalidRequestError) as error:
        await add_item(client, customer)
    assert (error.value.code, error.value.param) == ("resource_missing", "customer")
    assert (await client.v1.customers.list_async()).data == []


async def test_products_send_and_expansion(client: Any) -> None:
    product = await client.v1.products.create_async(params={"id": "prod_usage", "name": "Usage", "unit_label": "call"})
    with pytest.raises(stripe.InvalidRequestError) as duplicate:
        await client.v1.products.create_async(params={"id": "prod_usage", "name": "Again"})
    assert duplicate.value.code == "resource_already_exists"
    renamed = await client.v1.products.update_async(product.id, params={"name": "API usage", "unit_label": ""})
    assert (renamed.name, renamed.unit_label) == ("API usage", None)
    assert [p.id for p in (await client.v1.products.list_async(params={"active": True})).data] == [product.id]

    customer = await make_customer(client)
    invoice = await make_draft(client, customer, collection_method="send_invoice", days_until_due=30)
    item = await add_item(client, customer, invoice)
    expanded = await client.v1.invoice_items.retrieve_async(item.id, params={"expand": ["invoice", "customer"]})
    assert (expanded.invoice.id, expanded.customer.email) == (invoice.id, customer.email)
    await client.v1.invoices.finalize_invoice_async(invoice.id)
    sent = await client.v1.invoices.send_invoice_async(invoice.id)
    assert sent.status == "open" and sent.hosted_invoice_url
    balance = await client.v1.balance.retrieve_async()
    assert balance.object == "balance"
    await client.v1.invoices.pay_async(invoice.id)
    balance = await client.v1.balance.retrieve_async()
    assert [(b.currency, b.amount) for b in balance.pending] == [("usd", 1000)]


# --- API version -----------------------------------------------------------------------------------


async def test_the_emulator_speaks_the_sdks_pinned_api_version() -> None:
    from stripe._api_version import _ApiVersion

    from m3stripe.testing.stripe_emulator.app import API_VERSION

    assert API_VERSION == _ApiVersion.CURRENT


async def test_an_unknown_stripe_version_is_refused_as_stripe_does(raw: httpx.AsyncClient) -> None:
    for version in ("2099-01-01.zebra", "2022-08-02", "basil"):
        response = await raw.get("/v1/account", headers={"Stripe-Version": version})
        assert response.status_code == 400
        assert response.json()["error"]["message"] == f"Invalid Stripe API version: {version}"
        assert response.json()["error"]["type"] == "invalid_request_error"


async def test_a_known_older_version_is_answered_but_is_a_contract_violation(emulator: StripeEmulator) -> None:
    emulator.add_api_key(KEY)
    emulator.contract_mode = True
    old = stripe.StripeClient(
        KEY, base_addresses={"api": emulator.url}, http_client=stripe.HTTPXClient(), stripe_version="2025-03-31.basil"
    )
    await old.v1.balance.retrieve_async()
    await make_client(emulator).v1.balance.retrieve_async()
    assert [v.problems for v in emulator.violations] == [
        (
            "Stripe-Version '2025-03-31.basil': the contract (the SDK's types) is API version "
            f"'{stripe._api_version._ApiVersion.CURRENT}'",
        )
    ]
    assert emulator.api_versions == {"2025-03-31.basil": 1, stripe._api_version._ApiVersion.CURRENT: 1}


async def test_contract_mode_records_requests_the_sdk_types_do_not_allow(emulator: StripeEmulator) -> None:
    emulator.add_api_key(KEY)
    emulator.contract_mode = True
    client = make_client(emulator)
    customer = await make_customer(client)
    with pytest.raises(stripe.InvalidRequestError):
        await client.v1.invoices.create_async(params={"customer": customer.id, "po_number": "x"})  # type: ignore[typeddict-unknown-key]
    with pytest.raises(stripe.InvalidRequestError):
        await client.v1.invoices.create_async(params={"customer": customer.id, "collection_method": "monthly"})
    found = [(v.endpoint, v.problems) for v in emulator.violations]
    assert found == [
        ("POST /v1/invoices", ("po_number: unknown parameter (not in InvoiceCreateParams)",)),
        (
            "POST /v1/invoices",
            ("collection_method: 'monthly' is not one of 'charge_automatically', 'send_invoice'",),
        ),
    ]
    assert emulator.contract_checked == 3
    assert "po_number" in emulator.contract_report()


# --- restricted keys -------------------------------------------------------------------------------


async def test_a_restricted_key_may_never_read_the_account(emulator: StripeEmulator) -> None:
    account = emulator.add_api_key("rk_test_restrictedKey00wxyz")
    with pytest.raises(stripe.PermissionError) as error:
        await make_client(emulator, "rk_test_restrictedKey00wxyz").v1.accounts.retrieve_current_async()
    assert error.value.http_status == 403
    assert error.value.user_message == (
        "The provided key 'rk_test_" + "*" * 15 + "wxyz' does not have the required permissions for this endpoint "
        f"on account '{account}'. This is a restricted API key, but the required permissions are not available "
        "for use by restricted keys."
    )


async def test_a_restricted_key_without_a_permission_is_refused_naming_it(emulator: StripeEmulator) -> None:
    key = "rk_live_readOnlyInvoices0wxyz"
    account = emulator.add_api_key(key, permissions=["rak_invoice_read", "rak_customer_write"])
    client = make_client(emulator, key)
    customer = await make_customer(client)  # customer write
    assert (await client.v1.customers.retrieve_async(customer.id)).id == customer.id  # write implies read
    await client.v1.invoices.list_async()  # invoice read
    with pytest.raises(stripe.PermissionError) as error:
        await client.v1.invoices.create_async(params={"customer": customer.id})
    assert error.value.user_message is not None
    assert error.value.user_message.endswith(
        f"on account '{account}'. Having the 'rak_invoice_write' permission would allow this request to continue."
    )
    with pytest.raises(stripe.PermissionError, match="rak_invoiceitem_read"):
        await client.v1.invoice_items.list_async()
    with pytest.raises(ValueError, match="only restricted keys"):
        emulator.add_api_key("sk_test_notRestricted", permissions=["rak_invoice_read"])


# --- rate limits per account and mode, and per endpoint --------------------------------------------


async def test_live_and_test_mode_have_separate_budgets(emulator: StripeEmulator) -> None:
    account = emulator.add_api_key(KEY)
    emulator.add_api_key("sk_live_sameAccountLive0wxyz", account=account)
    emulator.set_rate_limit(3, livemode=False)
    emulator.set_rate_limit(6, livemode=True)
    emulator.set_endpoint_rate_limit(None)
    test, live = make_client(emulator), make_client(emulator, "sk_live_sameAccountLive0wxyz")
    for _ in range(3):
        await test.v1.balance.retrieve_async()
    with pytest.raises(stripe.RateLimitError):
        await test.v1.balance.retrieve_async()
    for _ in range(6):
        await live.v1.balance.retrieve_async()  # test mode's exhausted budget does not touch live mode's
    with pytest.raises(stripe.RateLimitError):
        await live.v1.balance.retrieve_async()


async def test_each_endpoint_has_its_own_stricter_limit(emulator: StripeEmulator) -> None:
    emulator.add_api_key(KEY)
    emulator.set_rate_limit(100)
    emulator.set_endpoint_rate_limit(4)
    client = make_client(emulator)
    for _ in range(4):
        await client.v1.balance.retrieve_async()
    with pytest.raises(stripe.RateLimitError):
        await client.v1.balance.retrieve_async()
    await client.v1.customers.list_async()  # another endpoint still has room in the global budget


async def test_stripes_default_limits_are_100_live_25_test_and_25_per_endpoint(
    emulator: StripeEmulator, raw: httpx.AsyncClient
) -> None:
    emulator.use_stripe_rate_limits()
    statuses = [r.status_code for r in await asyncio.gather(*(raw.get("/v1/balance") for _ in range(40)))]
    assert 25 <= statuses.count(200) < 40 and statuses.count(429) == 40 - statuses.count(200)


# Object locks: a write to an object another request is still writing is refused with lock_timeout.


@pytest.mark.looptime
async def test_a_write_to_an_object_another_write_still_holds_is_a_lock_timeout_to_retry() -> None:
    emulator = StripeEmulator(seed=31, latency_seconds=0.2)
    emulator.add_api_key("sk_test_51locksLOCKS")
    async with emulator, open_client("sk_test_51locksLOCKS", api_base=emulator.url, max_network_retries=0) as sdk:
        first = await sdk.v1.customers.create_async(params={"name": "A"})
        other = await sdk.v1.customers.create_async(params={"name": "B"})
        invoice_of = {"auto_advance": False}
        results = await asyncio.gather(
            sdk.v1.invoices.create_async(params={"customer": first.id, **invoice_of}),
            sdk.v1.invoices.create_async(params={"customer": first.id, **invoice_of}),
            sdk.v1.invoices.create_async(params={"customer": other.id, **invoice_of}),
            sdk.v1.customers.retrieve_async(first.id),  # reads lock nothing
            return_exceptions=True,
        )
        refused = [r for r in results if isinstance(r, stripe.RateLimitError)]
        assert len(refused) == 1 and refused[0].error is not None and refused[0].error.code == "lock_timeout"
        # Saved under the key the SDK gave the request (locks.py): retrying with that key would be a no-op.
        assert refused[0].headers is not None and refused[0].headers.get("Stripe-Should-Retry") == "false"
        assert sum(1 for r in results if isinstance(r, stripe.Invoice)) == 2
        assert emulator.object_locks.refused == 1
        # Once the first write is done, the same request (with a key of its own) goes through.
        await sdk.v1.invoices.create_async(params={"customer": first.id, **invoice_of})


def _client(emulator: StripeEmulator, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=emulator.url, headers={"Authorization": f"Bearer {key}"})


async def _invoice_of_a_new_customer(http: httpx.AsyncClient) -> dict[str, str]:
    """The form creating a draft invoice for a new customer."""
    customer = (await http.post("/v1/customers", data={"name": "A"})).json()["id"]
    return {"customer": customer, "auto_advance": "false"}


@contextlib.asynccontextmanager
async def _customer_held(http: httpx.AsyncClient, invoice: dict[str, str]) -> AsyncIterator[None]:
    """Inside it, the creation of `invoice` with key "holder" is in flight (it holds the customer); it succeeds."""
    holder = asyncio.create_task(http.post("/v1/invoices", data=invoice, headers={"Idempotency-Key": "holder"}))
    await asyncio.sleep(0.05)
    yield
    assert (await holder).status_code == 200


async def _refused_then_retried(emulator: StripeEmulator, key: str) -> list[httpx.Response]:
    """An invoice creation refused while another holds its customer, then the same request again once it is free."""
    async with _client(emulator, key) as http:
        invoice = await _invoice_of_a_new_customer(http)
        async with _customer_held(http, invoice):
            refused = await http.post("/v1/invoices", data=invoice, headers={"Idempotency-Key": "k-1"})
        again = await http.post("/v1/invoices", data=invoice, headers={"Idempotency-Key": "k-1"})
        other_key = await http.post("/v1/invoices", data=invoice, headers={"Idempotency-Key": "k-1-r1"})
        return [refused, again, other_key]


@pytest.mark.looptime
async def test_a_lock_timeout_is_saved_under_the_requests_idempotency_key_and_replayed_to_a_retry_with_it() -> None:
    emulator = StripeEmulator(seed=34, latency_seconds=0.2)
    emulator.add_api_key("sk_test_51locksSAVED")
    async with emulator:
        refused, again, other_key = await _refused_then_retried(emulator, "sk_test_51locksSAVED")
    assert (refused.status_code, refused.json()["error"]["code"]) == (429, "lock_timeout")
    assert refused.headers["Stripe-Should-Retry"] == "false" and "Idempotent-Replayed" not in refused.headers
    assert (again.status_code, again.headers["Idempotent-Replayed"]) == (429, "true")
    assert again.json() == refused.json() and again.headers["Original-Request"] == refused.headers["Request-Id"]
    assert other_key.status_code == 200
    assert emulator.object_locks.refused == 1  # the replay is not a refusal of its own


@pytest.mark.looptime
async def test_unless_asked_otherwise_where_a_lock_timeout_saves_nothing_and_a_retry_with_the_key_runs() -> None:
    emulator = StripeEmulator(seed=35, latency_seconds=0.2, lock_timeouts_saved=False)
    emulator.add_api_key("sk_test_51locksUNSAVED")
    async with emulator:
        refused, again, _ = await _refused_then_retried(emulator, "sk_test_51locksUNSAVED")
    assert (refused.status_code, refused.headers["Stripe-Should-Retry"]) == (429, "true")
    assert again.status_code == 200 and "Idempotent-Replayed" not in again.headers


@pytest.mark.looptime
async def test_a_write_refused_for_a_lock_whose_key_is_in_flight_is_answered_409_as_stripes_idempotency_layer_does() -> (
    None
):
    emulator = StripeEmulator(seed=37, latency_seconds=0.2)
    key = "sk_test_51locksINFLIGHT"
    emulator.add_api_key(key)
    async with emulator, _client(emulator, key) as http:
        invoice = await _invoice_of_a_new_customer(http)
        async with _customer_held(http, invoice):
            again = await http.post("/v1/invoices", data=invoice, headers={"Idempotency-Key": "holder"})
    assert (again.status_code, again.json()["error"]["code"]) == (409, "idempotency_key_in_use")
    assert emulator.object_locks.refused == 0


@pytest.mark.looptime
@pytest.mark.parametrize("fault", [Fault.RATE_LIMIT, Fault.SERVER_ERROR, Fault.DROP_BEFORE_WRITE])
async def test_a_request_refused_before_the_endpoint_never_holds_its_key_so_another_with_it_meanwhile_runs(
    fault: Fault,
) -> None:
    emulator = StripeEmulator(seed=38, latency_seconds=0.2)
    key = "sk_test_51faultsKEY"
    account = emulator.add_api_key(key)
    async with emulator, _client(emulator, key) as http:
        emulator.inject(fault, method="POST", path_prefix="/v1/customers", times=1)
        first = asyncio.create_task(http.post("/v1/customers", data={"name": "A"}, headers={"Idempotency-Key": "c-1"}))
        await asyncio.sleep(0.05)
        second = await http.post("/v1/customers", data={"name": "A"}, headers={"Idempotency-Key": "c-1"})
        with contextlib.suppress(httpx.HTTPError):  # the dropped connection
            await first
    # Refused before Stripe's idempotency layer (a rate limit) or before the endpoint (faults.py): the key was free.
    assert second.status_code == 200 and "Idempotent-Replayed" not in second.headers
    assert len(emulator.state(account)["customers"]) == 1


@pytest.mark.looptime
async def test_a_key_with_a_saved_result_is_replayed_even_while_the_objects_it_writes_are_locked() -> None:
    emulator = StripeEmulator(seed=36, latency_seconds=0.2)
    key = "sk_test_51locksREPLAY"
    emulator.add_api_key(key)
    async with emulator, _client(emulator, key) as http:
        invoice = await _invoice_of_a_new_customer(http)
        first = await http.post("/v1/invoices", data=invoice, headers={"Idempotency-Key": "done"})
        async with _customer_held(http, invoice):
            replay = await http.post("/v1/invoices", data=invoice, headers={"Idempotency-Key": "done"})
    # Stripe's idempotency layer answers before the endpoint runs, so before any lock is looked at.
    assert (replay.status_code, replay.headers["Idempotent-Replayed"]) == (200, "true")
    assert replay.json()["id"] == first.json()["id"] and emulator.object_locks.refused == 0


@pytest.mark.looptime
async def test_a_write_takes_its_locks_once_its_key_is_accepted_whichever_way_the_key_was_sent() -> None:
    emulator = StripeEmulator(seed=32, latency_seconds=0.2)
    key = "sk_test_51locksBASIC"
    emulator.add_api_key(key)
    async with emulator, httpx.AsyncClient(base_url=emulator.url) as http:
        created = await http.post("/v1/customers", data={"name": "A"}, auth=(key, ""))
        customer = created.json()["id"]
        invoice = {"customer": customer, "auto_advance": "false"}
        bearer, basic = await asyncio.gather(
            http.post("/v1/invoices", data=invoice, headers={"Authorization": f"Bearer {key}"}),
            http.post("/v1/invoices", data=invoice, auth=(key, "")),  # curl -u sk_test_...:
        )
        assert sorted([bearer.status_code, basic.status_code]) == [200, 429]
        refused = bearer if bearer.status_code == 429 else basic
        assert refused.json()["error"]["code"] == "lock_timeout"


@pytest.mark.looptime
async def test_under_the_addressed_reading_a_customers_invoices_are_created_at_once_but_an_invoice_is_still_locked() -> (
    None
):
    emulator = StripeEmulator(seed=33, latency_seconds=0.2, locks="addressed")
    emulator.add_api_key("sk_test_51locksADDR")
    async with emulator, open_client("sk_test_51locksADDR", api_base=emulator.url, max_network_retries=0) as sdk:
        customer = await sdk.v1.customers.create_async(params={"name": "A"})
        invoice_of = {"customer": customer.id, "auto_advance": False}
        created = await asyncio.gather(
            sdk.v1.invoices.create_async(params=invoice_of),
            sdk.v1.invoices.create_async(params=invoice_of),
            sdk.v1.invoice_items.create_async(params={"customer": customer.id, "amount": 100, "currency": "usd"}),
        )
        assert emulator.object_locks.refused == 0 and len({obj.id for obj in created}) == 3
        line = {"amount": 100, "description": "Usage"}
        results = await asyncio.gather(
            sdk.v1.invoices.add_lines_async(created[0].id, params={"lines": [line]}),
            sdk.v1.invoice_items.create_async(params={"invoice": created[0].id, "amount": 100, "currency": "usd"}),
            return_exceptions=True,
        )
        refused = [r for r in results if isinstance(r, stripe.RateLimitError)]
        assert len(refused) == 1 and refused[0].error is not None and refused[0].error.code == "lock_timeout"


def test_the_lock_reading_is_strict_unless_asked_and_an_unknown_one_is_refused() -> None:
    assert StripeEmulator().object_locks.reading == "strict"
    assert objects_written("POST", "/v1/invoices", {"customer": "cus_1"}) == [("customer", "cus_1")]
    assert objects_written("POST", "/v1/invoices", {"customer": "cus_1"}, "addressed") == []
    assert objects_written("POST", "/v1/invoiceitems", {"customer": "cus_1"}, "addressed") == []
    assert objects_written("POST", "/v1/invoiceitems", {"invoice": "in_1"}, "addressed") == [("invoice", "in_1")]
    assert objects_written("POST", "/v1/invoices/in_1/finalize", {}, "addressed") == [("invoice", "in_1")]
    assert _parser().parse_args(["--locks", "addressed"]).locks == "addressed"
    assert _parser().parse_args([]).locks == "strict"
    assert StripeEmulator().object_locks.refusals_saved and _parser().parse_args([]).lock_timeouts == "saved"
    assert _parser().parse_args(["--lock-timeouts", "unsaved"]).lock_timeouts == "unsaved"
    with pytest.raises(ValueError, match="unknown lock reading 'loose'"):
        StripeEmulator(locks="loose")  # type: ignore[arg-type]
