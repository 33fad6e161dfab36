"""StripeGateway.call: which Stripe errors are retried, how they end, and what the observer hears."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import stripe

from m3stripe.adapters.stripe_gateway import (
    Failure,
    RetryPolicy,
    StripeCallError,
    StripeGateway,
    scrub,
)
from m3stripe.adapters.stripe_idempotency import IdempotencyKeys
from m3stripe.domain.ports import UNLOCKED_CUSTOMER_WRITE

NO_WAIT = RetryPolicy(max_attempts=4, base_delay=0, max_delay=0)
SECRET = "sk_test_51SuperSecretKeyMaterial"


class RecordingObserver:
    def __init__(self) -> None:
        self.requests: list[tuple[str, int]] = []
        self.retries: list[tuple[str, str]] = []
        self.waits: list[float] = []

    def request(self, endpoint: str, status: int, seconds: float) -> None:
        assert seconds >= 0
        self.requests.append((endpoint, status))

    def retry(self, endpoint: str, reason: str) -> None:
        self.retries.append((endpoint, reason))

    def rate_limit_wait(self, seconds: float) -> None:
        self.waits.append(seconds)


class Script:
    """An async callable that raises the scripted errors in turn, then returns `result`."""

    def __init__(self, *errors: stripe.StripeError, result: Any = "ok") -> None:
        self.errors = list(errors)
        self.result = result
        self.calls = 0

    async def __call__(self) -> Any:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return self.result


def gateway(observer: RecordingObserver | None = None, policy: RetryPolicy = NO_WAIT) -> StripeGateway:
    client = stripe.StripeClient("sk_test_unused")  # never used: the callables below stand in for requests
    return StripeGateway(client, observer=observer, retry=policy)


async def fail(fn: Callable[[], Awaitable[Any]], observer: RecordingObserver | None = None) -> StripeCallError:
    with pytest.raises(StripeCallError) as info:
        await gateway(observer).call("invoices.create", fn)
    return info.value


def rate_limited() -> stripe.StripeError:
    return stripe.RateLimitError("Too many requests", http_status=429, headers={"Retry-After": "0"})


def server_error(headers: dict[str, str] | None = None) -> stripe.StripeError:
    return stripe.APIError("Internal server error", http_status=500, headers=headers)


def network_error() -> stripe.StripeError:
    return stripe.APIConnectionError("connection reset")


def lock_timeout() -> stripe.StripeError:
    """Stripe's 429 for an object another request holds; the SDK leaves `code` unset and keeps it in `error`."""
    body = {"error": {"type": "invalid_request_error", "code": "lock_timeout", "message": "locked"}}
    return stripe.RateLimitError("locked", http_status=429, json_body=body, headers={"Stripe-Should-Retry": "true"})


def conflict() -> stripe.StripeError:
    return stripe.InvalidRequestError("lock timeout", param=None, http_status=409, code="lock_timeout")


@pytest.mark.parametrize(
    ("make", "reason"),
    [(rate_limited, "rate_limited"), (server_error, "server"), (network_error, "network"), (conflict, "server")],
)
async def test_transient_errors_are_retried_then_succeed(make: Callable[[], stripe.StripeError], reason: str) -> None:
    observer = RecordingObserver()
    script = Script(make(), make(), result={"id": "in_1"})
    gw = gateway(observer)
    assert await gw.call("invoices.create", script) == {"id": "in_1"}
    assert script.calls == 3
    assert gw.requests == 3
    status = make().http_status or 0
    assert observer.requests == [("invoices.create", status)] * 2 + [("invoices.create", 200)]
    assert observer.retries == [("invoices.create", reason)] * 2


async def test_mixed_transient_errors_are_all_retried() -> None:
    script = Script(rate_limited(), server_error(), network_error())
    assert await gateway().call("e", script) == "ok"
    assert script.calls == 4


async def test_success_first_time_reports_one_request() -> None:
    observer = RecordingObserver()
    assert await gateway(observer).call("customers.list", Script(result=[1])) == [1]
    assert observer.requests == [("customers.list", 200)]
    assert observer.retries == []


async def test_should_retry_false_stops_retries_even_on_500() -> None:
    script = Script(server_error({"Stripe-Should-Retry": "false"}), result="never")
    err = await fail(script)
    assert script.calls == 1
    assert err.status == 500


