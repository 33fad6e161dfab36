"""The operator's door to Stripe: the official SDK, a client-side rate limit, retries, and metrics.

Retries follow Stripe's guidance: 429, 5xx, 409 and network errors are retried with exponential
backoff and jitter, reusing the same idempotency key (unless Stripe saved a refusal under it:
`adapters.stripe_idempotency`); `Stripe-Should-Retry` overrides the status when present, and `Retry-After`
sets the wait. Other 4xx errors are not retried: they carry Stripe's
message back to the caller, scrubbed of API keys and account ids (`scrub`).

Every request first waits for its slot in the account's budget (`adapters.stripe_rate_limit`), ahead of the
others when the domain marks it urgent (`domain.ports.URGENT`).
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, Unpack

import aiohttp
import stripe

from m3stripe.adapters.stripe_idempotency import IdempotencyKeys, header
from m3stripe.adapters.stripe_rate_limit import StripeRateLimit
from m3stripe.domain.ports import UNLOCKED_CUSTOMER_WRITE, URGENT, Failure, LedgerError, LedgerErrorDetails

T = TypeVar("T")
__all__ = ["Failure", "LedgerError", "StripeCallError", "StripeGateway", "scrub"]
LIST_PAGE = 100
# Stripe's error texts echo the key ("Invalid API Key provided: sk_test_****abcd", "The provided key
# 'rk_live_...wxyz' does not have the required permissions ... on account 'acct_1...'", see
# https://github.com/stripe/stripe-node/issues/2246), so every text from Stripe passes through `scrub`
# before it reaches status, events, logs or metrics. Redacted forms are scrubbed too: their last
# characters are still a fragment of the key.
_SECRETS = re.compile(
    r"""
    \b(?:sk|rk|pk|ek)_(?:live|test)_[^\s'",;)]*     # API keys of either mode, whole or redacted
    | \b(?:sk|rk)_[A-Za-z0-9]{16,}                  # a key whose mode part is missing or mangled
    | \bwhsec_[^\s'",;)]*                        # webhook signing secrets
    | \b[a-z]{2,6}_[A-Za-z0-9]+_secret_[^\s'",;)]*  # client secrets (pi_..._secret_...)
    | (?i:bearer|basic)\s+[A-Za-z0-9._~+/=-]+       # an Authorization header value
    """,
    re.VERBOSE,
)
_ACCOUNT = re.compile(r"\bacct_[A-Za-z0-9*._]+")
_PERMISSION = re.compile(r"Having the '(rak_[a-z0-9_]+)' permission")
_ACCOUNT_IN_PERMISSION_ERROR = re.compile(r"on account '(acct_[A-Za-z0-9]+)'")


def scrub(text: str, *, mask: str = "[redacted]") -> str:
    """The text without API keys (whole or redacted), other secrets or account ids; each secret becomes `mask`."""
    return _ACCOUNT.sub("acct_[redacted]", _SECRETS.sub(mask, text))


def missing_permission(message: str) -> str | None:
    """The restricted-key permission a 403 names ("Having the 'rak_invoice_write' permission would ...")."""
    found = _PERMISSION.search(message)
    return found.group(1) if found else None


def account_in_permission_error(message: str) -> str | None:
    """The account a restricted key's 403 names ("... for this endpoint on account 'acct_123'")."""
    found = _ACCOUNT_IN_PERMISSION_ERROR.search(message)
    return found.group(1) if found else None


class StripeCallError(LedgerError):
    """A Stripe request that failed for good; its message is scrubbed of keys and account ids."""

    def __init__(self, failure: Failure, message: str, **details: Unpack[LedgerErrorDetails]) -> None:
        super().__init__(failure, scrub(message), **details)


class StripeObserver(Protocol):
    """Where request outcomes go (metrics); `status` is the HTTP status or 0 for network errors."""

    def request(self, endpoint: str, status: int, seconds: float) -> None: ...
    def retry(self, endpoint: str, reason: str) -> None: ...
    def rate_limit_wait(self, seconds: float) -> None: ...


class _NullObserver:
    def request(self, endpoint: str, status: int, seconds: float) -> None:
        pass

    def retry(self, endpoint: str, reason: str) -> None:
        pass

    def rate_limit_wait(self, seconds: float) -> None:
        pass


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8
    base_delay: float = 0.25
    max_delay: float = 20.0

    def backoff(self, attempt: int) -> float:
        # Full jitter: spreads the retries of many concurrent Bills instead of synchronising them.
        return random.uniform(0, min(self.max_delay, self.base_delay * (2 ** (attempt - 1))))


def metadata_of(obj: Any) -> dict[str, str]:
    """A Stripe object's metadata as a plain dict (StripeObjects are not mappings; Stripe's JSON is a dict)."""
    meta = obj.get("metadata") if isinstance(obj, dict) else getattr(obj, "metadata", None)
    if meta is None:
        return {}
    return {str(k): str(v) for k, v in (meta.to_dict() if hasattr(meta, "to_dict") else dict(meta)).items()}


def _retry_reason(err: stripe.StripeError, status: int) -> str:
    """lock_timeout: another request holds the object (a 429 Stripe asks to retry, https://docs.stripe.com/error-codes#lock-timeout),
    not the account's rate limit; rate_limited, server or network otherwise."""
    if status == 429:
        return "lock_timeout" if _code(err) == "lock_timeout" else "rate_limited"
    return "network" if not status else "server"


def _code(err: stripe.StripeError) -> str | None:
    # The SDK leaves a 429's `code` unset (RateLimitError, _api_requestor.py); the error object has it.
    return err.code or getattr(err.error, "code", None)


class StripeGateway:
    """Every Stripe request of a pass: the rate limit, bounded retries with idempotency keys, metrics, and
    errors turned into StripeCallError with keys scrubbed. It never decides what to write."""

    def __init__(
        self,
        client: stripe.StripeClient,
        *,
        limiter: StripeRateLimit | None = None,
        observer: StripeObserver | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._client = client
        self._limiter = limiter
        self._observer: StripeObserver = observer or _NullObserver()
        self._retry = retry or RetryPolicy()
        self._keys = IdempotencyKeys()
        self.requests = 0

    @property
    def client(self) -> stripe.StripeClient:
        """The SDK client, for the Stripe adapters to build requests with (sent through `call`)."""
        return self._client

    async def call(self, endpoint: str, fn: Callable[[], Awaitable[T]]) -> T:
        """Run one Stripe request with rate limiting and retries; raise StripeCallError when it fails for good."""
        return await self._call(endpoint, lambda _key: fn(), None)

    async def call_with_key(self, endpoint: str, fn: Callable[[str], Awaitable[T]], idempotency_key: str) -> T:
        """`call` for a write with an idempotency key: `fn` sends the key it is given, the write's own key unless
        Stripe saved a refusal under it (`adapters.stripe_idempotency`)."""
        return await self._call(endpoint, fn, idempotency_key)

    async def _call(self, endpoint: str, fn: Callable[[str], Awaitable[T]], key: str | None) -> T:
        attempt = 0
        while True:
            attempt += 1
            if self._limiter is not None:
                waited = time.monotonic()
                await self._limiter.acquire(endpoint, urgent=URGENT.get())
                wait = time.monotonic() - waited
                if wait > 0.001:
                    self._observer.rate_limit_wait(wait)
            sent = self._keys.sent(key) if key is not None else ""
            started = time.monotonic()
            self.requests += 1
            # A fenced writer's request must not outlive its fence (m3stripe.kube.leadership): abandoned
            # at the fence's end, it is a lost fence (cut_off raises), not a Stripe or network error.
            bound = asyncio.timeout(self._limiter.time_left() if self._limiter is not None else None)
            try:
                try:
                    async with bound:
                        result = await fn(sent)
                except (aiohttp.ClientError, TimeoutError) as transport_err:
                    if bound.expired() and self._limiter is not None:
                        self._observer.request(endpoint, 0, time.monotonic() - started)
                        self._limiter.cut_off(endpoint)
                    # The SDK wraps a failed request in APIConnectionError, but not a failure while the
                    # body is read on its aiohttp transport; both are network errors (and retried).
                    raise stripe.APIConnectionError(  # type: ignore[no-untyped-call]
                        f"network error reading Stripe's answer: {type(transport_err).__name__}"
                    ) from None
            except stripe.StripeError as err:
                status = err.http_status or 0
                self._observer.request(endpoint, status, time.monotonic() - started)
                reason = _retry_reason(err, status)
                renewed = key is not None and self._keys.answered(key, sent, status, _code(err), err.headers)
                if reason == "lock_timeout" and UNLOCKED_CUSTOMER_WRITE.get():
                    # The writer retries it holding the customer's lock (domain.customer_writes), with the key
                    # `_keys` gives it.
                    self._observer.retry(endpoint, reason)
                    raise self._final(err, endpoint, retried=False) from None
                delay = self._retry_delay(err, attempt, renewed=renewed)
                if delay is None:
                    raise self._final(err, endpoint) from None
                self._observer.retry(endpoint, reason)
                await asyncio.sleep(delay)
                continue
            self._observer.request(endpoint, 200, time.monotonic() - started)
            return result

    def _retry_delay(self, err: stripe.StripeError, attempt: int, *, renewed: bool = False) -> float | None:
        if attempt >= self._retry.max_attempts:
            return None
        # Under a new key, Stripe's "do not retry" spoke of the old one.
        should = None if renewed else header(err.headers, "Stripe-Should-Retry")
        status = err.http_status or 0
        if should == "false":
            return None
        retryable = (
            should == "true" or isinstance(err, stripe.APIConnectionError) or status in (409, 429) or status >= 500
        )
        if isinstance(err, stripe.IdempotencyError) and status != 409:
            retryable = False
        if not retryable:
            return None
        after = header(err.headers, "Retry-After")
        if after is not None:
            try:
                return min(self._retry.max_delay, max(0.0, float(after)))
            except ValueError:
                pass
        return self._retry.backoff(attempt)

    @staticmethod
    def _final(err: stripe.StripeError, endpoint: str, *, retried: bool = True) -> StripeCallError:
        status = err.http_status
        message = (err.user_message or str(err) or type(err).__name__).strip()
        code = _code(err)
        permission = None
        if isinstance(err, stripe.AuthenticationError) or status == 401:
            failure = Failure.AUTH
            message = "Stripe rejected the API key (HTTP 401)"  # Stripe's text echoes part of the key
        elif isinstance(err, stripe.PermissionError) or status == 403:
            failure = Failure.PERMISSION
            permission = missing_permission(message)
        elif isinstance(err, stripe.IdempotencyError):
            failure = Failure.IDEMPOTENCY
        elif status == 404:
            failure = Failure.NOT_FOUND
        elif status is not None and 400 <= status < 500 and status not in (409, 429):
            failure = Failure.INVALID
        else:
            failure = Failure.TRANSIENT
            message = f"Stripe did not answer successfully{' after retries' if retried else ''}: {message}"
        return StripeCallError(failure, message, status=status, code=code, endpoint=endpoint, permission=permission)

    # Lists are walked page by page (flat memory) with `starting_after`, never the Search API, whose
    # results lag behind writes.
    async def iterate(
        self, endpoint: str, list_fn: Callable[[dict[str, Any]], Awaitable[Any]], params: dict[str, Any]
    ) -> AsyncIterator[Any]:
        cursor: str | None = None
        while True:
            page_params = {**params, "limit": LIST_PAGE}
            if cursor:
                page_params["starting_after"] = cursor
            page = await self.call(endpoint, lambda p=page_params: list_fn(p))  # type: ignore[misc]
            data = list(page.data)
            for item in data:
                yield item
            if not page.has_more or not data:
                return
            cursor = data[-1].id

    async def json(
        self, endpoint: str, method: str, path: str, params: dict[str, Any], *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """One request through `call`, answered as Stripe's plain JSON (see `iterate_json`). `idempotency_key` is a
        request option (the SDK's `extract_options_from_dict`), never a parameter: Stripe's parameters of the calls
        made here are named otherwise."""
        if idempotency_key is None:
            response = await self.call(endpoint, lambda: self._client.raw_request_async(method, path, **params))
        else:
            response = await self.call_with_key(
                endpoint,
                lambda key: self._client.raw_request_async(method, path, **params, idempotency_key=key),
                idempotency_key,
            )
        return response.data if isinstance(response.data, dict) else {}

    async def iterate_json(self, endpoint: str, path: str, params: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """`iterate` with each object as Stripe's plain JSON (a dict), for reads that only look at a few fields.

        Building a reply's nested `StripeObject`s costs 25-40 times its `json.loads` (benchmarks/README.md);
        `StripeClient.raw_request_async` goes through the same client (API version, key, transport, errors)
        and leaves the reply as parsed JSON.
        """
        cursor: str | None = None
        while True:
            page_params = {**params, "limit": LIST_PAGE}
            if cursor:
                page_params["starting_after"] = cursor
            response = await self.call(
                endpoint,
                lambda p=page_params: self._client.raw_request_async("get", path, **p),  # type: ignore[misc]
            )
            page = response.data if isinstance(response.data, dict) else {}
            data = [obj for obj in page.get("data") or () if isinstance(obj, dict)]
            for item in data:
                yield item
            if not page.get("has_more") or not data:
                return
            cursor = str(data[-1]["id"])
