"""The aiohttp application: m3ter's REST paths, OAuth, auth checks, fault injection and latency."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from aiohttp import web

from . import render
from .state import (
    DEFAULT_PAGE_SIZE,
    PAGE_SIZE_LIMITS,
    UNAUTHORIZED_STATUS,
    BillRecord,
    CurrencyRecord,
    EmulatorError,
    MappingRecord,
    decode_next_token,
    encode_next_token,
    paginate,
)

if TYPE_CHECKING:
    from .server import M3terEmulator

EMULATOR: web.AppKey[M3terEmulator] = web.AppKey("m3ter_emulator")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(body, status=status, headers=headers)


def _emulator(request: web.Request) -> M3terEmulator:
    return request.app[EMULATOR]


# -- query parsing (the SDK sends arrays comma-joined and booleans as true/false) -------------


def _page_size(request: web.Request, endpoint: str) -> int:
    """``pageSize`` within the endpoint's bounds; m3ter answers 400 with ``{"message": ...}`` otherwise."""
    maximum = PAGE_SIZE_LIMITS[endpoint]
    raw = request.query.get("pageSize")
    if raw is None:
        return DEFAULT_PAGE_SIZE
    try:
        size = int(raw)
    except ValueError:
        raise EmulatorError(400, f"pageSize must be an integer, got {raw!r}") from None
    if not 1 <= size <= maximum:
        raise EmulatorError(400, f"pageSize must be between 1 and {maximum}")
    return size


def _list_param(request: web.Request, name: str) -> list[str] | None:
    values = request.query.getall(name, [])
    if not values:
        return None
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


def _bool_param(request: web.Request, name: str) -> bool | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    if raw.lower() not in ("true", "false"):
        raise EmulatorError(400, f"{name} must be true or false, got {raw!r}")
    return raw.lower() == "true"


def _page_body(items: list[dict[str, Any]], next_token: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"data": items}
    if next_token:
        body["nextToken"] = next_token
    return body


# -- middleware ------------------------------------------------------------------------------


@web.middleware
async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Record the request (and its status), apply rate limits, latency and injected faults."""
    emulator = _emulator(request)
    emulator.record_request(request.method, request.path, dict(request.query))
    # Taken right after recording (no await in between), so it is this request's entry even when a
    # subclass overrides record_request (the benchmark counts requests that way).
    recorded = emulator.requests[-1] if emulator.requests else None
    response = await _answer(emulator, request, handler)
    if recorded is not None and recorded.status is None:
        recorded.status = response.status
    return response


async def _answer(emulator: M3terEmulator, request: web.Request, handler: Handler) -> web.StreamResponse:
    is_api = request.path.startswith("/organizations/")
    is_token = request.path == "/oauth/token"
    if (is_api or is_token) and not emulator.admit(_rate_limited_org(emulator, request), request.remote or ""):
        # m3ter's Config API limits page documents the 429; the body is m3ter's error shape.
        return _json(render.error("Too Many Requests"), status=429)
    if emulator.latency_seconds > 0:
        await asyncio.sleep(emulator.latency_seconds)
    fault = emulator.take_fault(token_endpoint=is_token) if is_api or is_token else None
    if fault is not None:
        headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else None
        return _json(render.error(f"Injected fault ({fault.status})"), status=fault.status, headers=headers)
    return await handler(request)


def _rate_limited_org(emulator: M3terEmulator, request: web.Request) -> str | None:
    """The Organization a request counts against: the path's, or for a token request its client's."""
    if request.path.startswith("/organizations/"):
        parts = request.path.split("/")
        return parts[2] if len(parts) > 2 and parts[2] else None
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        client_id = base64.b64decode(encoded, validate=True).decode().partition(":")[0]
    except (binascii.Error, UnicodeDecodeError):
        return None
    return emulator.organization_of_client(client_id)


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """m3ter answers errors with a JSON body carrying ``message``; so do we."""
    try:
        return await handler(request)
    except EmulatorError as exc:
        return _json(render.error(exc.message), status=exc.status)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _json(render.error(exc.reason), status=exc.status)


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bearer token required for every /organizations/{org_id} path, and only for its own org."""
    if not request.path.startswith("/organizations/"):
        return await handler(request)
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise EmulatorError(UNAUTHORIZED_STATUS, "Unauthorized: a bearer token is required")
    issued = _emulator(request).authenticate(token.strip())
    org_id = request.match_info.get("org_id") or request.path.split("/")[2]
    if org_id != issued.organization_id:
        raise EmulatorError(403, f"Access denied: token is not valid for organization {org_id}")
    return await handler(request)