async def test_should_retry_true_retries_a_400() -> None:
    observer = RecordingObserver()
    script = Script(
        stripe.InvalidRequestError("try again", param="p", http_status=400, headers={"stripe-should-retry": "true"})
    )
    assert await gateway(observer).call("invoices.create", script) == "ok"
    assert script.calls == 2
    assert len(observer.retries) == 1


async def test_a_400_is_not_retried_and_carries_stripes_message() -> None:
    observer = RecordingObserver()
    script = Script(
        stripe.InvalidRequestError(
            "No such customer: 'cus_x'", param="customer", http_status=400, code="resource_missing"
        )
    )
    err = await fail(script, observer)
    assert script.calls == 1
    assert err.failure is Failure.INVALID
    assert str(err) == "No such customer: 'cus_x'"
    assert err.status == 400
    assert err.code == "resource_missing"
    assert err.endpoint == "invoices.create"
    assert observer.requests == [("invoices.create", 400)]
    assert observer.retries == []


async def test_401_is_auth_and_never_echoes_the_key() -> None:
    script = Script(stripe.AuthenticationError(f"Invalid API Key provided: {SECRET}", http_status=401))
    err = await fail(script)
    assert script.calls == 1
    assert err.failure is Failure.AUTH
    assert err.status == 401
    assert SECRET not in str(err)
    assert "sk_test" not in str(err)
    assert "401" in str(err)
    assert err.__cause__ is None
    assert err.__suppress_context__


async def test_403_is_permission() -> None:
    err = await fail(Script(stripe.PermissionError("restricted key lacks invoices write", http_status=403)))
    assert err.failure is Failure.PERMISSION
    assert "restricted key" in str(err)


async def test_404_is_not_found() -> None:
    err = await fail(Script(stripe.InvalidRequestError("No such invoice", param="id", http_status=404)))
    assert err.failure is Failure.NOT_FOUND


async def test_idempotency_error_is_not_retried() -> None:
    script = Script(
        stripe.IdempotencyError(
            "Keys for idempotent requests can only be used with the same parameters", http_status=400
        )
    )
    err = await fail(script)
    assert script.calls == 1
    assert err.failure is Failure.IDEMPOTENCY


async def test_idempotency_conflict_409_is_retried() -> None:
    script = Script(stripe.IdempotencyError("A request with this key is in progress", http_status=409))
    assert await gateway().call("e", script) == "ok"
    assert script.calls == 2


@pytest.mark.parametrize("make", [rate_limited, server_error, network_error, conflict])
async def test_exhausted_retries_are_transient(make: Callable[[], stripe.StripeError]) -> None:
    observer = RecordingObserver()
    script = Script(*[make() for _ in range(10)])
    err = await fail(script, observer)
    assert script.calls == NO_WAIT.max_attempts == 4
    assert err.failure is Failure.TRANSIENT
    assert len(observer.requests) == 4
    assert len(observer.retries) == 3
    assert "after retries" in str(err)


async def test_non_stripe_exceptions_propagate_unchanged() -> None:
    async def broken() -> None:
        raise KeyError("bug")

    with pytest.raises(KeyError):
        await gateway().call("e", broken)


