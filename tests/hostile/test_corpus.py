"""The hostile-input corpus, end to end: every case against one operator process over HTTP.

All cases are created at once (one namespace, their own m3ter organizations where they read Bills)
beside a healthy control integration in another namespace and organization; the operator runs with
`--verbose`. Once every outcome holds (or the deadline passes), each case is one test, and the
module checks that the control kept syncing, that the process never died, and that no secret value
reached the log, events, status or metrics.
"""

from __future__ import annotations

import base64
import contextlib
import json
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from m3stripe.testing.m3ter_emulator import render
from m3stripe.testing.stack import LocalStack, OperatorProcess, wait_for
from tests.support.ports import free_port

from .cases import (
    CASES,
    CONTROL_CLIENT,
    CONTROL_KEY,
    CONTROL_SECRET,
    EMPTY_ORG,
    FILTER_ORG,
    GOOD_KEY,
    M3TER_CLIENT,
    M3TER_SECRET,
    VALID,
    Case,
    Check,
)

NS = "hostile"
CONTROL_NS, CONTROL_ORG, CONTROL = "control", "org-control", "control"
DEADLINE = 360.0  # generous: 2 loaded cores; the wait ends as soon as every outcome holds


def _m3ter_secret_name(org: str) -> str:
    return f"m3ter-{org}"


def _org_secret(org: str) -> str:
    return f"secret-{org}-x9q"


@dataclass
class World:
    stack: LocalStack
    operator: OperatorProcess
    metrics_url: str
    stripe_account: str
    bill_ids: dict[tuple[str, str], str] = field(default_factory=dict)
    failures: dict[str, str | None] = field(default_factory=dict)
    control_bills: list[str] = field(default_factory=list)
    secrets: set[str] = field(default_factory=set)
    log: str = ""
    metrics: str = ""

    def name(self, case: Case) -> str:
        return case.id.lower()


def _put_raw_secret(stack: LocalStack, namespace: str, name: str, data: dict[str, bytes]) -> None:
    body = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "Opaque",
        "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
    }
    stack.kube.core.create_namespaced_secret(namespace, body)  # type: ignore[arg-type]


def _seed_org(stack: LocalStack, world: World, org: str, *, mapped: bool) -> list[str]:
    """An organization with its m3ter client and Secret, two Accounts, and their Stripe Customers."""
    stack.call(lambda: stack.m3ter.add_client(f"client-{org}", _org_secret(org), org))
    stack.kube.put_secret(NS, _m3ter_secret_name(org), {"clientId": f"client-{org}", "clientSecret": _org_secret(org)})
    world.secrets.add(_org_secret(org))
    accounts = []
    for n, (country, tier) in enumerate((("UK", 2), ("FR", 3))):
        accounts.append(_add_account(stack, org, n, country, tier))
    if mapped:
        stripe = stack.stripe_client(GOOD_KEY)
        for account in accounts:
            stripe.v1.customers.create(params={"name": account, "metadata": {"m3ter_account_id": account}})
    return accounts


def _add_account(stack: LocalStack, org: str, n: int, country: str, tier: int) -> str:
    def add() -> str:
        return stack.m3ter.add_account(
            org,
            name=f"{org} customer {n}",
            code=f"{org}-{n}",
            currency="USD",
            address={"country": country},
            custom_fields={"country": country, "tier": tier},
        )

    return str(stack.call(add))


def _add_bill(stack: LocalStack, org: str, account: str, lines: list[dict[str, Any]]) -> str:
    return str(stack.call(lambda: stack.m3ter.add_bill(org, account_id=account, lines=lines)))


def _first_account(stack: LocalStack, org: str) -> str:
    return str(next(iter(stack.call(lambda: stack.m3ter.org(org).accounts))))


def _spec(case: Case) -> Any:
    if case.spec is not VALID:
        return case.spec
    secret = f"stripe-{case.id.lower()}" if case.key is not None else "stripe"
    m3ter_secret = f"m3ter-bad-{case.id.lower()}" if case.m3ter_secret is not None else _m3ter_secret_name(case.org)
    spec: dict[str, Any] = {
        "destination": "StripeTestMode",
        "credentialRef": {"name": secret},
        "m3ter": {"organizationId": case.org, "credentialsRef": {"name": m3ter_secret}},
        "syncInterval": "1h",  # one pass at start; later ones only on request
        "requestsPerSecond": 100,
    }
    spec.update(case.spec_patch)
    return spec


