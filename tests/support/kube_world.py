"""The worker's world (tests/kube): the base world's emulators, the Kubernetes emulator behind kmock's server (read and
written through the official kubernetes client, as the operator does), the operator's Runtime over them, and the
StripeIntegrations a test applies, each with the real IntegrationWorker that reconciles it.

There is no operator process and no kopf: a test calls `reconcile` once per step, with the object as the API server
holds it, as kopf's daemon would hand it over. Everything but the kubernetes client's calls (in threads, as the
operator makes them) runs on the test's event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import kmock
from kubernetes import client, config

from m3stripe.adapters.kube_api import KubeApi
from m3stripe.adapters.m3ter_token import M3terCredentials
from m3stripe.api import names
from m3stripe.kube.config import CredentialsConfig, LeaseConfig, M3terConfig, OperatorConfig, StripeConfig, SyncConfig
from m3stripe.kube.integration import Integration
from m3stripe.kube.peers import seniority
from m3stripe.kube.runtime import Runtime
from m3stripe.kube.worker import IntegrationWorker
from m3stripe.metrics import Metrics
from m3stripe.testing.kube_client import KubeClient
from m3stripe.testing.kube_emulator import KubeEmulator
from m3stripe.testing.kubeconfig import write_kubeconfig
from m3stripe.testing.m3ter_emulator import M3terEmulator
from m3stripe.testing.stripe_emulator import StripeEmulator
from tests.support.world import World, open_world

NS = "billing"
NAME = "invoices"
ORG = "org-worker"
KEY = "sk_test_51workerInProcess"
M3TER_CLIENT, M3TER_SECRET = "worker-client", "worker-secret"

Event = tuple[str, str, str]  # (type, reason, message), as the worker hands them to kopf.event


@asynccontextmanager
async def kube_api_server(kubeconfig: Path, *namespaces: str) -> AsyncIterator[KubeEmulator]:
    """The Kubernetes emulator with `namespaces`, served over HTTP by kmock, and `kubeconfig` pointing at it."""
    async with KubeEmulator() as emulator, kmock.Server(emulator) as server:
        for namespace in namespaces:
            emulator.add_namespace(namespace)
        write_kubeconfig(kubeconfig, str(server.url).rstrip("/"))
        yield emulator


@dataclass
class Handle:
    """One StripeIntegration in the API server and the worker that reconciles it."""

    w: KubeWorld
    namespace: str
    name: str
    worker: IntegrationWorker
    uid: str
    events: list[Event] = field(default_factory=list)
    _tokens: int = 0

    def _resource(self) -> tuple[str, str, str, str]:
        return (names.GROUP, names.VERSION, self.namespace, names.PLURAL)

    async def body(self) -> dict[str, Any]:
        found = await asyncio.to_thread(self.w.custom.get_namespaced_custom_object, *self._resource(), self.name)
        return cast(dict[str, Any], found)

    async def status(self) -> dict[str, Any]:
        return dict((await self.body()).get("status") or {})

    async def reconcile(self) -> dict[str, Any]:
        """One step of the worker on the object as the API server holds it; the status it left there."""
        await self.worker.reconcile(await self.body())
        return await self.status()

    async def patch(self, patch: dict[str, Any]) -> None:
        await asyncio.to_thread(self.w.custom.patch_namespaced_custom_object, *self._resource(), self.name, patch)

    async def patch_spec(self, **spec: Any) -> None:
        await self.patch({"spec": spec})

    async def annotate(self, key: str, value: str) -> None:
        await self.patch({"metadata": {"annotations": {key: value}}})

    async def run_now(self) -> dict[str, Any]:
        """Ask for a pass as a person does (requested-at annotation), and reconcile."""
        self._tokens += 1
        token = f"now-{self._tokens}"
        await self.annotate(names.ANNOTATION_REQUESTED_AT, token)
        status = await self.reconcile()
        assert status.get("lastHandledRequestedAt") == token, status
        return status

    def restart(self) -> None:
        """The operator restarted: a new worker for the same object, with nothing in memory."""
        self.worker = IntegrationWorker(self.worker.integration)

    async def delete(self) -> None:
        await self.worker._source.close()
        await asyncio.to_thread(self.w.custom.delete_namespaced_custom_object, *self._resource(), self.name)

    def reasons(self) -> list[str]:
        return [reason for _, reason, _ in self.events]


@dataclass(kw_only=True)
class KubeWorld(World):
    """The emulators, the Runtime, and the StripeIntegrations applied: `NS/NAME` (`create_integration`, which the
    world's own methods act on) and any other (`apply`)."""

    k8s: KubeEmulator
    custom: client.CustomObjectsApi
    core: client.CoreV1Api
    runtime: Runtime
    kube_client: KubeClient  # a person's view of the cluster (Secrets)
    # How far the m3ter emulator's clock is behind: Bills made with a lag were last modified that long ago.
    m3ter_lag: list[timedelta]
    handle: Handle | None = None

    # ---------------------------------------------------------------- StripeIntegrations
    async def put_secret(self, name: str, data: dict[str, str], namespace: str = NS) -> None:
        await asyncio.to_thread(self.kube_client.put_secret, namespace, name, data)

    async def apply(self, name: str, namespace: str = NS, **spec: Any) -> Handle:
        """`kubectl apply` of a StripeIntegration reading the world's Organization and writing to its Stripe key (and
        of their Secrets) in `namespace`, with its worker."""
        if namespace != NS:
            self.k8s.add_namespace(namespace)
        await self.put_secret("stripe", {"apiKey": self.key}, namespace)
        await self.put_secret("m3ter", {"clientId": M3TER_CLIENT, "clientSecret": M3TER_SECRET}, namespace)
        body = {
            "apiVersion": names.API_VERSION,
            "kind": names.KIND,
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "destination": "StripeTestMode",
                "credentialRef": {"name": "stripe"},
                "m3ter": {"organizationId": self.org, "credentialsRef": {"name": "m3ter"}},
                "syncInterval": "1h",  # passes after the first run on request (the requested-at annotation)
                **spec,
            },
        }
        resource = (names.GROUP, names.VERSION, namespace, names.PLURAL)
        await asyncio.to_thread(self.custom.create_namespaced_custom_object, *resource, body)
        found = await asyncio.to_thread(self.custom.get_namespaced_custom_object, *resource, name)
        meta = cast(dict[str, Any], found)["metadata"]
        events: list[Event] = []

        def emit(type_: str, reason: str, message: str) -> None:
            events.append((type_, reason, message))

        when = seniority(meta, namespace, name)[0]
        integration = Integration(self.runtime, namespace, name, meta["uid"], emit, logging.getLogger("test"), when)
        return Handle(self, namespace, name, IntegrationWorker(integration), meta["uid"], events)

    async def create_integration(self, **spec: Any) -> IntegrationWorker:
        """The StripeIntegration NS/NAME (with its two Secrets) in the API server, and its worker."""
        self.handle = await self.apply(NAME, NS, **spec)
        return self.handle.worker

    def _handle(self) -> Handle:
        assert self.handle is not None, "create_integration first"
        return self.handle

    @property
    def worker(self) -> IntegrationWorker | None:
        return None if self.handle is None else self.handle.worker

    @worker.setter
    def worker(self, worker: IntegrationWorker) -> None:
        self._handle().worker = worker

    @property
    def events(self) -> list[Event]:
        """What NS/NAME's worker emitted."""
        return [] if self.handle is None else self.handle.events

    def reasons(self) -> list[str]:
        return [reason for _, reason, _ in self.events]

    async def body(self) -> dict[str, Any]:
        return await self._handle().body()

    async def status(self) -> dict[str, Any]:
        return await self._handle().status()

    async def patch_spec(self, **spec: Any) -> None:
        await self._handle().patch_spec(**spec)

    async def annotate(self, key: str, value: str) -> None:
        await self._handle().annotate(key, value)

    async def reconcile(self) -> dict[str, Any]:
        return await self._handle().reconcile()

    async def run_now(self) -> dict[str, Any]:
        return await self._handle().run_now()

    async def sent_bill(self, code: str) -> tuple[str, dict[str, Any]]:
        """A Bill of a mapped Account, sent by NS/NAME's first pass: its id and its invoice."""
        account = self.m3ter_account(code)
        await self.customer_for(account)
        bill_id = self.bill(account, "10.00")
        await self.create_integration()
        await self.reconcile()
        (invoice,) = self.invoices_of(bill_id)
        return bill_id, invoice


