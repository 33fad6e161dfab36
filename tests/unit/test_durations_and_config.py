"""Go-style durations and the operator's environment configuration."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest

from m3stripe.domain.durations import parse_duration
from m3stripe.kube.config import OperatorConfig


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("5m", 300),
        ("1h", 3600),
        ("1h30m", 5400),
        ("1h30m15s", 5415),
        ("250ms", 0.25),
        ("1m500ms", 60.5),
        ("1.5h", 5400),
        ("0s", 0),
        ("720h", 720 * 3600),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "5", "5d", "1h 30m", " 5s", "5s ", "-5s", "s", "1.h", "5sec", "5M", "abc"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(text)
    assert repr(text) in str(info.value)


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


@pytest.mark.parametrize("text", ["99999999999999h", "9" * 30 + "h", "2562048h"])
def test_a_duration_beyond_go_durations_is_refused_not_overflowed(text: str) -> None:
    with pytest.raises(ValueError, match=r"maximum|too long"):
        parse_duration(text)


def test_a_duration_longer_than_its_maximum_names_the_maximum() -> None:
    with pytest.raises(ValueError, match="maximum of 24h"):
        parse_duration("25h", maximum=timedelta(hours=24))
    assert parse_duration("24h", maximum=timedelta(hours=24)) == timedelta(hours=24)
