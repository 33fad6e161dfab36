"""The aiohttp application and the request pipeline that every ``/v1`` request goes through.

Every ``/v1`` request goes through the same pipeline, in the order Stripe applies it: authentication,
routing, rate limiting, then (a write) the locks of the objects it changes (a write refused there meets the
idempotency layer, which may save the refusal: locks.py), an injected fault that refuses it before the endpoint,
form decoding, the idempotency layer (the key claimed as the request arrives), the latency, parameter validation
(failures there are not saved under the key), then the endpoint itself (whose result, errors included, is saved
under the key). The pipeline serves one ``StripeEmulator`` (server.py): it reads the
emulator's keys, accounts, limits, latency and faults, and writes its request log and counters.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web
from stripe._api_version import _ApiVersion

from . import contract, errors, forms
from .common import Ctx, check_expand, expand
from .errors import StripeError
from .faults import Fault, Triggered
from .idempotency import IdempotencyStore, Saved, fingerprint
from .locks import lock_timeout, objects_written
from .ratelimit import TokenBucket, retry_after_seconds
from .routes import ROUTES, Route, Router
from .state import AccountState

if TYPE_CHECKING:
    from .server import StripeEmulator

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


EMULATOR: web.AppKey[StripeEmulator] = web.AppKey("stripe_emulator")
ROUTER = Router(ROUTES)


def build_app(emulator: StripeEmulator) -> web.Application:
    """The Stripe API: every path goes through the pipeline but ``/_emulator/...``, the control endpoints that
    admin.add_admin_routes adds afterwards (aiohttp, since 3.10, matches their fixed prefix before this catch-all)."""
    app = web.Application()
    app[EMULATOR] = emulator
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


async def handle(request: web.Request) -> web.StreamResponse:
    emulator = request.app[EMULATOR]
    started = time.monotonic()
    request_id = emulator._ids.new("req")
    info: dict[str, Any] = {"endpoint": None, "account": None, "replayed": False, "fault": None}
    version = request.headers.get("Stripe-Version")
    emulator.api_versions[version] += 1
    if emulator.contract_mode:
        await _check_contract(emulator, request, request_id)
    emulator.in_flight += 1
    emulator.peak_in_flight = max(emulator.peak_in_flight, emulator.in_flight)
    try:
        reply = await _process(emulator, request, request_id, info)
    except StripeError as error:
        reply = _error_reply(error, request_id)
    except Exception:
        logger.exception("stripe emulator failed on %s %s", request.method, request.path)
        reply = _error_reply(errors.server_error(saved=False), request_id)
    finally:
        emulator.in_flight -= 1
    key = request.headers.get("Idempotency-Key")
    body: str | None = None
    if emulator.record_bodies:
        body = await request.text() if request.method == "POST" else request.query_string
    _record(emulator, request, request_id, reply, key, info, time.monotonic() - started, body)
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
    emulator: StripeEmulator,
    request: web.Request,
    request_id: str,
    reply: _Reply,
    key: str | None,
    info: dict[str, Any],
    seconds: float,
    body: str | None = None,
) -> None:
    emulator.request_count += 1
    if info["endpoint"] is not None:
        emulator.endpoint_counts[info["endpoint"]] += 1
    status = None if reply.drop else reply.status
    if status is not None:
        emulator.status_counts[status] += 1
    emulator.requests.append(
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


async def _check_contract(emulator: StripeEmulator, request: web.Request, request_id: str) -> None:
    problems: list[str] = []
    version = request.headers.get("Stripe-Version")
    if version != API_VERSION:
        problems.append(f"Stripe-Version {version!r}: the contract (the SDK's types) is API version {API_VERSION!r}")
    matched = ROUTER.match(request.method, request.path)
    endpoint = None
    if matched is None:
        problems.append("no such endpoint in the emulator (and so none the operator is known to need)")
    else:
        endpoint = matched[0].name
        try:
            form = await _read_params(request)
        except StripeError as error:
            problems.append(f"undecodable form: {error.message}")
        else:
            problems.extend(str(v) for v in contract.check(request.method, matched[0].template, form))
    emulator.contract_checked += 1
    if problems:
        emulator.violations.append(
            ContractViolation(request_id, request.method, request.path, endpoint, tuple(problems))
        )


async def _locking(
    emulator: StripeEmulator, api_key: ApiKey, request: web.Request
) -> contextlib.AbstractContextManager[None]:
    """The locks of a write (locks.py); nothing for reads, or for a body the pipeline refuses anyway."""
    if request.method not in ("POST", "DELETE"):
        return contextlib.nullcontext()
    try:
        params = await _read_params(request)
    except Exception:  # a body the pipeline refuses with its own error
        return contextlib.nullcontext()
    objects = objects_written(request.method, request.path, params, emulator.object_locks.reading)
    if not objects:
        return contextlib.nullcontext()
    return emulator.object_locks.holding(api_key.account, api_key.livemode, objects)


def _authenticate(emulator: StripeEmulator, request: web.Request) -> ApiKey:
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
    found = emulator._keys.get(key)
    if found is None or found.revoked:
        raise errors.invalid_api_key(key)
    connected = request.headers.get("Stripe-Account")
    if connected and connected != found.account:
        raise errors.no_account_access(key, connected)
    version = request.headers.get("Stripe-Version")
    if version is not None and version not in KNOWN_API_VERSIONS:
        raise errors.invalid_api_version(version)
    return found


async def _read_params(request: web.Request) -> forms.FormDict:
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


async def _process(emulator: StripeEmulator, request: web.Request, request_id: str, info: dict[str, Any]) -> _Reply:
    api_key = _authenticate(emulator, request)
    info["account"] = api_key.account
    method = request.method
    matched = ROUTER.match(method, request.path)
    if matched is None:
        raise errors.unrecognized_url(method, request.path)
    route, path_args = matched
    info["endpoint"] = route.name
    if not api_key.allows(route.permission):
        raise errors.missing_permission(api_key.key, api_key.account, route.permission)
    _rate_limit(emulator, api_key, route)
    # A write holds the objects it changes from here to its reply, its latency included (locks.py); a request
    # refused before (its key, its route, the rate limit) holds none.
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(await _locking(emulator, api_key, request))
        except StripeError as refusal:
            return await _refused(emulator, request, request_id, api_key, refusal, info)
        return await _serve(emulator, request, request_id, info, api_key, route, path_args)


def _begin(
    emulator: StripeEmulator, api_key: ApiKey, request: web.Request, raw: forms.FormDict
) -> tuple[IdempotencyStore, str | None, Saved | None]:
    """The idempotency layer for a request: its account's store, its key (a POST's, if any), and the result saved
    under the key, if any; otherwise the key, if any, is claimed (it raises a 409, or an idempotency_error)."""
    store = emulator._idempotency[(api_key.account, api_key.livemode)]
    key = request.headers.get("Idempotency-Key") if request.method == "POST" else None
    if key is None:
        return store, None, None
    return store, key, store.begin(key, f"{request.method} {request.path}", fingerprint(raw), time.time())


async def _refused(
    emulator: StripeEmulator,
    request: web.Request,
    request_id: str,
    api_key: ApiKey,
    refusal: StripeError,
    info: dict[str, Any],
) -> _Reply:
    """A write whose objects another request holds: the idempotency layer's answer for its key if it has one (a
    replay, a 409), else the lock_timeout, saved under the key if the emulator's locks say so (locks.py)."""
    store, key, saved = _begin(emulator, api_key, request, await _read_params(request))
    if key is None:
        emulator.object_locks.refused += 1
        raise refusal
    if saved is not None:
        info["replayed"] = True
        return _replay(saved, None)
    emulator.object_locks.refused += 1
    if not emulator.object_locks.refusals_saved:
        store.release(key)
        raise refusal
    reply = _error_reply(lock_timeout(saved=True), request_id)
    store.save(key, status=reply.status, body=reply.body, headers=reply.headers, request_id=request_id, now=time.time())
    return reply