# -- OAuth -----------------------------------------------------------------------------------


async def oauth_token(request: web.Request) -> web.Response:
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        raise EmulatorError(401, "Missing Basic authentication")
    try:
        client_id, sep, client_secret = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise EmulatorError(401, "Malformed Basic authentication") from None
    if not sep:
        raise EmulatorError(401, "Malformed Basic authentication")
    grant_type = await _grant_type(request)
    if grant_type != "client_credentials":
        raise EmulatorError(400, f"Unsupported grant_type {grant_type!r}")
    emulator = _emulator(request)
    issued = emulator.issue_token(client_id, client_secret)
    return _json(
        {
            "access_token": issued.token,
            "token_type": "Bearer",
            "expires_in": emulator.token_ttl(client_id),
        }
    )


async def _grant_type(request: web.Request) -> str | None:
    # The SDK posts JSON; curl users post a form. Accept both.
    if request.content_type == "application/x-www-form-urlencoded":
        return (await request.post()).get("grant_type")  # type: ignore[return-value]
    try:
        body = await request.json()
    except json.JSONDecodeError:
        raise EmulatorError(400, "Request body must be JSON") from None
    return body.get("grant_type") if isinstance(body, dict) else None


# -- Accounts --------------------------------------------------------------------------------


async def list_accounts(request: web.Request) -> web.Response:
    org = _emulator(request).existing_org(request.match_info["org_id"])
    ids, codes = _list_param(request, "ids"), _list_param(request, "codes")
    if ids is not None:
        records = sorted((org.accounts[i] for i in set(ids) if i in org.accounts), key=lambda r: r.seq)
    else:
        records = org.account_order
    wanted_codes = set(codes) if codes is not None else None
    page, next_token = paginate(
        "accounts",
        records,
        page_size=_page_size(request, "accounts"),
        next_token=request.query.get("nextToken"),
        predicate=None if wanted_codes is None else (lambda r: r.code in wanted_codes),
    )
    return _json(_page_body([render.account(r) for r in page], next_token))


async def get_account(request: web.Request) -> web.Response:
    record = _emulator(request).get_account(request.match_info["org_id"], request.match_info["id"])
    return _json(render.account(record))


# -- Bills -----------------------------------------------------------------------------------


async def list_bills(request: web.Request) -> web.Response:
    emulator = _emulator(request)
    org_id = request.match_info["org_id"]
    ids = _list_param(request, "ids")
    account_id = request.query.get("accountId")
    if ids is not None:
        org = emulator.existing_org(org_id)
        records: Sequence[BillRecord] = sorted((org.bills[i] for i in set(ids) if i in org.bills), key=lambda r: r.seq)
    else:
        records = emulator.bills_for_listing(org_id, account_id)
    status = request.query.get("status")
    if status is not None and status not in ("PENDING", "APPROVED"):
        raise EmulatorError(400, f"status must be PENDING or APPROVED, got {status!r}")
    include_locked = _bool_param(request, "locked")
    bill_date = request.query.get("billDate")
    bill_date_start = request.query.get("billDateStart")
    bill_date_end = request.query.get("billDateEnd")

    def wanted(record: BillRecord) -> bool:
        if account_id is not None and record.account_id != account_id:
            return False
        if status is not None and record.status != status:
            return False
        if include_locked is False and record.locked:
            return False
        day = record.bill_date.isoformat()
        if bill_date is not None and day != bill_date:
            return False
        if bill_date_start is not None and day < bill_date_start:
            return False
        return not (bill_date_end is not None and day >= bill_date_end)

    page_size = _page_size(request, "bills")
    if ids is not None and emulator.ids_page_cap is not None:
        # m3ter does not promise that a page holds pageSize Bills: a cursor may end a page early.
        page_size = min(page_size, emulator.ids_page_cap)
    page, next_token = paginate(
        "bills",
        records,
        page_size=page_size,
        next_token=request.query.get("nextToken"),
        predicate=wanted,
    )
    if ids is not None and not emulator.ids_next_token:
        next_token = None
    # The list only carries billTotal when asked to (includeBillTotal), as the real endpoint does.
    include_total = _bool_param(request, "includeBillTotal") is True
    include_lines = _bool_param(request, "excludeLineItems") is not True
    items = [render.bill(r, include_total=include_total, include_lines=include_lines) for r in page]
    return _json(_page_body(items, next_token))


