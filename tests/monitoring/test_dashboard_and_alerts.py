"""The Grafana dashboard and the PrometheusRule only query what the operator exports, and link to the runbook.

Every PromQL expression (dashboard targets, annotations, variable queries, alert rules) is parsed with
`promql_parser` after the Grafana variables are replaced by plausible values, then walked with a small
label inference: metric names must be exported by `m3stripe.metrics.Metrics` (or be `up`), matchers and
`by`/`on` labels must exist on what they apply to, and vector matching without `on`/`ignoring` must
compare identical label sets (otherwise it silently matches nothing).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import promql_parser as pp
import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from m3stripe.metrics import Metrics
from tests.monitoring.dashboard import (
    DASHBOARD,
    MONITORING,
    RULES_PATH,
    DashboardQuery,
    all_panels,
    dashboard_queries,
    interpolate,
    variable_query,
)

RUNBOOK_PATH = MONITORING / "RUNBOOK.md"
RUNBOOK_URL = "https://github.com/m3stripe/m3stripe-operator/blob/main/deploy/monitoring/RUNBOOK.md"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}

Labels = frozenset[str]

# Labels Prometheus attaches to every scraped series (ServiceMonitor with honorLabels: true, so the
# operator's own `namespace` label wins and is not listed here).
TARGET_LABELS: Labels = frozenset({"job", "instance", "pod", "service", "container"})
# Not exported by the operator but by Prometheus itself for every target.
EXTERNAL_SERIES: Mapping[str, Labels] = {"up": frozenset()}

# Values substituted for Grafana variables before parsing. `$__rate_interval` gets an unusual
# duration so that the test can tell it from a hard-coded window.
RATE_INTERVAL = "4m33s"
RATE_INTERVAL_DELTA = timedelta(minutes=4, seconds=33)
BUILTIN_VARIABLES = {"__rate_interval": RATE_INTERVAL, "__interval": "1m", "__range": "6h"}
QUERY_VARIABLE_VALUES = {"namespace": "billing|finance", "integration": "uk|rest-of-world"}
RANGE_FUNCTIONS = frozenset({"rate", "increase", "irate"})

REQUIRED_ALERTS = {
    # name: (severity or None when the choice is free, `for` or None when free)
    "M3stripeOperatorAbsent": ("critical", "10m"),
    "M3stripeIntegrationDisabled": (None, None),
    "M3stripeIntegrationNotConnected": ("warning", "15m"),
    "M3stripeNoSuccessfulRun": (None, None),
    "M3stripeErrorRatioHigh": (None, None),
    # No process holds the shard's Lease: nothing is sent (issue 11).
    "M3stripeIntegrationWithoutWriter": ("critical", "5m"),
}


# --------------------------------------------------------------------------- what the operator exports


def exported_series() -> dict[str, Labels]:
    """Sample name -> label names, from the operator's registry with one child of every labelled metric."""
    metrics = Metrics()
    for wrapper in vars(metrics).values():
        if isinstance(wrapper, MetricWrapperBase):
            names: tuple[str, ...] = wrapper._labelnames
            if names:
                wrapper.labels(*("x" for _ in names))
    series: dict[str, set[str]] = {}
    for family in metrics.registry.collect():
        assert family.samples, f"{family.name} exported no sample: the test did not create a child of it"
        for sample in family.samples:
            series.setdefault(sample.name, set()).update(sample.labels)
    return {name: frozenset(labels) for name, labels in series.items()}


EXPORTED = exported_series()


# --------------------------------------------------------------------------- label inference over the AST


@dataclass
class Analysis:
    metrics: set[str] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)
    range_windows: list[tuple[str, timedelta]] = field(default_factory=list)  # (function, window)
    selectors: list[pp.VectorSelector] = field(default_factory=list)


