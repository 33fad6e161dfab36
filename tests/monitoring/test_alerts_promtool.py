"""Every alert of deploy/monitoring/prometheusrule.yaml, evaluated by Prometheus' own promtool.

`promtool check rules` accepts the rule file, and `promtool test rules` runs tests/monitoring/promtool/alerts_test.yaml:
each alert fires and does not fire, before and after its `for:`, with its labels and annotations. A wrong
threshold or `for:` makes those tests fail (shown below by mutating the rules). Without promtool the tests skip,
except under CI (CI=true), where .ci/run installed it and its absence is a failure.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from m3stripe.testing.prometheus import prometheus_rules
from tests.monitoring.prometheus_tools import prometheus_tool

ROOT = Path(__file__).resolve().parents[2]
RULES_PATH = ROOT / "deploy" / "monitoring" / "prometheusrule.yaml"
TESTS_PATH = Path(__file__).resolve().parent / "promtool" / "alerts_test.yaml"
ALERTS: list[dict[str, Any]] = [
    rule for group in yaml.safe_load(RULES_PATH.read_text())["spec"]["groups"] for rule in group["rules"]
]


def promtool() -> str:
    return prometheus_tool("promtool")


def run_promtool(tmp_path: Path, rules: str) -> subprocess.CompletedProcess[str]:
    """`promtool test rules` on the committed tests against `rules` (a rule file's text)."""
    shutil.copy(TESTS_PATH, tmp_path / TESTS_PATH.name)
    (tmp_path / "m3stripe-rules.yaml").write_text(rules)
    return subprocess.run(
        [promtool(), "test", "rules", TESTS_PATH.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_promtool_accepts_the_rule_file(tmp_path: Path) -> None:
    rules = tmp_path / "m3stripe-rules.yaml"
    rules.write_text(prometheus_rules(RULES_PATH.read_text()))
    proc = subprocess.run(
        [promtool(), "check", "rules", str(rules)], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in proc.stdout


def test_every_alert_passes_its_promtool_unit_tests(tmp_path: Path) -> None:
    proc = run_promtool(tmp_path, prometheus_rules(RULES_PATH.read_text()))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


@pytest.mark.parametrize("rule", ALERTS, ids=[r["alert"] for r in ALERTS])
def test_every_alert_is_tested_firing_and_not_firing_with_its_labels_and_annotations(rule: dict[str, Any]) -> None:
    checks = [
        check
        for case in yaml.safe_load(TESTS_PATH.read_text())["tests"]
        for check in case.get("alert_rule_test", ())
        if check["alertname"] == rule["alert"]
    ]
    firing = [check for check in checks if check.get("exp_alerts")]
    assert firing, f"{rule['alert']} is never shown firing"
    assert any(not check.get("exp_alerts") for check in checks), f"{rule['alert']} is never shown not firing"
    # Before its `for:` is up: a check without the alert later than 0 in a case where it then fires.
    assert any(not check.get("exp_alerts") and check["eval_time"] != "0m" for check in checks), (
        f"{rule['alert']} is not shown pending"
    )
    for check in firing:
        for alert in check["exp_alerts"]:
            assert alert["exp_labels"]["severity"] == rule["labels"]["severity"]
            assert set(alert["exp_annotations"]) == set(rule["annotations"]), "every annotation is checked"


# A rule changed the way a careless edit would: each must make the promtool tests fail.
MUTATIONS = [
    ("M3stripeOperatorAbsent", "for", "10m", "5m"),
    ("M3stripeIntegrationDisabled", "expr", "== 1", "== 0"),
    ("M3stripeIntegrationDisabled", "for", "1m", "5m"),
    ("M3stripeIntegrationNotConnected", "for", "15m", "10m"),
    ("M3stripeNoSuccessfulRun", "expr", "2 * max by", "3 * max by"),
    ("M3stripeNoSuccessfulRun", "expr", '{status!="COMPLETE"}) >= 2', '{status!="COMPLETE"}) >= 3'),
    ("M3stripeNoSuccessfulRun", "for", "15m", "20m"),
    ("M3stripeErrorRatioHigh", "expr", "> 0.1", "> 0.25"),
    ("M3stripeErrorRatioHigh", "expr", "> 0.1", "> 0.05"),
    ("M3stripeErrorRatioHigh", "expr", '{outcome!="skipped"}', "{}"),
    ("M3stripeErrorRatioHigh", "for", "15m", "5m"),
    ("M3stripeIntegrationWithoutWriter", "expr", "max by", "min by"),
    ("M3stripeIntegrationWithoutWriter", "for", "5m", "10m"),
    ("M3stripeStripeRateLimited", "expr", "> 0.05", "> 0.2"),
    ("M3stripeStripeRateLimited", "expr", "> 0.05", "> 0.03"),
    ("M3stripeStripeRateLimited", "expr", "sum by (budget, endpoint)", "sum by (endpoint)"),
    ("M3stripeStripeRateLimited", "for", "15m", "1m"),
]


def mutated(alert: str, field: str, old: str, new: str) -> str:
    resource = yaml.safe_load(RULES_PATH.read_text())
    [rule] = [r for g in resource["spec"]["groups"] for r in g["rules"] if r.get("alert") == alert]
    assert old in str(rule[field]), f"{alert}.{field} no longer contains {old!r}: update MUTATIONS"
    rule[field] = re.sub(re.escape(old), new, str(rule[field]))
    return prometheus_rules(yaml.safe_dump(resource, sort_keys=False))


@pytest.mark.parametrize(("alert", "field", "old", "new"), MUTATIONS, ids=[f"{m[0]}:{m[1]}:{m[3]}" for m in MUTATIONS])
def test_a_wrong_threshold_or_duration_fails_the_promtool_tests(
    tmp_path: Path, alert: str, field: str, old: str, new: str
) -> None:
    proc = run_promtool(tmp_path, mutated(alert, field, old, new))
    assert proc.returncode != 0, f"promtool's tests still pass with {alert}.{field}: {old!r} -> {new!r}"
    assert alert in proc.stdout + proc.stderr