async def test_retry_after_sets_the_wait_capped_by_max_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []

    async def no_sleep(seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr(asyncio, "sleep", no_sleep)
    script = Script(
        stripe.RateLimitError("slow down", http_status=429, headers={"Retry-After": "30"}),
        stripe.RateLimitError("slow down", http_status=429, headers={"retry-after": "1.5"}),
        stripe.RateLimitError("slow down", http_status=429, headers={"Retry-After": "soon"}),
    )
    gw = gateway(policy=RetryPolicy(max_attempts=4, base_delay=0.25, max_delay=2))
    assert await gw.call("e", script) == "ok"
    assert waits[:2] == [2, 1.5]
    assert 0 <= waits[2] <= 1.0  # unparsable Retry-After: jittered backoff for attempt 3


def test_backoff_stays_within_the_cap() -> None:
    policy = RetryPolicy(max_attempts=8, base_delay=0.5, max_delay=3)
    for attempt in range(1, 9):
        assert 0 <= policy.backoff(attempt) <= min(3, 0.5 * 2 ** (attempt - 1))


def test_scrub_removes_keys_of_any_mode_redacted_forms_secrets_and_account_ids() -> None:
    text = (
        "Invalid API Key provided: sk_test_****abcd; The provided key 'rk_live_*********wxyz' does not have "
        "the required permissions for this endpoint on account 'acct_1PJBLEBBLEfVabcd'. Also sk_live_51Abc, "
        "pk_test_123, rk_test_...9876, sk_test_...abcd, whsec_abc123, pi_123_secret_456 and Bearer sk_x."
    )
    scrubbed = scrub(text)
    for fragment in ("abcd", "wxyz", "acct_1PJ", "51Abc", "pk_test_123", "9876", "whsec_abc", "secret_456", "sk_x"):
        assert fragment not in scrubbed
    assert "the required permissions for this endpoint" in scrubbed


async def test_a_403_for_a_missing_permission_names_the_permission_and_no_key_fragment() -> None:
    message = (
        "The provided key 'rk_test_*****************************wxyz' does not have the required permissions "
        "for this endpoint on account 'acct_1SecretAccount'. Having the 'rak_invoice_write' permission would "
        "allow this request to continue."
    )
    err = await fail(Script(stripe.PermissionError(message, http_status=403)))
    assert err.failure is Failure.PERMISSION
    assert err.permission == "rak_invoice_write"
    assert "rak_invoice_write" in str(err)
    assert "wxyz" not in str(err) and "acct_1SecretAccount" not in str(err)


async def test_every_stripe_call_error_message_is_scrubbed() -> None:
    err = await fail(
        Script(stripe.InvalidRequestError(f"No such customer for key {SECRET}", param=None, http_status=400))
    )
    assert SECRET not in str(err) and SECRET[-6:] not in str(err)
    direct = StripeCallError(Failure.INVALID, f"echo {SECRET} acct_123")
    assert SECRET not in str(direct) and "acct_123" not in str(direct)


async def test_a_transport_error_while_reading_the_answer_is_a_retried_network_error() -> None:
    import aiohttp

    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise aiohttp.ClientPayloadError("connection lost mid-body")
        if calls == 2:
            raise TimeoutError
        return "ok"

    observer = RecordingObserver()
    assert await gateway(observer).call("invoices.list", flaky) == "ok"
    assert observer.retries == [("invoices.list", "network"), ("invoices.list", "network")]


async def test_a_lock_timeout_is_retried_in_place_unless_the_write_is_made_without_its_customers_lock() -> None:
    observer = RecordingObserver()
    script = Script(lock_timeout(), result={"id": "in_1"})
    assert await gateway(observer).call("invoices.create", script) == {"id": "in_1"}
    assert observer.retries == [("invoices.create", "lock_timeout")]

    observer = RecordingObserver()
    script = Script(lock_timeout(), result={"id": "in_1"})
    unlocked = UNLOCKED_CUSTOMER_WRITE.set(True)
    try:
        err = await fail(script, observer)
        # Another 429, the account's rate limit, is still retried in place.
        assert await gateway().call("invoices.create", Script(rate_limited(), result="ok")) == "ok"
    finally:
        UNLOCKED_CUSTOMER_WRITE.reset(unlocked)
    assert script.calls == 1, "the writer retries it, holding the customer's lock"
    assert (err.failure, err.status, err.code, err.endpoint) == (
        Failure.TRANSIENT,
        429,
        "lock_timeout",
        "invoices.create",
    )
    assert observer.requests == [("invoices.create", 429)]
    assert observer.retries == [("invoices.create", "lock_timeout")]


# Idempotency keys: a write goes on under a key derived from its own once Stripe saved a refusal under it.


class KeyedScript:
    """`Script` for `call_with_key`: records the key each attempt was sent with."""

    def __init__(self, *errors: stripe.StripeError, result: Any = "ok") -> None:
        self.errors = list(errors)
        self.result = result
        self.keys: list[str] = []

    async def __call__(self, key: str) -> Any:
        self.keys.append(key)
        if self.errors:
            raise self.errors.pop(0)
        return self.result


def refusal(**headers: str) -> stripe.StripeError:
    """Stripe's lock_timeout with the given headers (`Stripe_Should_Retry` for Stripe-Should-Retry)."""
    error = lock_timeout()
    error.headers = {name.replace("_", "-"): value for name, value in headers.items()}
    return error


async def test_a_refusal_stripe_saved_under_the_key_is_retried_under_a_key_derived_from_it() -> None:
    saved, replayed = refusal(Stripe_Should_Retry="false"), refusal(Idempotent_Replayed="true")
    script = KeyedScript(saved, replayed, refusal(Stripe_Should_Retry="true"))
    gw = gateway()
    assert await gw.call_with_key("invoices.create", script, "m3stripe-k") == "ok"
    # Renewed after each saved refusal, kept after the one Stripe asked to retry with the same key.
    assert script.keys == ["m3stripe-k", "m3stripe-k-r1", "m3stripe-k-r2", "m3stripe-k-r2"]
    # The write's next call (the writer's retry) starts from the key in use.
    again = KeyedScript()
    await gw.call_with_key("invoices.create", again, "m3stripe-k")
    assert again.keys == ["m3stripe-k-r2"]


async def test_a_key_is_kept_after_an_attempt_with_an_unknown_outcome_unless_stripe_replays_a_refusal_under_it() -> (
    None
):
    # After a network error the first attempt may still reach Stripe: "do not retry" alone does not prove that the
    # key's one execution was the refusal, so the key stays and the write ends for this pass.
    for unknown in (network_error(), server_error(), conflict()):
        script = KeyedScript(unknown, refusal(Stripe_Should_Retry="false"))
        with pytest.raises(StripeCallError):
            await gateway().call_with_key("invoices.create", script, "k")
        assert script.keys == ["k", "k"]
    # A replayed 429 does prove it: Stripe answers every request with the key as it answered its one execution.
    for unknown in (network_error(), server_error(), conflict()):
        script = KeyedScript(unknown, refusal(Idempotent_Replayed="true"))
        assert await gateway().call_with_key("invoices.create", script, "k") == "ok"
        assert script.keys == ["k", "k", "k-r1"]


async def test_a_refusal_saved_while_the_write_is_made_without_its_customers_lock_renews_the_key_for_the_writer() -> (
    None
):
    gw = gateway()
    unlocked = UNLOCKED_CUSTOMER_WRITE.set(True)
    try:
        script = KeyedScript(refusal(Stripe_Should_Retry="false"))
        with pytest.raises(StripeCallError):
            await gw.call_with_key("invoices.create", script, "k")
    finally:
        UNLOCKED_CUSTOMER_WRITE.reset(unlocked)
    retry = KeyedScript()
    assert await gw.call_with_key("invoices.create", retry, "k") == "ok"
    assert (script.keys, retry.keys) == (["k"], ["k-r1"])


async def test_only_a_lock_timeout_says_by_its_headers_that_it_was_saved_any_replayed_429_does() -> None:
    # A rate limit's "do not retry" is not read as "saved under the key" (Stripe sends none with one today).
    limited = rate_limited()
    limited.headers = {"Stripe-Should-Retry": "false"}
    script = KeyedScript(limited)
    with pytest.raises(StripeCallError):
        await gateway().call_with_key("invoices.create", script, "k")
    assert script.keys == ["k"]
    replayed = rate_limited()
    replayed.headers = {"Idempotent-Replayed": "true", "Retry-After": "0"}
    script = KeyedScript(replayed)
    assert await gateway().call_with_key("invoices.create", script, "k") == "ok"
    assert script.keys == ["k", "k-r1"]


def test_an_answer_to_an_attempt_made_with_a_key_already_renewed_renews_it_no_further() -> None:
    keys = IdempotencyKeys()
    saved = {"Stripe-Should-Retry": "false"}
    assert keys.answered("k", "k", 429, "lock_timeout", saved) and keys.sent("k") == "k-r1"
    # A late answer for the attempt sent with "k": the write already goes on under "k-r1".
    assert keys.answered("k", "k", 429, "lock_timeout", {"Idempotent-Replayed": "true"}) and keys.sent("k") == "k-r1"
    assert keys.answered("k", "k-r1", 429, "lock_timeout", saved) and keys.sent("k") == "k-r2"
