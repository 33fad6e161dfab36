"""Stripe key checks that must not reach Stripe: the key's format and mode against the destination."""

from __future__ import annotations

import json

import pytest
from aiohttp import web

from m3stripe.adapters.stripe_client import KeyMode, check_key, key_mode, open_client
from tests.support.ports import free_port


@pytest.mark.parametrize(
    ("key", "mode"),
    [
        ("sk_live_abc", KeyMode.LIVE),
        ("rk_live_abc", KeyMode.LIVE),
        ("sk_test_abc", KeyMode.TEST),
        ("rk_test_abc", KeyMode.TEST),
        ("sk_live_", None),  # prefix only
        ("sk_test_", None),
        ("pk_live_abc", None),  # publishable keys cannot write
        ("pk_test_abc", None),
        ("SK_LIVE_abc", None),
        (" sk_live_abc", None),
        ("whsec_abc", None),
        ("", None),
    ],
)
def test_key_mode(key: str, mode: KeyMode | None) -> None:
    assert key_mode(key) is mode


@pytest.fixture
def dead_api_base() -> str:
    """An address nothing listens on: any request would fail with a connection error."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.mark.parametrize(
    ("key", "test_mode", "wrong", "wanted"),
    [
        ("sk_live_secret123", True, "live-mode", "sk_test_"),
        ("rk_live_secret123", True, "live-mode", "sk_test_"),
        ("sk_test_secret123", False, "test-mode", "sk_live_"),
        ("rk_test_secret123", False, "test-mode", "sk_live_"),
    ],
)
async def test_mode_mismatch_is_refused_without_calling_stripe(
    key: str, test_mode: bool, wrong: str, wanted: str, dead_api_base: str
) -> None:
    result = await check_key(key, test_mode=test_mode, api_base=dead_api_base, timeout=2)
    assert not result.ok
    assert result.reason == "KeyModeMismatch"
    assert not result.retryable
    assert wrong in result.message
    assert wanted in result.message
    destination = "StripeTestMode" if test_mode else "Stripe"
    assert f"destination is {destination};" in result.message
    assert "secret123" not in result.message
    assert result.account_id is None


@pytest.mark.parametrize("key", ["pk_test_abc", "not a key", "sk_test_"])
async def test_malformed_key_is_refused_without_calling_stripe(key: str, dead_api_base: str) -> None:
    result = await check_key(key, test_mode=True, api_base=dead_api_base, timeout=2)
    assert (result.ok, result.reason, result.retryable) == (False, "InvalidKeyFormat", False)


async def test_control_a_matching_key_does_call_the_api_base(dead_api_base: str) -> None:
    # Proves the address above really is unreachable, so the refusals above made no request.
    result = await check_key("sk_test_secret123", test_mode=True, api_base=dead_api_base, timeout=2)
    assert (result.ok, result.reason, result.retryable) == (False, "StripeUnreachable", True)
    assert "secret123" not in result.message


# --- against the Stripe emulator: the version sent, restricted keys, scrubbed messages ---------------


async def test_every_request_carries_exactly_the_sdks_pinned_api_version() -> None:
    from stripe._api_version import _ApiVersion

    from m3stripe.adapters.stripe_client import STRIPE_API_VERSION, open_client
    from m3stripe.testing.stripe_emulator import StripeEmulator

    assert STRIPE_API_VERSION == _ApiVersion.CURRENT
    async with StripeEmulator() as emulator:
        emulator.add_api_key("sk_test_versionKey0001")
        assert (await check_key("sk_test_versionKey0001", test_mode=True, api_base=emulator.url)).ok
        async with open_client("sk_test_versionKey0001", api_base=emulator.url) as client:
            await client.v1.invoices.list_async(params={"limit": 1})
            await client.v1.customers.create_async(params={"name": "x"})
        assert emulator.api_versions == {_ApiVersion.CURRENT: 3}


async def test_a_restricted_key_is_checked_through_the_fallback_and_its_account_is_known() -> None:
    from m3stripe.testing.stripe_emulator import StripeEmulator

    async with StripeEmulator() as emulator:
        account = emulator.add_api_key("rk_live_restricted0000wxyz", permissions=["rak_invoice_write"])
        check = await check_key("rk_live_restricted0000wxyz", test_mode=False, api_base=emulator.url)
        assert (check.ok, check.reason, check.account_id) == (True, "Connected", account)
        assert [(r.endpoint, r.status) for r in emulator.requests] == [
            ("GET /v1/account", 403),  # Stripe refuses the account to every restricted key
            ("GET /v1/invoices", 200),
        ]
        assert "wxyz" not in check.message


async def test_a_restricted_key_that_cannot_read_invoices_is_refused_with_what_to_grant() -> None:
    from m3stripe.testing.stripe_emulator import StripeEmulator

    async with StripeEmulator() as emulator:
        emulator.add_api_key("rk_test_customersOnly000wxyz", permissions=["rak_customer_read"])
        check = await check_key("rk_test_customersOnly000wxyz", test_mode=True, api_base=emulator.url)
        assert (check.ok, check.reason) == (False, "StripePermissionDenied")
        assert "Invoices" in check.message and "wxyz" not in check.message


async def test_the_operators_client_sends_stripe_no_telemetry_neither_latencies_nor_the_hosts_platform() -> None:
    seen: list[dict[str, str]] = []

    async def answer(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        return web.json_response({"object": "list", "data": [], "has_more": False, "url": "/v1/customers"})

    app = web.Application()
    app.router.add_get("/v1/customers", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with open_client("sk_test_telemetry", api_base=f"http://127.0.0.1:{port}") as client:
            for _ in range(2):  # the SDK reports a request's latency in the next one's headers
                await client.raw_request_async("get", "/v1/customers")
    finally:
        await runner.cleanup()
    assert len(seen) == 2
    assert not [h for h in seen if "X-Stripe-Client-Telemetry" in h]
    user_agent = json.loads(seen[1]["X-Stripe-Client-User-Agent"])
    assert "platform" not in user_agent and "telemetry_id" not in user_agent
