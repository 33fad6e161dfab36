"""A real Prometheus against the real operator: the shipped alerts fire on the series it exports, and every
query of the Grafana dashboard runs against them.

The operator runs as a process on the local stack (LocalStack) with leader election on, serving /metrics on a
loopback port; Prometheus (Debian's `prometheus` package: the real server) scrapes it every second as job
m3stripe-operator with honor_labels, as the ServiceMonitor does, and evaluates deploy/monitoring/prometheusrule.yaml
unchanged. One integration sends Bills (Stripe's rate limit in the emulator is low, so there are 429s and retries);
one meets ten successive errors (Bills of accounts without a Stripe customer) and disables itself, and
M3stripeIntegrationDisabled must fire for it after its `for: 1m`. Then each dashboard query runs as a Grafana
time series panel runs it (a range query over the test's window, every variable on "All"): none may fail, and each
has data unless NO_DATA_EXPECTED says why not.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from m3stripe.testing.prometheus import Prometheus, PrometheusError, prometheus_rules
from m3stripe.testing.stack import LocalStack, OperatorProcess, wait_for
from tests.monitoring.dashboard import (
    DASHBOARD,
    RULES_PATH,
    dashboard_queries,
    interpolate,
    variable_query,
)
from tests.monitoring.prometheus_tools import prometheus_tool
from tests.support.ports import free_port
from tests.support.stack_world import connect, customer, integration_spec

pytestmark = pytest.mark.slow

NS = "billing"
ORG = "org-prometheus"
KEY = "sk_test_51PrometheusE2eAAAA"
# Every variable on "All" (Grafana's allValue ".*"); $__rate_interval as Grafana computes it for a 1 s scrape
# interval and a 2 s step: max(4 x scrape interval, step + scrape interval), rounded up to whole seconds here.
VALUES = {
    "namespace": ".*",
    "integration": ".*",
    "budget": ".*",
    "datasource": "prometheus",
    "__rate_interval": "5s",
    "__interval": "2s",
    "__range": "5m",
}
STEP = 2.0
# Dashboard targets that have no data in this scenario, and why (each is still run, and must not fail).
NO_DATA_EXPECTED = {
    # The Lease was new: the first holder took it from nobody, so there was no time without a writer to observe.
    "panel 36 'Lease hand-overs and time without a writer (p95)' B",
    # No integration of this scenario asks for automatic tax (tests/e2e/test_tax.py checks the series itself).
    "panel 37 'Tax Stripe computed per hour by currency (automatic tax)' A",
}


def _disabled(stack: LocalStack, name: str) -> bool:
    return bool((stack.kube.get_integration(NS, name).get("status") or {}).get("disabled"))


def _seed(stack: LocalStack) -> None:
    stack.call(lambda: stack.stripe.add_api_key(KEY))
    connect(stack, NS, ORG, KEY, "prom")
    stripe = stack.stripe_client(KEY)
    for i in range(6):  # sent: each account has its Stripe customer
        acct = stack.call(
            lambda i=i: stack.m3ter.add_account(
                ORG, name=f"Paying {i}", code=f"pay{i}", currency="USD", address={"country": "UK"}
            )
        )
        customer(stripe, acct)
        stack.call(
            lambda a=acct: stack.m3ter.add_bill(ORG, account_id=a, lines=[{"line_item_type": "USAGE", "subtotal": "5"}])
        )
    for i in range(12):  # failed: no Stripe customer, a missing-mapping error event each
        acct = stack.call(
            lambda i=i: stack.m3ter.add_account(
                ORG, name=f"Unmapped {i}", code=f"unm{i}", currency="USD", address={"country": "DE"}
            )
        )
        stack.call(
            lambda a=acct: stack.m3ter.add_bill(ORG, account_id=a, lines=[{"line_item_type": "USAGE", "subtotal": "1"}])
        )
    stack.kube.create_integration(
        NS, "paying", integration_spec(ORG, every="20s", accountFilter='address.country == "UK"')
    )
    stack.kube.create_integration(
        NS,
        "flaky",
        integration_spec(
            ORG,
            every="20s",
            accountFilter='address.country == "DE"',
            integrationDisabledNotificationUsers=["oncall@example.com"],
        ),
    )


def _operator(stack: LocalStack, metrics_port: int) -> OperatorProcess:
    """With leader election, as deployed (a pod name, a lock file on a pod-scoped volume, the Lease's namespace)."""
    stack.ensure_namespace("m3stripe-system")
    (stack.workdir / "pod").mkdir(exist_ok=True)
    return stack.start_operator(
        "--liveness=",
        POD_NAME="m3stripe-operator-0",
        M3STRIPE_LEASE_NAMESPACE="m3stripe-system",
        M3STRIPE_LEASE_LOCK_FILE=str(stack.workdir / "pod" / "lease.lock"),
        M3STRIPE_METRICS_PORT=str(metrics_port),
        M3STRIPE_SMTP_SECURITY="none",
    )


def _firing(prometheus: Prometheus, alert: str) -> list[dict[str, Any]]:
    return [a for a in prometheus.alerts() if a["labels"]["alertname"] == alert and a["state"] == "firing"]


def _has_data(result: list[dict[str, Any]]) -> bool:
    return any(value != "NaN" for series in result for _, value in series["values"])


@pytest.fixture
def prometheus_binary() -> str:
    return prometheus_tool("prometheus")


def test_prometheus_fires_the_disabled_alert_and_answers_every_dashboard_query(
    tmp_path: Path, prometheus_binary: str
) -> None:
    metrics_port = free_port()
    with LocalStack(tmp_path / "stack") as stack:
        _seed(stack)
        # From now on the account allows 4 requests a second: the operator meets 429s and retries.
        stack.call(lambda: stack.stripe.set_rate_limit(4))
        operator = _operator(stack, metrics_port)
        rules = prometheus_rules(RULES_PATH.read_text())
        with Prometheus(tmp_path / "prometheus", targets=[f"127.0.0.1:{metrics_port}"], rules=rules) as prometheus:
            started = time.time()
            wait_for(prometheus.targets_up, timeout=60, interval=1, what="Prometheus to scrape the operator")
            loaded = {r["name"] for g in prometheus.rule_groups() for r in g["rules"]}
            assert "M3stripeIntegrationDisabled" in loaded

            # Ten successive errors disable `flaky`; the alert is pending for its `for: 1m`, then fires.
            wait_for(lambda: _disabled(stack, "flaky"), timeout=120, interval=1, what="flaky to disable itself")
            [alert] = wait_for(
                lambda: _firing(prometheus, "M3stripeIntegrationDisabled"),
                timeout=150,
                interval=2,
                what="M3stripeIntegrationDisabled to fire",
            )
            assert alert["labels"] == {
                "alertname": "M3stripeIntegrationDisabled",
                "severity": "critical",
                "namespace": NS,
                "integration": "flaky",
            }
            assert alert["annotations"]["summary"] == (
                f"StripeIntegration {NS}/flaky disabled itself; no Bills are sent to Stripe."
            )
            assert alert["annotations"]["runbook_url"].endswith("RUNBOOK.md#m3stripeintegrationdisabled")
            # The integration that sends is not alerted on; the operator is up.
            assert not [a for a in prometheus.alerts() if a["labels"].get("integration") == "paying"]
            assert not _firing(prometheus, "M3stripeOperatorAbsent")
            # The Stripe series of the key's budget are there, with no account id in any label.
            [series] = prometheus.query('m3stripe_stripe_rate_limit_requests_per_second{budget=~"test\\\\..*"}')
            assert series["value"][1] == "25"
            account = str(stack.stripe_client(KEY).v1.accounts.retrieve_current().id)
            assert not [s for s in prometheus.query('{__name__=~"m3stripe_.+"}') if account in str(s["metric"])]

            # Every dashboard query, as Grafana's panels run them over the test's window.
            end = time.time()
            failures: list[str] = []
            empty: list[str] = []
            for query in dashboard_queries(DASHBOARD):
                name = query.where
                try:
                    result = prometheus.query_range(interpolate(query.expr, VALUES), started, end, STEP)
                except PrometheusError as err:
                    failures.append(f"{query.where}: {err}")
                    continue
                if not _has_data(result) and name not in NO_DATA_EXPECTED:
                    empty.append(f"{query.where}: {query.expr}")
                if _has_data(result) and name in NO_DATA_EXPECTED:
                    empty.append(f"{query.where} has data now: take it out of NO_DATA_EXPECTED")
            assert not failures, "\n".join(failures)
            assert not empty, "dashboard queries without data:\n" + "\n".join(empty)
            # The variables' choices come from live series too.
            for variable in DASHBOARD["templating"]["list"]:
                if variable["type"] == "query":
                    metric, label = variable_query(variable)[len("label_values(") : -1].rsplit(",", 1)
                    found = prometheus.query(interpolate(metric, VALUES))
                    assert found and all(label.strip() in s["metric"] for s in found), variable["name"]
        operator.stop()
