"""Metrics.forget drops every series of one integration and nothing else; the Stripe series belong to a budget."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from m3stripe.api.status import read_status
from m3stripe.metrics import Metrics

_SEEN = {"firstSeen": "2025-06-01T12:00:00Z", "lastSeen": "2025-06-01T12:00:00Z"}
_SINCE = {"reason": "R", "message": "", "lastTransitionTime": "2025-06-01T12:00:00Z"}
STATUS = read_status(
    {
        "connected": True,
        "disabled": False,
        "consecutiveErrors": 2,
        "lastSuccessfulSyncTime": "2025-06-01T12:00:00Z",
        "openEvents": [{"id": "evt-1", "kind": "integration.perform.error", "message": "m", **_SEEN}],
        "conditions": [
            {"type": "Ready", "status": "True", **_SINCE},
            {"type": "SourceConnected", "status": "True", **_SINCE},
        ],
    }
)


def populate(m: Metrics, ns: str, name: str) -> None:
    """Every per-integration series, the way the operator issues them (through `child`)."""
    m.observe_reconcile(ns, name, 0.1)
    m.observe_status(ns, name, STATUS, suspended=False, sync_interval=300)
    m.child(m.runs, ns, name, "COMPLETE").inc()
    m.child(m.runs, ns, name, "ERROR").inc()
    m.child(m.run_duration, ns, name).observe(1.0)
    for outcome in ("sent", "unchanged", "skipped", "failed"):
        m.child(m.bills, ns, name, outcome).inc()
    m.child(m.error_events, ns, name, "integration.perform.error").inc()
    m.child(m.notifications, ns, name, "sent").inc()


SERIES: list[tuple[str, dict[str, str]]] = [
    ("m3stripe_reconcile_duration_seconds_count", {}),
    ("m3stripe_integration_connected", {}),
    ("m3stripe_integration_disabled", {}),
    ("m3stripe_integration_ready", {}),
    ("m3stripe_integration_consecutive_errors", {}),
    ("m3stripe_integration_sync_interval_seconds", {}),
    ("m3stripe_integration_last_success_timestamp_seconds", {}),
    ("m3stripe_sync_runs_total", {"status": "COMPLETE"}),
    ("m3stripe_sync_runs_total", {"status": "ERROR"}),
    ("m3stripe_sync_run_duration_seconds_count", {}),
    ("m3stripe_bills_total", {"outcome": "sent"}),
    ("m3stripe_bills_total", {"outcome": "failed"}),
    ("m3stripe_error_events_total", {"kind": "integration.perform.error"}),
    ("m3stripe_notifications_total", {"result": "sent"}),
]


def sample(m: Metrics, ns: str, name: str) -> Callable[[str, dict[str, str]], float | None]:
    def get(metric: str, extra: dict[str, str]) -> float | None:
        return m.registry.get_sample_value(metric, {"namespace": ns, "integration": name, **extra})

    return get


def test_observe_status_sets_the_gauges() -> None:
    m = Metrics()
    populate(m, "ns", "a")
    get = sample(m, "ns", "a")
    assert get("m3stripe_integration_connected", {}) == 1
    assert get("m3stripe_integration_ready", {}) == 1
    assert get("m3stripe_integration_consecutive_errors", {}) == 2
    assert get("m3stripe_integration_last_success_timestamp_seconds", {}) == 1748779200


@pytest.mark.parametrize(("metric", "extra"), SERIES)
def test_forget_removes_every_series_of_the_integration_only(metric: str, extra: dict[str, str]) -> None:
    m = Metrics()
    for ns, name in (("ns", "a"), ("ns", "b"), ("other", "a")):
        populate(m, ns, name)
    m.stripe("live.0123456789ab", 100).request("invoices.create", 200, 0.1)  # budget series: no integration label
    assert sample(m, "ns", "a")(metric, extra) is not None

    m.forget("ns", "a")

    assert sample(m, "ns", "a")(metric, extra) is None
    assert sample(m, "ns", "b")(metric, extra) is not None
    assert sample(m, "other", "a")(metric, extra) is not None
    assert (
        m.registry.get_sample_value(
            "m3stripe_stripe_requests_total",
            {"budget": "live.0123456789ab", "endpoint": "invoices.create", "code": "200"},
        )
        == 1
    )


def test_no_sample_of_a_forgotten_integration_is_left() -> None:
    m = Metrics()
    populate(m, "ns", "a")
    populate(m, "ns", "b")
    m.forget("ns", "a")
    leftovers = [
        s
        for family in m.registry.collect()
        for s in family.samples
        if s.labels.get("namespace") == "ns" and s.labels.get("integration") == "a"
    ]
    assert leftovers == []
    assert any(s.labels.get("integration") == "b" for family in m.registry.collect() for s in family.samples)


def test_forget_twice_or_unknown_is_harmless() -> None:
    m = Metrics()
    populate(m, "ns", "a")
    m.forget("ns", "a")
    m.forget("ns", "a")
    m.forget("nowhere", "x")
    populate(m, "ns", "a")  # a recreated integration reports again
    assert sample(m, "ns", "a")("m3stripe_integration_connected", {}) == 1


def test_stripe_series_say_which_budget_they_belong_to_and_its_limit() -> None:
    m = Metrics()
    live, test = m.stripe("live.aaaaaaaaaaaa", 100), m.stripe("test.aaaaaaaaaaaa", 25)
    live.request("invoices.create", 429, 0.1)
    live.retry("invoices.create", "rate_limited")
    live.rate_limit_wait(0.5)
    test.request("invoices.create", 200, 0.1)

    def get(name: str, **labels: str) -> float | None:
        return m.registry.get_sample_value(name, labels)

    assert (
        get("m3stripe_stripe_requests_total", budget="live.aaaaaaaaaaaa", endpoint="invoices.create", code="429") == 1
    )
    assert (
        get("m3stripe_stripe_requests_total", budget="test.aaaaaaaaaaaa", endpoint="invoices.create", code="200") == 1
    )
    assert (
        get(
            "m3stripe_stripe_retries_total",
            budget="live.aaaaaaaaaaaa",
            endpoint="invoices.create",
            reason="rate_limited",
        )
        == 1
    )
    assert get("m3stripe_stripe_rate_limit_wait_seconds_total", budget="live.aaaaaaaaaaaa") == 0.5
    assert (
        get("m3stripe_stripe_request_duration_seconds_count", budget="test.aaaaaaaaaaaa", endpoint="invoices.create")
        == 1
    )
    assert get("m3stripe_stripe_rate_limit_requests_per_second", budget="live.aaaaaaaaaaaa") == 100
    assert get("m3stripe_stripe_rate_limit_requests_per_second", budget="test.aaaaaaaaaaaa") == 25
    assert get("m3stripe_stripe_rate_limit_wait_seconds_total", budget="test.aaaaaaaaaaaa") == 0  # exists, never waited
    m.stripe("live.aaaaaaaaaaaa", 40)  # an integration with a lower requestsPerSecond joined the budget
    assert get("m3stripe_stripe_rate_limit_requests_per_second", budget="live.aaaaaaaaaaaa") == 40


def test_no_stripe_account_id_is_a_label_value() -> None:
    """Budgets are digests: an account id (acct_...) never reaches a metric label."""
    from m3stripe.adapters.stripe_rate_limit import LimiterRegistry

    m = Metrics()
    registry = LimiterRegistry()
    for account, live in (("acct_1SecretAccountId", True), ("acct_1SecretAccountId", False), ("acct_2Other", True)):
        limit = registry.get(account, live, 100 if live else 25)
        m.stripe(limit.budget, limit.per_second).request("invoices.create", 200, 0.1)
    values = {v for family in m.registry.collect() for s in family.samples for v in s.labels.values()}
    assert not [v for v in values if "acct_" in v]
    assert len({v for v in values if v.startswith(("live.", "test."))}) == 3