class Checker:
    """Infers the label names of each sub-expression (None for scalars and strings), recording errors."""

    def __init__(self, exported: Mapping[str, Labels]) -> None:
        self.exported = exported
        self.result = Analysis()

    def error(self, message: str) -> None:
        self.result.errors.append(message)

    def visit(self, node: Any) -> Labels | None:
        if isinstance(node, pp.VectorSelector):
            return self.selector(node)
        if isinstance(node, pp.MatrixSelector):
            return self.selector(node.vector_selector)
        if isinstance(node, pp.SubqueryExpr | pp.ParenExpr | pp.UnaryExpr):
            return self.visit(node.expr)
        if isinstance(node, pp.NumberLiteral | pp.StringLiteral):
            return None
        if isinstance(node, pp.Call):
            return self.call(node)
        if isinstance(node, pp.AggregateExpr):
            return self.aggregate(node)
        if isinstance(node, pp.BinaryExpr):
            return self.binary(node)
        raise AssertionError(f"unexpected PromQL node {type(node).__name__}: {node}")

    def selector(self, node: pp.VectorSelector) -> Labels:
        self.result.selectors.append(node)
        matchers: list[pp.Matcher] = list(node.matchers.matchers)
        for group in node.matchers.or_matchers:
            matchers.extend(group)
        name = node.name or next((m.value for m in matchers if m.name == "__name__"), None)
        if name is None:
            self.error(f"selector without a metric name: {node}")
            return TARGET_LABELS
        self.result.metrics.add(name)
        if name in self.exported:
            labels = self.exported[name] | TARGET_LABELS
        elif name in EXTERNAL_SERIES:
            labels = EXTERNAL_SERIES[name] | TARGET_LABELS
        else:
            self.error(f"metric {name} is not exported by the operator")
            return TARGET_LABELS
        for matcher in matchers:
            if matcher.name != "__name__" and matcher.name not in labels:
                self.error(f"{name} has no label {matcher.name!r} (matcher {matcher})")
        return labels

    def call(self, node: pp.Call) -> Labels | None:
        func: str = node.func.name
        args = [self.visit(arg) for arg in node.args]
        if func in RANGE_FUNCTIONS:
            arg = node.args[0]
            if isinstance(arg, pp.MatrixSelector):
                self.result.range_windows.append((func, arg.range))
        if func in ("time", "scalar", "pi"):
            return None
        if func in ("vector", "absent", "absent_over_time"):
            return frozenset()
        if func == "histogram_quantile":
            buckets = args[1]
            if buckets is not None and "le" not in buckets:
                self.error(f"histogram_quantile over series without 'le': {node}")
            return (buckets or frozenset()) - {"le"}
        if func in ("label_replace", "label_join"):
            base = args[0] or frozenset()
            destination = node.args[1]
            return base | {str(getattr(destination, "val", destination)).strip('"')}
        return next((a for a in args if a is not None), None)

    def aggregate(self, node: pp.AggregateExpr) -> Labels:
        inner = self.visit(node.expr)
        if node.param is not None:
            self.visit(node.param)
        op = str(node.op)
        modifier = node.modifier
        if modifier is None:
            return (inner or frozenset()) if op in ("topk", "bottomk", "limitk") else frozenset()
        labels = frozenset(modifier.labels)
        if modifier.type == pp.AggModifierType.By:
            missing = labels - (inner or frozenset())
            if missing:
                self.error(f"{op} by {sorted(missing)} over series without those labels: {node}")
            return labels
        return (inner or frozenset()) - labels

    def binary(self, node: pp.BinaryExpr) -> Labels | None:
        lhs, rhs = self.visit(node.lhs), self.visit(node.rhs)
        if lhs is None or rhs is None:
            return rhs if lhs is None else lhs
        op = str(node.op)
        modifier = node.modifier
        matching = modifier.matching if modifier is not None else None
        card = modifier.card if modifier is not None else pp.VectorMatchCardinality.OneToOne
        include = frozenset((modifier.group_labels if modifier is not None else None) or ())
        if matching is None:
            if op != "or" and lhs != rhs:
                self.error(
                    f"'{op}' without on()/ignoring() between label sets {sorted(lhs)} and {sorted(rhs)} "
                    f"matches nothing: {node}"
                )
            return lhs & rhs if op == "or" else lhs
        names = frozenset(matching.labels)
        if matching.type == pp.LabelModifierType.Include:
            for side, labels in (("left", lhs), ("right", rhs)):
                if names - labels:
                    self.error(f"on({', '.join(sorted(names - labels))}) missing on the {side} side: {node}")
        elif op != "or" and lhs - names != rhs - names and card == pp.VectorMatchCardinality.OneToOne:
            self.error(f"ignoring({', '.join(sorted(names))}) still leaves different label sets: {node}")
        if op in ("and", "unless"):
            return lhs
        if op == "or":
            return lhs & rhs
        if card == pp.VectorMatchCardinality.ManyToOne:
            if include - rhs:
                self.error(f"group_left labels {sorted(include - rhs)} not on the right side: {node}")
            return lhs | include
        if card == pp.VectorMatchCardinality.OneToMany:
            if include - lhs:
                self.error(f"group_right labels {sorted(include - lhs)} not on the left side: {node}")
            return rhs | include
        if matching.type == pp.LabelModifierType.Include:
            return names  # one-to-one with on(): Prometheus keeps only the matching labels
        return lhs - names


