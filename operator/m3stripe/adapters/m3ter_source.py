"""Reads Bills, Accounts and Stripe customer mappings from m3ter through the official async SDK.

The SDK is used as published: the bearer token from :class:`TokenManager` is handed over with the
client's ``token`` option (``AsyncM3ter.with_options(token=...)``, which shares the connection
pool), retries for 429/5xx/network errors are the SDK's own bounded ``max_retries`` with
exponential backoff (honouring Retry-After), every request waits for the Organization's shared
:class:`M3terRateLimits` budget (the SDK's ``http_client`` option), and SDK models are converted to
domain values here, one Bill at a time. docs/api-contracts.md lists each endpoint, its parameters and
limits, with m3ter's page for each.
"""

from __future__ import annotations

import asyncio
import decimal
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Any, Final, TypeVar
from urllib.parse import quote

import m3ter
from m3ter import AsyncM3ter
from m3ter.pagination import AsyncCursor
from m3ter.types import (
    AccountResponse,
    BillResponse,
    BillSearchResponse,
    CurrencyResponse,
    ExternalMappingResponse,
)
from m3ter.types.bill_response import LineItem as SdkLineItem

from m3stripe.api.conditions import parse_rfc3339
from m3stripe.domain.billing import (
    ADDRESS_KEYS,
    Account,
    Bill,
    BillStatus,
    CurrencyRounding,
    CustomFieldValue,
    LineItem,
    MalformedBill,
)
from m3stripe.domain.ports import BILLS_PAGE_SIZE
from m3stripe.domain.sweep import ListedBill

from .m3ter_token import (
    M3terAuthError,
    M3terCredentials,
    M3terRateLimits,
    M3terSourceError,
    M3terUnavailable,
    TokenManager,
    redact,
    sdk_client,
    server_message,
)

__all__ = [
    "CurrencyRounding",
    "M3terAuthError",
    "M3terCredentials",
    "M3terRateLimits",
    "M3terSource",
    "M3terSourceError",
    "M3terUnavailable",
    "MalformedBill",
    "TokenManager",
]

log = logging.getLogger(__name__)

# pageSize bounds differ per endpoint (m3ter's API reference, "Required range" of each pageSize; m3ter
# answers 400 outside it). List Bills https://docs.m3ter.com/api/bill/list-bills and Search Bills
# https://docs.m3ter.com/api/bill/search-bills: 1..100 (BILLS_PAGE_SIZE, in domain.ports).
# List External Mappings for an m3ter entity (GET /externalmappings/external/{entity}/{m3terId},
# https://docs.m3ter.com/api/external-mapping/list-external-mappings-for-a-m3ter-entity): 1..200.
EXTERNAL_MAPPINGS_PAGE_SIZE = 200
# https://docs.m3ter.com/api/account/list-accounts: pageSize 1..100 (m3ter OpenAPI ListAccounts).
ACCOUNTS_PAGE_SIZE = 100
# List Currencies https://docs.m3ter.com/api/currency/list-currencies: 1..100.
CURRENCY_PAGE_SIZE = 100
# maxDecimalPlaces bound of Create Currency (https://docs.m3ter.com/api/currency/create-currency: 0..5).
MAX_DECIMAL_PLACES = 5
# Changed-Bill search pages overlap by this many documents (fewer for small pages): up to this many less one
# Bills deleted between two page reads never cause a skip (see M3terSource._changed_bills).
SEARCH_OVERLAP = 10
MAX_SEARCH_STEP_BACKS = 20
STRIPE_SYSTEM = "Stripe"
STRIPE_CUSTOMER_TABLE = "Customer"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

#: m3ter's ``roundingMode`` (Java's RoundingMode names; https://docs.m3ter.com/api/currency/list-currencies,
#: SDK ``m3ter/types/currency_response.py``) to the ``decimal`` module's constants.
ROUNDING_MODES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "UP": decimal.ROUND_UP,
        "DOWN": decimal.ROUND_DOWN,
        "CEILING": decimal.ROUND_CEILING,
        "FLOOR": decimal.ROUND_FLOOR,
        "HALF_UP": decimal.ROUND_HALF_UP,
        "HALF_DOWN": decimal.ROUND_HALF_DOWN,
        "HALF_EVEN": decimal.ROUND_HALF_EVEN,
        # UNNECESSARY asserts that amounts never need rounding at maxDecimalPlaces (Java throws if they
        # would), so m3ter's own amounts come out alike under every mode. m3ter gives no rule for the
        # rounding the operator may still need (a Stripe minor unit coarser than maxDecimalPlaces):
        # banker's rounding is the unbiased choice.
        "UNNECESSARY": decimal.ROUND_HALF_EVEN,
    }
)

