"""Calls to m3ter through the official async SDK: the client of one Service User, its rate limits, its token on
every call, the SDK's errors as this adapter's, and one paging generator for every ``nextToken`` listing.

The SDK is used as published: the bearer token from :class:`TokenManager` is handed over with the
client's ``token`` option (``AsyncM3ter.with_options(token=...)``, which shares the connection
pool), retries for 429/5xx/network errors are the SDK's own bounded ``max_retries`` with
exponential backoff (honouring Retry-After), and every request waits for the Organization's shared
:class:`M3terRateLimits` budget (the SDK's ``http_client`` option). The requests themselves are built
at the end of this module; docs/api-contracts.md lists each endpoint, its parameters and limits, with
m3ter's page for each.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Final, TypeVar

import httpx
import m3ter
from aiolimiter import AsyncLimiter
from m3ter import AsyncM3ter
from m3ter.pagination import AsyncCursor
from m3ter.types import (
    AccountResponse,
    BillResponse,
    BillSearchResponse,
    CurrencyResponse,
    ExternalMappingResponse,
)

from .m3ter_token import (
    M3terAuthError,
    M3terCredentials,
    M3terSourceError,
    M3terUnavailable,
    TokenManager,
    redact,
    server_message,
)

log = logging.getLogger(__name__)

# m3ter's Config API limits (https://www.m3ter.com/docs/guides/m3ter-apis/config-api-limits): "Each m3ter
# Organization can send a maximum of 50 requests per second from any number of source IP addresses" (429 "for
# the remainder of the second in which throttling has occurred"), and "Individual host machines can send up to
# 20,000 requests over a rolling 5-minute period" (429 until the count in the window drops below 20,000).
ORGANIZATION_REQUESTS_PER_SECOND: Final = 50
SOURCE_IP_REQUESTS_PER_WINDOW: Final = 20_000
SOURCE_IP_WINDOW_SECONDS: Final = 300.0

# pageSize bounds differ per endpoint (m3ter's API reference, "Required range" of each pageSize; m3ter
# answers 400 outside it). List Bills https://docs.m3ter.com/api/bill/list-bills and Search Bills
# https://docs.m3ter.com/api/bill/search-bills: 1..100 (BILLS_PAGE_SIZE, in domain.ports).
# List External Mappings for an m3ter entity (GET /externalmappings/external/{entity}/{m3terId},
# https://docs.m3ter.com/api/external-mapping/list-external-mappings-for-a-m3ter-entity): 1..200.
EXTERNAL_MAPPINGS_PAGE_SIZE = 200
# List Accounts https://docs.m3ter.com/api/account/list-accounts: 1..100 (SDK types/account_list_params.py).
ACCOUNTS_PAGE_SIZE = 100
# List Currencies https://docs.m3ter.com/api/currency/list-currencies: 1..100.
CURRENCY_PAGE_SIZE = 100

_T = TypeVar("_T")
#: One SDK call, made with a client that carries a current token.
Operation = Callable[[AsyncM3ter], Awaitable[_T]]


class M3terRateLimits:
    """Client-side budgets that keep this process under m3ter's Config API limits.

    One limiter per Organization (keyed by its id, so every integration and every Service User reading
    it share one budget) and one for the whole process (the source-IP limit). Each is a leaky bucket:
    in any window of T seconds it admits at most ``burst + rate * T`` requests, so the defaults admit at
    most 45 requests in any second (m3ter allows 50; the rest is slack for network jitter) and 19,000 in
    any 5 minutes (m3ter allows 20,000). Every m3ter request, token fetches and the SDK's own retries
    included, passes through it (an httpx request hook): m3ter does not say whether ``POST /oauth/token``
    counts against the Organization, so it is counted.
    """

    def __init__(
        self,
        *,
        organization_rate: float = 40.0,
        organization_burst: int = 5,
        ip_rate: float = 60.0,
        ip_burst: int = 1000,
    ) -> None:
        if organization_rate <= 0 or organization_burst < 1 or ip_rate <= 0 or ip_burst < 1:
            raise ValueError("m3ter rate limits must be positive")
        if organization_rate + organization_burst > ORGANIZATION_REQUESTS_PER_SECOND:
            log.warning(
                "m3ter requests per second %s (+ burst %s) exceed m3ter's documented %s per organization; "
                "expect 429s unless m3ter raised this organization's limit",
                organization_rate,
                organization_burst,
                ORGANIZATION_REQUESTS_PER_SECOND,
            )
        self._org_rate = organization_rate
        self._org_burst = organization_burst
        self._orgs: dict[str, AsyncLimiter] = {}
        self._ip = AsyncLimiter(ip_burst, ip_burst / ip_rate)
        self._tls: ssl.SSLContext | None = None

    def for_organization(self, organization_id: str) -> AsyncLimiter:
        limiter = self._orgs.get(organization_id)
        if limiter is None:
            limiter = self._orgs[organization_id] = AsyncLimiter(self._org_burst, self._org_burst / self._org_rate)
        return limiter

    async def acquire(self, organization_id: str) -> None:
        """Wait until one more request to ``organization_id`` fits both budgets."""
        await self.for_organization(organization_id).acquire()
        await self._ip.acquire()

    def tls_context(self) -> ssl.SSLContext:
        """The TLS context every m3ter client of the process shares: httpx's default (its CA bundle, SSL_CERT_FILE
        and SSL_CERT_DIR honoured), built once; each client built its own, loading the CA bundle every time (3% of the
        operator's CPU while 20 integrations started, benchmarks/README.md)."""
        if self._tls is None:
            self._tls = httpx.create_ssl_context()
        return self._tls

    def http_client(self, organization_id: str, timeout: float) -> httpx.AsyncClient:
        """An HTTP client for the SDK (its ``http_client`` option) whose every request takes a slot."""

        async def throttle(request: httpx.Request) -> None:
            await self.acquire(organization_id)

        return m3ter.DefaultAsyncHttpxClient(
            timeout=timeout, verify=self.tls_context(), event_hooks={"request": [throttle]}
        )


def sdk_client(
    credentials: M3terCredentials,
    *,
    base_url: str | None,
    timeout: float,
    max_retries: int,
    rate_limits: M3terRateLimits,
) -> AsyncM3ter:
    """The official async client for one Service User, throttled by ``rate_limits``."""
    # Who asks, and through which throttled HTTP client; then how the SDK talks to m3ter.
    return AsyncM3ter(
        api_key=credentials.client_id,
        api_secret=credentials.client_secret,
        org_id=credentials.organization_id,
        http_client=rate_limits.http_client(credentials.organization_id, timeout),
        base_url=base_url,
        timeout=timeout,
        max_retries=max_retries,
    )


class M3terClient:
    """One Service User's calls to one m3ter Organization: each with a current token, under the rate limits."""

    def __init__(
        self,
        credentials: M3terCredentials,
        *,
        base_url: str | None = None,
        timeout: float = 30.0,
        token_manager: TokenManager | None = None,
        max_retries: int = 3,
        rate_limits: M3terRateLimits | None = None,
    ) -> None:
        """``rate_limits`` is shared by every client of the process (one budget per Organization)."""
        self._credentials = credentials
        self._rate_limits = rate_limits or M3terRateLimits()
        # The SDK retries 429/5xx/network errors itself (max_retries, exponential backoff); each retry
        # also passes the rate limiter, which sits in the HTTP client's request hook.
        self._base = sdk_client(
            credentials,
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
            rate_limits=self._rate_limits,
        )
        self._tokens = token_manager or TokenManager(credentials, client=self._base)
        self._authed: tuple[str, AsyncM3ter] | None = None

    @property
    def credentials(self) -> M3terCredentials:
        return self._credentials

    @property
    def token_manager(self) -> TokenManager:
        return self._tokens

    @property
    def rate_limits(self) -> M3terRateLimits:
        return self._rate_limits

    async def authed(self) -> tuple[str, AsyncM3ter]:
        token = await self._tokens.get()
        authed = self._authed
        if authed is None or authed[0] != token:
            # One derived client per token; it shares the base client's HTTP connection pool.
            authed = (token, self._base.with_options(token=token))
            self._authed = authed
        return authed

    async def call(
        self,
        what: str,
        operation: Callable[[AsyncM3ter], Awaitable[_T]],
        *,
        forbidden: Callable[[], _T] | None = None,
    ) -> _T:
        """Run one SDK call with a valid token, translating SDK errors to the adapter's own (m3ter_token's).

        m3ter answers an expired bearer token with 403 as well as 401 ("403 Forbidden or Unauthorized",
        https://docs.m3ter.com/guides/m3ter-apis/http-error-codes), and tokens can die before their
        advertised expiry (revocation, a restarted issuer). So the first 401/403 of a call replaces the
        token (one fetch, shared by every caller of the TokenManager) and retries; only a refusal of that
        fresh token is an authentication error, unless ``forbidden`` says what a 403 then means.
        """
        for attempt in (1, 2):
            token, client = await self.authed()
            try:
                return await operation(client)
            except (m3ter.AuthenticationError, m3ter.PermissionDeniedError) as exc:
                self._tokens.invalidate(token)
                if attempt == 1:
                    log.info(
                        "m3ter refused the bearer token of organization %s (HTTP %s) while %s; fetching a new one",
                        self._credentials.organization_id,
                        exc.status_code,
                        what,
                    )
                    continue
                if forbidden is not None and isinstance(exc, m3ter.PermissionDeniedError):
                    return forbidden()
                creds = self._credentials
                raise M3terAuthError(
                    redact(
                        f"m3ter refused a freshly issued token of client_id {creds.client_id!r} for organization "
                        f"{creds.organization_id!r} while {what} (HTTP {exc.status_code}: {server_message(exc)}); "
                        "check that the Service User exists, has permission to read Bills, Accounts and External "
                        "Mappings, and belongs to this organization",
                        creds,
                    )
                ) from None
            except (m3ter.APIConnectionError, m3ter.RateLimitError, m3ter.InternalServerError) as exc:
                raise M3terUnavailable(f"m3ter unavailable while {what}: {exc}") from exc
            except m3ter.APIStatusError as exc:
                if exc.status_code == 408:  # a request timeout is m3ter being slow, not a bad request
                    raise M3terUnavailable(f"m3ter timed out while {what}: {exc}") from exc
                raise M3terSourceError(f"m3ter refused the request while {what}: {exc}") from exc
        raise AssertionError("unreachable")

    async def items(self, what: str, request: Callable[[str | None], Operation[AsyncCursor[_T]]]) -> AsyncIterator[_T]:
        """Every item of a ``nextToken``-paged listing, in m3ter's order; ``request(cursor)`` builds a page's call.

        One page in memory at a time, and each page is its own :meth:`call`, so a long listing outlives tokens.
        """
        next_token: str | None = None
        while True:
            page = await self.call(what, request(next_token))
            for item in page.data or ():
                yield item
            next_token = page.next_token
            if not next_token:
                return

    async def aclose(self) -> None:
        await self._base.close()


# Each request is built by a function, so each binds its own cursor or offset (a closure written in a paging
# loop would see the loop's latest value).


def bills_page(cursor: str | None, page_size: int) -> Callable[[AsyncM3ter], Awaitable[AsyncCursor[BillResponse]]]:
    def fetch(client: AsyncM3ter) -> Awaitable[AsyncCursor[BillResponse]]:
        return client.bills.list(page_size=page_size, include_bill_total=True, next_token=cursor or m3ter.omit)

    return fetch


def bill_versions_page(
    cursor: str | None, page_size: int
) -> Callable[[AsyncM3ter], Awaitable[AsyncCursor[BillResponse]]]:
    def fetch(client: AsyncM3ter) -> Awaitable[AsyncCursor[BillResponse]]:
        return client.bills.list(page_size=page_size, exclude_line_items=True, next_token=cursor or m3ter.omit)

    return fetch


def search_page(offset: int, page_size: int) -> Callable[[AsyncM3ter], Awaitable[BillSearchResponse]]:
    def fetch(client: AsyncM3ter) -> Awaitable[BillSearchResponse]:
        return client.bills.search(
            sort_by="dtLastModified",
            sort_order="DESC",
            page_size=page_size,
            from_document=offset if offset else m3ter.omit,
        )

    return fetch


def bills_by_ids_page(
    ids: list[str], cursor: str | None
) -> Callable[[AsyncM3ter], Awaitable[AsyncCursor[BillResponse]]]:
    def fetch(client: AsyncM3ter) -> Awaitable[AsyncCursor[BillResponse]]:
        # At most one search page of ids (<= 100, List Bills' pageSize bound); nextToken is followed anyway.
        return client.bills.list(ids=ids, page_size=len(ids), include_bill_total=True, next_token=cursor or m3ter.omit)

    return fetch


def accounts_page(cursor: str | None) -> Callable[[AsyncM3ter], Awaitable[AsyncCursor[AccountResponse]]]:
    def fetch(client: AsyncM3ter) -> Awaitable[AsyncCursor[AccountResponse]]:
        return client.accounts.list(page_size=ACCOUNTS_PAGE_SIZE, next_token=cursor or m3ter.omit)

    return fetch


def account_mappings_page(
    account_id: str, cursor: str | None
) -> Callable[[AsyncM3ter], Awaitable[AsyncCursor[ExternalMappingResponse]]]:
    def fetch(client: AsyncM3ter) -> Awaitable[AsyncCursor[ExternalMappingResponse]]:
        return client.external_mappings.list_by_m3ter_entity(
            account_id, entity="Account", page_size=EXTERNAL_MAPPINGS_PAGE_SIZE, next_token=cursor or m3ter.omit
        )

    return fetch


def currencies_page(cursor: str | None) -> Callable[[AsyncM3ter], Awaitable[AsyncCursor[CurrencyResponse]]]:
    def fetch(client: AsyncM3ter) -> Awaitable[AsyncCursor[CurrencyResponse]]:
        return client.currencies.list(page_size=CURRENCY_PAGE_SIZE, next_token=cursor or m3ter.omit)

    return fetch