def analyse(expr: str) -> tuple[Labels | None, Analysis]:
    checker = Checker(EXPORTED)
    labels = checker.visit(pp.parse(expr))
    return labels, checker.result


# --------------------------------------------------------------------------- the dashboard


def variable_values(dashboard: Mapping[str, Any]) -> dict[str, str]:
    """A plausible value for each dashboard variable, as Grafana would interpolate it into PromQL."""
    values = dict(BUILTIN_VARIABLES)
    for variable in dashboard["templating"]["list"]:
        name = variable["name"]
        if variable["type"] == "query":
            values[name] = QUERY_VARIABLE_VALUES.get(name, "value-a|value-b")
        elif variable["type"] in ("custom", "constant", "textbox", "interval"):
            first = str(variable["query"]).split(",")[0]
            values[name] = first.split(" : ")[-1].strip()
        else:
            values[name] = name
    return values


VALUES = variable_values(DASHBOARD)
QUERIES = dashboard_queries(DASHBOARD)


@pytest.mark.parametrize("query", QUERIES, ids=[q.where for q in QUERIES])
def test_dashboard_query_uses_only_exported_metrics_and_labels(query: DashboardQuery) -> None:
    _, analysis = analyse(interpolate(query.expr, VALUES))
    assert not analysis.errors, "\n".join(analysis.errors)


@pytest.mark.parametrize("query", QUERIES, ids=[q.where for q in QUERIES])
def test_dashboard_query_windows_are_rate_interval(query: DashboardQuery) -> None:
    _, analysis = analyse(interpolate(query.expr, VALUES))
    for func, window in analysis.range_windows:
        assert window == RATE_INTERVAL_DELTA, f"{func}() over [{window}] instead of [$__rate_interval]: {query.expr}"


@pytest.mark.parametrize("query", QUERIES, ids=[q.where for q in QUERIES])
def test_dashboard_query_honours_namespace_and_integration(query: DashboardQuery) -> None:
    """Per-integration series are filtered by the dashboard's variables; the Stripe series cannot be."""
    _, analysis = analyse(interpolate(query.expr, VALUES))
    for selector in analysis.selectors:
        labels = EXPORTED.get(selector.name or "", frozenset())
        for variable in ("namespace", "integration"):
            if variable not in labels:
                continue
            regex = {m.value for m in selector.matchers.matchers if m.name == variable and m.op == pp.MatchOp.Re}
            assert regex == {VALUES[variable]}, f'{selector.name} lacks {variable}=~"${variable}": {query.expr}'


def test_dashboard_variables() -> None:
    variables = {v["name"]: v for v in DASHBOARD["templating"]["list"]}
    datasource = variables["datasource"]
    assert (datasource["type"], datasource["query"]) == ("datasource", "prometheus")
    for name in ("namespace", "integration"):
        variable = variables[name]
        assert variable["type"] == "query"
        assert variable["multi"] is True and variable["includeAll"] is True
        assert variable["datasource"] == DATASOURCE
        query = interpolate(variable_query(variable), VALUES)
        match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query)
        assert match, f"${name} is not label_values(<m3stripe metric>, label): {query}"
        labels, analysis = analyse(match.group(1))
        assert not analysis.errors, "\n".join(analysis.errors)
        assert analysis.metrics and all(m.startswith("m3stripe_") for m in analysis.metrics)
        assert labels is not None and match.group(2) == name and name in labels
    assert "$namespace" in variable_query(variables["integration"]), "integration choices follow the namespace"


def test_dashboard_structure() -> None:
    assert DASHBOARD["schemaVersion"] >= 36
    assert DASHBOARD["uid"] and DASHBOARD["title"] and DASHBOARD["tags"] and DASHBOARD["refresh"]
    panels = list(all_panels(DASHBOARD["panels"]))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), f"duplicate panel ids: {sorted(i for i in ids if ids.count(i) > 1)}"
    occupied: dict[tuple[int, int], str] = {}
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, f"{panel['title']!r} is wider than the grid"
        if panel.get("collapsed"):
            continue
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in occupied, f"{panel['title']!r} overlaps {occupied[(x, y)]!r}"
                occupied[(x, y)] = panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DATASOURCE, f"{panel['title']!r} does not use ${{datasource}}"
        assert panel.get("targets"), f"{panel['title']!r} has no query"
        for target in panel["targets"]:
            assert target.get("datasource", DATASOURCE) == DATASOURCE, f"{panel['title']!r} {target['refId']}"
    for annotation in DASHBOARD["annotations"]["list"]:
        if annotation.get("expr"):
            assert annotation["datasource"] == DATASOURCE


