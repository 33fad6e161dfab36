"""`m3stripe run` hands kopf the settings object in `memo` (flags over the environment, nothing written into
`os.environ`)."""

from __future__ import annotations

import os
from typing import Any

import kopf
import pytest

from m3stripe.cli import main
from m3stripe.kube.config import OperatorConfig
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
