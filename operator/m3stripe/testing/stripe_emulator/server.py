"""The emulator class: its lifecycle and its Python control API.

``StripeEmulator`` serves (``start``/``stop``, ``async with``, ``in_thread``) the aiohttp application of
app.py with the control endpoints of admin.py, and is what tests drive in Python: API keys, rate limits,
latency and faults; what the Dashboard and Stripe itself decide and the API cannot set (a customer's
discount, Stripe Tax's settings, rates and locations); and inspection (``state``, the request log and its
counters). It holds what the request pipeline reads: the keys, the accounts and their modes' objects, the
idempotency stores and the rate-limit buckets.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import copy
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from decimal import Decimal
from typing import Any, TypedDict

from aiohttp import web

from . import billing, tax
from .account import retrieve as retrieve_account
from .admin import add_admin_routes
from .app import ApiKey, ContractViolation, RequestRecord, build_app, mode_of
from .common import AccountProfile, Ctx, World
from .faults import DEFAULT_TIMEOUT_SECONDS, Fault, FaultPlan, FaultRule
from .idempotency import IdempotencyStore
from .latency import Fixed, LatencyProfile
from .locks import ObjectLocks, Reading
from .ratelimit import STRIPE_ENDPOINT_PER_SECOND, STRIPE_LIVE_PER_SECOND, STRIPE_TEST_PER_SECOND, TokenBucket
from .state import AccountState, IdFactory, Obj


class AccountSnapshot(TypedDict):
    """Copies of one account's objects, keyed by id in creation order (invoices fully rendered)."""

    account: Obj
    customers: dict[str, Obj]
    products: dict[str, Obj]
    prices: dict[str, Obj]
    invoices: dict[str, Obj]
    invoice_items: dict[str, Obj]
    tax_settings: Obj
    tax_registrations: dict[str, Obj]


