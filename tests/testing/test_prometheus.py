"""m3stripe.testing.prometheus: the rule file promtool and Prometheus read, loopback only, and the demo's flag."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from m3stripe import cli
from m3stripe.testing.prometheus import JOB, Prometheus, main, prometheus_rules

RULES = Path(__file__).resolve().parents[2] / "deploy" / "monitoring" / "prometheusrule.yaml"


def test_the_rule_file_is_the_prometheusrules_groups_unchanged() -> None:
    resource = yaml.safe_load(RULES.read_text())
    assert yaml.safe_load(prometheus_rules(RULES.read_text())) == {"groups": resource["spec"]["groups"]}


def test_a_manifest_that_is_not_a_prometheusrule_is_refused() -> None:
    with pytest.raises(ValueError, match="not a PrometheusRule"):
        prometheus_rules("apiVersion: v1\nkind: ConfigMap\n")


def test_the_rules_command_prints_the_rule_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", str(RULES)]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["groups"]
    assert main([]) == 2


@pytest.mark.parametrize("target", ["10.0.0.1:9090", "example.com:9090", "192.168.1.10:80"])
def test_prometheus_scrapes_only_loopback_targets(tmp_path: Path, target: str) -> None:
    with pytest.raises(ValueError, match="only loopback"):
        Prometheus(tmp_path, targets=[target])


def test_its_scrape_job_is_the_one_the_alerts_match_and_honours_the_operators_labels(tmp_path: Path) -> None:
    config = Prometheus(tmp_path, targets=["127.0.0.1:9090"], rules="groups: []\n").config()
    [job] = config["scrape_configs"]
    assert job["job_name"] == JOB == "m3stripe-operator"
    assert job["honor_labels"] is True
    assert config["rule_files"] == ["m3stripe-rules.yaml"]
    assert 'job="m3stripe-operator"' in RULES.read_text()


def test_the_demo_with_prometheus_but_without_it_installed_says_how_to_get_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no prometheus binary on it
    assert cli.main(["demo", "--prometheus"]) == 2
    assert "apt-get install prometheus" in capsys.readouterr().out