async def _serve(
    emulator: StripeEmulator,
    request: web.Request,
    request_id: str,
    info: dict[str, Any],
    api_key: ApiKey,
    route: Route,
    path_args: dict[str, str],
) -> _Reply:
    """A request the edge let through: an injected fault that refuses it before the endpoint, or its idempotency key
    claimed, its latency, then the endpoint (or the key's saved result)."""
    method = request.method
    # The time to serve it, drawn once the edge let it through. Stripe publishes no latencies (latency.py), nor
    # whether a refused request is answered sooner: the emulator answers a 429 or a refused key at once. Each
    # request waits on its own (other requests are served meanwhile).
    delay = emulator.latency.sample()
    fault = emulator.faults.pick(method, request.path, api_key.account)
    if fault is not None:
        info["fault"] = fault.fault.value
        if fault.fault in (Fault.RATE_LIMIT, Fault.SERVER_ERROR, Fault.DROP_BEFORE_WRITE):
            # Refused before the idempotency layer (faults.py): the key is neither claimed nor saved.
            if delay > 0:
                await asyncio.sleep(delay)
            if fault.fault is Fault.RATE_LIMIT:
                raise errors.rate_limited(1)
            if fault.fault is Fault.SERVER_ERROR:
                raise errors.server_error(saved=False)
            return _Reply(0, b"", {}, drop=True)
    raw = await _read_params(request)
    # Stripe's idempotency layer runs before the endpoint, so the key is claimed (or its saved result found) as the
    # request arrives: another request with it meanwhile is a 409, whatever else it meets (locks.py).
    store, key, saved = _begin(emulator, api_key, request, raw)
    claimed = key if key is not None and saved is None else None
    try:
        if delay > 0:
            await asyncio.sleep(delay)
        if saved is not None:
            info["replayed"] = True
            return _replay(saved, fault)
        state = emulator._mode_state(api_key.account, api_key.livemode)
        executed = await _execute(emulator, route, path_args, raw, state, request_id, fault)
    except BaseException:
        if claimed is not None:
            store.release(claimed)
        raise
    if claimed is not None:
        if executed.saved:
            store.save(
                claimed,
                status=executed.status,
                body=executed.body,
                headers=executed.headers,
                request_id=request_id,
                now=time.time(),
            )
        else:
            store.release(claimed)
    drop = fault is not None and fault.fault is Fault.DROP_AFTER_WRITE
    return _Reply(executed.status, executed.body, executed.headers, drop=drop)


