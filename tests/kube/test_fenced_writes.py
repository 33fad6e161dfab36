"""Writes the Lease's fence cannot stop at the server (status PATCHes, emails): bounded and checked client-side."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import kmock
import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from m3stripe.adapters.kube_api import KubeApi, KubeApiError
from m3stripe.adapters.mailer import Mailer, SmtpSettings
from m3stripe.api import names
from m3stripe.api.status import read_status, wire
from m3stripe.domain.ports import FenceLost
from m3stripe.kube.config import OperatorConfig
from m3stripe.kube.integration import Integration
from m3stripe.kube.runtime import Runtime
from m3stripe.kube.sync_driver import SyncDriver
from m3stripe.metrics import Metrics
from m3stripe.testing.kube_emulator import KubeEmulator
from m3stripe.testing.kubeconfig import write_kubeconfig
from m3stripe.testing.smtp import SmtpServer


class ScriptedLeader:
    """Holds the Lease for the first `checks` checks of is_leader(), then loses it."""

    identity = "scripted"

    def __init__(self, checks: int) -> None:
        self.checks = checks

    def is_leader(self) -> bool:
        self.checks -= 1
        return self.checks >= 0

    def fence(self) -> None:
        if not self.is_leader():
            raise FenceLost("lost")

    def time_left(self) -> float | None:
        return None

    async def wait_leading(self, stopped: Any) -> bool:
        return self.is_leader()


async def test_a_status_patch_to_an_api_server_that_never_answers_is_abandoned_after_its_timeout(
    tmp_path: Path,
) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        await asyncio.sleep(60)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig.yaml", f"http://127.0.0.1:{port}")
    kube = KubeApi(config.new_client_from_config(str(kubeconfig)))  # type: ignore[no-untyped-call]
    try:
        with pytest.raises(KubeApiError, match="patching status of ns/x failed"):
            await asyncio.wait_for(kube.patch_status("ns", "x", {"connected": True}, timeout=0.5), timeout=20)
    finally:
        kube.close()
        server.close()


def _driver(smtp: SmtpServer, leader: ScriptedLeader) -> SyncDriver:
    mailer = Mailer(SmtpSettings(host=smtp.host, port=smtp.port, security="none"))
    kube = KubeApi(config.new_client_from_config_dict(_UNUSED_KUBECONFIG))  # type: ignore[no-untyped-call]
    runtime = Runtime(config=OperatorConfig(), kube=kube, metrics=Metrics(), mailer=mailer, leader=leader)
    return SyncDriver(Integration(runtime, "ns", "flaky", "uid-1", lambda *event: None, logging.getLogger("test")))


_UNUSED_KUBECONFIG = {
    "apiVersion": "v1",
    "kind": "Config",
    "clusters": [{"name": "c", "cluster": {"server": "http://127.0.0.1:9"}}],
    "users": [{"name": "u", "user": {}}],
    "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
    "current-context": "c",
}
PENDING = read_status(
    {
        "notification": {
            "disablementId": "run-1",
            "recipients": ["a@example.com", "b@example.com"],
            "attempts": 0,
            "state": "Pending",
            "nextAttemptTime": None,
        }
    }
)


async def test_no_disablement_email_starts_when_the_fence_fell_while_sending_was_recorded() -> None:
    async with SmtpServer() as smtp:
        driver = _driver(smtp, ScriptedLeader(checks=0))
        assert wire(driver.notification_fields(PENDING))["notification"]["state"] == "Sending"
        with pytest.raises(FenceLost):
            driver.start_notification()
        assert smtp.messages == []


async def test_a_disablement_email_stops_at_the_first_recipient_after_the_fence_fell() -> None:
    async with SmtpServer() as smtp:
        # One check after the Sending PATCH, one before the first message; the second message finds it lost.
        driver = _driver(smtp, ScriptedLeader(checks=2))
        driver.notification_fields(PENDING)
        driver.start_notification()
        await asyncio.gather(*driver._mail_tasks)
        assert [m.recipients for m in smtp.messages] == [("a@example.com",)]


async def test_the_kube_emulator_refuses_a_status_merge_patch_at_a_stale_resource_version(tmp_path: Path) -> None:
    """As the API server does: a merge patch naming `metadata.resourceVersion` is conditional on it."""
    async with KubeEmulator() as emulator, kmock.Server(emulator) as server:
        emulator.add_namespace("ns")
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig.yaml", str(server.url).rstrip("/"))
        api_client = config.new_client_from_config(str(kubeconfig))  # type: ignore[no-untyped-call]
        custom = client.CustomObjectsApi(api_client)
        body = {
            "apiVersion": names.API_VERSION,
            "kind": names.KIND,
            "metadata": {"name": "x", "namespace": "ns"},
            "spec": {
                "destination": "StripeTestMode",
                "credentialRef": {"name": "stripe"},
                "m3ter": {"organizationId": "00000000-0000-4000-8000-000000000001", "credentialsRef": {"name": "m"}},
            },
        }
        args = (names.GROUP, names.VERSION, "ns", names.PLURAL)
        await asyncio.to_thread(custom.create_namespaced_custom_object, *args, body)
        read = await asyncio.to_thread(custom.get_namespaced_custom_object, *args, "x")
        seen = read["metadata"]["resourceVersion"]
        patch = {"metadata": {"resourceVersion": seen}, "status": {"connected": True}}
        await asyncio.to_thread(custom.patch_namespaced_custom_object_status, *args, "x", patch)
        with pytest.raises(ApiException) as stale:
            await asyncio.to_thread(custom.patch_namespaced_custom_object_status, *args, "x", patch)
        assert stale.value.status == 409
        api_client.close()
