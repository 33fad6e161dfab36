"""Thin adapter over the official `kubernetes` client for what the operator does beyond kopf.

Secrets are read by name only (`get`), never listed or watched: the operator needs no cluster-wide
Secret access. Calls run in worker threads because the official client is synchronous.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from m3stripe.api import names


@dataclass(frozen=True)
class SecretData:
    """A Secret's decoded data; `repr` never shows values."""

    name: str
    resource_version: str
    data: dict[str, bytes] = field(repr=False)

    def text(self, key: str) -> str | None:
        raw = self.data.get(key)
        if raw is None:
            return None
        # Secrets made with `echo ... | base64` carry a trailing newline; Stripe keys never contain whitespace.
        return raw.decode("utf-8", errors="replace").strip()


@dataclass(frozen=True)
class LeaseRecord:
    """The fields of a `coordination.k8s.io/v1` Lease that leader election uses, as client-go's
    `LeaderElectionRecord` (https://kubernetes.io/docs/reference/kubernetes-api/cluster-resources/lease-v1/).
    `resource_version` is the precondition of the next update (empty for a Lease not yet created)."""

    holder: str | None
    lease_duration_seconds: int | None
    acquire_time: datetime | None
    renew_time: datetime | None
    transitions: int
    resource_version: str = ""