# Search Bills (https://docs.m3ter.com/api/bill/search-bills): ``searchQuery`` terms joined by "$" with the
# comparators > >= : < <= ~ over the documented parameters only (dtLastModified is not among them), ``operator``
# AND/OR, ``sortBy`` "any field available on the Bill entity", ``sortOrder`` ASC/DESC, ``fromDocument`` for
# paging and ``pageSize`` 1..100 (default 10). m3ter does not document what ``fromDocument`` counts nor how
# the response's ``nextToken`` relates to it (SDK BillSearchResponse.next_token is Optional): here it is the
# offset of the first document, and ``nextToken`` carries the next offset (as a string) while more documents
# follow, unless ``search_next_token`` is off (then it never comes, as real m3ter may answer).
SEARCH_QUERY_FIELDS = {
    "accountId": "accountId",
    "locked": "locked",
    "billDate": "billDate",
    "startDate": "startDate",
    "endDate": "endDate",
    "dueDate": "dueDate",
    "billingFrequency": "billingFrequency",
    "id": "id",
    "createdBy": "createdBy",
    "dtCreated": "dtCreated",
    "lastModifiedBy": "lastModifiedBy",
    "ids": "id",
}
_COMPARATORS = (">=", "<=", ">", "<", ":", "~")


def _search_terms(query: str) -> list[tuple[str, str, str]]:
    terms: list[tuple[str, str, str]] = []
    for raw in query.split("$"):
        if not raw:
            continue
        for comparator in _COMPARATORS:
            name, found, value = raw.partition(comparator)
            if found and name:
                break
        else:
            raise EmulatorError(400, f"searchQuery term {raw!r} has no comparator (> >= : < <= ~)")
        if name not in SEARCH_QUERY_FIELDS:
            raise EmulatorError(
                400, f"searchQuery parameter {name!r} is not searchable; use one of {sorted(SEARCH_QUERY_FIELDS)}"
            )
        terms.append((name, comparator, value))
    return terms


def _term_matches(body: dict[str, Any], name: str, comparator: str, value: str) -> bool:
    actual = body.get(SEARCH_QUERY_FIELDS[name])
    text = "" if actual is None else str(actual).lower() if isinstance(actual, bool) else str(actual)
    if name == "ids":
        return text in value.split(",")
    if comparator == ":":
        return text == value
    if comparator == "~":
        return text.startswith(value)
    if actual is None:
        return False
    return {">": text > value, ">=": text >= value, "<": text < value, "<=": text <= value}[comparator]


_SORT_ATTRIBUTES = {"dtLastModified": "dt_last_modified", "dtCreated": "dt_created"}


def _record_time(record: BillRecord, attribute: str, field_name: str) -> Any:
    """The timestamp text render.bill() would give ``field_name``, read from the record (raw edits win)."""
    if record.json_overrides or record.json_removals:
        return render.bill(record, include_lines=False).get(field_name)
    return render.dt_text(getattr(record, attribute))