class StripeEmulator:
    """A stateful Stripe API for tests and benchmarks; see the package docstring for the surface."""

    def __init__(
        self,
        rate_limit_per_second: float | None = None,
        latency_seconds: float = 0.0,
        *,
        seed: int | None = None,
        clock: Callable[[], float] | None = None,
        request_log_size: int = 10_000,
        contract_mode: bool = False,
        record_bodies: bool = False,
        endpoint_rate_limit_per_second: float | None = STRIPE_ENDPOINT_PER_SECOND,
        latency: LatencyProfile | None = None,
        locks: Reading = "strict",
        lock_timeouts_saved: bool = True,
    ) -> None:
        self._clock = clock or time.time
        self._ids = IdFactory(seed)
        # Facts of the world every account shares: tax rates and IP geolocation (common.World).
        self.world = World()
        self._keys: dict[str, ApiKey] = {}
        self._accounts: dict[str, AccountProfile] = {}
        self._idempotency: dict[tuple[str, bool], IdempotencyStore] = {}
        self._buckets: dict[tuple[str, bool, str | None], TokenBucket] = {}
        self._rate_limits: dict[bool, float | None] = {True: None, False: None}
        self._endpoint_rate_limit = endpoint_rate_limit_per_second
        # Contract mode: every request is checked on receipt against the SDK's generated parameter
        # types and the SDK's API version; what breaks them is kept in `violations` (the tests' stack
        # fixture and the benchmark fail on any).
        self.contract_mode = contract_mode
        # Keep each request's body (or query string) in the request log, for tests comparing requests byte for byte.
        self.record_bodies = record_bodies
        # Which objects a write locks, and whether a refusal is saved under the request's idempotency key (locks.py):
        # the strict readings unless a benchmark or a test asks for others.
        self.object_locks = ObjectLocks(locks, refusals_saved=lock_timeouts_saved)
        # Requests being answered now, and the most at once so far (how concurrent a client really was).
        self.in_flight = 0
        self.peak_in_flight = 0
        self.violations: list[ContractViolation] = []
        self.contract_checked = 0
        self.api_versions: collections.Counter[str | None] = collections.Counter()
        # How long each request that passes the rate limiter is held before it is served (latency.py); a
        # `latency` profile, or `latency_seconds` on every request.
        self.latency: LatencyProfile = latency if latency is not None else Fixed(latency_seconds)
        self.faults = FaultPlan()
        self.requests: collections.deque[RequestRecord] = collections.deque(maxlen=request_log_size)
        self.request_count = 0
        self.endpoint_counts: collections.Counter[str] = collections.Counter()
        self.status_counts: collections.Counter[int] = collections.Counter()
        self._runner: web.AppRunner | None = None
        self._url: str | None = None
        if rate_limit_per_second is not None:
            self.set_rate_limit(rate_limit_per_second)

    # --- lifecycle --------------------------------------------------------------------------------

    def make_app(self) -> web.Application:
        """The Stripe API (app.py) and the ``/_emulator/`` control endpoints (admin.py), served by this emulator."""
        app = build_app(self)
        add_admin_routes(app)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on ``host:port`` (0 picks a free port) and return the base URL."""
        if self._runner is not None:
            raise RuntimeError("the emulator is already running")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        runner = web.AppRunner(self.make_app(), access_log=None, handle_signals=False)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        self._runner = runner
        self._url = f"http://{host}:{sock.getsockname()[1]}"
        return self._url

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> StripeEmulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @contextlib.contextmanager
    def in_thread(self, host: str = "127.0.0.1", port: int = 0) -> Iterator[StripeEmulator]:
        """Serve from a background thread, for synchronous callers (``with emu.in_thread(): ...``)."""
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        thread = threading.Thread(target=loop.run_forever, name="stripe-emulator", daemon=True)
        thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self.start(host, port), loop).result()
            ready.set()
            yield self
        finally:
            if ready.is_set():
                asyncio.run_coroutine_threadsafe(self.stop(), loop).result()
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            loop.close()

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("the emulator is not running; use `async with emulator:` or `await start()`")
        return self._url

    # --- configuration ----------------------------------------------------------------------------

    @property
    def latency_seconds(self) -> float:
        """The latency of every request (a fixed profile), or the profile's median."""
        return self.latency.median

    @latency_seconds.setter
    def latency_seconds(self, seconds: float) -> None:
        self.latency = Fixed(seconds)

    def add_api_key(
        self,
        key: str,
        account: str | None = None,
        *,
        country: str = "US",
        default_currency: str = "usd",
        email: str | None = None,
        business_name: str | None = None,
        permissions: Iterable[str] | None = None,
    ) -> str:
        """Register a secret or restricted key (its prefix sets test or live mode) and return its account id.

        Keys naming the same ``account`` share its objects (per mode); the profile keywords apply
        when the account is first created. ``permissions`` (``rak_invoice_write``, ...) restricts an
        ``rk_`` key; without it a restricted key has every permission, and still may not call
        ``GET /v1/account`` (Stripe refuses that to all restricted keys).
        """
        if permissions is not None and not key.startswith("rk_"):
            raise ValueError("only restricted keys (rk_test_/rk_live_) have permissions")
        livemode = mode_of(key)
        account_id = account or self._ids.new("acct", 16)
        if account_id not in self._accounts:
            self._accounts[account_id] = AccountProfile(
                id=account_id,
                created=int(self._clock()),
                country=country,
                default_currency=default_currency.lower(),
                email=email,
                business_name=business_name,
            )
        self._keys[key] = ApiKey(
            key, account_id, livemode, permissions=None if permissions is None else frozenset(permissions)
        )
        self._mode_state(account_id, livemode)
        return account_id

    def revoke_api_key(self, key: str) -> None:
        """Later requests with ``key`` get 401, as with a deleted or rolled-and-expired key."""
        self._keys[key].revoked = True

    def set_rate_limit(self, per_second: float | None, *, livemode: bool | None = None) -> None:
        """Limit each account's requests per second in one mode (both by default); None turns it off.

        Bursts of one second's worth. While a mode is limited, each endpoint of an account is also
        limited to ``endpoint_rate_limit_per_second`` (Stripe's 25/s unless set otherwise).
        """
        if per_second is not None and per_second <= 0:
            raise ValueError("per_second must be positive (or None to disable rate limiting)")
        for mode in (True, False) if livemode is None else (livemode,):
            self._rate_limits[mode] = per_second
        self._buckets.clear()

    def set_endpoint_rate_limit(self, per_second: float | None) -> None:
        """The per-endpoint limit applied while a mode is rate limited; None: the global limit only."""
        if per_second is not None and per_second <= 0:
            raise ValueError("per_second must be positive (or None for no per-endpoint limit)")
        self._endpoint_rate_limit = per_second
        self._buckets.clear()

    @property
    def rate_limits(self) -> dict[str, float | None]:
        """Requests per second per account in each mode, and per endpoint while a mode is limited; None: no limit."""
        return {
            "live": self._rate_limits[True],
            "test": self._rate_limits[False],
            "endpoint": self._endpoint_rate_limit,
        }

    def use_stripe_rate_limits(self) -> None:
        """Stripe's documented defaults: 100/s live, 25/s test, 25/s per endpoint."""
        self.set_rate_limit(STRIPE_LIVE_PER_SECOND, livemode=True)
        self.set_rate_limit(STRIPE_TEST_PER_SECOND, livemode=False)
        self.set_endpoint_rate_limit(STRIPE_ENDPOINT_PER_SECOND)

    def contract_report(self) -> str:
        """Every contract violation recorded so far, one a line ('' when none)."""
        return "\n".join(str(v) for v in self.violations)

    def inject(
        self,
        fault: Fault,
        *,
        method: str | None = None,
        path_prefix: str | None = None,
        times: int | None = 1,
        delay_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        account: str | None = None,
    ) -> None:
        """Make the next ``times`` matching requests fail with ``fault`` (None: every one until cleared)."""
        self.faults.add(
            FaultRule(
                fault,
                method=method.upper() if method else None,
                path_prefix=path_prefix,
                account=account,
                remaining=times,
                delay_seconds=delay_seconds,
            )
        )

    def inject_random(
        self,
        probabilities: Mapping[Fault, float],
        *,
        seed: int | None = None,
        method: str | None = None,
        path_prefix: str | None = None,
        delay_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        """Fail each matching request at random, ``probabilities[fault]`` of the time (a chaos run)."""
        self.faults.set_random(
            probabilities,
            seed=seed,
            method=method.upper() if method else None,
            path_prefix=path_prefix,
            delay_seconds=delay_seconds,
        )

    def clear_faults(self) -> None:
        self.faults.clear()

    def reset_counters(self) -> None:
        self.api_versions.clear()
        self.contract_checked = 0
        self.requests.clear()
        self.request_count = 0
        self.endpoint_counts.clear()
        self.status_counts.clear()

    # --- inspection -------------------------------------------------------------------------------

    def accounts(self) -> list[str]:
        return list(self._accounts)

    def apply_customer_discount(self, account: str, customer: str, coupon: str, livemode: bool | None = None) -> str:
        """Give ``customer`` the ``coupon`` as the Dashboard does (the API has no parameter for it).

        Returns the discount's id; invoices created afterwards inherit it unless told otherwise.
        """
        from . import coupons, customers

        profile = self._accounts[account]
        state = self._mode_state(account, next(iter(profile.modes)) if livemode is None else livemode)
        ctx = Ctx(profile, state, int(self._clock()), world=self.world)
        found = customers.find(state, customer, param="customer")
        return str(coupons.apply_to_customer(ctx, found, coupon)["id"])

    # --- Stripe Tax: what the Dashboard, Stripe's rate tables and the customer's network decide ---------

    def _admin_ctx(self, account: str, livemode: bool | None) -> Ctx:
        profile = self._accounts[account]
        state = self._mode_state(account, next(iter(profile.modes)) if livemode is None else livemode)
        return Ctx(profile, state, int(self._clock()), world=self.world)

    def set_tax_settings(
        self,
        account: str,
        *,
        head_office: Mapping[str, str] | str | None = None,
        tax_behavior: str | None = None,
        tax_code: str | None = None,
        livemode: bool | None = None,
    ) -> Obj:
        """Set the account's Stripe Tax settings, as ``POST /v1/tax/settings`` (or the Dashboard) does.

        ``head_office`` is an address hash or just its country (``"GB"``); with one the settings are
        ``active``. ``tax_behavior``: ``exclusive``, ``inclusive`` or ``inferred_by_currency``;
        ``tax_code``: the preset product tax code (``txcd_10000000``). Returns a copy of the settings.
        """
        params: dict[str, Any] = {}
        if head_office is not None:
            params["head_office"] = {
                "address": {"country": head_office} if isinstance(head_office, str) else head_office
            }
        defaults = {k: v for k, v in (("tax_behavior", tax_behavior), ("tax_code", tax_code)) if v is not None}
        if defaults:
            params["defaults"] = defaults
        return copy.deepcopy(tax.apply_settings(self._admin_ctx(account, livemode).state, params))

    def set_tax_rate(self, country: str, percentage: Decimal | float | str, *, state: str | None = None) -> None:
        """The tax rate of a jurisdiction (a country, or a US state), for every account.

        Stripe keeps rates itself and publishes them through no API, so tests decide them here; the
        tax of a line is computed at this rate where the account has an active registration.
        """
        self.world.tax_rates[(country.upper(), state.upper() if state else None)] = Decimal(str(percentage))

    def add_tax_registration(
        self,
        account: str,
        country: str,
        percentage: Decimal | float | str | None = None,
        *,
        state: str | None = None,
        registration_type: str | None = None,
        active_from: int | None = None,
        expires_at: int | None = None,
        livemode: bool | None = None,
    ) -> str:
        """Register the account to collect tax in ``country`` (a US ``state``), as ``POST /v1/tax/registrations``.

        ``percentage`` sets the jurisdiction's rate (``set_tax_rate``) first. ``registration_type``
        defaults to ``state_sales_tax`` in the US and ``standard`` elsewhere; ``active_from`` to now.
        Returns the registration's id.
        """
        country = country.upper()
        if percentage is not None:
            self.set_tax_rate(country, percentage, state=state if country == "US" else None)
        options: dict[str, Any] = {"type": registration_type or ("state_sales_tax" if country == "US" else "standard")}
        if country == "US":
            if state is None:
                raise ValueError("a US registration is for one state: pass state='CA', ...")
            options["state"] = state.upper()
        ctx = self._admin_ctx(account, livemode)
        params: dict[str, Any] = {
            "active_from": "now" if active_from is None else active_from,
            "country": country,
            "country_options": {country.lower(): options},
        }
        if expires_at is not None:
            params["expires_at"] = expires_at
        return str(tax.create_registration(ctx, params)["id"])

    def set_invoice_automatic_tax_default(
        self, account: str, value: str = "enabled_when_possible", *, livemode: bool | None = None
    ) -> None:
        """The account's default for API invoices that omit ``automatic_tax``: ``disabled`` (Stripe's
        default) or ``enabled_when_possible`` (best effort: https://docs.stripe.com/tax/invoicing/automatic-tax-default).

        Stripe keeps it on the v2 Tax integration configuration (``invoices.automatic_tax_default_value``),
        which the v1 API the operator speaks cannot read; here it is an admin setting.
        """
        if value not in ("disabled", "enabled_when_possible"):
            raise ValueError("value is 'disabled' or 'enabled_when_possible'")
        self._admin_ctx(account, livemode).state.automatic_tax_default = value

    def allow_negative_lines_with_automatic_tax(
        self, account: str, allowed: bool = True, *, livemode: bool | None = None
    ) -> None:
        """Accept negative invoice items on automatic-tax invoices for this account (refused by default).

        Stripe's API reference says they "cannot be added to automatic tax invoices", while OpenMeter
        has sent them for years (see ``tax.refusal``): switch this on only to model an account where a
        test in Stripe's test mode showed they are accepted. Their tax is then negative, like their amount.
        """
        self._admin_ctx(account, livemode).state.negative_lines_with_automatic_tax = allowed

    def set_customer_location(
        self,
        account: str,
        customer: str,
        *,
        address: Mapping[str, str | None] | None = None,
        shipping_address: Mapping[str, str | None] | None = None,
        ip_address: str | None = None,
        livemode: bool | None = None,
    ) -> Obj:
        """Give a customer the address, shipping address or IP address Stripe Tax locates them by.

        What ``POST /v1/customers/{id}`` with ``address``, ``shipping`` and ``tax[ip_address]`` does,
        for tests that set up Stripe's side without the API; what is not passed is left alone. Returns
        the customer's ``tax`` hash (what ``expand[]=tax`` shows).
        """
        from . import customers

        ctx = self._admin_ctx(account, livemode)
        found = customers.find(ctx.state, customer, param="customer")
        if address is not None:
            found["address"] = {
                k: address.get(k) for k in ("city", "country", "line1", "line2", "postal_code", "state")
            }
        if shipping_address is not None:
            shipping = {
                k: shipping_address.get(k) for k in ("city", "country", "line1", "line2", "postal_code", "state")
            }
            found["shipping"] = {"address": shipping, "name": found.get("name") or "", "phone": None}
        if ip_address is not None:
            ctx.state.customer_tax.setdefault(customer, {})["ip_address"] = ip_address
        return copy.deepcopy(tax.customer_tax(ctx, found))

    def set_ip_location(self, ip_address: str, country: str, *, state: str | None = None) -> None:
        """Where ``ip_address`` geolocates (Stripe Tax's last resort for a customer's location)."""
        self.world.ip_locations[ip_address] = (country.upper(), state.upper() if state else None)

    def fail_customer_tax(
        self, account: str, customer: str, failing: bool = True, *, livemode: bool | None = None
    ) -> None:
        """Make Stripe's location lookup for ``customer`` fail (``tax.automatic_tax=failed``) until called with False.

        "failed": an error determining the location, "usually ... temporary" (Stripe's customer tax
        statuses, https://docs.stripe.com/tax/customer-locations).
        """
        self._admin_ctx(account, livemode).state.customer_tax.setdefault(customer, {})["failed"] = failing

    def state(self, account: str, livemode: bool | None = None) -> AccountSnapshot:
        """Deep copies of the account's objects as the API returns them.

        ``livemode`` defaults to the mode of the first key registered for the account.
        """
        profile = self._accounts[account]
        if livemode is None:
            livemode = next(iter(profile.modes))
        state = self._mode_state(account, livemode)
        ctx = Ctx(profile, state, int(self._clock()), world=self.world)
        snapshot: AccountSnapshot = {
            "account": retrieve_account(ctx, {}),
            "customers": dict(state.customers.objects),
            "products": dict(state.products.objects),
            "prices": dict(state.prices.objects),
            "invoices": {i: billing.render_invoice(ctx, inv) for i, inv in state.invoices.objects.items()},
            "invoice_items": dict(state.invoice_items.objects),
            "tax_settings": tax.settings(state),
            "tax_registrations": {
                i: tax.render_registration(ctx, r) for i, r in state.tax_registrations.objects.items()
            },
        }
        return copy.deepcopy(snapshot)

    def _mode_state(self, account: str, livemode: bool) -> AccountState:
        profile = self._accounts[account]
        state = profile.modes.get(livemode)
        if state is None:
            state = profile.modes[livemode] = AccountState(account, livemode, self._ids)
            self._idempotency[(account, livemode)] = IdempotencyStore()
        return state
