"""The operator's settings: OperatorConfig, read from the environment (OperatorConfig.from_env)."""

from __future__ import annotations

import os

import pytest

from m3stripe.kube.config import (
    LeaseConfig,
    OperatorConfig,
    SmtpConfig,
    all_settings,
    unknown_variables,
    variables,
)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith("M3STRIPE_") or name in ("STRIPE_API_BASE", "M3TER_BASE_URL"):
            monkeypatch.delenv(name)
    return monkeypatch


def test_from_env_defaults(clean_env: pytest.MonkeyPatch) -> None:
    config = OperatorConfig.from_env()
    assert config.stripe.api_base is None
    assert config.m3ter.base_url is None
    assert config.credentials.secret_poll_seconds == 30
    assert config.credentials.recheck_seconds == 600
    assert config.credentials.retry_seconds == 20
    assert config.metrics.port == 9090
    assert config.sync.concurrency is None
    # Derived from the Stripe rate limit: enough requests in flight for a ~300 ms round trip.
    assert config.sync.concurrency_for(100) == 50  # a half-second round trip at 100/s (issue 22)
    assert config.sync.concurrency_for(25) == 13
    assert config.sync.concurrency_for(10000) == 64
    assert config.stripe.timeout_seconds == 30
    assert config.sync.enabled is True
    assert config.smtp == SmtpConfig()  # nothing set: no SMTP server, no email


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
    assert config.stripe.api_base == "http://stripe.local:12111"
    assert config.m3ter.base_url == "http://m3ter.local"
    assert config.credentials.secret_poll_seconds == 90
    assert config.credentials.recheck_seconds == 3600
    assert config.credentials.retry_seconds == 0.5
    assert config.metrics.port == 9100
    assert config.sync.concurrency == 3
    assert config.sync.concurrency_for(100) == 3
    assert config.stripe.timeout_seconds == 45
    assert config.smtp == SmtpConfig(host="smtp.example.com", port=2525, sender="ops@example.com")


