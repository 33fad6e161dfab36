"""The kopf handlers take everything from `memo`: the startup handler builds the Runtime from the settings that
`m3stripe run` put there and keeps it there (with the election), the daemon, the wake-up handler and the probe find
it there, and cleanup hands the Lease over. No module global holds the Runtime."""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import kopf
import pytest
from kubernetes import client, config

from m3stripe.adapters.kube_api import KubeApi
from m3stripe.kube import handlers
from m3stripe.kube.config import LeaseConfig, MetricsConfig, OperatorConfig, SmtpConfig
from m3stripe.kube.leadership import AlwaysLeader, LeaderElector
from m3stripe.kube.runtime import OperatorMemo
from tests.support.kube_world import kube_api_server

LOG = logging.getLogger("test-handlers")
LEASE_NS = "m3stripe-system"


class Poked:
    def __init__(self) -> None:
        self.bodies: list[Mapping[str, Any]] = []

    def poke(self, body: Mapping[str, Any]) -> None:
        self.bodies.append(body)


@pytest.fixture
async def kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Path]:
    """The Kubernetes emulator, found through KUBECONFIG as the operator finds a cluster."""
    # Loading a kubeconfig sets the client's process-wide default configuration: restore it afterwards.
    monkeypatch.setattr(client.Configuration, "_default", client.Configuration._default)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    path = tmp_path / "kubeconfig.yaml"
    async with kube_api_server(path, LEASE_NS):
        monkeypatch.setenv("KUBECONFIG", str(path))
        # The client read KUBECONFIG when it was imported; a process started now would find it there.
        monkeypatch.setattr("kubernetes.config.kube_config.KUBE_CONFIG_DEFAULT_LOCATION", str(path))
        yield path


def _standalone(**groups: Any) -> OperatorConfig:
    return OperatorConfig(metrics=MetricsConfig(port=0), lease=LeaseConfig(name=""), **groups)


async def test_startup_builds_the_runtime_from_the_settings_in_memo_and_keeps_it_there(kubeconfig: Path) -> None:
    settings = kopf.OperatorSettings()
    memo = OperatorMemo(config=_standalone(smtp=SmtpConfig(host="mail.example.com", port=465, username="ops")))
    await handlers.configure(settings=settings, logger=LOG, memo=memo)
    runtime = memo.started()
    assert runtime.config is memo.config
    assert isinstance(runtime.leader, AlwaysLeader) and memo.election is None
    assert runtime.mailer is not None
    assert (runtime.mailer.settings.host, runtime.mailer.settings.security) == ("mail.example.com", "tls")
    assert runtime.mailer.settings.username == "ops"
    assert settings.scanning.disabled is False  # the whole cluster: kopf scans namespaces and CRDs
    await handlers.cleanup(memo=memo)


async def test_without_an_smtp_host_there_is_no_mailer(kubeconfig: Path) -> None:
    memo = OperatorMemo(config=_standalone())
    await handlers.configure(settings=kopf.OperatorSettings(), logger=LOG, memo=memo)
    assert memo.started().mailer is None
    await handlers.cleanup(memo=memo)


async def test_a_shard_turns_kopfs_scanning_off(kubeconfig: Path) -> None:
    settings = kopf.OperatorSettings()
    memo = OperatorMemo(config=_standalone(), namespaced=True)
    await handlers.configure(settings=settings, logger=LOG, memo=memo)
    assert settings.scanning.disabled is True
    await handlers.cleanup(memo=memo)


async def test_the_wake_up_handler_and_the_probe_find_the_workers_through_each_objects_copy_of_memo(
    kubeconfig: Path,
) -> None:
    memo = OperatorMemo(config=_standalone())
    body = kopf.Body({"metadata": {"uid": "u-1", "name": "uk", "namespace": "billing"}})
    # Before start-up nothing is there to wake, and the probe says the operator has not started.
    await handlers.wake_worker(body=body, uid="u-1", memo=copy.copy(memo))
    with pytest.raises(RuntimeError, match="not started"):
        handlers.workers_probe(memo=memo)
    await handlers.configure(settings=kopf.OperatorSettings(), logger=LOG, memo=memo)
    # Kopf gives each object a shallow copy of the operator's memo, made after start-up: one shared Runtime.
    per_object = copy.copy(memo)
    worker = Poked()
    memo.started().workers["u-1"] = worker
    await handlers.wake_worker(body=body, uid="u-1", memo=per_object)
    await handlers.wake_worker(body=body, uid="u-2", memo=per_object)  # no worker (yet): nothing to wake
    assert worker.bodies == [body]
    assert handlers.workers_probe(memo=memo) == 1
    await handlers.cleanup(memo=memo)


async def test_with_a_lease_startup_elects_and_cleanup_hands_the_lease_over(kubeconfig: Path) -> None:
    lease = LeaseConfig(name="shard-t", namespace=LEASE_NS, pod_name="pod-t", lock_file="")
    memo = OperatorMemo(config=OperatorConfig(metrics=MetricsConfig(port=0), lease=lease))
    await handlers.configure(settings=kopf.OperatorSettings(), logger=LOG, memo=memo)
    elector = memo.started().leader
    assert isinstance(elector, LeaderElector) and elector.identity.startswith("pod-t_")
    assert memo.election is not None
    for _ in range(200):
        if elector.is_leader():
            break
        await asyncio.sleep(0.05)
    assert elector.is_leader()
    await handlers.cleanup(memo=memo)
    assert memo.election.cancelled() or memo.election.done()
    reader = KubeApi(config.new_client_from_config(str(kubeconfig)))  # type: ignore[no-untyped-call]
    try:
        record = await reader.read_lease(LEASE_NS, "shard-t", timeout=5)
    finally:
        reader.close()
    assert record is not None and not record.holder  # released: a standby takes it at its next retry


async def test_the_lease_namespace_defaults_to_the_pods(kubeconfig: Path) -> None:
    lease = LeaseConfig(name="shard-p", pod_namespace=LEASE_NS, lock_file="")
    memo = OperatorMemo(config=OperatorConfig(metrics=MetricsConfig(port=0), lease=lease))
    await handlers.configure(settings=kopf.OperatorSettings(), logger=LOG, memo=memo)
    elector = memo.started().leader
    assert isinstance(elector, LeaderElector) and elector.settings.namespace == LEASE_NS
    await handlers.cleanup(memo=memo)


async def test_lease_timings_that_allow_two_writers_stop_the_start_up(kubeconfig: Path) -> None:
    lease = LeaseConfig(name="shard-x", namespace=LEASE_NS, duration_seconds=10, renew_deadline_seconds=10)
    memo = OperatorMemo(config=OperatorConfig(metrics=MetricsConfig(port=0), lease=lease))
    with pytest.raises(kopf.PermanentError, match="renew deadline"):
        await handlers.configure(settings=kopf.OperatorSettings(), logger=LOG, memo=memo)
    assert memo.election is None
    memo.started().kube.close()
