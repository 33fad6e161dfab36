"""Kubernetes access for the day-2 commands: the kubeconfig as kubectl reads it, errors a person can act on."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlparse

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from m3stripe.api import names

IN_CLUSTER_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
# (connect, read) seconds per API call: a CLI must not hang on a black-holed API server.
REQUEST_TIMEOUT = (5.0, 30.0)
RESOURCE = f"{names.PLURAL}.{names.GROUP}"


class CtlError(Exception):
    """A failure the command reports as one clear message; `code` is the process exit code."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


class Cluster:
    """The cluster a kubeconfig context points at, with a default namespace (`-n`, else the context's)."""

    def __init__(self, api_client: client.ApiClient, namespace: str, *, context: str | None, server: str) -> None:
        self.api_client = api_client
        self.namespace = namespace
        self.context = context
        self.server = server
        self._custom = client.CustomObjectsApi(api_client)
        self._core = client.CoreV1Api(api_client)

    @classmethod
    def connect(cls, *, kubeconfig: str | None, context: str | None, namespace: str | None) -> Cluster:
        # Read KUBECONFIG now, not at import: the kubernetes client's module default is frozen when imported.
        path = kubeconfig or os.environ.get("KUBECONFIG") or None
        default = Path("~/.kube/config").expanduser()
        if path is None and not default.exists() and os.environ.get("KUBERNETES_SERVICE_HOST"):
            return cls._in_cluster(namespace)
        path = path or str(default)
        configuration = client.Configuration()
        try:
            contexts, active = config.list_kube_config_contexts(config_file=path)  # type: ignore[no-untyped-call]
            chosen = _pick_context(contexts or [], active, context, path)
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=path, context=chosen["name"], client_configuration=configuration, persist_config=False
            )
        except (ConfigException, OSError) as err:
            raise CtlError(
                f"cannot use the kubeconfig {path}: {err}. Point --kubeconfig or KUBECONFIG at a valid file",
                code=2,
            ) from None
        ns = namespace or (chosen.get("context") or {}).get("namespace") or "default"
        return cls(client.ApiClient(configuration), ns, context=chosen["name"], server=configuration.host)

    @classmethod
    def _in_cluster(cls, namespace: str | None) -> Cluster:
        configuration = client.Configuration()
        try:
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except ConfigException as err:
            raise CtlError(f"no kubeconfig and no usable in-cluster service account: {err}", code=2) from None
        ns = namespace or (IN_CLUSTER_NAMESPACE.read_text().strip() if IN_CLUSTER_NAMESPACE.exists() else "default")
        return cls(client.ApiClient(configuration), ns, context=None, server=configuration.host)

    def close(self) -> None:
        self.api_client.close()  # type: ignore[no-untyped-call]

    # Reads
    def get(self, name: str, namespace: str | None = None) -> dict[str, Any]:
        ns = namespace or self.namespace
        with self._errors("get", ns, name):
            return cast(
                dict[str, Any],
                self._custom.get_namespaced_custom_object(
                    names.GROUP, names.VERSION, ns, names.PLURAL, name, _request_timeout=REQUEST_TIMEOUT
                ),
            )

    def list_all(self, *, all_namespaces: bool = False) -> list[dict[str, Any]]:
        with self._errors("list", None if all_namespaces else self.namespace, None):
            if all_namespaces:
                result = self._custom.list_cluster_custom_object(
                    names.GROUP, names.VERSION, names.PLURAL, _request_timeout=REQUEST_TIMEOUT
                )
            else:
                result = self._custom.list_namespaced_custom_object(
                    names.GROUP, names.VERSION, self.namespace, names.PLURAL, _request_timeout=REQUEST_TIMEOUT
                )
        items = list(cast(dict[str, Any], result).get("items") or [])
        return sorted(items, key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))

    def events(self, obj: dict[str, Any]) -> list[dict[str, Any]]:
        """The Kubernetes Events the operator recorded for this integration, oldest first.

        Selected as `kubectl describe` selects an object's events: core/v1 Events by `involvedObject.*` fields.
        """
        meta = obj["metadata"]
        selector = f"involvedObject.kind={names.KIND},involvedObject.name={meta['name']}"
        with self._errors("list", meta["namespace"], None, resource="events"):
            result = self._core.list_namespaced_event(
                meta["namespace"], field_selector=selector, _request_timeout=REQUEST_TIMEOUT
            )
        items: list[dict[str, Any]] = self.api_client.sanitize_for_serialization(result.items)  # type: ignore[no-untyped-call]
        # The selector is also applied here: an API server or proxy that ignores it must not mix in others.
        mine = [
            e
            for e in items
            if (e.get("involvedObject") or {}).get("name") == meta["name"]
            and (e.get("involvedObject") or {}).get("kind") == names.KIND
            and (e.get("involvedObject") or {}).get("uid") in (None, meta.get("uid"))
        ]
        return sorted(mine, key=_event_time)

    # Writes
    def annotate(self, name: str, key: str, value: str) -> dict[str, Any]:
        patch = {"metadata": {"annotations": {key: value}}}
        with self._errors("patch", self.namespace, name):
            return cast(
                dict[str, Any],
                self._custom.patch_namespaced_custom_object(
                    names.GROUP,
                    names.VERSION,
                    self.namespace,
                    names.PLURAL,
                    name,
                    patch,
                    field_manager="m3stripe-cli",
                    _request_timeout=REQUEST_TIMEOUT,
                ),
            )

    def _errors(self, verb: str, namespace: str | None, name: str | None, *, resource: str = RESOURCE) -> _ApiErrors:
        return _ApiErrors(self, verb, namespace, name, resource)


