"""A small test-side client for the Kubernetes API, on the official `kubernetes` client (real HTTP)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any, cast

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from m3stripe.api import names


class KubeClient:
    """A test's own view of the API server (StripeIntegrations, Secrets, events), through the official client."""

    def __init__(self, kubeconfig: Path) -> None:
        self.api_client = config.new_client_from_config(str(kubeconfig))  # type: ignore[no-untyped-call]
        self.core = client.CoreV1Api(self.api_client)
        self.custom = client.CustomObjectsApi(self.api_client)
        self.coordination = client.CoordinationV1Api(self.api_client)

    # Secrets
    def put_secret(self, namespace: str, name: str, data: dict[str, str]) -> None:
        """Create the Secret or replace its data."""
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace},
            "type": "Opaque",
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
        }
        try:
            self.core.create_namespaced_secret(namespace, body)  # type: ignore[arg-type]  # a dict body is accepted
        except ApiException as err:
            if err.status != 409:
                raise
            self.core.patch_namespaced_secret(name, namespace, {"data": body["data"]})

    def delete_secret(self, namespace: str, name: str) -> None:
        self.core.delete_namespaced_secret(name, namespace)

    # Leases (leader election)
    def lease_holder(self, namespace: str, name: str) -> str | None:
        """The Lease's holderIdentity, or None when nobody holds it or it does not exist."""
        try:
            lease = self.coordination.read_namespaced_lease(name, namespace)
        except ApiException as err:
            if err.status == 404:
                return None
            raise
        return (lease.spec.holder_identity if lease.spec else None) or None

    # StripeIntegrations
    def create_integration(self, namespace: str, name: str, spec: dict[str, Any], **metadata: Any) -> dict[str, Any]:
        body = {
            "apiVersion": names.API_VERSION,
            "kind": names.KIND,
            "metadata": {"name": name, "namespace": namespace, **metadata},
            "spec": spec,
        }
        return cast(
            dict[str, Any],
            self.custom.create_namespaced_custom_object(names.GROUP, names.VERSION, namespace, names.PLURAL, body),
        )

    def apply_manifest(self, manifest: dict[str, Any]) -> None:
        namespace = manifest.get("metadata", {}).get("namespace", "default")
        kind = manifest.get("kind")
        if kind == names.KIND:
            self.custom.create_namespaced_custom_object(names.GROUP, names.VERSION, namespace, names.PLURAL, manifest)
        elif kind == "Secret":
            self.core.create_namespaced_secret(namespace, manifest)  # type: ignore[arg-type]
        else:
            raise ValueError(f"the demo client does not apply kind {kind!r}")

    def create_cluster_object(self, group: str, version: str, plural: str, body: dict[str, Any]) -> None:
        self.custom.create_cluster_custom_object(group, version, plural, body)

    def patch_integration(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return cast(
            dict[str, Any],
            self.custom.patch_namespaced_custom_object(
                names.GROUP, names.VERSION, namespace, names.PLURAL, name, patch
            ),
        )

    def get_integration(self, namespace: str, name: str) -> dict[str, Any]:
        return cast(
            dict[str, Any],
            self.custom.get_namespaced_custom_object(names.GROUP, names.VERSION, namespace, names.PLURAL, name),
        )

    def list_integrations(self, namespace: str | None = None) -> list[dict[str, Any]]:
        if namespace:
            result = cast(
                dict[str, Any],
                self.custom.list_namespaced_custom_object(names.GROUP, names.VERSION, namespace, names.PLURAL),
            )
        else:
            result = cast(
                dict[str, Any], self.custom.list_cluster_custom_object(names.GROUP, names.VERSION, names.PLURAL)
            )
        return list(result.get("items", []))

    def delete_integration(self, namespace: str, name: str) -> None:
        self.custom.delete_namespaced_custom_object(names.GROUP, names.VERSION, namespace, names.PLURAL, name)

    def events(self, namespace: str, name: str | None = None) -> list[dict[str, Any]]:
        """Core v1 events (as kopf posts them), optionally for one involved object."""
        items = self.api_client.sanitize_for_serialization(self.core.list_namespaced_event(namespace).items)
        return [e for e in items if name is None or (e.get("involvedObject") or {}).get("name") == name]

    def condition(self, namespace: str, name: str, type_: str) -> dict[str, Any] | None:
        status = self.get_integration(namespace, name).get("status") or {}
        for c in status.get("conditions") or ():
            if c.get("type") == type_:
                return dict(c)
        return None
