"""The domain's Bill source on m3ter: which requests answer each question of the ``BillSource`` port, and the
caches that spare some of them.

How each request is made (token, rate limits, retries, errors, paging) is :mod:`.m3ter_client`'s; how the changed
Bills are found, :mod:`.m3ter_scan`'s; how the SDK's models become the domain's values, :mod:`.m3ter_models`'s.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import datetime
from types import MappingProxyType
from urllib.parse import quote

import m3ter
from m3ter import AsyncM3ter
from m3ter.types import AccountResponse, BillResponse

from m3stripe.domain.billing import Account, Bill, CurrencyRounding, MalformedBill
from m3stripe.domain.ports import BILLS_PAGE_SIZE
from m3stripe.domain.sweep import ListedBill

from .m3ter_client import (
    M3terClient,
    M3terRateLimits,
    account_mappings_page,
    accounts_page,
    bill_versions_page,
    bills_by_ids_page,
    bills_page,
    currencies_page,
    search_page,
)
from .m3ter_models import aware, newest_stripe_customer, read_bill, to_account, to_currency_rounding, to_listed_bill
from .m3ter_scan import changed_bills
from .m3ter_token import M3terCredentials, M3terSourceError, TokenManager


class M3terSource:
    """One m3ter Organization, read through a Service User's credentials: the domain's ``BillSource``."""

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
        self._client = M3terClient(
            credentials,
            base_url=base_url,
            timeout=timeout,
            token_manager=token_manager,
            max_retries=max_retries,
            rate_limits=rate_limits,
        )
        self._clock = clock
        self._account_ttl = account_cache_ttl
        self._account_cache_size = account_cache_size
        self._accounts: OrderedDict[str, tuple[float, Account]] = OrderedDict()
        self._currency_ttl = currency_cache_ttl
        # (expiry, the rules, the entries that cannot be used: one error per currency code)
        self._currencies: tuple[float, Mapping[str, CurrencyRounding], Mapping[str, M3terSourceError]] | None = None
        self._currency_lock = asyncio.Lock()

    @property
    def client(self) -> M3terClient:
        return self._client

    @property
    def token_manager(self) -> TokenManager:
        return self._client.token_manager

    @property
    def rate_limits(self) -> M3terRateLimits:
        return self._client.rate_limits

    @property
    def organization_id(self) -> str:
        return self._client.credentials.organization_id

    async def check(self) -> None:
        """Prove the credentials work and the Organization is reachable (one small request)."""
        await self._client.call("checking access", lambda client: client.accounts.list(page_size=1))

    async def iter_bills(
        self, *, modified_since: datetime | None, page_size: int = BILLS_PAGE_SIZE
    ) -> AsyncIterator[Bill | MalformedBill]:
        """Stream the Bills last modified at or after ``modified_since``; every Bill if None.

        With ``modified_since``, only what changed is read, in DESCENDING ``dtLastModified`` order (newest
        first; a watermark can only move once the stream is exhausted; should offset paging not be safe, the
        rest comes from the full listing, in its order; see ``m3ter_scan.changed_bills``): Search Bills sorted by
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
            changed = changed_bills(
                aware(modified_since),
                page_size,
                search=self._search,
                read=self._bills_by_ids,
                list_all=lambda: self.iter_bills(modified_since=None),
                organization=self.organization_id,
            )
            async for bill in changed:
                yield bill
            return
        async for item in self._client.items("listing bills", lambda cursor: bills_page(cursor, page_size)):
            yield read_bill(item, self.organization_id)

    async def _search(self, offset: int, page_size: int) -> Sequence[BillResponse]:
        page = await self._client.call("searching changed bills", search_page(offset, page_size))
        return page.data or []

    async def list_bill_versions(self, page_size: int = BILLS_PAGE_SIZE) -> AsyncIterator[ListedBill]:
        """Every Bill's id, version, dtLastModified and lock, from List Bills without line items (the sweep).

        ``excludeLineItems=true`` (SDK ``types/bill_list_params.py``: "Exclude Line Items"; List Bills,
        https://docs.m3ter.com/api/bill/list-bills) keeps each page small whatever the Bills hold. This is the
        listing the first, full pass reads, not the search index, so it does not depend on how soon m3ter
        indexes a change. One page in memory; each page gets a current token.
        """
        if not 1 <= page_size <= BILLS_PAGE_SIZE:
            raise ValueError(f"page_size must be between 1 and {BILLS_PAGE_SIZE} (m3ter's limit for Bills)")
        listing = self._client.items(
            "listing bills for the reconciliation sweep", lambda cursor: bill_versions_page(cursor, page_size)
        )
        async for item in listing:
            yield to_listed_bill(item)

    async def bills_by_ids(self, ids: list[str]) -> AsyncIterator[Bill | MalformedBill]:
        """The Bills of ``ids`` (at most BILLS_PAGE_SIZE), with their line items, in that order; deleted ones left out."""
        if not 1 <= len(ids) <= BILLS_PAGE_SIZE:
            raise ValueError(f"between 1 and {BILLS_PAGE_SIZE} ids a call (m3ter's pageSize limit for Bills)")
        async for bill in self._bills_by_ids(ids):
            yield bill

    async def _bills_by_ids(self, ids: list[str]) -> AsyncIterator[Bill | MalformedBill]:
        """The Bills of ``ids`` in that order (List Bills by ``ids``, every page); deleted ones are left out."""
        by_id: dict[str, BillResponse] = {}
        async for item in self._client.items("reading changed bills", lambda cursor: bills_by_ids_page(ids, cursor)):
            item_id = getattr(item, "id", None)
            if isinstance(item_id, str):
                by_id[item_id] = item
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

        item = await self._client.call(f"reading changed bill {bill_id}", retrieve)
        return None if item is None else read_bill(item, self.organization_id)

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
        item = await self._client.call(f"reading bill {bill_id}", retrieve, forbidden=lambda: None)
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

        item = await self._client.call(f"reading account {account_id}", retrieve)
        if item is None:
            self._accounts.pop(account_id, None)
            return None
        account = to_account(item)
        self._accounts[account_id] = (now + self._account_ttl, account)
        self._accounts.move_to_end(account_id)
        while len(self._accounts) > self._account_cache_size:
            self._accounts.popitem(last=False)
        return account

    async def list_accounts(self) -> AsyncIterator[Account]:
        """Every Account of the Organization (``GET /organizations/{orgId}/accounts``, ``nextToken`` paging:
        https://docs.m3ter.com/api/account/list-accounts)."""
        async for item in self._client.items("listing accounts", accounts_page):
            yield to_account(item)

    async def find_stripe_customer_mapping(self, account_id: str) -> str | None:
        """The Stripe Customer id an External Mapping ties to this Account, or None (see ``newest_stripe_customer``)."""
        mappings = self._client.items(
            f"reading external mappings of account {account_id}",
            lambda cursor: account_mappings_page(account_id, cursor),
        )
        return newest_stripe_customer([mapping async for mapping in mappings], account_id)

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
            async for item in self._client.items("reading the currency picklist", currencies_page):
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
            frozen = (MappingProxyType(rules), MappingProxyType(errors))
            self._currencies = (self._clock() + self._currency_ttl, *frozen)
            return frozen

    async def aclose(self) -> None:
        await self._client.aclose()