class _ApiErrors:
    """Turn the client's exceptions into a CtlError naming what failed and what to do."""

    def __init__(self, cluster: Cluster, verb: str, namespace: str | None, name: str | None, resource: str) -> None:
        self.cluster, self.verb, self.namespace, self.name, self.resource = cluster, verb, namespace, name, resource

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        if isinstance(exc, ApiException):
            raise self._api_error(exc) from None
        if isinstance(exc, urllib3.exceptions.HTTPError | ConnectionError | TimeoutError):
            host = urlparse(self.cluster.server).netloc or self.cluster.server
            context = f" (context {self.cluster.context})" if self.cluster.context else ""
            raise CtlError(
                f"cannot reach the Kubernetes API at {host}{context}: {_root_cause(exc)}. "
                "Check that the cluster is up and that --context / KUBECONFIG point at the right one"
            ) from None

    def _api_error(self, err: ApiException) -> CtlError:
        where = f" in namespace {self.namespace}" if self.namespace else " in all namespaces"
        server_message = _status_message(err)
        if err.status == 404 and self.name is not None:
            return CtlError(
                f"{names.KIND} {self.namespace}/{self.name} not found. "
                f"List them with: kubectl get {names.SHORT_NAMES[-1]} -n {self.namespace}",
                code=2,
            )
        if err.status == 404:
            return CtlError(
                f"the Kubernetes API does not serve {self.resource}: is the CRD installed? "
                "(kubectl apply -k deploy/crds)",
                code=2,
            )
        if err.status == 403:
            target = f"{self.resource} {self.name!r}" if self.name else self.resource
            return CtlError(
                f"forbidden: you may not {self.verb} {target}{where}. "
                f"The API server said: {server_message or err.reason}. "
                f"Ask for a Role granting {self.verb!r} on {self.resource} (kubectl auth can-i {self.verb} "
                f"{self.resource}{' -n ' + self.namespace if self.namespace else ' -A'})"
            )
        if err.status == 401:
            return CtlError(
                f"unauthorized: the cluster rejected the credentials of context {self.cluster.context}; "
                "log in again or refresh the kubeconfig"
            )
        return CtlError(
            f"the Kubernetes API answered {err.status} {err.reason} to {self.verb} {self.resource}{where}: "
            f"{server_message or 'no details'}"
        )


def _pick_context(
    contexts: list[dict[str, Any]], active: dict[str, Any] | None, wanted: str | None, path: str
) -> dict[str, Any]:
    if wanted is None:
        if active is None:
            raise CtlError(f"the kubeconfig {path} has no current-context; pass --context NAME", code=2)
        return active
    for ctx in contexts:
        if ctx.get("name") == wanted:
            return ctx
    known = ", ".join(str(c.get("name")) for c in contexts) or "none"
    raise CtlError(f"context {wanted!r} is not in the kubeconfig {path} (it has: {known})", code=2)


def _status_message(err: ApiException) -> str:
    """The `message` of the API server's Status body, if it sent one."""
    import json

    try:
        body = json.loads(err.body or "")
    except ValueError:
        return str(err.body or "").strip()[:300]
    return str(body.get("message") or "") if isinstance(body, dict) else ""


def _root_cause(exc: BaseException) -> str:
    reason: object = getattr(exc, "reason", None)
    while isinstance(reason, BaseException) and getattr(reason, "reason", None) is not None:
        reason = getattr(reason, "reason", None)
    text = str(reason or exc)
    return text.split(": ", 1)[-1] if "object at 0x" in text else text


def _event_time(event: dict[str, Any]) -> str:
    return str(
        event.get("lastTimestamp")
        or event.get("eventTime")
        or event.get("firstTimestamp")
        or (event.get("metadata") or {}).get("creationTimestamp")
        or ""
    )
