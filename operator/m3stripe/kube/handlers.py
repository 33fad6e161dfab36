"""Kopf handlers: the Kubernetes layer. They only route events to the per-integration workers."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import kopf
from prometheus_client import start_http_server

from m3stripe.adapters.kube_api import KubeApi
from m3stripe.adapters.mailer import Mailer, SmtpSettings
from m3stripe.api import names
from m3stripe.kube.config import LeaseConfig, SmtpConfig
from m3stripe.kube.integration import Integration
from m3stripe.kube.leadership import AlwaysLeader, LeaderElector, LeaseSettings, default_namespace
from m3stripe.kube.peers import seniority
from m3stripe.kube.runtime import OperatorMemo, Runtime
from m3stripe.kube.worker import IntegrationWorker
from m3stripe.metrics import Metrics

RESOURCE = (names.GROUP, names.VERSION, names.PLURAL)
# HTTP client libraries log request headers at DEBUG (httpcore printed `Authorization: Bearer sk_...`):
# they stay at WARNING whatever the operator's verbosity, so no key reaches the log.
HTTP_LOGGERS = ("httpcore", "httpx", "urllib3", "aiohttp", "stripe", "m3ter", "hpack", "kubernetes", "h2", "h11")


def pin_http_loggers() -> None:
    for noisy in HTTP_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)


pin_http_loggers()


def _mailer(smtp: SmtpConfig) -> Mailer | None:
    if not smtp.host:
        return None
    return Mailer(
        SmtpSettings(
            host=smtp.host,
            port=smtp.port,
            sender=smtp.sender,
            security=smtp.effective_security,
            username=smtp.username,
            password=smtp.password,
            timeout=smtp.timeout_seconds,
        )
    )


def _lease_settings(lease: LeaseConfig) -> LeaseSettings:
    return LeaseSettings(
        name=lease.name,
        namespace=lease.namespace or default_namespace(lease.pod_namespace),
        pod_name=lease.pod_name,
        lock_file=Path(lease.lock_file) if lease.lock_file else None,
        lease_duration=lease.duration_seconds,
        renew_deadline=lease.renew_deadline_seconds,
        retry_period=lease.retry_period_seconds,
    )


@kopf.on.startup()
async def configure(
    settings: kopf.OperatorSettings,
    logger: logging.Logger | logging.LoggerAdapter[Any],
    memo: OperatorMemo,
    **_: Any,
) -> None:
    """Kopf's settings, then the Runtime (from `memo.config`, which `m3stripe run` built) into `memo`."""
    config = memo.config
    # Kopf's bookkeeping goes to annotations under our own prefix, never into the strict status schema.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=names.KOPF_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=names.KOPF_PREFIX, key="last-handled-configuration"
    )
    settings.persistence.finalizer = names.FINALIZER
    # Watch streams can go silently idle without a TCP reset; bounded timeouts make kopf reconnect.
    settings.watching.server_timeout = 120
    settings.watching.client_timeout = 150
    settings.watching.connect_timeout = 5
    settings.networking.request_timeout = 30
    settings.posting.level = logging.WARNING
    if memo.namespaced:
        # A shard (`-n`): the namespaces are given by name, and deployed so (deploy/overlays/single-namespace) the
        # operator may not list namespaces nor watch CRDs. Scanning them would only meet 403s, which kopf retries
        # with backoff for about 45 s before it starts watching; its scanning settings skip exactly that.
        settings.scanning.disabled = True
    # The official kubernetes client is synchronous; its calls run in worker threads. Size the pool for
    # many integrations polling at once rather than for the CPU count.
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=32, thread_name_prefix="kube"))
    pin_http_loggers()  # again: kopf.configure() ran after this module was imported
    metrics = Metrics()
    if config.metrics.port:
        start_http_server(config.metrics.port, registry=metrics.registry)
        logger.info("metrics on :%d/metrics", config.metrics.port)
    mailer = _mailer(config.smtp)
    if mailer is None:
        logger.warning("no SMTP server configured (M3STRIPE_SMTP_HOST): disablement emails will not be sent")
    kube = KubeApi(secret_ttl=config.credentials.secret_poll_seconds / 2)
    runtime = memo.runtime = Runtime(config=config, kube=kube, metrics=metrics, mailer=mailer)
    if config.lease.name:
        # Kopf runs standalone (no peering): every replica watches and runs its daemons, but only the Lease
        # holder writes. A restarted process therefore never waits for a dead peer's peering record.
        lease = _lease_settings(config.lease)
        problems = lease.problems()
        if problems:
            raise kopf.PermanentError("leader election settings: " + "; ".join(problems))
        elector = LeaderElector(kube, lease, observer=metrics)
        runtime.leader = elector
        memo.election = asyncio.create_task(elector.run(), name="leader-election")
        logger.info(
            "leader election on Lease %s/%s as %s (duration %gs, renew deadline %gs, retry %gs)",
            lease.namespace,
            lease.name,
            elector.identity,
            lease.lease_duration,
            lease.renew_deadline,
            lease.retry_period,
        )
    else:
        runtime.leader = AlwaysLeader()
        logger.warning("no leader election (--standalone): make sure no other replica writes the same integrations")


@kopf.on.cleanup()
async def cleanup(memo: OperatorMemo, **_: Any) -> None:
    # Kopf stopped the daemons before cleanup: stop the fence, then hand the Lease over at once.
    if memo.election is not None:
        memo.election.cancel()
    if memo.runtime is not None:
        if isinstance(memo.runtime.leader, LeaderElector):
            await memo.runtime.leader.release()
        memo.runtime.kube.close()


@kopf.on.probe(id="workers")
def workers_probe(memo: OperatorMemo, **_: Any) -> int:
    """Liveness reports in-process health only: a Stripe outage must not restart the operator."""
    return len(memo.started().workers)


@kopf.daemon(*RESOURCE, cancellation_timeout=10)
async def integration_daemon(
    *,
    body: kopf.Body,
    namespace: str | None,
    name: str,
    uid: str,
    stopped: kopf.DaemonStopped,
    logger: logging.Logger | logging.LoggerAdapter[Any],
    memo: OperatorMemo,
    **_: Any,
) -> None:
    rt = memo.started()
    assert namespace is not None  # StripeIntegrations are namespaced

    def emit(type_: str, reason: str, message: str) -> None:
        kopf.event(body, type=type_, reason=reason, message=message[:1024])

    created = seniority(body.get("metadata") or {}, namespace, name)[0]
    worker = IntegrationWorker(Integration(rt, namespace, name, uid, emit, logger, created))
    rt.workers[uid] = worker
    try:
        await worker.run(body, stopped)
    finally:
        rt.workers.pop(uid, None)
        if stopped.reason is not None and stopped.reason & kopf.DaemonStoppingReason.RESOURCE_DELETED:
            rt.metrics.forget(namespace, name)


class _QuietWake(logging.Filter):
    """Every watch event runs `wake_worker`; its per-event success line would drown the useful log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "wake_worker" not in record.getMessage()


logging.getLogger("kopf.objects").addFilter(_QuietWake())


@kopf.on.event(*RESOURCE)
async def wake_worker(body: kopf.Body, uid: str, memo: OperatorMemo, **_: Any) -> None:
    """Low-level watch events (no kopf bookkeeping on the object): wake the worker on spec/annotation changes.

    Async on purpose: kopf runs a sync handler in a thread, and asyncio.Event is not thread-safe: set from another
    thread, a wake-up can be lost (the worker then sleeps until its next poll, 30 s by default).
    """
    worker = memo.runtime.workers.get(uid) if memo.runtime is not None else None
    if worker is not None:
        worker.poke(body)
