"""Prometheus metrics of the operator. One prefix, units as suffixes, bounded label values only."""

from __future__ import annotations

import contextlib
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from m3stripe.api.conditions import condition, parse_rfc3339
from m3stripe.api.status import Condition, StripeIntegrationStatus
from m3stripe.domain.runs import RunReport, RunStatus

PREFIX = "m3stripe"
# Histogram buckets (seconds): a reconcile is a status read and write; a run may be a whole backfill.
_RECONCILE = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_RUN = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
_REQUEST = (0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
# Lease hand-overs: client-go's 15 s lease duration is the expected worst case.
_WRITERLESS = (0.5, 1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 900)


class Metrics:
    """All series the operator exports; per-integration series are removed when the integration goes."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        labels = ("namespace", "integration")
        self.reconcile_duration = self._histogram(
            "reconcile_duration_seconds", "Time spent reconciling one StripeIntegration's status.", labels, _RECONCILE
        )
        self.connected = self._gauge(
            "integration_connected", "1 when the integration's Stripe credential is valid, else 0.", labels
        )
        self.disabled = self._gauge(
            "integration_disabled", "1 when the integration disabled itself after successive errors.", labels
        )
        self.ready = self._gauge(
            "integration_ready", "1 when the integration's Ready condition is True, else 0.", labels
        )
        self.suspended = self._gauge(
            "integration_suspended", "1 while spec.suspend is true (paused on purpose), else 0.", labels
        )
        self.source_connected = self._gauge(
            "integration_source_connected", "1 when m3ter accepts the integration's credentials, else 0.", labels
        )
        self.open_events = self._gauge("integration_open_events", "Error events not yet marked actioned.", labels)
        self.consecutive_errors = self._gauge(
            "integration_consecutive_errors", "Successive error events since the last success.", labels
        )
        self.sync_interval = self._gauge(
            "integration_sync_interval_seconds", "The integration's configured sync interval.", labels
        )
        self.last_success = self._gauge(
            "integration_last_success_timestamp_seconds",
            "Unix time at which a sync run of the integration last completed without errors.",
            labels,
        )
        self.runs = self._counter(
            "sync_runs_total", "Sync runs by m3ter run status (COMPLETE, ERROR, AUTH_FAILED, ...).", (*labels, "status")
        )
        self.run_duration = self._histogram("sync_run_duration_seconds", "Duration of sync runs.", labels, _RUN)
        self.bills = self._counter(
            "bills_total", "Bills handled, by outcome: sent, unchanged, skipped, failed.", (*labels, "outcome")
        )
        self.error_events = self._counter(
            "error_events_total", "Integration error events raised, by m3ter event kind.", (*labels, "kind")
        )
        self.internal_errors = self._counter(
            "internal_errors_total",
            "Unexpected exceptions, by where they happened: reconcile or pass (a bug or unhandled input).",
            (*labels, "where"),
        )
        self.tax = self._counter(
            "tax_minor_units_total",
            "Tax Stripe computed on the invoices runs wrote (automatic tax), in minor units of the currency (cents); "
            "a regenerated Bill's invoice counts again when it is rewritten.",
            (*labels, "currency"),
        )
        self.notifications = self._counter(
            "notifications_total", "Disablement emails, by result: sent or failed.", (*labels, "result")
        )
        # The Stripe series belong to a budget, not to an integration: one client-side rate limit per Stripe
        # account and mode, shared by every integration and key writing to it (https://docs.stripe.com/rate-limits).
        # `budget` is `live.<digest>` or `test.<digest>` (adapters.stripe_gateway.budget_label): the account id is
        # never a label value in clear.
        budget = ("budget",)
        self.stripe_requests = self._counter(
            "stripe_requests_total",
            "Stripe API requests by Stripe budget (account digest and mode), endpoint and HTTP status (0: network error).",
            (*budget, "endpoint", "code"),
        )
        self.stripe_latency = self._histogram(
            "stripe_request_duration_seconds", "Latency of Stripe API requests.", (*budget, "endpoint"), _REQUEST
        )
        self.stripe_retries = self._counter(
            "stripe_retries_total",
            "Stripe requests retried, by budget, endpoint and reason: rate_limited, lock_timeout, server, network.",
            (*budget, "endpoint", "reason"),
        )
        self.rate_limit_waited = self._counter(
            "stripe_rate_limit_wait_seconds",
            "Time spent waiting for the client-side Stripe rate limiter of the budget.",
            budget,
        )
        self.rate_limit = self._gauge(
            "stripe_rate_limit_requests_per_second",
            "The client-side request limit of the budget: the lowest spec.requestsPerSecond of its integrations.",
            budget,
        )
        # Leader election (the Lease): which process writes, how often the Lease moves, how long no one wrote.
        self.leader = self._gauge(
            "leader",
            "1 while this process holds the shard's Lease and writes, else 0 (a standby).",
            ("lease", "identity"),
        )
        self.lease_acquisitions = self._counter(
            "lease_acquisitions_total",
            "Times this process took the shard's Lease from another holder, a released one or none (hand-overs).",
            ("lease",),
        )
        self.writerless = self._histogram(
            "lease_writerless_seconds",
            "Time without a writer before this process took the Lease (since the previous holder's last renew).",
            ("lease",),
            _WRITERLESS,
        )
        self.integration_writer = self._gauge(
            "integration_writer",
            "1 while this process is the writer of the integration (it holds the Lease), 0 while it stands by.",
            labels,
        )
        # Label sets handed out per integration, so that `forget` can remove exactly those series.
        self._issued: dict[tuple[str, str], set[tuple[Any, tuple[str, ...]]]] = {}

    def _gauge(self, name: str, doc: str, labels: tuple[str, ...]) -> Gauge:
        return Gauge(f"{PREFIX}_{name}", doc, labels, registry=self.registry)

    def _counter(self, name: str, doc: str, labels: tuple[str, ...]) -> Counter:
        return Counter(f"{PREFIX}_{name}", doc, labels, registry=self.registry)

    def _histogram(self, name: str, doc: str, labels: tuple[str, ...], buckets: tuple[float, ...]) -> Histogram:
        return Histogram(f"{PREFIX}_{name}", doc, labels, registry=self.registry, buckets=buckets)

    def child(self, metric: Any, namespace: str, name: str, *extra: str) -> Any:
        """`metric.labels(...)` for one integration, remembered for `forget`."""
        values = (namespace, name, *extra)
        self._issued.setdefault((namespace, name), set()).add((metric, values))
        return metric.labels(*values)

    def observe_reconcile(self, namespace: str, name: str, seconds: float) -> None:
        self.child(self.reconcile_duration, namespace, name).observe(seconds)

    def observe_status(
        self,
        namespace: str,
        name: str,
        status: StripeIntegrationStatus,
        *,
        suspended: bool = False,
        sync_interval: float | None = None,
    ) -> None:
        """Gauges from the status the operator just wrote (also right after a restart, before any run)."""
        self.child(self.suspended, namespace, name).set(1 if suspended else 0)
        if sync_interval is not None:
            self.child(self.sync_interval, namespace, name).set(sync_interval)
        last_success = parse_rfc3339(status.lastSuccessfulSyncTime)
        if last_success is not None:
            self.child(self.last_success, namespace, name).set(last_success.timestamp())
        conditions = status.conditions
        self.child(self.source_connected, namespace, name).set(_true(condition(conditions, "SourceConnected")))
        self.child(self.ready, namespace, name).set(_true(condition(conditions, "Ready")))
        self.child(self.open_events, namespace, name).set(len(status.openEvents))
        self.child(self.connected, namespace, name).set(1 if status.connected else 0)
        self.child(self.disabled, namespace, name).set(1 if status.disabled else 0)
        self.child(self.consecutive_errors, namespace, name).set(status.consecutiveErrors)

    def observe_run(self, namespace: str, name: str, report: RunReport, *, seconds: float, interval: float) -> None:
        """Counters and gauges from one finished Send pass."""
        self.child(self.runs, namespace, name, str(report.status)).inc()
        self.child(self.run_duration, namespace, name).observe(seconds)
        self.child(self.sync_interval, namespace, name).set(interval)
        for outcome, count in (
            ("sent", report.sent),
            ("unchanged", report.unchanged),
            ("skipped", report.skipped),
            ("failed", report.failed),
        ):
            self.child(self.bills, namespace, name, outcome).inc(count)
        for currency, amount in report.taxes.items():
            self.child(self.tax, namespace, name, currency).inc(amount)
        for event in report.events:
            self.error_event(namespace, name, str(event.kind))
        if report.status is RunStatus.COMPLETE and report.completed is not None:
            self.child(self.last_success, namespace, name).set(report.completed.timestamp())

    def error_event(self, namespace: str, name: str, kind: str) -> None:
        self.child(self.error_events, namespace, name, kind).inc()

    def notified(self, namespace: str, name: str, result: str, recipients: int) -> None:
        """Disablement emails: `result` is sent or failed."""
        self.child(self.notifications, namespace, name, result).inc(recipients)

    def internal_error(self, namespace: str, name: str, where: str) -> None:
        self.child(self.internal_errors, namespace, name, where).inc()

    def writer(self, namespace: str, name: str, writing: bool) -> None:
        self.child(self.integration_writer, namespace, name).set(1 if writing else 0)

    # LeadershipObserver (the elector reports here); identity: one value per process.
    def leading(self, lease: str, identity: str, is_leader: bool) -> None:
        self.leader.labels(lease, identity).set(1 if is_leader else 0)

    def acquired(self, lease: str, writerless_seconds: float | None) -> None:
        self.lease_acquisitions.labels(lease).inc()
        if writerless_seconds is not None:
            self.writerless.labels(lease).observe(writerless_seconds)

    def stripe(self, budget: str, per_second: float) -> StripeBudgetObserver:
        """The StripeObserver of one pass's gateway: its series carry the budget's label; records the budget's limit."""
        self.rate_limit.labels(budget).set(per_second)
        # The wait counter exists at 0 from the budget's first pass, so "no wait" reads 0, not "no data"
        # (https://prometheus.io/docs/practices/instrumentation/#avoid-missing-metrics).
        self.rate_limit_waited.labels(budget)
        return StripeBudgetObserver(self, budget)

    def forget(self, namespace: str, name: str) -> None:
        """Drop every series of a deleted integration, so no stale value outlives it."""
        for metric, values in self._issued.pop((namespace, name), set()):
            with contextlib.suppress(KeyError):  # already gone
                metric.remove(*values)


class StripeBudgetObserver:
    """A StripeObserver (the gateway reports here) for one budget; labels are bounded: endpoint names are fixed
    strings and there is one budget per Stripe account and mode."""

    def __init__(self, metrics: Metrics, budget: str) -> None:
        self._metrics = metrics
        self.budget = budget

    def request(self, endpoint: str, status: int, seconds: float) -> None:
        self._metrics.stripe_requests.labels(self.budget, endpoint, str(status)).inc()
        self._metrics.stripe_latency.labels(self.budget, endpoint).observe(seconds)

    def retry(self, endpoint: str, reason: str) -> None:
        self._metrics.stripe_retries.labels(self.budget, endpoint, reason).inc()

    def rate_limit_wait(self, seconds: float) -> None:
        self._metrics.rate_limit_waited.labels(self.budget).inc(seconds)


def _true(found: Condition | None) -> int:
    return 1 if found is not None and found.status == "True" else 0
