"""The HTTP control endpoints under ``/_emulator/``: the Python control API for another process.

Unauthenticated, for demos and for an emulator served from its own process (``python -m
m3stripe.testing.stripe_emulator``): add keys, inject and clear faults, set the rate limits and the
latency profile, and read the state, the counters, the contract violations and the request log.
"""

from __future__ import annotations

from dataclasses import asdict

from aiohttp import web

from .app import EMULATOR
from .faults import DEFAULT_TIMEOUT_SECONDS, Fault
from .latency import parse as parse_latency


async def control(request: web.Request) -> web.StreamResponse:
    """Unauthenticated helpers for demos and other processes: keys, faults, limits, latency, state and stats."""
    emulator = request.app[EMULATOR]
    action = request.path.removeprefix("/_emulator/").strip("/")
    query = request.query
    form = await request.post() if request.method == "POST" else query
    try:
        if action == "state" and request.method == "GET":
            livemode = query.get("livemode")
            account = query.get("account") or next(iter(emulator.accounts()))
            return web.json_response(emulator.state(account, None if livemode is None else livemode == "true"))
        if action == "stats" and request.method == "GET":
            return web.json_response(
                {
                    "request_count": emulator.request_count,
                    "endpoints": dict(emulator.endpoint_counts),
                    "statuses": {str(k): v for k, v in emulator.status_counts.items()},
                    "faults_fired": {f.value: n for f, n in emulator.faults.fired.items()},
                    "latency": emulator.latency.describe(),
                    "rate_limits": emulator.rate_limits,
                    "locks": {
                        "reading": emulator.object_locks.reading,
                        "refusals_saved": emulator.object_locks.refusals_saved,
                        "refused": emulator.object_locks.refused,
                    },
                }
            )
        if action == "contract" and request.method == "GET":
            return web.json_response(
                {"checked": emulator.contract_checked, "violations": [asdict(v) for v in emulator.violations]}
            )
        if action == "requests" and request.method == "GET":
            limit = int(query.get("limit", "100"))
            return web.json_response([asdict(r) for r in list(emulator.requests)[-limit:]])
        if action == "keys" and request.method == "POST":
            account_id = emulator.add_api_key(
                str(form["api_key"]), str(form["account"]) if form.get("account") else None
            )
            return web.json_response({"account": account_id})
        if action == "faults" and request.method == "POST":
            times = str(form.get("times", "1"))
            emulator.inject(
                Fault(str(form["fault"])),
                method=str(form["method"]) if form.get("method") else None,
                path_prefix=str(form["path_prefix"]) if form.get("path_prefix") else None,
                times=None if times == "" else int(times),
                delay_seconds=float(str(form.get("delay_seconds", DEFAULT_TIMEOUT_SECONDS))),
            )
            return web.json_response({"ok": True})
        if action == "faults" and request.method == "DELETE":
            emulator.clear_faults()
            return web.json_response({"ok": True})
        if action == "rate_limit" and request.method == "POST":
            emulator.set_rate_limit(_per_second(form.get("per_second")))
            if "endpoint_per_second" in form:
                emulator.set_endpoint_rate_limit(_per_second(form["endpoint_per_second"]))
            return web.json_response({"ok": True})
        if action == "latency" and request.method == "POST":
            emulator.latency = parse_latency(str(form["profile"]))
            return web.json_response({"latency": emulator.latency.describe()})
    except (KeyError, ValueError, StopIteration) as exc:
        return web.json_response({"error": f"bad control request: {exc!r}"}, status=400)
    return web.json_response({"error": f"unknown control endpoint {request.method} {request.path}"}, status=404)


def _per_second(value: object) -> float | None:
    """A limit as the command line takes it (`--rate-limit`): empty or 0 is none (the setters refuse a negative one)."""
    text = "" if value is None else str(value)
    return (float(text) or None) if text else None


def add_admin_routes(app: web.Application) -> None:
    """Every method of every ``/_emulator/...`` path; the rest of the paths are the API's (app.py)."""
    app.router.add_route("*", "/_emulator/{action:.*}", control)