async def search_bills(request: web.Request) -> web.Response:
    org = _emulator(request).existing_org(request.match_info["org_id"])
    size = _page_size(request, "bills/search")
    raw_from = request.query.get("fromDocument", "0")
    try:
        start = int(raw_from)
    except ValueError:
        raise EmulatorError(400, f"fromDocument must be an integer, got {raw_from!r}") from None
    if start < 0:
        raise EmulatorError(400, "fromDocument must not be negative")
    operator = request.query.get("operator", "AND")
    if operator not in ("AND", "OR"):
        raise EmulatorError(400, f"operator must be AND or OR, got {operator!r}")
    order = request.query.get("sortOrder", "DESC")
    if order not in ("ASC", "DESC"):
        raise EmulatorError(400, f"sortOrder must be ASC or DESC, got {order!r}")
    sort_by = request.query.get("sortBy", "dtCreated")
    terms = _search_terms(request.query.get("searchQuery", ""))
    hidden = _emulator(request).search_hidden
    # Filters and sort keys are top-level Bill fields. The usual sort (a timestamp, no filter) reads the
    # record itself, as render.bill() would write it, so a search over a large organization stays cheap;
    # any other search renders the bodies without their line items; only the page answered is rendered whole.
    records = [record for record in org.bill_order if record.id not in hidden]
    attribute = _SORT_ATTRIBUTES.get(sort_by)
    if not terms and attribute is not None:
        if records and sort_by not in render.bill(records[0], include_lines=False):
            raise EmulatorError(400, f"sortBy {sort_by!r} is not a field of the Bill entity")
        rendered: list[tuple[BillRecord, dict[str, Any]]] = [
            (record, {sort_by: _record_time(record, attribute, sort_by)}) for record in records
        ]
    else:
        rendered = [(record, render.bill(record, include_lines=False)) for record in records]
        if terms:
            combine = all if operator == "AND" else any
            rendered = [(r, b) for r, b in rendered if combine(_term_matches(b, *term) for term in terms)]
        if rendered and not any(sort_by in b for _, b in rendered):
            raise EmulatorError(400, f"sortBy {sort_by!r} is not a field of the Bill entity")

    def key(pair: tuple[BillRecord, dict[str, Any]]) -> tuple[int, Any]:
        value = pair[1].get(sort_by)
        number = isinstance(value, int | float) and not isinstance(value, bool)
        # ISO 8601 UTC timestamps (all "...Z", milliseconds) sort as text.
        return (0, value) if number else (1, "" if value is None else str(value))

    # m3ter documents no tie-break for equal sortBy values: ties come in a new order on every request
    # (shuffled before the stable sort, from the emulator's seeded generator), the least a client may assume.
    emulator = _emulator(request)
    emulator.search_random.shuffle(rendered)
    rendered.sort(key=key, reverse=order == "DESC")
    page = rendered[start : start + size]
    next_start = start + len(page)
    body: dict[str, Any] = {"data": [render.bill(record) for record, _ in page]}
    if next_start < len(rendered) and emulator.search_next_token:
        body["nextToken"] = str(next_start)
    return _json(body)


async def get_bill(request: web.Request) -> web.Response:
    record = _emulator(request).get_bill(request.match_info["org_id"], request.match_info["id"])
    return _json(render.bill(record))


async def list_line_items(request: web.Request) -> web.Response:
    record = _emulator(request).get_bill(request.match_info["org_id"], request.match_info["bill_id"])
    # Line items have no seq of their own; their position within the bill serves as one.
    size = _page_size(request, "lineitems")
    token = request.query.get("nextToken")
    start = decode_next_token("lineitems", token) if token else 0
    chunk = record.lines[start : start + size]
    more = start + size < len(record.lines)
    next_token = encode_next_token("lineitems", start + size) if more else None
    return _json(_page_body([render.line_item(line, record) for line in chunk], next_token))


# -- Currencies ------------------------------------------------------------------------------