def _rate_limit(emulator: StripeEmulator, api_key: ApiKey, route: Route) -> None:
    """Take a token from the account+mode bucket and from the account+mode+endpoint bucket."""
    per_second = emulator._rate_limits[api_key.livemode]
    if per_second is None:
        return
    limits: list[tuple[str | None, float]] = [(None, per_second)]
    if emulator._endpoint_rate_limit is not None:
        limits.append((route.name, emulator._endpoint_rate_limit))
    waits = []
    for endpoint, rate in limits:
        key = (api_key.account, api_key.livemode, endpoint)
        bucket = emulator._buckets.get(key)
        if bucket is None:
            bucket = emulator._buckets[key] = TokenBucket(rate, time.monotonic)
        waits.append(bucket.take())
    # A request refused by either limiter counts against both, as on Stripe (the stricter limits
    # "also count against the basic limits").
    wait = max(waits)
    if wait:
        raise errors.rate_limited(retry_after_seconds(wait))


def _replay(saved: Saved, fault: Triggered | None) -> _Reply:
    headers = {**saved.headers, "Idempotent-Replayed": "true", "Original-Request": saved.request_id}
    drop = fault is not None and fault.fault is Fault.DROP_AFTER_WRITE
    return _Reply(saved.status, saved.body, headers, drop=drop)


async def _execute(
    emulator: StripeEmulator,
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
    profile = emulator._accounts[state.account_id]
    ctx = Ctx(profile, state, int(emulator._clock()), path_args, emulator.world)
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


@dataclass
class _Executed:
    status: int
    body: bytes
    headers: dict[str, str]
    saved: bool

    @classmethod
    def error(cls, error: StripeError, request_id: str, *, saved: bool) -> _Executed:
        return cls(error.status, _json(error.body(request_id)), dict(error.headers), saved)