def test_empty_base_urls_mean_the_defaults(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("STRIPE_API_BASE", "")
    clean_env.setenv("M3TER_BASE_URL", "")
    config = OperatorConfig.from_env()
    assert config.stripe.api_base is None
    assert config.m3ter.base_url is None


@pytest.mark.parametrize(
    ("value", "enabled"),
    [("false", False), ("FALSE", False), ("0", False), ("no", False), ("true", True), ("1", True), ("yes", True)],
)
def test_sync_switch(clean_env: pytest.MonkeyPatch, value: str, enabled: bool) -> None:
    clean_env.setenv("M3STRIPE_SYNC", value)
    assert OperatorConfig.from_env().sync.enabled is enabled


def test_bad_duration_exits_naming_the_variable(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("M3STRIPE_SECRET_POLL_INTERVAL", "30 seconds")
    with pytest.raises(SystemExit) as info:
        OperatorConfig.from_env()
    assert "M3STRIPE_SECRET_POLL_INTERVAL" in str(info.value.code)
    assert "'30 seconds'" in str(info.value.code)


def test_the_m3ter_budget_defaults_under_m3ters_50_per_second(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("M3STRIPE_M3TER_REQUESTS_PER_SECOND", raising=False)
    assert OperatorConfig.from_env().m3ter.requests_per_second == 40.0


def test_the_m3ter_budget_can_be_split_between_shards(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("M3STRIPE_M3TER_REQUESTS_PER_SECOND", "12.5")
    assert OperatorConfig.from_env().m3ter.requests_per_second == 12.5


@pytest.mark.parametrize("raw", ["0", "-3", "fast", "nan", "inf"])
def test_a_bad_m3ter_budget_stops_the_operator_with_the_variable_named(
    monkeypatch: pytest.MonkeyPatch, raw: str
) -> None:
    monkeypatch.setenv("M3STRIPE_M3TER_REQUESTS_PER_SECOND", raw)
    with pytest.raises(SystemExit, match="M3STRIPE_M3TER_REQUESTS_PER_SECOND: expected a positive number"):
        OperatorConfig.from_env()


# ------------------------------------------------------------------------------------------------ the settings object


def test_every_setting_has_a_docstring_and_its_own_environment_variable() -> None:
    found = list(all_settings())
    assert {s.group for s in found} >= {"lease", "m3ter", "stripe", "smtp", "metrics"}
    for s in found:
        assert s.doc, f"{s.group}.{s.name} ({s.variable.name}) has no docstring"
    names = [s.variable.name for s in found]
    assert len(names) == len(set(names)), "two fields read the same variable"
    assert variables() == set(names)


def test_the_defaults_of_the_object_are_the_defaults_written_as_its_variables_would_be(
    clean_env: pytest.MonkeyPatch,
) -> None:
    written = {s.variable.name: s.variable.default for s in all_settings() if s.variable.default is not None}
    assert OperatorConfig.from_env(written) == OperatorConfig() == OperatorConfig.from_env({})


def test_every_setting_is_read_from_its_variable() -> None:
    config = OperatorConfig.from_env(
        {
            "M3STRIPE_SYNC": "off",
            "M3STRIPE_CREDENTIAL_RETRY_INTERVAL": "5s",
            "M3STRIPE_NOTIFICATION_RETRY_INTERVAL": "2m",
            "M3STRIPE_SMTP_SECURITY": "tls",
            "M3STRIPE_SMTP_USERNAME": "ops",
            "M3STRIPE_SMTP_PASSWORD": "hunter2",
            "M3STRIPE_SMTP_TIMEOUT": "5s",
            "M3STRIPE_LEASE_NAME": "shard-a",
            "M3STRIPE_LEASE_NAMESPACE": "ops",
            "M3STRIPE_LEASE_DURATION": "20s",
            "M3STRIPE_LEASE_RENEW_DEADLINE": "12s",
            "M3STRIPE_LEASE_RETRY_PERIOD": "3s",
            "M3STRIPE_LEASE_LOCK_FILE": "/tmp/l.lock",
            "POD_NAME": "m3stripe-operator-0",
            "POD_NAMESPACE": "m3stripe-system",
        }
    )
    assert config.sync.enabled is False
    assert config.credentials.retry_seconds == 5
    assert (config.smtp.notification_retry_seconds, config.smtp.timeout_seconds) == (120, 5)
    assert (config.smtp.security, config.smtp.username, config.smtp.password) == ("tls", "ops", "hunter2")
    assert config.lease == LeaseConfig(
        name="shard-a",
        namespace="ops",
        duration_seconds=20,
        renew_deadline_seconds=12,
        retry_period_seconds=3,
        lock_file="/tmp/l.lock",
        pod_name="m3stripe-operator-0",
        pod_namespace="m3stripe-system",
    )


def test_an_empty_variable_is_an_unset_one_except_where_empty_has_a_meaning() -> None:
    config = OperatorConfig.from_env(
        {
            "M3STRIPE_SECRET_POLL_INTERVAL": "",
            "M3STRIPE_SYNC_CONCURRENCY": "",
            "M3STRIPE_SMTP_FROM": "",
            "M3STRIPE_SMTP_SECURITY": "",
            "M3STRIPE_LEASE_NAMESPACE": "",
            "M3STRIPE_LEASE_NAME": "",  # no election
            "M3STRIPE_LEASE_LOCK_FILE": "",  # no same-pod shortcut
        }
    )
    assert config.credentials.secret_poll_seconds == 30
    assert config.sync.concurrency is None
    assert config.smtp == SmtpConfig()
    assert config.lease.namespace is None
    assert (config.lease.name, config.lease.lock_file) == ("", "")


@pytest.mark.parametrize(("port", "security"), [("465", "tls"), ("587", "starttls"), ("25", "none"), ("2525", "none")])
def test_smtp_security_follows_the_port_unless_set(port: str, security: str) -> None:
    smtp = OperatorConfig.from_env({"M3STRIPE_SMTP_HOST": "mail", "M3STRIPE_SMTP_PORT": port}).smtp
    assert smtp.effective_security == security
    chosen = OperatorConfig.from_env({"M3STRIPE_SMTP_PORT": port, "M3STRIPE_SMTP_SECURITY": "none"}).smtp
    assert chosen.effective_security == "none"


def test_the_smtp_password_is_never_printed() -> None:
    config = OperatorConfig.from_env({"M3STRIPE_SMTP_HOST": "mail", "M3STRIPE_SMTP_PASSWORD": "hunter2"})
    assert "hunter2" not in repr(config)
    password = next(s for s in all_settings() if s.variable.name == "M3STRIPE_SMTP_PASSWORD")
    assert password.value_text(config) == "(set)"


@pytest.mark.parametrize(
    ("name", "raw", "says"),
    [
        ("M3STRIPE_SYNC", "maybe", "expected true or false"),
        ("M3STRIPE_METRICS_PORT", "70000", "expected a port number"),
        ("M3STRIPE_SMTP_PORT", "smtp", "expected a port number"),
        ("M3STRIPE_SYNC_CONCURRENCY", "0", "expected a whole number of at least 1"),
        ("M3STRIPE_SMTP_SECURITY", "ssl", "expected starttls, tls or none"),
        ("M3STRIPE_LEASE_DURATION", "15", "is not a duration"),
        ("M3STRIPE_SMTP_TIMEOUT", "soon", "is not a duration"),
    ],
)
def test_a_value_that_cannot_be_read_stops_the_operator_naming_the_variable_and_the_problem(
    name: str, raw: str, says: str
) -> None:
    with pytest.raises(SystemExit) as info:
        OperatorConfig.from_env({name: raw})
    assert str(info.value.code).startswith(f"environment variable {name}: ")
    assert says in str(info.value.code) and repr(raw) in str(info.value.code)


def test_a_flag_replaces_one_field_read_as_its_variable_is_and_errors_name_the_flag() -> None:
    config = OperatorConfig.from_env({"M3STRIPE_LEASE_DURATION": "20s", "M3STRIPE_LEASE_NAME": "env"})
    flagged = config.with_text("lease", "retry_period_seconds", "3s", source="--lease-retry-period")
    assert flagged.lease == LeaseConfig(name="env", duration_seconds=20, retry_period_seconds=3)
    assert config.lease.retry_period_seconds == 2  # the object is immutable: the original is unchanged
    with pytest.raises(SystemExit, match=r"^--lease-duration: '5x' is not a duration"):
        config.with_text("lease", "duration_seconds", "5x", source="--lease-duration")


def test_unknown_m3stripe_variables_are_named_so_that_a_typo_is_not_silent() -> None:
    environ = {"M3STRIPE_LEASE_DURATON": "20s", "M3STRIPE_LEASE_DURATION": "20s", "HOME": "/root"}
    assert unknown_variables(environ) == ["M3STRIPE_LEASE_DURATON"]