class KubeApiError(Exception):
    """The Kubernetes API refused or failed a call; `status` is the HTTP status (0 when unreachable)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


# Seconds a status PATCH may take (deploy/base/deployment.yaml's shutdown budget counts on it).
STATUS_REQUEST_TIMEOUT = 30.0


# Connections the client keeps to the API server. Its default is 5 per CPU (urllib3's pool behind
# kubernetes.client.Configuration.connection_pool_maxsize): on a 2-CPU pod, 20 integrations' status patches, Secret
# reads and the Lease at once overflowed it ("Connection pool is full, discarding connection"), and every discarded
# connection is a new TCP and TLS handshake on the next call.
API_CONNECTIONS = 32


def load_api_client() -> client.ApiClient:
    """An API client for what KUBECONFIG (or the in-cluster service account) points at."""
    if os.environ.get("KUBERNETES_SERVICE_HOST") and not os.environ.get("KUBECONFIG"):
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    else:
        # KUBECONFIG as it is now: the client's own default reads it once, when it is imported.
        config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))  # type: ignore[no-untyped-call]
    configuration = client.Configuration.get_default_copy()
    configuration.connection_pool_maxsize = API_CONNECTIONS
    return client.ApiClient(configuration)


class KubeApi:
    """The only code that calls the Kubernetes client: StripeIntegrations, their status, Secrets, Leases.

    Blocking client calls run in the executor, so it never stalls the event loop; errors leave it as KubeApiError."""

    def __init__(self, api_client: client.ApiClient | None = None, *, secret_ttl: float = 0.0) -> None:
        self._api_client = api_client or load_api_client()
        self._core = client.CoreV1Api(self._api_client)
        self._custom = client.CustomObjectsApi(self._api_client)
        self._coordination = client.CoordinationV1Api(self._api_client)
        # Integrations of a namespace usually share their Secrets: one read per Secret and poll interval
        # serves them all (single flight), instead of one read per integration.
        self._secret_ttl = secret_ttl
        self._secrets: dict[tuple[str, str], tuple[float, asyncio.Future[SecretData | None]]] = {}

    async def read_secret(self, namespace: str, name: str) -> SecretData | None:
        """The Secret, or None when it does not exist (possibly as read up to `secret_ttl` seconds ago)."""
        key = (namespace, name)
        now = time.monotonic()
        cached = self._secrets.get(key)
        if cached is not None and (not cached[1].done() or now - cached[0] < self._secret_ttl):
            return await asyncio.shield(cached[1])
        future: asyncio.Future[SecretData | None] = asyncio.get_running_loop().create_future()
        self._secrets[key] = (now, future)
        try:
            result = await self._read_secret(namespace, name)
        except BaseException as err:
            self._secrets.pop(key, None)
            future.set_exception(err)
            future.exception()  # mark retrieved: waiters re-raise it themselves
            raise
        future.set_result(result)
        return result

    async def _read_secret(self, namespace: str, name: str) -> SecretData | None:
        try:
            secret = await asyncio.to_thread(self._core.read_namespaced_secret, name, namespace)
        except ApiException as err:
            if err.status == 404:
                return None
            raise KubeApiError(
                f"reading Secret {namespace}/{name} failed: HTTP {err.status} {err.reason}", err.status
            ) from None
        except Exception as err:
            raise KubeApiError(f"reading Secret {namespace}/{name} failed: {type(err).__name__}") from None
        data = {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}
        for key, value in (secret.string_data or {}).items():
            data.setdefault(key, value.encode())
        return SecretData(
            name=name, resource_version=(secret.metadata.resource_version if secret.metadata else None) or "", data=data
        )

    async def list_integrations(self, *, timeout: float = STATUS_REQUEST_TIMEOUT) -> list[dict[str, Any]]:
        """Every StripeIntegration in every namespace (the overlap check: other shards' integrations included).

        Needs `list` on stripeintegrations cluster-wide (the ClusterRole m3stripe-operator-peers); HTTP 403 in
        KubeApiError.status when it is not granted. StripeIntegrations hold no secrets (only Secret names)."""
        try:
            found = await asyncio.to_thread(
                self._custom.list_cluster_custom_object,
                names.GROUP,
                names.VERSION,
                names.PLURAL,
                _request_timeout=timeout,
            )
        except ApiException as err:
            raise KubeApiError(
                f"listing StripeIntegrations in all namespaces failed: HTTP {err.status} {err.reason}", err.status or 0
            ) from None
        except Exception as err:
            raise KubeApiError(f"listing StripeIntegrations in all namespaces failed: {type(err).__name__}") from None
        items = found.get("items") if isinstance(found, dict) else None
        return [item for item in items or () if isinstance(item, dict)]

    async def patch_status(
        self, namespace: str, name: str, status: dict[str, Any], *, timeout: float | None = None
    ) -> None:
        """Merge-patch the integration's status subresource, abandoned after `timeout` seconds (a fenced writer
        passes what is left of its fence; the default bounds a hung API server)."""
        try:
            await asyncio.to_thread(
                self._custom.patch_namespaced_custom_object_status,
                names.GROUP,
                names.VERSION,
                namespace,
                names.PLURAL,
                name,
                {"status": status},
                _request_timeout=STATUS_REQUEST_TIMEOUT if timeout is None else max(0.1, timeout),
            )
        except ApiException as err:
            if err.status == 404:
                return  # deleted meanwhile; nothing to report on
            raise KubeApiError(
                f"patching status of {namespace}/{name} failed: HTTP {err.status} {err.reason}", err.status
            ) from None
        except Exception as err:  # urllib3's timeouts and connection errors
            raise KubeApiError(f"patching status of {namespace}/{name} failed: {type(err).__name__}") from None

    # Leases (leader election). A bounded timeout per call: an election round must end within the renew deadline.
    async def read_lease(self, namespace: str, name: str, *, timeout: float) -> LeaseRecord | None:
        """The Lease, or None when it does not exist."""
        try:
            lease = await asyncio.to_thread(
                self._coordination.read_namespaced_lease, name, namespace, _request_timeout=timeout
            )
        except ApiException as err:
            if err.status == 404:
                return None
            raise _lease_error("reading", namespace, name, err) from None
        except Exception as err:
            raise KubeApiError(f"reading Lease {namespace}/{name} failed: {type(err).__name__}") from None
        return _record(lease)

    async def create_lease(self, namespace: str, name: str, record: LeaseRecord, *, timeout: float) -> LeaseRecord:
        """Create the Lease; HTTP 409 (KubeApiError.status) when another process created it first."""
        body = client.V1Lease(
            api_version="coordination.k8s.io/v1",
            kind="Lease",
            metadata=client.V1ObjectMeta(name=name, namespace=namespace, labels={"app.kubernetes.io/name": "m3stripe"}),
            spec=_spec(record),
        )
        try:
            lease = await asyncio.to_thread(
                self._coordination.create_namespaced_lease, namespace, body, _request_timeout=timeout
            )
        except ApiException as err:
            raise _lease_error("creating", namespace, name, err) from None
        except Exception as err:
            raise KubeApiError(f"creating Lease {namespace}/{name} failed: {type(err).__name__}") from None
        return _record(lease)

    async def update_lease(self, namespace: str, name: str, record: LeaseRecord, *, timeout: float) -> LeaseRecord:
        """Replace the Lease's spec (`update`, as client-go's LeaseLock) on the condition that it is still at
        `record.resource_version`: HTTP 409 when someone else wrote it since it was read."""
        body = client.V1Lease(
            api_version="coordination.k8s.io/v1",
            kind="Lease",
            metadata=client.V1ObjectMeta(
                name=name,
                namespace=namespace,
                resource_version=record.resource_version,
                labels={"app.kubernetes.io/name": "m3stripe"},
            ),
            spec=_spec(record),
        )
        try:
            lease = await asyncio.to_thread(
                self._coordination.replace_namespaced_lease, name, namespace, body, _request_timeout=timeout
            )
        except ApiException as err:
            raise _lease_error("updating", namespace, name, err) from None
        except Exception as err:
            raise KubeApiError(f"updating Lease {namespace}/{name} failed: {type(err).__name__}") from None
        return _record(lease)

    def close(self) -> None:
        self._api_client.close()  # type: ignore[no-untyped-call]


def _spec(record: LeaseRecord) -> client.V1LeaseSpec:
    return client.V1LeaseSpec(
        holder_identity=record.holder or None,
        lease_duration_seconds=record.lease_duration_seconds,
        acquire_time=record.acquire_time,
        renew_time=record.renew_time,
        lease_transitions=record.transitions,
    )


def _record(lease: Any) -> LeaseRecord:
    spec = lease.spec
    meta = lease.metadata
    return LeaseRecord(
        holder=(spec.holder_identity if spec else None) or None,
        lease_duration_seconds=spec.lease_duration_seconds if spec else None,
        acquire_time=spec.acquire_time if spec else None,
        renew_time=spec.renew_time if spec else None,
        transitions=int((spec.lease_transitions if spec else None) or 0),
        resource_version=(meta.resource_version if meta else None) or "",
    )


def _lease_error(doing: str, namespace: str, name: str, err: ApiException) -> KubeApiError:
    return KubeApiError(f"{doing} Lease {namespace}/{name} failed: HTTP {err.status} {err.reason}", err.status or 0)