def _create(stack: LocalStack, case: Case, name: str) -> None:
    if case.key is not None:
        _put_raw_secret(stack, NS, f"stripe-{name}", {"apiKey": case.key})
    if case.m3ter_secret is not None:
        stack.kube.put_secret(
            NS, f"m3ter-bad-{name}", {"clientId": f"client-{case.org}", "clientSecret": case.m3ter_secret}
        )
    body: dict[str, Any] = {
        "apiVersion": "m3stripe.dev/v1alpha1",
        "kind": "StripeIntegration",
        "metadata": {"name": name, "namespace": NS, **({"annotations": case.annotations} if case.annotations else {})},
        "spec": _spec(case),
    }
    if case.status is not None:
        body["status"] = case.status  # as restored from a backup: the API server keeps what it is given
    stack.kube.custom.create_namespaced_custom_object("m3stripe.dev", "v1alpha1", NS, "stripeintegrations", body)


def _cond(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    status = obj.get("status")
    for c in (status.get("conditions") or ()) if isinstance(status, dict) else ():
        if isinstance(c, dict) and c.get("type") == type_:
            return c
    return {}


def _check(
    world: World, case: Case, check: Check, obj: dict[str, Any], events: list[dict[str, Any]], stripe: Any
) -> str | None:
    """None when the check holds, else what was seen instead."""
    status = obj.get("status") if isinstance(obj.get("status"), dict) else {}
    assert isinstance(status, dict)
    if check.kind == "ready":
        ready = _cond(obj, "Ready")
        message = str(ready.get("message") or "")
        if (
            ready.get("status") == check.value
            and ready.get("reason") == check.reason
            and all(c in message for c in check.contains)
        ):
            return None
        return f"Ready={ready.get('status')} {ready.get('reason')}: {message[:400]!r}"
    if check.kind in ("event", "absent_event"):
        matching = [
            e
            for e in events
            if e.get("reason") == check.reason
            and (check.kind == "absent_event" or e.get("type") == check.type)
            and all(c in str(e.get("message") or "") for c in check.contains)
        ]
        if check.kind == "absent_event":
            return None if not matching else f"unexpected {check.reason} event: {matching[0].get('message')!r}"
        if matching:
            return None
        return f"no {check.type} {check.reason} event with {check.contains}; events: " + "; ".join(
            f"{e.get('reason')}: {str(e.get('message'))[:160]}" for e in events[-8:]
        )
    if check.kind == "run":
        last = status.get("lastSync") or {}
        if last and (not check.reason or last.get("status") == check.reason):
            return None
        return f"lastSync: {last!r}"
    if check.kind == "status":
        try:
            if check.value(status):
                return None
        except Exception as err:  # a check on a corrupt status is simply not satisfied
            return f"{check.reason}: {err!r}"
        return f"not true: {check.reason}"
    bill_id = world.bill_ids.get((case.id, check.reason), "?")
    if check.kind == "bill_error":
        for e in status.get("openEvents") or ():
            if (
                isinstance(e, dict)
                and e.get("kind") == "integration.validation.error"
                and e.get("billId") == bill_id
                and all(c in str(e.get("message")) for c in check.contains)
            ):
                return None
        return f"no validation error on Bill {bill_id}; openEvents: {status.get('openEvents')!r}"[:600]
    invoices = [i for i in stripe["invoices"].values() if i["metadata"].get("m3ter_bill_id") == bill_id]
    items = [i for i in stripe["invoice_items"].values() if i["metadata"].get("m3ter_bill_id") == bill_id]
    if check.kind == "not_sent":
        return None if not invoices and not items else f"Stripe holds Bill {bill_id}"
    lines, item_count = check.value
    if item_count is not None:
        return None if len(items) == item_count else f"{len(items)} invoice items for Bill {bill_id}"
    if not invoices:
        return f"no Stripe invoice for Bill {bill_id}; lastSync: {status.get('lastSync')!r}"
    if lines is not None and len(invoices[0]["lines"]["data"]) != lines:
        return f"invoice of Bill {bill_id} has {len(invoices[0]['lines']['data'])} lines"
    return None


def _evaluate(world: World, cases: list[Case], *, then: bool) -> dict[str, str | None]:
    stack = world.stack
    objects = {o["metadata"]["name"]: o for o in stack.kube.list_integrations(NS)}
    events: dict[str, list[dict[str, Any]]] = {}
    for e in stack.kube.events(NS):
        events.setdefault((e.get("involvedObject") or {}).get("name") or "", []).append(e)
    stripe = stack.call(lambda: stack.stripe.state(world.stripe_account))
    result: dict[str, str | None] = {}
    for case in cases:
        name = world.name(case)
        obj = objects.get(name, {})
        failure = None
        for check in case.then_outcome if then else case.outcome:
            failure = _check(world, case, check, obj, events.get(name, []), stripe)
            if failure is not None:
                failure = f"{check.kind} {check.reason}: {failure}"
                break
        result[case.id] = failure
    return result


def _wait_all(world: World, cases: list[Case], *, then: bool) -> dict[str, str | None]:
    deadline = time.monotonic() + DEADLINE
    result: dict[str, str | None] = {}
    while time.monotonic() < deadline:
        result = _evaluate(world, cases, then=then)
        # Expected failures are not waited for: their outcome is known not to hold yet.
        if all(v is None for c, v in ((c, result[c.id]) for c in cases) if c.xfail is None):
            break
        time.sleep(2)
    return result


@pytest.fixture(scope="module")
def world(stack: LocalStack) -> Iterator[World]:
    stack.ensure_namespace(NS)
    stack.ensure_namespace(CONTROL_NS)
    acct = stack.call(lambda: stack.stripe.add_api_key(GOOD_KEY))
    stack.call(lambda: stack.stripe.add_api_key(CONTROL_KEY))
    stack.call(lambda: stack.m3ter.add_client(M3TER_CLIENT, M3TER_SECRET, EMPTY_ORG))
    stack.kube.put_secret(NS, "stripe", {"apiKey": GOOD_KEY})
    port = free_port()
    op = stack.start_operator(
        "--standalone",
        "--liveness=",
        "--verbose",
        name="hostile-operator",
        M3STRIPE_METRICS_PORT=str(port),
        M3STRIPE_SECRET_POLL_INTERVAL="2s",
    )
    w = World(stack, op, f"http://127.0.0.1:{port}/metrics", str(acct))
    w.secrets.update({GOOD_KEY, CONTROL_KEY, M3TER_SECRET, CONTROL_SECRET})
    for case in CASES:
        w.secrets.update(case.secrets)
        if case.key:
            text = case.key.decode("utf-8", "ignore")
            w.secrets.update(p for p in text.replace("\x00", " ").split() if len(p) >= 12)
    # The control: another namespace, organization and Stripe account; it must keep syncing throughout.
    stack.call(lambda: stack.m3ter.add_client(CONTROL_CLIENT, CONTROL_SECRET, CONTROL_ORG))
    stack.kube.put_secret(CONTROL_NS, "stripe", {"apiKey": CONTROL_KEY})
    stack.kube.put_secret(CONTROL_NS, "m3ter", {"clientId": CONTROL_CLIENT, "clientSecret": CONTROL_SECRET})
    control_account = str(
        stack.call(lambda: stack.m3ter.add_account(CONTROL_ORG, name="Control", code="control", currency="USD"))
    )
    stack.stripe_client(CONTROL_KEY).v1.customers.create(
        params={"name": "Control", "metadata": {"m3ter_account_id": control_account}}
    )
    w.control_bills.append(
        str(
            stack.call(lambda: stack.m3ter.add_bill(CONTROL_ORG, account_id=control_account, lines=[{"subtotal": "1"}]))
        )
    )
    stack.kube.create_integration(
        CONTROL_NS,
        CONTROL,
        {
            "destination": "StripeTestMode",
            "credentialRef": {"name": "stripe"},
            "m3ter": {"organizationId": CONTROL_ORG, "credentialsRef": {"name": "m3ter"}},
            "syncInterval": "1h",
        },
    )
    # Each case's organization and Bills; malformed Bills are corrupted in the JSON m3ter serves.
    corrupt: dict[str, Any] = {}
    for org in sorted({c.org for c in CASES} | {EMPTY_ORG, FILTER_ORG}):
        mapped = all(c.mapped for c in CASES if c.org == org)
        accounts = _seed_org(stack, w, org, mapped=mapped)
        if org == FILTER_ORG:
            for account in accounts:
                _add_bill(stack, org, account, [{"subtotal": "3"}])
    for case in CASES:
        for bill_name, (lines, corruption) in case.bills.items():
            bill_id = _add_bill(stack, case.org, _first_account(stack, case.org), lines)
            w.bill_ids[(case.id, bill_name)] = bill_id
            if corruption is not None:
                corrupt[bill_id] = corruption
    original = render.bill

    def serve(record: Any, **kw: Any) -> dict[str, Any]:
        body = original(record, **kw)
        fix = corrupt.get(record.id)
        if fix is not None:
            with contextlib.suppress(KeyError, IndexError, TypeError):  # a rendering without lines
                fix(body)
        return body

    render.bill = serve
    try:
        for case in CASES:
            _create(stack, case, w.name(case))
        w.failures = _wait_all(w, CASES, then=False)
        followups = [c for c in CASES if c.then and w.failures[c.id] is None]
        for case in followups:
            for key, value in case.then.items():
                stack.annotate(NS, w.name(case), key, value)
        for case_id, failure in _wait_all(w, followups, then=True).items():
            w.failures[case_id] = failure
        # The neighbour kept working: a Bill created now is sent on request.
        w.control_bills.append(
            str(
                stack.call(
                    lambda: stack.m3ter.add_bill(CONTROL_ORG, account_id=control_account, lines=[{"subtotal": "2"}])
                )
            )
        )
        stack.annotate(CONTROL_NS, CONTROL, "m3stripe.dev/requested-at", "after-the-corpus")
        with contextlib.suppress(TimeoutError):  # test_the_control_integration_kept_syncing says what is wrong
            wait_for(
                lambda: (
                    (stack.kube.get_integration(CONTROL_NS, CONTROL).get("status") or {}).get("lastHandledRequestedAt")
                    == "after-the-corpus"
                ),
                timeout=120,
                what="the control's requested pass",
            )
        with urllib.request.urlopen(w.metrics_url, timeout=10) as reply:
            w.metrics = reply.read().decode()
        yield w
    finally:
        render.bill = original
        op.stop()


def _params() -> list[Any]:
    return [
        pytest.param(c, id=c.id, marks=[pytest.mark.xfail(strict=True, reason=c.xfail)] if c.xfail else [])
        for c in CASES
    ]


def test_the_corpus_has_at_least_100_cases_with_an_outcome_each() -> None:
    assert len(CASES) >= 100
    assert all(c.outcome for c in CASES)
    assert len({c.id.lower() for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", _params())
def test_hostile_input_produces_its_outcome(world: World, case: Case) -> None:
    assert world.failures[case.id] is None, f"{case.what}: {world.failures[case.id]}"


def test_the_operator_never_died(world: World) -> None:
    assert world.operator.running


def test_the_control_integration_kept_syncing(world: World) -> None:
    stack = world.stack
    status = stack.kube.get_integration(CONTROL_NS, CONTROL)["status"]
    assert _cond({"status": status}, "Ready")["status"] == "True", status
    assert status["lastSync"]["status"] == "COMPLETE", status["lastSync"]
    account = str(stack.stripe_client(CONTROL_KEY).v1.accounts.retrieve_current().id)
    invoices = stack.call(lambda: stack.stripe.state(account))["invoices"].values()
    sent = {i["metadata"].get("m3ter_bill_id") for i in invoices}
    assert set(world.control_bills) <= sent, (world.control_bills, sent)


def test_no_secret_value_appears_in_logs_events_status_or_metrics(world: World) -> None:
    stack = world.stack
    log = world.operator.output()
    assert "fetched m3ter token for client_id" in log, "the operator should have logged at DEBUG (--verbose)"
    places = {
        "the operator's verbose log": log,
        "events": json.dumps(stack.kube.events(NS) + stack.kube.events(CONTROL_NS)),
        "status": json.dumps(
            [o.get("status") for o in stack.kube.list_integrations(NS) + stack.kube.list_integrations(CONTROL_NS)]
        ),
        "metrics": world.metrics,
    }
    for where, text in places.items():
        leaked = sorted(s for s in world.secrets if s in text)
        assert not leaked, f"secret values reached {where}: {[s[:12] + '...' for s in leaked]}"


def test_log_lines_name_the_integration(world: World) -> None:
    log = world.operator.output()
    assert f"{CONTROL_NS}/{CONTROL}: sync run run-" in log
    assert f"{NS}/status-watermark: the sync pass failed unexpectedly" in log
    assert f"{NS}/plan-status-watermark: the plan pass failed unexpectedly" in log
    assert "of organization org-bill-text-version cannot be read" in log  # which organization's Bill
    assert f"reconcile of {NS}/status-errors-text failed" in log


def test_a_refused_gesture_costs_no_m3ter_request(world: World) -> None:
    stack = world.stack
    paths = [str(r.path) for r in stack.call(lambda: list(stack.m3ter.requests))]
    assert any("/bills/no-such-bill-4711" in p for p in paths)  # a valid id is read (and reported missing)
    refused = ("/bills/b1", "/bills/b499", "/bills/bill-00001", "/bills/bill-1", "/bills/..")
    assert not [p for p in paths if p.endswith(refused) or "/bills/%2F" in p]


def test_unexpected_exceptions_are_counted_by_where_they_happened(world: World) -> None:
    def count(name: str, where: str) -> float:
        prefix = f'm3stripe_internal_errors_total{{integration="{name}",namespace="{NS}",where="{where}"}} '
        return sum(float(line[len(prefix) :]) for line in world.metrics.splitlines() if line.startswith(prefix))

    assert count("status-watermark", "pass") >= 1
    assert count("plan-status-watermark", "plan") >= 1
    assert count("status-errors-text", "reconcile") >= 1
    assert (
        'm3stripe_sync_runs_total{integration="status-watermark",namespace="hostile",status="ERROR"}' in world.metrics
    )
