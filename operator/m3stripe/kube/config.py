"""Operator-wide settings, read from the environment (the Deployment sets them)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

from m3stripe.api.durations import parse_duration


def _seconds(name: str, default: str) -> float:
    raw = os.environ.get(name, default)
    try:
        return parse_duration(raw).total_seconds()
    except ValueError as err:
        raise SystemExit(f"environment variable {name}: {err}") from None


def _positive_float(name: str, default: str) -> float:
    raw = os.environ.get(name, default)
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise SystemExit(f"environment variable {name}: expected a positive number, got {raw!r}")
    return value


@dataclass(frozen=True)
class OperatorConfig:
    """What the operator needs besides the StripeIntegration resources themselves."""

    stripe_api_base: str | None = None
    m3ter_base_url: str | None = None
    # How often the referenced Secrets are re-read by name (rotation and late creation show up within it).
    secret_poll_seconds: float = 30.0
    # How often a key that Stripe accepted is asked about again (a key revoked in Stripe's dashboard).
    credential_recheck_seconds: float = 600.0
    # Backoff after a transient failure of a credential check (Stripe unreachable, 429, 5xx).
    credential_retry_seconds: float = 20.0
    metrics_port: int = 9090
    # Leader election (a coordination.k8s.io/v1 Lease per shard; client-go's defaults and meaning).
    # Empty lease name: no election (`m3stripe run --standalone`), this process is the only writer.
    lease_name: str = "m3stripe"
    lease_namespace: str | None = None  # None: the operator's own namespace (POD_NAMESPACE)
    lease_duration_seconds: float = 15.0
    lease_renew_deadline_seconds: float = 10.0
    lease_retry_period_seconds: float = 2.0
    # The pod-local lock file that lets a restarted container take its own dead predecessor's Lease at once
    # (m3stripe.kube.leadership). Empty: no shortcut, a dead holder is waited out.
    lease_lock_file: str = "/var/run/m3stripe/lease.lock"
    # Bills in flight at once per integration. None: enough to keep the integration's Stripe rate limit busy
    # at a typical 300 ms round trip (rate x 0.3, between 8 and 64), as the benchmark showed is needed.
    sync_concurrency: int | None = None
    # Client-side budget per m3ter Organization, shared by every integration reading it. m3ter allows 50
    # requests/s per Organization (https://www.m3ter.com/docs/guides/m3ter-apis/config-api-limits); 40 plus a
    # burst of 5 stays under it with slack for jitter. Shards or other systems reading the same Organization
    # must split the 50 between them.
    m3ter_requests_per_second: float = 40.0
    # Per-request timeout towards Stripe; a timed-out write is retried with the same idempotency key.
    stripe_timeout_seconds: float = 30.0
    sync_enabled: bool = True
    # The disablement email's first retry after a failed attempt (doubled each time, 5 attempts in all).
    notification_retry_seconds: float = 30.0
    smtp: dict[str, str] = field(default_factory=dict)

    def concurrency_for(self, requests_per_second: int) -> int:
        if self.sync_concurrency is not None:
            return self.sync_concurrency
        return max(8, min(64, math.ceil(requests_per_second * 0.3)))

    @classmethod
    def from_env(cls) -> OperatorConfig:
        return cls(
            stripe_api_base=os.environ.get("STRIPE_API_BASE") or None,
            m3ter_base_url=os.environ.get("M3TER_BASE_URL") or None,
            secret_poll_seconds=_seconds("M3STRIPE_SECRET_POLL_INTERVAL", "30s"),
            credential_recheck_seconds=_seconds("M3STRIPE_CREDENTIAL_RECHECK_INTERVAL", "10m"),
            credential_retry_seconds=_seconds("M3STRIPE_CREDENTIAL_RETRY_INTERVAL", "20s"),
            metrics_port=int(os.environ.get("M3STRIPE_METRICS_PORT", "9090")),
            lease_name=os.environ.get("M3STRIPE_LEASE_NAME", "m3stripe"),
            lease_namespace=os.environ.get("M3STRIPE_LEASE_NAMESPACE") or None,
            lease_duration_seconds=_seconds("M3STRIPE_LEASE_DURATION", "15s"),
            lease_renew_deadline_seconds=_seconds("M3STRIPE_LEASE_RENEW_DEADLINE", "10s"),
            lease_retry_period_seconds=_seconds("M3STRIPE_LEASE_RETRY_PERIOD", "2s"),
            lease_lock_file=os.environ.get("M3STRIPE_LEASE_LOCK_FILE", "/var/run/m3stripe/lease.lock"),
            sync_concurrency=int(os.environ["M3STRIPE_SYNC_CONCURRENCY"])
            if os.environ.get("M3STRIPE_SYNC_CONCURRENCY")
            else None,
            stripe_timeout_seconds=_seconds("M3STRIPE_STRIPE_TIMEOUT", "30s"),
            m3ter_requests_per_second=_positive_float("M3STRIPE_M3TER_REQUESTS_PER_SECOND", "40"),
            notification_retry_seconds=_seconds("M3STRIPE_NOTIFICATION_RETRY_INTERVAL", "30s"),
            sync_enabled=os.environ.get("M3STRIPE_SYNC", "true").lower() not in ("0", "false", "no"),
            smtp={
                k.removeprefix("M3STRIPE_SMTP_").lower(): v
                for k, v in os.environ.items()
                if k.startswith("M3STRIPE_SMTP_")
            },
        )