_T = TypeVar("_T")


class M3terSource:
    """One m3ter Organization, read through a Service User's credentials."""

    def __init__(
        self,
        credentials: M3terCredentials,
        *,
        base_url: str | None = None,
        timeout: float = 30.0,
        token_manager: TokenManager | None = None,
        max_retries: int = 3,
        account_cache_ttl: float = 300.0,
        account_cache_size: int = 1024,
        currency_cache_ttl: float = 3600.0,
        rate_limits: M3terRateLimits | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``rate_limits`` is shared by every source of the process (one budget per Organization)."""
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
        self._clock = clock
        self._account_ttl = account_cache_ttl
        self._account_cache_size = account_cache_size
        self._accounts: OrderedDict[str, tuple[float, Account]] = OrderedDict()
        self._currency_ttl = currency_cache_ttl
        # (expiry, the rules, the entries that cannot be used: one error per currency code)
        self._currencies: tuple[float, Mapping[str, CurrencyRounding], Mapping[str, M3terSourceError]] | None = None
        self._currency_lock = asyncio.Lock()

    @property
    def token_manager(self) -> TokenManager:
        return self._tokens

    @property
    def rate_limits(self) -> M3terRateLimits:
        return self._rate_limits

    @property
    def organization_id(self) -> str:
        return self._credentials.organization_id

    # -- plumbing -------------------------------------------------------------------------

    async def _client(self) -> tuple[str, AsyncM3ter]:
        token = await self._tokens.get()
        authed = self._authed
        if authed is None or authed[0] != token:
            # One derived client per token; it shares the base client's HTTP connection pool.
            authed = (token, self._base.with_options(token=token))
            self._authed = authed
        return authed

    async def _call(
        self,
        what: str,
        operation: Callable[[AsyncM3ter], Awaitable[_T]],
        *,
        forbidden: Callable[[], _T] | None = None,
    ) -> _T:
        """Run one SDK call with a valid token, translating SDK errors to this module's.

        m3ter answers an expired bearer token with 403 as well as 401 ("403 Forbidden or Unauthorized",
        https://docs.m3ter.com/guides/m3ter-apis/http-error-codes), and tokens can die before their
        advertised expiry (revocation, a restarted issuer). So the first 401/403 of a call replaces the
        token (one fetch, shared by every caller of the TokenManager) and retries; only a refusal of that
        fresh token is an authentication error, unless ``forbidden`` says what a 403 then means.
        """
        for attempt in (1, 2):
            token, client = await self._client()
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

    # -- public API -----------------------------------------------------------------------

    async def check(self) -> None:
        """Prove the credentials work and the Organization is reachable (one small request)."""
        await self._call("checking access", lambda client: client.accounts.list(page_size=1))

    async def iter_bills(
        self, *, modified_since: datetime | None, page_size: int = BILLS_PAGE_SIZE
    ) -> AsyncIterator[Bill | MalformedBill]:
        """Stream the Bills last modified at or after ``modified_since``; every Bill if None.

        With ``modified_since``, only what changed is read, in DESCENDING ``dtLastModified`` order (newest
        first; a watermark can only move once the stream is exhausted; should offset paging not be safe, the
        rest comes from the full listing, in its order; see ``_changed_bills``): Search Bills sorted by
        ``dtLastModified`` DESC finds the changed ids and stops at the first older one, and each page of
        ids is then read with List Bills (``ids``, ``includeBillTotal``), the representation the rest of
        the operator relies on. Without it, List Bills pages through everything (m3ter's own order).
        Memory stays at one page (plus, with ``modified_since``, the ids already read, to drop repeats of
        overlapping pages); each page gets a current token, so long scans outlive tokens. Each
        Bill is converted on its own: one that cannot be read comes as a :class:`MalformedBill`.
        """
        if not 1 <= page_size <= BILLS_PAGE_SIZE:
            raise ValueError(f"page_size must be between 1 and {BILLS_PAGE_SIZE} (m3ter's limit for Bills)")
        if modified_since is not None:
            async for bill in self._changed_bills(_aware(modified_since), page_size):
                yield bill
            return
        next_token: str | None = None
        while True:
            page = await self._call("listing bills", _bills_page(next_token, page_size))
            for item in page.data or ():
                yield read_bill(item, self.organization_id)
            next_token = page.next_token
            if not next_token:
                return

    async def _changed_bills(self, since: datetime, page_size: int) -> AsyncIterator[Bill | MalformedBill]:
        # Search Bills (https://docs.m3ter.com/api/bill/search-bills): searchQuery cannot name dtLastModified
        # (not among its "Allowed parameters"), but sortBy takes "any field available on the Bill entity".
        # So: newest first, stop at the first Bill older than the watermark. Paging is by offset
        # (fromDocument), and the order moves under the scan:
        # - a Bill modified or created meanwhile moves to the front (it is newer than the pass, so the next
        #   pass reads it) and shifts the rest back: repeats, never a skip;
        # - a Bill deleted meanwhile ("Suitable for removing incorrect or obsolete Bills", SDK
        #   resources/bills/bills.py delete) from the part already read shifts the rest forward: the Bill
        #   that moves into the last position read would never be read. So pages overlap (by `overlap`
        #   Bills plus the tied group below), repeats are dropped by (id, version), and a page that holds
        #   none of the page before's anchors (its `overlap` Bills next to the tied group, by (id, version))
        #   is re-read from earlier (step back): up to overlap-1 deletions between two page reads never
        #   skip a Bill, more cost a step back. (A page holding an anchor starts at or before it, and from
        #   there the order is contiguous: nothing between them is skipped.);
        # - m3ter documents no tie-break between equal dtLastModified values (milliseconds), so Bills that
        #   tie at a page's end may come in another order on the next read: the next page starts `overlap`
        #   Bills before the first of them, so one answer holds the whole tied group, and only Bills newer
        #   than the group anchor it (a tied Bill proves nothing about where a page starts). A group too
        #   large for that (page_size - overlap or more), or more step-backs than MAX_SEARCH_STEP_BACKS,
        #   cannot be read safely by offset: the rest of the pass lists every Bill (List Bills) and keeps
        #   the changed ones.
        # m3ter does not document nextToken for search (SDK BillSearchResponse.next_token is Optional), so
        # the scan goes on while a page is full, whatever nextToken says.
        overlap = min(SEARCH_OVERLAP, (page_size - 1) // 2)
        if overlap == 0:  # pages under 3 leave no room for an overlap: only the full listing is safe
            async for bill in self._changed_by_listing(since, set()):
                yield bill
            return
        seen: set[tuple[str, int | None]] = set()
        yielded: set[tuple[str, int]] = set()
        previous: set[tuple[str, int | None]] = set()
        start = 0
        step_backs = 0
        while True:
            page = await self._call("searching changed bills", _search_page(start, page_size))
            hits = list(page.data or ())
            ids = [_hit_id(hit) for hit in hits]
            keys = {(hit_id, _hit_version(hit)) for hit, hit_id in zip(hits, ids, strict=True) if hit_id}
            if start > 0 and previous and not previous & keys:
                step_backs += 1
                if step_backs > MAX_SEARCH_STEP_BACKS:
                    break
                log.info(
                    "m3ter Bill search of organization %s moved under the scan (deletions?); re-reading from an "
                    "earlier offset",
                    self.organization_id,
                )
                start = max(0, start - (page_size - overlap))
                continue
            changed: list[str] = []
            older_reached = False
            stamps: list[datetime | None] = []
            for hit, hit_id in zip(hits, ids, strict=True):
                modified = _hit_modified(hit)
                if modified is not None and modified < since:
                    older_reached = True
                    break
                stamps.append(modified)
                key = (hit_id, _hit_version(hit))
                if hit_id and key not in seen:
                    seen.add(key)
                    changed.append(hit_id)
            if changed:
                async for bill in self._bills_by_ids(changed):
                    if (bill.id, bill.version) not in yielded:
                        yielded.add((bill.id, bill.version))
                        yield bill
            if older_reached or len(hits) < page_size:
                return
            # The page's last hit may tie with the next unseen one, so the Bills sharing its dtLastModified
            # (from first_tied on) have no fixed place: the next page starts `overlap` Bills before the first
            # of them, and only the Bills before it (strictly newer, in a fixed order) anchor that page.
            first_tied = stamps.index(stamps[-1])
            if first_tied <= overlap:
                log.warning(
                    "too many m3ter Bills of organization %s share dtLastModified %s to read them whole in a search "
                    "page; listing every Bill",
                    self.organization_id,
                    stamps[-1],
                )
                break
            previous = {(ids[index], _hit_version(hits[index])) for index in range(first_tied) if ids[index]}
            start += first_tied - overlap
        async for bill in self._changed_by_listing(since, yielded):
            yield bill

    async def list_bill_versions(self, page_size: int = BILLS_PAGE_SIZE) -> AsyncIterator[ListedBill]:
        """Every Bill's id, version, dtLastModified and lock, from List Bills without line items (the sweep).

        ``excludeLineItems=true`` (SDK ``types/bill_list_params.py``: "Exclude Line Items"; List Bills,
        https://docs.m3ter.com/api/bill/list-bills) keeps each page small whatever the Bills hold. This is the
        listing the first, full pass reads, not the search index, so it does not depend on how soon m3ter
        indexes a change. One page in memory; each page gets a current token.
        """
        if not 1 <= page_size <= BILLS_PAGE_SIZE:
            raise ValueError(f"page_size must be between 1 and {BILLS_PAGE_SIZE} (m3ter's limit for Bills)")
        next_token: str | None = None
        while True:
            page = await self._call(
                "listing bills for the reconciliation sweep", _bill_versions_page(next_token, page_size)
            )
            for item in page.data or ():
                yield ListedBill(
                    id=_hit_id(item),
                    version=_hit_version(item),
                    last_modified=_hit_modified(item),
                    locked=getattr(item, "locked", None) is True,
                )
            next_token = page.next_token
            if not next_token:
                return

    async def bills_by_ids(self, ids: list[str]) -> AsyncIterator[Bill | MalformedBill]:
        """The Bills of ``ids`` (at most BILLS_PAGE_SIZE), with their line items, in that order; deleted ones left out."""
        if not 1 <= len(ids) <= BILLS_PAGE_SIZE:
            raise ValueError(f"between 1 and {BILLS_PAGE_SIZE} ids a call (m3ter's pageSize limit for Bills)")
        async for bill in self._bills_by_ids(ids):
            yield bill

    async def _bills_by_ids(self, ids: list[str]) -> AsyncIterator[Bill | MalformedBill]:
        """The Bills of ``ids`` in that order (List Bills by ``ids``, every page); deleted ones are left out."""
        by_id: dict[str, BillResponse] = {}
        next_token: str | None = None
        while True:
            page = await self._call("reading changed bills", _bills_by_ids(ids, next_token))
            for item in page.data or ():
                item_id = getattr(item, "id", None)
                if isinstance(item_id, str):
                    by_id[item_id] = item
            next_token = page.next_token
            if not next_token:
                break
        for bill_id in ids:  # the search's order, newest first
            listed = by_id.get(bill_id)
            if listed is not None:
                yield read_bill(listed, self.organization_id)
                continue
            # m3ter does not promise that one page answers every id: a missing one is read on its own. Only
            # a 404 (deleted since the search) means nothing to send; any other refusal is an error, so the
            # pass fails and its watermark stays, rather than a changed Bill being skipped.
            bill = await self._changed_bill(bill_id)
            if bill is not None:
                yield bill

    async def _changed_bill(self, bill_id: str) -> Bill | MalformedBill | None:
        async def retrieve(client: AsyncM3ter) -> BillResponse | None:
            try:
                return await client.bills.retrieve(quote(bill_id, safe=""))  # one path segment, as in get_bill
            except m3ter.NotFoundError:
                return None

        item = await self._call(f"reading changed bill {bill_id}", retrieve)
        return None if item is None else read_bill(item, self.organization_id)

    async def _changed_by_listing(
        self, since: datetime, yielded: set[tuple[str, int]]
    ) -> AsyncIterator[Bill | MalformedBill]:
        """Every Bill modified at or after ``since`` not yet yielded, from the full List Bills (the safe path)."""
        async for bill in self.iter_bills(modified_since=None):
            modified = bill.last_modified
            if (modified is None or modified >= since) and (bill.id, bill.version) not in yielded:
                yielded.add((bill.id, bill.version))
                yield bill

    async def get_bill(self, bill_id: str) -> Bill | MalformedBill | None:
        """The current version of one Bill (a MalformedBill if it cannot be read), or None if m3ter has none."""
        if bill_id in ("", ".", ".."):  # dot segments are resolved away by the HTTP client, escaped or not
            return None

        async def retrieve(client: AsyncM3ter) -> BillResponse | None:
            try:
                # The SDK puts the id into the path as it is (`f"/organizations/{org_id}/bills/{id}"`, m3ter's
                # resources/bills/bills.py): escape it, so an id such as ../../accounts stays one segment.
                return await client.bills.retrieve(quote(bill_id, safe=""))
            except (m3ter.NotFoundError, m3ter.BadRequestError):
                return None

        # One Bill that m3ter will not show (absent, malformed id, or forbidden even to a fresh token: a 403
        # is first taken for an expired token, as m3ter answers those with 403 too) is about that id, not
        # about the credentials: the caller reports the id; a real credential problem shows on the Bill
        # listing, which every pass makes.
        item = await self._call(f"reading bill {bill_id}", retrieve, forbidden=lambda: None)
        return None if item is None else read_bill(item, self.organization_id)

    async def get_account(self, account_id: str) -> Account | None:
        """One Account, from a small per-source LRU cache (TTL ``account_cache_ttl``) when fresh.

        Misses are not cached so a newly created Account is seen on the next call.
        """
        now = self._clock()
        cached = self._accounts.get(account_id)
        if cached is not None and now < cached[0]:
            self._accounts.move_to_end(account_id)
            return cached[1]

        async def retrieve(client: AsyncM3ter) -> AccountResponse | None:
            try:
                return await client.accounts.retrieve(account_id)
            except m3ter.NotFoundError:
                return None

        item = await self._call(f"reading account {account_id}", retrieve)
        if item is None:
            self._accounts.pop(account_id, None)
            return None
        account = to_account(item)
        self._accounts[account_id] = (now + self._account_ttl, account)
        self._accounts.move_to_end(account_id)
        while len(self._accounts) > self._account_cache_size:
            self._accounts.popitem(last=False)
        return account

    async def list_accounts(self, page_size: int = ACCOUNTS_PAGE_SIZE) -> AsyncIterator[Account]:
        """Every Account of the Organization (``GET /organizations/{orgId}/accounts``, pageSize 1..100 and
        ``nextToken``: https://docs.m3ter.com/api/account/list-accounts; SDK ``types/account_list_params.py``)."""
        next_token: str | None = None
        while True:
            page = await self._call("listing accounts", _accounts_page(next_token, page_size))
            for item in page.data or ():
                yield to_account(item)
            next_token = page.next_token
            if not next_token:
                return

    async def find_stripe_customer_mapping(self, account_id: str) -> str | None:
        """The Stripe Customer id an External Mapping ties to this Account, or None.

        System and table names are compared case-insensitively because they are free text in
        m3ter. Should several mappings exist, the most recently modified one wins.
        """
        best: tuple[datetime, str, str] | None = None
        next_token: str | None = None
        while True:
            page = await self._call(
                f"reading external mappings of account {account_id}",
                _account_mappings_page(account_id, next_token),
            )
            for mapping in page.data or ():
                if (
                    str(mapping.external_system).lower() == STRIPE_SYSTEM.lower()
                    and str(mapping.external_table).lower() == STRIPE_CUSTOMER_TABLE.lower()
                    and mapping.m3ter_id == account_id
                ):
                    modified = _datetime(mapping.dt_last_modified) or _EPOCH
                    candidate = (modified, mapping.id, mapping.external_id)
                    if best is None or candidate > best:
                        best = candidate
            next_token = page.next_token
            if not next_token:
                return None if best is None else best[2]

    async def rounding_for(self, currency: str) -> CurrencyRounding | None:
        """The rounding rule of one currency, None without one; :class:`M3terSourceError` if its entry is unusable.

        Read from the currency picklist (``GET /organizations/{orgId}/picklists/currency``,
        https://docs.m3ter.com/api/currency/list-currencies), cached ``currency_cache_ttl``. A currency without
        ``maxDecimalPlaces`` or ``roundingMode`` has no rule; callers apply their default. One entry m3ter's API
        reference does not allow concerns only the Bills in its currency; its error is cached like a rule.
        """
        rules, errors = await self._picklist()
        code = currency.strip().upper()
        error = errors.get(code)
        if error is not None:
            raise M3terSourceError(str(error))
        return rules.get(code)

    async def _picklist(self) -> tuple[Mapping[str, CurrencyRounding], Mapping[str, M3terSourceError]]:
        cached = self._currencies
        if cached is not None and self._clock() < cached[0]:
            return cached[1], cached[2]
        async with self._currency_lock:
            # Single flight: callers that queued behind a refresh use its result.
            cached = self._currencies
            if cached is not None and self._clock() < cached[0]:
                return cached[1], cached[2]
            rules: dict[str, CurrencyRounding] = {}
            errors: dict[str, M3terSourceError] = {}
            next_token: str | None = None
            while True:
                page = await self._call("reading the currency picklist", _currencies_page(next_token))
                for item in page.data or ():
                    try:
                        rule = to_currency_rounding(item)
                    except M3terSourceError as err:
                        code = (item.code or "").strip().upper()
                        errors[code] = err
                        rules.pop(code, None)
                        continue
                    if rule is not None:
                        rules[rule.code] = rule
                        errors.pop(rule.code, None)
                next_token = page.next_token
                if not next_token:
                    break
            frozen = (MappingProxyType(rules), MappingProxyType(errors))
            self._currencies = (self._clock() + self._currency_ttl, *frozen)
            return frozen

    async def aclose(self) -> None:
        await self._base.close()


# Page fetchers are built by functions so each binds its own cursor (closures in the paging loops
# would all see the loop's latest value).


def _bills_page(cursor: str | None, page_size: int) -> Callable[[AsyncM3ter], Awaitable[AsyncCursor[BillResponse]]]:
    def fetch(client: AsyncM3ter) -> Awaitable[AsyncCursor[BillResponse]]:
        return client.bills.list(page_size=page_size, include_bill_total=True, next_token=cursor or m3ter.omit)

    return fetch


def _bill_versions_page(
    cursor: str | None, page_size: int
) -> Callable[[AsyncM3ter], Awaitable[AsyncCursor[BillResponse]]]:
    def fetch(client: AsyncM3ter) -> Awaitable[AsyncCursor[BillResponse]]:
        return client.bills.list(page_size=page_size, exclude_line_items=True, next_token=cursor or m3ter.omit)

    return fetch


def _search_page(offset: int, page_size: int) -> Callable[[AsyncM3ter], Awaitable[BillSearchResponse]]:
    def fetch(client: AsyncM3ter) -> Awaitable[BillSearchResponse]:
        return client.bills.search(
            sort_by="dtLastModified",
            sort_order="DESC",
            page_size=page_size,
            from_document=offset if offset else m3ter.omit,
        )

    return fetch


def _bills_by_ids(ids: list[str], cursor: str | None) -> Callable[[AsyncM3ter], Awaitable[AsyncCursor[BillResponse]]]:
    def fetch(client: AsyncM3ter) -> Awaitable[AsyncCursor[BillResponse]]:
        # At most one search page of ids (<= 100, List Bills' pageSize bound); nextToken is followed anyway.
        return client.bills.list(ids=ids, page_size=len(ids), include_bill_total=True, next_token=cursor or m3ter.omit)

    return fetch


def _accounts_page(
    cursor: str | None, page_size: int
) -> Callable[[AsyncM3ter], Awaitable[AsyncCursor[AccountResponse]]]:
    def fetch(client: AsyncM3ter) -> Awaitable[AsyncCursor[AccountResponse]]:
        return client.accounts.list(page_size=page_size, next_token=cursor or m3ter.omit)

    return fetch


def _account_mappings_page(
    account_id: str, cursor: str | None
) -> Callable[[AsyncM3ter], Awaitable[AsyncCursor[ExternalMappingResponse]]]:
    def fetch(client: AsyncM3ter) -> Awaitable[AsyncCursor[ExternalMappingResponse]]:
        return client.external_mappings.list_by_m3ter_entity(
            account_id, entity="Account", page_size=EXTERNAL_MAPPINGS_PAGE_SIZE, next_token=cursor or m3ter.omit
        )

    return fetch


def _currencies_page(cursor: str | None) -> Callable[[AsyncM3ter], Awaitable[AsyncCursor[CurrencyResponse]]]:
    def fetch(client: AsyncM3ter) -> Awaitable[AsyncCursor[CurrencyResponse]]:
        return client.currencies.list(page_size=CURRENCY_PAGE_SIZE, next_token=cursor or m3ter.omit)

    return fetch


def _hit_id(hit: BillResponse) -> str:
    hit_id = getattr(hit, "id", None)
    return hit_id if isinstance(hit_id, str) else ""


def _hit_version(hit: BillResponse) -> int | None:
    version = getattr(hit, "version", None)
    return version if isinstance(version, int) and not isinstance(version, bool) else None


def _hit_modified(hit: BillResponse) -> datetime | None:
    try:
        return _datetime(getattr(hit, "dt_last_modified", None))
    except (ValueError, TypeError):
        return None  # unreadable: read it, so it is reported rather than skipped


# -- SDK model -> domain conversion -------------------------------------------------------------


def to_currency_rounding(item: CurrencyResponse) -> CurrencyRounding | None:
    """One picklist entry as a rounding rule; None when m3ter holds no rule for it."""
    code = (item.code or "").strip().upper()
    places, mode = item.max_decimal_places, item.rounding_mode
    if not code or places is None or mode is None:
        return None
    rounding = ROUNDING_MODES.get(str(mode))
    if rounding is None:
        raise M3terSourceError(
            f"m3ter currency {code} has roundingMode {mode!r}, which m3ter's API reference does not define; "
            f"set it to one of {', '.join(ROUNDING_MODES)} in m3ter's currency picklist"
        )
    # The SDK builds models without validation, so a malformed value arrives as it was sent. m3ter accepts
    # maxDecimalPlaces 0 <= x <= 5 (Create Currency's body, https://docs.m3ter.com/api/currency/create-currency;
    # the SDK's currency_create_params.py gives no range): anything else was not set through m3ter's API.
    if isinstance(places, bool) or not isinstance(places, int) or not 0 <= places <= MAX_DECIMAL_PLACES:
        raise M3terSourceError(
            f"m3ter currency {code} has maxDecimalPlaces {places!r}; expected a whole number "
            f"0..{MAX_DECIMAL_PLACES} (fix the currency in m3ter's currency picklist)"
        )
    return CurrencyRounding(code=code, max_decimal_places=places, rounding_mode=rounding)


class BillFieldError(ValueError):
    """One field of an m3ter Bill holds a value the operator cannot use."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field} {problem}")
        self.field = field
        self.problem = problem


def _field(field: str, convert: Callable[[], _T]) -> _T:
    """Run one field's conversion; any failure names the field (``lineItems[2].subtotal``)."""
    try:
        return convert()
    except BillFieldError:
        raise
    except (ValueError, TypeError, ArithmeticError, AttributeError) as exc:
        raise BillFieldError(field, str(exc)) from None


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:60] + "..."


def _decimal(value: Any) -> Decimal:
    """Exact Decimal of a JSON number as the SDK parsed it: via str, never float arithmetic."""
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int | float | str) and not isinstance(value, bool):
        try:
            result = Decimal(str(value))
        except InvalidOperation:
            raise ValueError(f"is {_shown(value)}, not a number") from None
    else:
        raise ValueError(f"is {_shown(value)}, not a number")
    if not result.is_finite():
        raise ValueError(f"is {_shown(value)}, not a finite number")
    return result


def _whole(value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value // 1 or value < minimum:
        raise ValueError(f"is {_shown(value)}, not a whole number of {minimum} or more")
    return int(value)


INT64_MAX = 2**63 - 1


def _version(value: Any) -> int:
    # m3ter's version is an int64 (SDK BillResponse.version: Optional[int]); absent means the first.
    # Above int64 it is no m3ter version, and status.recentRuns[].stripeObjects[].billVersion (int64) could not hold it.
    version = 1 if value is None else _whole(value, 1)
    if version > INT64_MAX:
        raise ValueError(f"is {_shown(value)}, above the int64 maximum {INT64_MAX}")
    return version


def _optional_decimal(value: Any) -> Decimal | None:
    return None if value is None else _decimal(value)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _datetime(value: Any) -> datetime | None:
    # The SDK builds models without validation, so an unparsable field arrives as the raw string.
    if value is None or isinstance(value, datetime):
        return None if value is None else _aware(value)
    # m3ter sends an absent time as null (or leaves it out); an empty string is no time, and not "none".
    parsed = parse_rfc3339(str(value)) if str(value) else None
    if parsed is None:
        raise ValueError(f"{value!r} is not a time")
    return parsed


def _date(value: Any) -> date | None:
    if value is None or (isinstance(value, date) and not isinstance(value, datetime)):
        return value
    if isinstance(value, datetime):
        return value.date()
    return date.fromisoformat(str(value)[:10])


def _custom_value(value: Any) -> CustomFieldValue:
    if value is None or isinstance(value, str):
        return value
    return _decimal(value)


def to_line_item(item: SdkLineItem | None, *, bill_id: str, index: int, bill_currency: str) -> LineItem:
    """Convert one embedded Bill line item; lines without an id get a stable positional one.

    Raises :class:`BillFieldError` naming the field. ``subtotal`` is required (SDK ``LineItem.subtotal:
    float``): a line without an amount is never read as zero.
    """
    where = f"lineItems[{index}]"
    if item is None or not isinstance(item, SdkLineItem):
        raise BillFieldError(where, f"is {_shown(item)}, not a line item")
    subtotal = getattr(item, "subtotal", None)
    if subtotal is None:
        raise BillFieldError(f"{where}.subtotal", "is missing; a line without an amount cannot be sent")
    quantity = getattr(item, "quantity", None)
    sequence = getattr(item, "sequence_number", None)
    return LineItem(
        id=str(getattr(item, "id", None) or f"{bill_id}:{index}"),
        line_item_type=str(getattr(item, "line_item_type", "")),
        description=str(getattr(item, "description", None) or ""),
        quantity=_field(f"{where}.quantity", lambda: _decimal(quantity if quantity is not None else 0)),
        subtotal=_field(f"{where}.subtotal", lambda: _decimal(subtotal)),
        unit_price=_field(
            f"{where}.averageUnitPrice", lambda: _optional_decimal(getattr(item, "average_unit_price", None))
        ),
        currency=str(getattr(item, "currency", None) or bill_currency),
        aggregation_id=getattr(item, "aggregation_id", None),
        product_name=getattr(item, "product_name", None),
        service_period_start=_field(
            f"{where}.servicePeriodStartDate", lambda: _datetime(getattr(item, "service_period_start_date", None))
        ),
        service_period_end=_field(
            f"{where}.servicePeriodEndDate", lambda: _datetime(getattr(item, "service_period_end_date", None))
        ),
        sequence_number=_field(f"{where}.sequenceNumber", lambda: None if sequence is None else _whole(sequence, 0)),
    )


def to_bill(item: BillResponse) -> Bill:
    """Convert an SDK Bill (with embedded line items) to the domain Bill; :class:`BillFieldError` if it cannot."""
    bill_id = getattr(item, "id", None)
    if not isinstance(bill_id, str) or not bill_id:
        raise BillFieldError("id", f"is {_shown(bill_id)}, not a Bill id")
    currency = item.currency or ""
    status: BillStatus = "APPROVED" if item.status == "APPROVED" else "PENDING"
    last_modified = (
        _field("dtLastModified", lambda: _datetime(item.dt_last_modified))
        or _field("lastCalculatedDate", lambda: _datetime(item.last_calculated_date))
        or _field("dtCreated", lambda: _datetime(item.dt_created))
        or _EPOCH
    )
    lines = item.line_items
    if lines is not None and not isinstance(lines, list):
        raise BillFieldError("lineItems", f"is {_shown(lines)}, not a list")
    account_id = getattr(item, "account_id", None)
    if not isinstance(account_id, str) or not account_id.strip():
        # The SDK types accountId Optional[str] (types/bill_response.py) and m3ter documents no Bill without one
        # (the vendor is silent): such a Bill has no Account, so no Stripe Customer mapping could ever fix it.
        raise BillFieldError(
            "accountId", f"is {_shown(account_id)}; a Bill without its Account cannot be sent to any Stripe Customer"
        )
    return Bill(
        id=bill_id,
        version=_field("version", lambda: _version(item.version)),
        account_id=account_id,
        account_code=item.account_code,
        status=status,
        currency=currency,
        bill_total=_field("billTotal", lambda: _optional_decimal(item.bill_total)),
        due_date=_field("dueDate", lambda: _date(item.due_date)),
        bill_date=_field("billDate", lambda: _date(item.bill_date)),
        purchase_order_number=item.purchase_order_number,
        last_modified=last_modified,
        line_items=tuple(
            to_line_item(line, bill_id=bill_id, index=index, bill_currency=currency)
            for index, line in enumerate(lines or ())
        ),
        external_invoice_reference=item.external_invoice_reference,
        locked=bool(item.locked),
        created=_first_created(item),
    )


def _first_created(item: BillResponse) -> datetime | None:
    """dtCreated, "when the Bill was first created" (SDK types/bill_response.py); bounds the Stripe lookup
    of earlier writes (stripe_writer.CustomerIndex). Unreadable: None, which searches all, never a skip."""
    try:
        return _datetime(getattr(item, "dt_created", None))
    except (ValueError, TypeError):
        return None


def read_bill(item: BillResponse, organization: str = "") -> Bill | MalformedBill:
    """:func:`to_bill`, or a :class:`MalformedBill` naming the Bill and the field it could not read."""
    try:
        return to_bill(item)
    except BillFieldError as err:
        raw_id = getattr(item, "id", None)
        bill_id = raw_id if isinstance(raw_id, str) and raw_id else "(without an id)"
        account = getattr(item, "account_id", None)
        try:
            version = _version(getattr(item, "version", None))
        except ValueError:
            version = 0
        try:
            modified = _datetime(getattr(item, "dt_last_modified", None))
        except (ValueError, TypeError):
            modified = None
        log.warning("m3ter Bill %s of organization %s cannot be read: %s", bill_id, organization or "?", err)
        return MalformedBill(
            id=bill_id,
            message=(
                f"m3ter Bill {bill_id}: {err}; nothing was sent for this Bill. Correct it in m3ter "
                "(it is read again once it changes)"
            ),
            version=version,
            account_id=account if isinstance(account, str) and account.strip() else None,
            last_modified=modified,
        )


def _address(item: AccountResponse) -> Mapping[str, str | None]:
    if item.address is None:
        return {}
    # The SDK's snake_case attributes map one-to-one onto m3ter's camelCase address keys.
    dumped = item.address.model_dump(by_alias=True)
    return {key: dumped.get(key) for key in ADDRESS_KEYS}


def to_account(item: AccountResponse) -> Account:
    """Convert an SDK Account to the domain Account."""
    return Account(
        id=item.id,
        name=item.name or "",
        code=item.code or "",
        currency=item.currency,
        address=_address(item),
        custom_fields={key: _custom_value(value) for key, value in (item.custom_fields or {}).items()},
    )
