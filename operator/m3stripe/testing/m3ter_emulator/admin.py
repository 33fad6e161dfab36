"""Seeding without Python: a fixtures loader and an unauthenticated ``/_emulator`` admin API.

Both exist for running the emulator as a separate process (``python -m ...``), e.g. next to an
operator deployed in a test cluster, where tests cannot call the seeding methods directly.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from aiohttp import web

from . import render
from .app import EMULATOR
from .state import M3terState

if TYPE_CHECKING:
    from .server import M3terEmulator


def load_fixtures(state: M3terState, data: Mapping[str, Any]) -> dict[str, list[str]]:
    """Seed from ``{"clients": [...], "accounts": [...], "bills": [...], "mappings": [...], "currencies": [...]}``.

    Entries take the keyword arguments of the matching ``add_*`` method plus ``organization_id``
    (defaulting to the top-level ``organization_id``). Returns the created ids per kind.
    """
    default_org = data.get("organization_id")
    created: dict[str, list[str]] = {"accounts": [], "bills": [], "mappings": []}

    def split(entry: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        kwargs = dict(entry)
        org = kwargs.pop("organization_id", default_org)
        if not org:
            raise ValueError(f"no organization_id for fixture entry {entry!r}")
        return str(org), kwargs

    for client in data.get("clients", []):
        client = dict(client)
        client.setdefault("organization_id", default_org)
        state.add_client(**client)
    for entry in data.get("accounts", []):
        org, kwargs = split(entry)
        created["accounts"].append(state.add_account(org, **kwargs))
    for entry in data.get("bills", []):
        org, kwargs = split(entry)
        created["bills"].append(state.add_bill(org, **kwargs))
    for entry in data.get("mappings", []):
        org, kwargs = split(entry)
        created["mappings"].append(state.add_external_mapping(org, **kwargs))
    for entry in data.get("currencies", []):
        org, kwargs = split(entry)
        created.setdefault("currencies", []).append(state.set_currency(org, **kwargs))
    return created


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except json.JSONDecodeError:
        raise web.HTTPBadRequest(reason="body must be JSON") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(reason="body must be a JSON object")
    return body


def _call(action: Callable[[], object]) -> web.Response:
    """Run a seeding call, mapping Python errors to the status an admin caller can act on."""
    try:
        result = action()
    except (TypeError, ValueError) as exc:
        return web.json_response(render.error(str(exc)), status=400)
    except KeyError as exc:
        return web.json_response(render.error(str(exc)), status=404)
    return web.json_response(result)


async def fixtures(request: web.Request) -> web.Response:
    body = await _body(request)
    return _call(lambda: load_fixtures(request.app[EMULATOR], body))


async def add_account(request: web.Request) -> web.Response:
    body, org = await _body(request), request.match_info["org_id"]
    return _call(lambda: {"id": request.app[EMULATOR].add_account(org, **body)})


async def add_bill(request: web.Request) -> web.Response:
    body, org = await _body(request), request.match_info["org_id"]
    return _call(lambda: {"id": request.app[EMULATOR].add_bill(org, **body)})


async def bill_action(request: web.Request) -> web.Response:
    body = await _body(request)
    emulator, org, bill_id = request.app[EMULATOR], request.match_info["org_id"], request.match_info["id"]
    actions = {
        "regenerate": lambda: emulator.regenerate_bill(org, bill_id, **body),
        "approve": lambda: emulator.approve_bill(org, bill_id),
        "lock": lambda: emulator.lock_bill(org, bill_id),
        "corrupt": lambda: emulator.corrupt_bill(org, bill_id, **body),
        "hide-from-search": lambda: _hidden(emulator, org, bill_id),
    }
    action = actions.get(request.match_info["action"])
    if action is None:
        raise web.HTTPNotFound(reason=f"unknown bill action; use one of {sorted(actions)}")
    return _call(lambda: {"version": action()})


def _hidden(emulator: M3terEmulator, org: str, bill_id: str) -> int:
    version = emulator.get_bill(org, bill_id).version  # 404 for an unknown Bill, as the other actions
    emulator.hide_from_search(bill_id)
    return version


async def add_mapping(request: web.Request) -> web.Response:
    body, org = await _body(request), request.match_info["org_id"]
    return _call(lambda: {"id": request.app[EMULATOR].add_external_mapping(org, **body)})


async def set_currency(request: web.Request) -> web.Response:
    body, org, code = await _body(request), request.match_info["org_id"], request.match_info["code"]
    return _call(lambda: {"id": request.app[EMULATOR].set_currency(org, code, **body)})


async def faults(request: web.Request) -> web.Response:
    body = await _body(request)
    count = body.pop("count", 1)

    def inject() -> dict[str, int]:
        request.app[EMULATOR].inject_server_errors(count, **body)
        return {"queued": count}

    return _call(inject)


async def expire_tokens(request: web.Request) -> web.Response:
    body = await _body(request)
    return _call(lambda: {"expired": request.app[EMULATOR].expire_tokens(**body)})


async def revoke_tokens(request: web.Request) -> web.Response:
    body = await _body(request)
    return _call(lambda: {"revoked": request.app[EMULATOR].revoke_tokens(**body)})


async def rate_limits(request: web.Request) -> web.Response:
    """Set the rate limits (``organization_requests_per_second``, ``ip_requests_per_window``; null: off)."""
    body = await _body(request)
    emulator = request.app[EMULATOR]
    allowed = {"organization_requests_per_second", "ip_requests_per_window", "ip_window_seconds"}
    unknown = set(body) - allowed
    if unknown:
        return web.json_response(render.error(f"unknown settings {sorted(unknown)}; use {sorted(allowed)}"), status=400)
    for key, value in body.items():
        setattr(emulator, key, value)
    return web.json_response({key: getattr(emulator, key) for key in sorted(allowed)})


async def stats(request: web.Request) -> web.Response:
    emulator = request.app[EMULATOR]
    return web.json_response(
        {
            "tokensIssued": emulator.tokens_issued,
            "requests": len(emulator.requests),
            "faultsServed": emulator.faults_served,
            "throttled": emulator.throttled,
        }
    )


def add_admin_routes(app: web.Application) -> None:
    org = "/_emulator/organizations/{org_id}"
    app.router.add_post("/_emulator/fixtures", fixtures)
    app.router.add_post(f"{org}/accounts", add_account)
    app.router.add_post(f"{org}/bills", add_bill)
    app.router.add_post(f"{org}/bills/{{id}}/{{action}}", bill_action)
    app.router.add_post(f"{org}/externalmappings", add_mapping)
    app.router.add_put(f"{org}/currencies/{{code}}", set_currency)
    app.router.add_post("/_emulator/faults", faults)
    app.router.add_post("/_emulator/tokens/expire", expire_tokens)
    app.router.add_post("/_emulator/tokens/revoke", revoke_tokens)
    app.router.add_post("/_emulator/ratelimits", rate_limits)
    app.router.add_get("/_emulator/stats", stats)
