"""The operator's environment configuration (OperatorConfig.from_env)."""

from __future__ import annotations

import os

import pytest

from m3stripe.kube.config import OperatorConfig


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith("M3STRIPE_") or name in ("STRIPE_API_BASE", "M3TER_BASE_URL"):
            monkeypatch.delenv(name)
    return monkeypatch


def test_from_env_defaults(clean_env: pytest.MonkeyPatch) -> None:
    config = OperatorConfig.from_env()
    assert config.stripe_api_base is None
    assert config.m3ter_base_url is None
    assert config.secret_poll_seconds == 30
    assert config.credential_recheck_seconds == 600
    assert config.credential_retry_seconds == 20
    assert config.metrics_port == 9090
    assert config.sync_concurrency is None
    # Derived from the Stripe rate limit: enough requests in flight for a ~300 ms round trip.
    assert config.concurrency_for(100) == 30
    assert config.concurrency_for(25) == 8
    assert config.concurrency_for(10000) == 64
    assert config.stripe_timeout_seconds == 30
    assert config.sync_enabled is True
    assert config.smtp == {}


def test_from_env_reads_every_setting(clean_env: pytest.MonkeyPatch) -> None:
    for name, value in {
        "STRIPE_API_BASE": "http://stripe.local:12111",
        "M3TER_BASE_URL": "http://m3ter.local",
        "M3STRIPE_SECRET_POLL_INTERVAL": "1m30s",
        "M3STRIPE_CREDENTIAL_RECHECK_INTERVAL": "1h",
        "M3STRIPE_CREDENTIAL_RETRY_INTERVAL": "500ms",
        "M3STRIPE_METRICS_PORT": "9100",
        "M3STRIPE_SYNC_CONCURRENCY": "3",
        "M3STRIPE_STRIPE_TIMEOUT": "45s",
        "M3STRIPE_SMTP_HOST": "smtp.example.com",
        "M3STRIPE_SMTP_PORT": "2525",
        "M3STRIPE_SMTP_FROM": "ops@example.com",
    }.items():
        clean_env.setenv(name, value)
    config = OperatorConfig.from_env()
    assert config.stripe_api_base == "http://stripe.local:12111"
    assert config.m3ter_base_url == "http://m3ter.local"
    assert config.secret_poll_seconds == 90
    assert config.credential_recheck_seconds == 3600
    assert config.credential_retry_seconds == 0.5
    assert config.metrics_port == 9100
    assert config.sync_concurrency == 3
    assert config.concurrency_for(100) == 3
    assert config.stripe_timeout_seconds == 45
    assert config.smtp == {"host": "smtp.example.com", "port": "2525", "from": "ops@example.com"}


def test_empty_base_urls_mean_the_defaults(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("STRIPE_API_BASE", "")
    clean_env.setenv("M3TER_BASE_URL", "")
    config = OperatorConfig.from_env()
    assert config.stripe_api_base is None
    assert config.m3ter_base_url is None


@pytest.mark.parametrize(
    ("value", "enabled"),
    [("false", False), ("FALSE", False), ("0", False), ("no", False), ("true", True), ("1", True), ("yes", True)],
)
def test_sync_switch(clean_env: pytest.MonkeyPatch, value: str, enabled: bool) -> None:
    clean_env.setenv("M3STRIPE_SYNC", value)
    assert OperatorConfig.from_env().sync_enabled is enabled


def test_bad_duration_exits_naming_the_variable(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("M3STRIPE_SECRET_POLL_INTERVAL", "30 seconds")
    with pytest.raises(SystemExit) as info:
        OperatorConfig.from_env()
    assert "M3STRIPE_SECRET_POLL_INTERVAL" in str(info.value.code)
    assert "'30 seconds'" in str(info.value.code)


def test_the_m3ter_budget_defaults_under_m3ters_50_per_second(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("M3STRIPE_M3TER_REQUESTS_PER_SECOND", raising=False)
    assert OperatorConfig.from_env().m3ter_requests_per_second == 40.0


def test_the_m3ter_budget_can_be_split_between_shards(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("M3STRIPE_M3TER_REQUESTS_PER_SECOND", "12.5")
    assert OperatorConfig.from_env().m3ter_requests_per_second == 12.5


@pytest.mark.parametrize("raw", ["0", "-3", "fast", "nan", "inf"])
def test_a_bad_m3ter_budget_stops_the_operator_with_the_variable_named(
    monkeypatch: pytest.MonkeyPatch, raw: str
) -> None:
    monkeypatch.setenv("M3STRIPE_M3TER_REQUESTS_PER_SECOND", raw)
    with pytest.raises(SystemExit, match="M3STRIPE_M3TER_REQUESTS_PER_SECOND: expected a positive number"):
        OperatorConfig.from_env()
