"""The Grafana dashboard as the monitoring tests read it: where it and the PrometheusRule are, its panels and
variables, and its PromQL queries with Grafana's variables interpolated."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MONITORING = Path(__file__).resolve().parents[2] / "deploy" / "monitoring"
DASHBOARD_PATH = MONITORING / "grafana-dashboard.json"
RULES_PATH = MONITORING / "prometheusrule.yaml"


def load_dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD_PATH.read_text())
    return data


def all_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels") or [])


def variable_query(variable: Mapping[str, Any]) -> str:
    query = variable.get("query")
    if isinstance(query, Mapping):
        query = query.get("query")
    return str(query or "")


VARIABLE = re.compile(r"\$(?:\{(\w+)(?::\w+)?\}|(\w+))|\[\[(\w+)\]\]")


def interpolate(expr: str, values: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(3)
        if name not in values:
            raise AssertionError(f"unknown variable ${name} in {expr!r}")
        return values[name]

    return VARIABLE.sub(replace, expr)


@dataclass(frozen=True)
class DashboardQuery:
    where: str
    expr: str


def dashboard_queries(dashboard: Mapping[str, Any]) -> list[DashboardQuery]:
    queries = []
    for panel in all_panels(dashboard["panels"]):
        for target in panel.get("targets") or []:
            if target.get("expr"):
                queries.append(
                    DashboardQuery(f"panel {panel['id']} {panel['title']!r} {target['refId']}", target["expr"])
                )
    for annotation in dashboard.get("annotations", {}).get("list", []):
        if annotation.get("expr"):
            queries.append(DashboardQuery(f"annotation {annotation['name']!r}", annotation["expr"]))
    return queries


DASHBOARD = load_dashboard()
