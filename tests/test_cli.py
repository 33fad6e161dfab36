"""`m3stripe run` hands kopf the settings object in `memo` (flags over the environment, nothing written into
`os.environ`), and `m3stripe settings` shows the settings in effect or renders the README's table."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import kopf
import pytest

from m3stripe.cli import SETTINGS_BEGIN, SETTINGS_END, main
from m3stripe.kube.config import OperatorConfig, settings_table
from m3stripe.kube.runtime import OperatorMemo


@pytest.fixture
def kopf_run(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """kopf.run's arguments, instead of running the operator."""
    called: dict[str, Any] = {}
    monkeypatch.setattr(kopf, "configure", lambda **kwargs: None)
    monkeypatch.setattr(kopf, "run", lambda **kwargs: called.update(kwargs))
    for name in list(os.environ):
        if name.startswith("M3STRIPE_") or name in ("POD_NAME", "POD_NAMESPACE"):
            monkeypatch.delenv(name)
    return called


def test_run_hands_kopf_the_settings_in_memo_with_the_flags_over_the_environment(
    kopf_run: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("M3STRIPE_LEASE_NAME", "from-env")
    monkeypatch.setenv("M3STRIPE_LEASE_DURATION", "20s")
    monkeypatch.setenv("M3STRIPE_SECRET_POLL_INTERVAL", "5s")
    monkeypatch.setenv("POD_NAME", "pod-a")
    environ = dict(os.environ)
    argv = ["run", "-n", "billing", "--liveness=", "--lease-name", "shard-b", "--lease-retry-period", "3s"]
    assert main(argv) == 0
    assert dict(os.environ) == environ, "the flags went into the environment"
    memo = kopf_run["memo"]
    assert isinstance(memo, OperatorMemo)
    assert memo.namespaced is True and memo.runtime is None
    assert memo.config.lease.name == "shard-b"  # the flag wins
    assert memo.config.lease.duration_seconds == 20  # the environment where no flag says otherwise
    assert memo.config.lease.retry_period_seconds == 3
    assert memo.config.lease.pod_name == "pod-a"
    assert memo.config.credentials.secret_poll_seconds == 5
    assert kopf_run["namespaces"] == ["billing"] and kopf_run["clusterwide"] is False
    assert kopf_run["standalone"] is True  # kopf's peering is never used: the Lease elects the writer


def test_run_without_namespaces_watches_the_cluster_with_kopfs_scanning(kopf_run: dict[str, Any]) -> None:
    assert main(["run", "--liveness="]) == 0
    assert kopf_run["memo"].namespaced is False and kopf_run["clusterwide"] is True
    assert kopf_run["memo"].config == OperatorConfig()


def test_standalone_turns_the_election_off_whatever_the_environment_says(
    kopf_run: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("M3STRIPE_LEASE_NAME", "shard-a")
    assert main(["run", "--standalone", "--liveness="]) == 0
    assert kopf_run["memo"].config.lease.name == ""
    assert os.environ["M3STRIPE_LEASE_NAME"] == "shard-a"


def test_a_flag_that_cannot_be_read_stops_run_naming_the_flag_before_kopf_starts(kopf_run: dict[str, Any]) -> None:
    with pytest.raises(SystemExit, match=r"^--lease-renew-deadline: 'ten' is not a duration"):
        main(["run", "--lease-renew-deadline", "ten"])
    assert kopf_run == {}


def test_a_variable_that_cannot_be_read_stops_run_naming_the_variable(
    kopf_run: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("M3STRIPE_METRICS_PORT", "http")
    with pytest.raises(SystemExit, match=r"^environment variable M3STRIPE_METRICS_PORT: expected a port number"):
        main(["run"])
    assert kopf_run == {}


def test_run_names_the_m3stripe_variables_that_are_no_setting(
    kopf_run: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("M3STRIPE_LEASE_DURATON", "20s")
    assert main(["run", "--liveness="]) == 0
    assert "M3STRIPE_LEASE_DURATON" in capsys.readouterr().err
    assert kopf_run["memo"].config.lease.duration_seconds == 15


def test_settings_markdown_prints_the_table_of_every_setting(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["settings", "--markdown"]) == 0
    assert capsys.readouterr().out == settings_table()


def test_settings_update_rewrites_only_the_lines_between_the_markers(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\nBefore.\n\n{SETTINGS_BEGIN}\n| old |\n{SETTINGS_END}\n\nAfter.\n", encoding="utf-8")
    assert main(["settings", "--markdown", "--update", str(readme)]) == 0
    assert readme.read_text(encoding="utf-8") == (
        f"# Title\n\nBefore.\n\n{SETTINGS_BEGIN}\n{settings_table()}{SETTINGS_END}\n\nAfter.\n"
    )
    unmarked = tmp_path / "other.md"
    unmarked.write_text("no markers\n", encoding="utf-8")
    assert main(["settings", "--update", str(unmarked)]) == 2
    assert unmarked.read_text(encoding="utf-8") == "no markers\n"


def test_settings_prints_the_values_in_effect_and_never_the_smtp_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("M3STRIPE_SECRET_POLL_INTERVAL", "1m30s")
    monkeypatch.setenv("M3STRIPE_SMTP_PASSWORD", "hunter2")
    monkeypatch.delenv("M3STRIPE_LEASE_DURATION", raising=False)
    assert main(["settings"]) == 0
    lines = {line.split()[0]: line.split()[1:] for line in capsys.readouterr().out.splitlines()}
    assert lines["M3STRIPE_SECRET_POLL_INTERVAL"] == ["90s", "environment"]
    assert lines["M3STRIPE_LEASE_DURATION"] == ["15s", "default"]
    assert lines["M3STRIPE_SMTP_PASSWORD"] == ["(set)", "environment"]