def test_dashboard_answers_the_questions() -> None:
    """The metrics behind each question appear somewhere on the dashboard."""
    used: set[str] = set()
    for query in QUERIES:
        used |= analyse(interpolate(query.expr, VALUES))[1].metrics
    wanted = {
        "m3stripe_integration_ready",
        "m3stripe_integration_connected",
        "m3stripe_integration_disabled",
        "m3stripe_integration_consecutive_errors",
        "m3stripe_bills_total",
        "m3stripe_sync_runs_total",
        "m3stripe_integration_last_success_timestamp_seconds",
        "m3stripe_integration_sync_interval_seconds",
        "m3stripe_error_events_total",
        "m3stripe_notifications_total",
        "m3stripe_stripe_requests_total",
        "m3stripe_stripe_retries_total",
        "m3stripe_stripe_rate_limit_wait_seconds_total",
        "m3stripe_stripe_rate_limit_requests_per_second",
        "m3stripe_stripe_request_duration_seconds_bucket",
        "m3stripe_leader",
        "m3stripe_integration_writer",
        "m3stripe_lease_acquisitions_total",
        "m3stripe_lease_writerless_seconds_bucket",
    }
    assert wanted <= used, f"not on the dashboard: {sorted(wanted - used)}"


# --------------------------------------------------------------------------- the alerts and the runbook


def load_rule_resource() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(RULES_PATH.read_text())
    return data


RESOURCE = load_rule_resource()
RULES: list[dict[str, Any]] = [rule for group in RESOURCE["spec"]["groups"] for rule in group["rules"]]


def github_anchor(heading: str) -> str:
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return slug.replace(" ", "-")


def runbook_sections() -> dict[str, str]:
    """Anchor -> text of the section under that heading."""
    sections: dict[str, str] = {}
    anchor = ""
    fenced = False
    for line in RUNBOOK_PATH.read_text().splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        heading = None if fenced else re.match(r"#{1,6}\s+(.*)", line)
        if heading:
            anchor = github_anchor(heading.group(1))
            sections[anchor] = ""
        elif anchor:
            sections[anchor] += line + "\n"
    return sections


def test_rule_resource() -> None:
    assert RESOURCE["apiVersion"] == "monitoring.coreos.com/v1"
    assert RESOURCE["kind"] == "PrometheusRule"
    metadata = RESOURCE["metadata"]
    assert metadata["namespace"] == "m3stripe-system"
    assert metadata["labels"]["release"] == "prometheus"
    assert metadata["labels"]["app.kubernetes.io/name"] == "m3stripe"
    groups = [g["name"] for g in RESOURCE["spec"]["groups"]]
    assert len(groups) == len(set(groups))
    names = [r["alert"] for r in RULES if "alert" in r]
    assert len(names) == len(set(names)), "duplicate alert names"
    assert set(REQUIRED_ALERTS) <= set(names)


@pytest.mark.parametrize("rule", RULES, ids=[r.get("alert") or r.get("record") for r in RULES])
def test_rule_expression(rule: Mapping[str, Any]) -> None:
    labels, analysis = analyse(rule["expr"])
    assert not analysis.errors, "\n".join(analysis.errors)
    assert labels is not None, "an alert expression must return a vector"
    if "for" in rule:
        assert pp.parse_duration(rule["for"]) >= timedelta(0)
    if "alert" not in rule:
        return
    templated = " ".join(str(v) for v in rule["annotations"].values())
    for used in re.findall(r"\$labels\.(\w+)", templated):
        assert used in labels, f"annotations use $labels.{used} but the alert has no such label"
    if {"namespace", "integration"} <= labels:
        for key in ("summary", "description"):
            text = rule["annotations"][key]
            assert "$labels.namespace" in text and "$labels.integration" in text, f"{key} names no integration"