async def list_currencies(request: web.Request) -> web.Response:
    # https://docs.m3ter.com/api/currency/list-currencies: pageSize 1..100, nextToken, ids, codes, archived.
    org = _emulator(request).existing_org(request.match_info["org_id"])
    ids = set(_list_param(request, "ids") or [])
    codes = {code.upper() for code in _list_param(request, "codes") or []}
    archived = _bool_param(request, "archived")

    def wanted(record: CurrencyRecord) -> bool:
        return (
            (not ids or record.id in ids)
            and (not codes or record.code in codes)
            and (archived is None or record.archived == archived)
        )

    page, next_token = paginate(
        "currencies",
        org.currency_order,
        page_size=_page_size(request, "currencies"),
        next_token=request.query.get("nextToken"),
        predicate=wanted,
    )
    return _json(_page_body([render.currency(r) for r in page], next_token))


# -- External Mappings -----------------------------------------------------------------------


async def list_mappings(request: web.Request) -> web.Response:
    org = _emulator(request).existing_org(request.match_info["org_id"])
    system = request.query.get("externalSystemId")
    m3ter_ids = set(_list_param(request, "m3terIds") or [])
    config_id = request.query.get("integrationConfigId")

    def wanted(record: MappingRecord) -> bool:
        return (
            (system is None or record.external_system == system)
            and (not m3ter_ids or record.m3ter_id in m3ter_ids)
            and (config_id is None or record.integration_config_id == config_id)
        )

    page, next_token = paginate(
        "mappings",
        org.mapping_order,
        page_size=_page_size(request, "externalmappings"),
        next_token=request.query.get("nextToken"),
        predicate=wanted,
    )
    return _json(_page_body([render.mapping(r) for r in page], next_token))


async def get_mapping(request: web.Request) -> web.Response:
    record = _emulator(request).get_mapping(request.match_info["org_id"], request.match_info["id"])
    return _json(render.mapping(record))


async def mappings_by_m3ter_entity(request: web.Request) -> web.Response:
    org = _emulator(request).existing_org(request.match_info["org_id"])
    key = (request.match_info["entity"].lower(), request.match_info["m3ter_id"])
    page, next_token = paginate(
        "mappings",
        org.mappings_by_m3ter.get(key, []),
        page_size=_page_size(request, "externalmappings"),
        next_token=request.query.get("nextToken"),
    )
    return _json(_page_body([render.mapping(r) for r in page], next_token))


async def mappings_by_external_entity(request: web.Request) -> web.Response:
    org = _emulator(request).existing_org(request.match_info["org_id"])
    info = request.match_info
    page, next_token = paginate(
        "mappings",
        org.mappings_by_external.get((info["system"], info["table"], info["external_id"]), []),
        page_size=_page_size(request, "externalmappings"),
        next_token=request.query.get("nextToken"),
    )
    return _json(_page_body([render.mapping(r) for r in page], next_token))


def build_app(emulator: M3terEmulator) -> web.Application:
    """The m3ter API routes (the admin routes are added separately by the server)."""
    app = web.Application(middlewares=[observe, errors, authenticate])
    app[EMULATOR] = emulator
    org = "/organizations/{org_id}"
    app.router.add_post("/oauth/token", oauth_token)
    app.router.add_get(f"{org}/accounts", list_accounts)
    app.router.add_get(f"{org}/accounts/{{id}}", get_account)
    app.router.add_get(f"{org}/bills", list_bills)
    app.router.add_get(f"{org}/bills/search", search_bills)  # before /bills/{id}, which would match it
    app.router.add_get(f"{org}/bills/{{id}}", get_bill)
    app.router.add_get(f"{org}/bills/{{bill_id}}/lineitems", list_line_items)
    app.router.add_get(f"{org}/picklists/currency", list_currencies)
    app.router.add_get(f"{org}/externalmappings", list_mappings)
    app.router.add_get(f"{org}/externalmappings/{{id}}", get_mapping)
    app.router.add_get(f"{org}/externalmappings/external/{{entity}}/{{m3ter_id}}", mappings_by_m3ter_entity)
    app.router.add_get(
        f"{org}/externalmappings/externalid/{{system}}/{{table}}/{{external_id}}", mappings_by_external_entity
    )
    return app