@asynccontextmanager
async def open_kube_world(tmp_path: Path) -> AsyncIterator[KubeWorld]:
    """The worker's world: the Stripe emulator seeded 7 in contract mode, the m3ter emulator on the wall clock less
    `m3ter_lag`, the namespace NS, and a Runtime configured as the worker's tests need it (Secrets polled every
    0.2 s, one Bill at a time so that which error follows which success is fixed, no Lease)."""
    m3ter_lag = [timedelta(0)]
    creds = M3terCredentials(ORG, M3TER_CLIENT, M3TER_SECRET)
    kubeconfig = tmp_path / "kubeconfig.yaml"
    async with (
        kube_api_server(kubeconfig, NS) as k8s,
        open_world(
            creds,
            KEY,
            stripe_emulator=StripeEmulator(seed=7, contract_mode=True),
            m3ter=M3terEmulator(clock=lambda: datetime.now(UTC) - m3ter_lag[0]),
        ) as base,
    ):
        api_client = config.new_client_from_config(str(kubeconfig))  # type: ignore[no-untyped-call]
        operator_config = OperatorConfig(
            stripe=StripeConfig(api_base=base.stripe.url, timeout_seconds=5),
            m3ter=M3terConfig(base_url=base.m3ter.url),
            credentials=CredentialsConfig(secret_poll_seconds=0.2, retry_seconds=0.1),
            sync=SyncConfig(concurrency=1),
            lease=LeaseConfig(name=""),
        )
        runtime = Runtime(config=operator_config, kube=KubeApi(api_client), metrics=Metrics())
        try:
            w = KubeWorld(
                **base.parts(),
                k8s=k8s,
                custom=client.CustomObjectsApi(api_client),
                core=client.CoreV1Api(api_client),
                runtime=runtime,
                kube_client=KubeClient(kubeconfig),
                m3ter_lag=m3ter_lag,
            )
            yield w
            if w.worker is not None:
                await w.worker._source.close()  # what `run` does when the daemon stops
        finally:
            runtime.kube.close()