@pytest.mark.parametrize("rule", [r for r in RULES if "alert" in r], ids=[r["alert"] for r in RULES if "alert" in r])
def test_alert_metadata_and_runbook(rule: Mapping[str, Any]) -> None:
    name = rule["alert"]
    severity = rule["labels"]["severity"]
    assert severity in ("critical", "warning", "info")
    annotations = rule["annotations"]
    assert annotations["summary"].strip() and annotations["description"].strip()
    anchor = name.lower()
    assert annotations["runbook_url"] == f"{RUNBOOK_URL}#{anchor}"
    sections = runbook_sections()
    assert anchor in sections, f"RUNBOOK.md has no section '## {name}'"
    assert "kubectl" in sections[anchor], f"the runbook section of {name} gives no kubectl command"
    wanted_severity, wanted_for = REQUIRED_ALERTS.get(name, (None, None))
    if wanted_severity:
        assert severity == wanted_severity
    if wanted_for:
        assert rule["for"] == wanted_for


def test_runbook_documents_the_requests() -> None:
    text = RUNBOOK_PATH.read_text()
    for needle in (
        "kubectl get stripeintegrations -A",
        "kubectl describe stripeintegration -n NS NAME",
        "kubectl get events -n NS --field-selector involvedObject.name=NAME",
        "status.openEvents",
        'm3stripe.dev/reenable="$(date +%s)" --overwrite',
        "status.lastHandledReenable",
        "m3stripe.dev/resolve=",
        'm3stripe.dev/requested-at="$(date +%s)"',
        "m3stripe.dev/replay=",
    ):
        assert needle in text, f"RUNBOOK.md does not mention {needle!r}"


# --------------------------------------------------------------------------- the checker itself


@pytest.mark.parametrize(
    ("expr", "error"),
    [
        ("m3stripe_no_such_metric", "not exported"),
        ('m3stripe_bills_total{status="sent"}', "no label 'status'"),
        ("sum by (endpoint) (m3stripe_bills_total)", "sum by ['endpoint']"),
        ("m3stripe_integration_ready unless m3stripe_stripe_requests_total", "matches nothing"),
        ("sum by (namespace) (m3stripe_bills_total) / on (integration) m3stripe_integration_ready", "on(integration)"),
        (
            "histogram_quantile(0.9, sum by (endpoint) (rate(m3stripe_stripe_request_duration_seconds_bucket[5m])))",
            "'le'",
        ),
    ],
)
def test_checker_catches(expr: str, error: str) -> None:
    _, analysis = analyse(expr)
    assert any(error in e for e in analysis.errors), analysis.errors


def test_exported_series_resolve_suffixes() -> None:
    assert "le" in EXPORTED["m3stripe_sync_run_duration_seconds_bucket"]
    assert {"m3stripe_bills_total", "m3stripe_bills_created"} <= set(EXPORTED)
    assert EXPORTED["m3stripe_bills_total"] == frozenset({"namespace", "integration", "outcome"})
    assert EXPORTED["m3stripe_stripe_requests_total"] == frozenset({"budget", "endpoint", "code"})


STRIPE_SERIES = {name for name, labels in EXPORTED.items() if "budget" in labels}


@pytest.mark.parametrize("query", QUERIES, ids=[q.where for q in QUERIES])
def test_dashboard_stripe_queries_follow_the_budget_variable(query: DashboardQuery) -> None:
    """Stripe series belong to a budget (a Stripe account and mode): each panel filters by $budget."""
    _, analysis = analyse(interpolate(query.expr, VALUES))
    for selector in analysis.selectors:
        if selector.name in STRIPE_SERIES:
            regex = {m.value for m in selector.matchers.matchers if m.name == "budget" and m.op == pp.MatchOp.Re}
            assert regex == {VALUES["budget"]}, f'{selector.name} lacks budget=~"$budget": {query.expr}'


def test_share_of_the_limit_compares_each_budget_with_its_own_limit() -> None:
    """No fixed limit variable: several Stripe accounts and modes are shown at once, each against its limit."""
    variables = {v["name"] for v in DASHBOARD["templating"]["list"]}
    assert "stripe_rps_limit" not in variables and "budget" in variables
    share = next(p for p in all_panels(DASHBOARD["panels"]) if p["title"] == "Share of the limit used")
    [target] = share["targets"]
    labels, analysis = analyse(interpolate(target["expr"], VALUES))
    assert not analysis.errors, analysis.errors
    assert labels == frozenset({"budget"})
    assert {"m3stripe_stripe_requests_total", "m3stripe_stripe_rate_limit_requests_per_second"} <= analysis.metrics
