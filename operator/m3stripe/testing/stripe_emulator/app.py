"""The emulator: an aiohttp server on 127.0.0.1 that the official stripe SDK talks to over real HTTP.

Every ``/v1`` request goes through the same pipeline, in the order Stripe applies it: authentication,
routing, rate limiting, injected faults, form decoding, the idempotency layer, parameter validation
(failures there are not saved under the key), then the endpoint itself (whose result, errors
included, is saved under the key).
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import copy
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any, TypedDict

from aiohttp import web
from stripe._api_version import _ApiVersion

from . import billing, contract, errors, forms, tax
from .account import retrieve as retrieve_account
from .common import AccountProfile, Ctx, World, check_expand, expand
from .errors import StripeError
from .faults import DEFAULT_TIMEOUT_SECONDS, Fault, FaultPlan, FaultRule, Triggered
from .idempotency import IdempotencyStore, Saved, fingerprint
from .latency import Fixed, LatencyProfile
from .latency import parse as parse_latency
from .locks import ObjectLocks, objects_written
from .ratelimit import TokenBucket, retry_after_seconds
from .routes import ROUTES, Route, Router
from .state import AccountState, IdFactory, Obj

logger = logging.getLogger(__name__)

# The emulator speaks exactly the API version the installed stripe SDK is generated for: its params
# and object types are the contract the emulator checks requests against.
API_VERSION: str = _ApiVersion.CURRENT
# Versions Stripe is documented to know (https://docs.stripe.com/api-versions: "2024-09-30.acacia";
# https://docs.stripe.com/changelog/basil: "2025-03-31.basil"), accepted, and recorded as a mismatch
# when they are not API_VERSION. Stripe answers any other value with 400 "Invalid Stripe API version"
# (stripe/stripe-java#682, pay-rails/pay#680: a well-formed date that is no release is refused too),
# so the emulator, not knowing Stripe's full list, refuses everything else.
KNOWN_API_VERSIONS = frozenset({API_VERSION, "2025-03-31.basil", "2024-09-30.acacia"})
_MODES = {"sk_test_": False, "rk_test_": False, "sk_live_": True, "rk_live_": True}
# https://docs.stripe.com/rate-limits: "Live mode: 100 requests per second", "Sandbox: 25 requests per
# second", "Individual API endpoints (unless otherwise noted): 25 requests per second"; the global
# limit is per Stripe account and mode, the endpoint one per "named API operation".
STRIPE_LIVE_PER_SECOND = 100.0
STRIPE_TEST_PER_SECOND = 25.0
STRIPE_ENDPOINT_PER_SECOND = 25.0


@dataclass
class ApiKey:
    key: str
    account: str
    livemode: bool
    revoked: bool = False
    # Restricted (rk_) keys only: the rak_* permissions granted; None grants every one.
    permissions: frozenset[str] | None = None

    @property
    def restricted(self) -> bool:
        return self.key.startswith("rk_")

    def allows(self, permission: str | None) -> bool:
        if not self.restricted:
            return True
        if permission is None:
            return False
        if self.permissions is None:
            return True
        # "Write permissions imply read permissions" (https://docs.stripe.com/keys#limit-access).
        return permission in self.permissions or permission.replace("_read", "_write") in self.permissions


@dataclass(frozen=True)
class RequestRecord:
    """One entry of the bounded request log."""

    request_id: str
    method: str
    path: str
    endpoint: str | None
    status: int | None
    idempotency_key: str | None
    account: str | None
    replayed: bool
    fault: str | None
    dropped: bool
    seconds: float
    stripe_version: str | None = None
    # The request as sent (a POST's form body, a GET's query string), when the emulator records them.
    body: str | None = None


@dataclass(frozen=True)
class ContractViolation:
    """A request that broke Stripe's contract as the SDK's generated types describe it."""

    request_id: str
    method: str
    path: str
    endpoint: str | None
    problems: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.method} {self.path} ({self.request_id}): " + "; ".join(self.problems)


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


@dataclass
class _Reply:
    status: int
    body: bytes
    headers: dict[str, str]
    drop: bool = False


def _json(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def _error_reply(error: StripeError, request_id: str) -> _Reply:
    return _Reply(error.status, _json(error.body(request_id)), dict(error.headers))


def mode_of(key: str) -> bool:
    for prefix, livemode in _MODES.items():
        if key.startswith(prefix):
            return livemode
    raise ValueError(f"not a secret or restricted Stripe key (sk_test_/sk_live_/rk_test_/rk_live_): {key!r}")


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
    ) -> None:
        self._clock = clock or time.time
        self._ids = IdFactory(seed)
        self._router = Router(ROUTES)
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
        self.object_locks = ObjectLocks()
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
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
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

    # --- the request pipeline ---------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.path.startswith("/_emulator/"):
            return await self._control(request)
        started = time.monotonic()
        request_id = self._ids.new("req")
        info: dict[str, Any] = {"endpoint": None, "account": None, "replayed": False, "fault": None}
        version = request.headers.get("Stripe-Version")
        self.api_versions[version] += 1
        if self.contract_mode:
            await self._check_contract(request, request_id)
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            # A write holds the objects it changes for its whole duration, its latency included (locks.py; the
            # latency is drawn in _process, once the rate limiter let the request through).
            with await self._locking(request):
                reply = await self._process(request, request_id, info)
        except StripeError as error:
            reply = _error_reply(error, request_id)
        except Exception:
            logger.exception("stripe emulator failed on %s %s", request.method, request.path)
            reply = _error_reply(errors.server_error(saved=False), request_id)
        finally:
            self.in_flight -= 1
        key = request.headers.get("Idempotency-Key")
        body: str | None = None
        if self.record_bodies:
            body = await request.text() if request.method == "POST" else request.query_string
        self._record(request, request_id, reply, key, info, time.monotonic() - started, body)
        if reply.drop:
            if request.transport is not None:
                # Closing without a status line is what a lost reply looks like to the client.
                request.transport.close()
            return web.Response(status=500)
        headers = {
            "Request-Id": request_id,
            "Stripe-Version": request.headers.get("Stripe-Version", API_VERSION),
            "Content-Type": "application/json",
            "Cache-Control": "no-cache, no-store",
            **reply.headers,
        }
        if key is not None and request.method == "POST":
            headers["Idempotency-Key"] = key
        return web.Response(status=reply.status, body=reply.body, headers=headers)

    def _record(
        self,
        request: web.Request,
        request_id: str,
        reply: _Reply,
        key: str | None,
        info: dict[str, Any],
        seconds: float,
        body: str | None = None,
    ) -> None:
        self.request_count += 1
        if info["endpoint"] is not None:
            self.endpoint_counts[info["endpoint"]] += 1
        status = None if reply.drop else reply.status
        if status is not None:
            self.status_counts[status] += 1
        self.requests.append(
            RequestRecord(
                request_id=request_id,
                method=request.method,
                path=request.path,
                endpoint=info["endpoint"],
                status=status,
                idempotency_key=key if request.method == "POST" else None,
                account=info["account"],
                replayed=info["replayed"],
                fault=info["fault"],
                dropped=reply.drop,
                seconds=seconds,
                stripe_version=request.headers.get("Stripe-Version"),
                body=body,
            )
        )

    async def _check_contract(self, request: web.Request, request_id: str) -> None:
        problems: list[str] = []
        version = request.headers.get("Stripe-Version")
        if version != API_VERSION:
            problems.append(
                f"Stripe-Version {version!r}: the contract (the SDK's types) is API version {API_VERSION!r}"
            )
        matched = self._router.match(request.method, request.path)
        endpoint = None
        if matched is None:
            problems.append("no such endpoint in the emulator (and so none the operator is known to need)")
        else:
            endpoint = matched[0].name
            try:
                form = await self._read_params(request)
            except StripeError as error:
                problems.append(f"undecodable form: {error.message}")
            else:
                problems.extend(str(v) for v in contract.check(request.method, matched[0].template, form))
        self.contract_checked += 1
        if problems:
            self.violations.append(
                ContractViolation(request_id, request.method, request.path, endpoint, tuple(problems))
            )

    async def _locking(self, request: web.Request) -> contextlib.AbstractContextManager[None]:
        """The locks of a write (locks.py); nothing for reads, or for a request the pipeline refuses anyway."""
        key = self._keys.get(request.headers.get("Authorization", "").partition(" ")[2].strip())
        if request.method not in ("POST", "DELETE") or key is None:
            return contextlib.nullcontext()
        try:
            params = {**forms.decode(request.query_string), **forms.decode(await request.text())}
        except Exception:  # a body the pipeline refuses with its own error
            return contextlib.nullcontext()
        objects = objects_written(request.method, request.path, params)
        if not objects:
            return contextlib.nullcontext()
        return self.object_locks.holding(key.account, key.livemode, objects)

    def _authenticate(self, request: web.Request) -> ApiKey:
        header = request.headers.get("Authorization", "")
        scheme, _, credential = header.partition(" ")
        key = ""
        if scheme.lower() == "bearer":
            key = credential.strip()
        elif scheme.lower() == "basic":
            # curl -u sk_test_...: sends the key as the Basic username.
            with contextlib.suppress(ValueError):
                key = base64.b64decode(credential).decode().partition(":")[0]
        if not key:
            raise errors.no_api_key()
        found = self._keys.get(key)
        if found is None or found.revoked:
            raise errors.invalid_api_key(key)
        connected = request.headers.get("Stripe-Account")
        if connected and connected != found.account:
            raise errors.no_account_access(key, connected)
        version = request.headers.get("Stripe-Version")
        if version is not None and version not in KNOWN_API_VERSIONS:
            raise errors.invalid_api_version(version)
        return found

    async def _read_params(self, request: web.Request) -> forms.FormDict:
        if request.method == "POST":
            content_type = request.headers.get("Content-Type", "application/x-www-form-urlencoded")
            body = await request.text()
            if body and not content_type.startswith("application/x-www-form-urlencoded"):
                raise StripeError(
                    400,
                    f"Invalid request: unsupported Content-Type {content_type}. Stripe's v1 API takes "
                    "application/x-www-form-urlencoded bodies.",
                )
            return {**forms.decode(request.query_string), **forms.decode(body)}
        return forms.decode(request.query_string)

    async def _process(self, request: web.Request, request_id: str, info: dict[str, Any]) -> _Reply:
        api_key = self._authenticate(request)
        info["account"] = api_key.account
        method = request.method
        matched = self._router.match(method, request.path)
        if matched is None:
            raise errors.unrecognized_url(method, request.path)
        route, path_args = matched
        info["endpoint"] = route.name
        if not api_key.allows(route.permission):
            raise errors.missing_permission(api_key.key, api_key.account, route.permission)
        self._rate_limit(api_key, route)
        # Stripe's time to serve the request, after its edge let it through: a 429 (or a refused key) is
        # answered at once, and each request waits on its own (other requests are served meanwhile).
        delay = self.latency.sample()
        if delay > 0:
            await asyncio.sleep(delay)

        fault = self.faults.pick(method, request.path, api_key.account)
        if fault is not None:
            info["fault"] = fault.fault.value
            if fault.fault is Fault.RATE_LIMIT:
                raise errors.rate_limited(1)
            if fault.fault is Fault.SERVER_ERROR:
                raise errors.server_error(saved=False)
            if fault.fault is Fault.DROP_BEFORE_WRITE:
                return _Reply(0, b"", {}, drop=True)

        raw = await self._read_params(request)
        state = self._mode_state(api_key.account, api_key.livemode)
        store = self._idempotency[(api_key.account, api_key.livemode)]
        key = request.headers.get("Idempotency-Key") if method == "POST" else None
        if key is not None:
            saved = store.begin(key, f"{method} {request.path}", fingerprint(raw), time.time())
            if saved is not None:
                info["replayed"] = True
                return self._replay(saved, fault)
        try:
            reply = await self._execute(route, path_args, raw, state, request_id, fault)
        except BaseException:
            if key is not None:
                store.release(key)
            raise
        if key is not None:
            if reply.saved:
                store.save(
                    key,
                    status=reply.status,
                    body=reply.body,
                    headers=reply.headers,
                    request_id=request_id,
                    now=time.time(),
                )
            else:
                store.release(key)
        return _Reply(
            reply.status,
            reply.body,
            reply.headers,
            drop=fault is not None and fault.fault is Fault.DROP_AFTER_WRITE,
        )

    def _rate_limit(self, api_key: ApiKey, route: Route) -> None:
        """Take a token from the account+mode bucket and from the account+mode+endpoint bucket."""
        per_second = self._rate_limits[api_key.livemode]
        if per_second is None:
            return
        limits: list[tuple[str | None, float]] = [(None, per_second)]
        if self._endpoint_rate_limit is not None:
            limits.append((route.name, self._endpoint_rate_limit))
        waits = []
        for endpoint, rate in limits:
            key = (api_key.account, api_key.livemode, endpoint)
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = TokenBucket(rate, time.monotonic)
            waits.append(bucket.take())
        # A request refused by either limiter counts against both, as on Stripe (the stricter limits
        # "also count against the basic limits").
        wait = max(waits)
        if wait:
            raise errors.rate_limited(retry_after_seconds(wait))

    def _replay(self, saved: Saved, fault: Triggered | None) -> _Reply:
        headers = {**saved.headers, "Idempotent-Replayed": "true", "Original-Request": saved.request_id}
        drop = fault is not None and fault.fault is Fault.DROP_AFTER_WRITE
        return _Reply(saved.status, saved.body, headers, drop=drop)

    async def _execute(
        self,
        route: Route,
        path_args: dict[str, str],
        raw: forms.FormDict,
        state: AccountState,
        request_id: str,
        fault: Triggered | None,
    ) -> _Executed:
        if fault is not None and fault.fault is Fault.TIMEOUT:
            await asyncio.sleep(fault.delay_seconds)
        try:
            params = route.schema.parse(raw)
            check_expand(route.returns, params.get("expand") or [])
        except StripeError as error:
            # Validation happens before the endpoint begins executing: nothing to save.
            return _Executed.error(error, request_id, saved=False)
        if fault is not None and fault.fault is Fault.SERVER_ERROR_SAVED:
            return _Executed.error(errors.server_error(saved=True), request_id, saved=True)
        profile = self._accounts[state.account_id]
        ctx = Ctx(profile, state, int(self._clock()), path_args, self.world)
        try:
            result = route.handler(ctx, params)
            if params.get("expand"):
                result = expand(ctx, copy.deepcopy(result), params["expand"])
            body = _json(result)
        except StripeError as error:
            return _Executed.error(error, request_id, saved=True)
        except Exception:
            logger.exception("stripe emulator endpoint %s failed", route.name)
            return _Executed.error(errors.server_error(saved=True), request_id, saved=True)
        return _Executed(200, body, {}, saved=True)

    # --- control endpoints ------------------------------------------------------------------------

    async def _control(self, request: web.Request) -> web.StreamResponse:
        """Unauthenticated helpers for demos and other processes: keys, faults, limits, latency, state and stats."""
        action = request.path.removeprefix("/_emulator/").strip("/")
        query = request.query
        form = await request.post() if request.method == "POST" else query
        try:
            if action == "state" and request.method == "GET":
                livemode = query.get("livemode")
                account = query.get("account") or next(iter(self._accounts))
                return web.json_response(self.state(account, None if livemode is None else livemode == "true"))
            if action == "stats" and request.method == "GET":
                return web.json_response(
                    {
                        "request_count": self.request_count,
                        "endpoints": dict(self.endpoint_counts),
                        "statuses": {str(k): v for k, v in self.status_counts.items()},
                        "faults_fired": {f.value: n for f, n in self.faults.fired.items()},
                        "latency": self.latency.describe(),
                    }
                )
            if action == "contract" and request.method == "GET":
                return web.json_response(
                    {"checked": self.contract_checked, "violations": [asdict(v) for v in self.violations]}
                )
            if action == "requests" and request.method == "GET":
                limit = int(query.get("limit", "100"))
                return web.json_response([asdict(r) for r in list(self.requests)[-limit:]])
            if action == "keys" and request.method == "POST":
                account_id = self.add_api_key(
                    str(form["api_key"]), str(form["account"]) if form.get("account") else None
                )
                return web.json_response({"account": account_id})
            if action == "faults" and request.method == "POST":
                times = str(form.get("times", "1"))
                self.inject(
                    Fault(str(form["fault"])),
                    method=str(form["method"]) if form.get("method") else None,
                    path_prefix=str(form["path_prefix"]) if form.get("path_prefix") else None,
                    times=None if times == "" else int(times),
                    delay_seconds=float(str(form.get("delay_seconds", DEFAULT_TIMEOUT_SECONDS))),
                )
                return web.json_response({"ok": True})
            if action == "faults" and request.method == "DELETE":
                self.clear_faults()
                return web.json_response({"ok": True})
            if action == "rate_limit" and request.method == "POST":
                value = str(form.get("per_second", ""))
                self.set_rate_limit(float(value) if value else None)
                if "endpoint_per_second" in form:
                    endpoint = str(form["endpoint_per_second"])
                    self.set_endpoint_rate_limit(float(endpoint) if endpoint else None)
                return web.json_response({"ok": True})
            if action == "latency" and request.method == "POST":
                self.latency = parse_latency(str(form["profile"]))
                return web.json_response({"latency": self.latency.describe()})
        except (KeyError, ValueError, StopIteration) as exc:
            return web.json_response({"error": f"bad control request: {exc!r}"}, status=400)
        return web.json_response({"error": f"unknown control endpoint {request.method} {request.path}"}, status=404)


@dataclass
class _Executed:
    status: int
    body: bytes
    headers: dict[str, str]
    saved: bool

    @classmethod
    def error(cls, error: StripeError, request_id: str, *, saved: bool) -> _Executed:
        return cls(error.status, _json(error.body(request_id)), dict(error.headers), saved)
