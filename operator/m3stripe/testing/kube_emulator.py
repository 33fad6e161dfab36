"""A Kubernetes API emulator for the operator's tests and demo: kmock's, with the API server's
bookkeeping that kopf and kstatus rely on.

kmock's `KubernetesEmulator` stores objects and merges patches. This adds what a real API server does
and the operator depends on: uid, creationTimestamp, resourceVersion, `metadata.generation` bumped
only on spec changes, and the status subresource split (writes to the main resource ignore status,
writes to `/status` change nothing else). The resources the operator and kopf use are registered
for discovery, since kopf starts watching only once `namespaces`, `events` and
`customresourcedefinitions` are listed.
"""

from __future__ import annotations

import copy
import datetime
import itertools
import uuid
from typing import Any

import aiohttp.web
import attrs
import jsonpatch
import jsonpointer
import kmock
from kmock._internal import dicts as kmock_dicts
from kmock._internal import enums as kmock_enums

from m3stripe.api import names
from m3stripe.api.crd import build_crd

_CORE = (
    ("v1/namespaces", "Namespace", False, ()),
    ("v1/secrets", "Secret", True, ()),
    ("v1/configmaps", "ConfigMap", True, ()),
    ("v1/events", "Event", True, ()),
    ("events.k8s.io/v1/events", "Event", True, ()),
    ("coordination.k8s.io/v1/leases", "Lease", True, ()),
    ("apiextensions.k8s.io/v1/customresourcedefinitions", "CustomResourceDefinition", False, ("status",)),
    ("kopf.dev/v1/kopfpeerings", "KopfPeering", True, ()),
    ("kopf.dev/v1/clusterkopfpeerings", "ClusterKopfPeering", False, ()),
)
_VERBS = {"get", "list", "watch", "create", "update", "patch", "delete"}


@attrs.define(kw_only=True)
class KubeEmulator(kmock.KubernetesEmulator):
    """kmock's Kubernetes emulator plus metadata stamping and the status subresource."""

    _versions: itertools.count[int] = attrs.field(factory=lambda: itertools.count(1), init=False)
    request_history: int = 1  # raise it to assert on recent requests through kmock's API
    # Set to 403 or 503 to answer the cluster-wide list of StripeIntegrations (the operator's peers) with that
    # status, as the API server does without the RBAC grant, or when it is overloaded.
    peers_list_status: int | None = None

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        for key, kind, namespaced, subresources in _CORE:
            self.resources[key] = kmock.ResourceInfo(
                kind=kind, namespaced=namespaced, verbs=_VERBS, subresources=set(subresources)
            )
        crd = build_crd()
        version = crd["spec"]["versions"][0]
        self.resources[f"{names.GROUP}/{names.VERSION}/{names.PLURAL}"] = kmock.ResourceInfo(
            kind=names.KIND,
            singular=names.SINGULAR,
            namespaced=True,
            verbs=_VERBS,
            shortnames=set(names.SHORT_NAMES),
            categories=set(names.CATEGORIES),
            subresources=set(version["subresources"]),
        )

    def add_namespace(self, name: str) -> None:
        """kmock cannot route `POST /api/v1/namespaces` (it reads `namespaces` as a namespaced path), so
        namespaces are added here. Nothing else depends on them: kmock does not check namespace existence."""
        key = (kmock.resource("", "v1", "namespaces"), None, name)
        if key not in self.objects:
            self.objects[key] = {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": name, "uid": str(uuid.uuid4()), "creationTimestamp": _now()},
            }

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        # kmock cannot parse `/api/v1/namespaces` itself (it reads `namespaces` as a namespaced path and answers
        # 500). Listing and watching namespaces is what kopf does in namespaced mode (`-n`); deployed that way
        # (deploy/overlays/single-namespace) the operator may not list namespaces, and the API server answers 403
        # Forbidden (https://kubernetes.io/docs/reference/access-authn-authz/rbac/), on which kopf falls back to
        # the namespaces it was given. So that is the answer here.
        if raw_request.path.rstrip("/") == "/api/v1/namespaces" and raw_request.method == "GET":
            await raw_request.read()
            return aiohttp.web.json_response(
                {
                    "apiVersion": "v1",
                    "kind": "Status",
                    "metadata": {},
                    "status": "Failure",
                    "message": 'namespaces is forbidden: cannot list resource "namespaces" at the cluster scope',
                    "reason": "Forbidden",
                    "details": {"kind": "namespaces"},
                    "code": 403,
                },
                status=403,
            )
        peers = f"/apis/{names.GROUP}/{names.VERSION}/{names.PLURAL}"
        if self.peers_list_status and raw_request.path.rstrip("/") == peers and raw_request.method == "GET":
            await raw_request.read()
            return _failure(self.peers_list_status, names.PLURAL)
        return await super().__call__(raw_request)

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        # kmock keeps every request for assertions and matches each new one against all of them, which
        # makes a long-running emulator quadratic; an operator's test makes thousands of requests.
        if len(self._requests) > self.request_history:
            del self._requests[: -self.request_history]
        if request.resource is not None and request.method == kmock.method.PUT and request.name is not None:
            return await self._replace(request)
        if (
            request.resource is not None
            and isinstance(request.data, list)
            and request.action == kmock_enums.action.UPDATE
            and request.name is not None
        ):
            self._prepare_json_patch(request)
        # kmock's requests are frozen and matched by identity, so the body is rewritten in place.
        if request.resource is not None and isinstance(request.data, dict):
            new: dict[str, Any] | None = None
            if request.action == kmock_enums.action.CREATE:
                new = self._stamp_new(request)
            elif request.action == kmock_enums.action.UPDATE and request.name is not None:
                new = self._prepare_update(request)
            if new is not None:
                request.data.clear()
                request.data.update(new)
        return await super()._handle(request)

    async def _replace(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        """PUT (update) as the API server does it, which kmock does not route: a stale
        `metadata.resourceVersion` in the body is a 409 Conflict (optimistic concurrency, which leader
        election relies on; https://github.com/kubernetes/community/blob/master/contributors/devel/sig-architecture/api-conventions.md#concurrency-control-and-consistency),
        and the body replaces the object (unlike a merge patch, absent fields are removed)."""
        assert request.resource is not None and request.name is not None
        key = (request.resource, request.namespace, request.name)
        if not isinstance(request.data, dict):
            raise UnprocessableEntityError(message="the body of an update must be an object")
        async with self._lock:
            if key not in self._objects or self._objects[key].deleted:
                raise kmock.KubernetesObjectNotFoundError()
            current = dict(self._objects[key].raw)
            meta = dict(current.get("metadata") or {})
            sent = (request.data.get("metadata") or {}).get("resourceVersion")
            if sent and sent != meta.get("resourceVersion"):
                raise ConflictError(
                    message=f"Operation cannot be fulfilled on {request.name}: the object has been modified; "
                    "please apply your changes to the latest version and try again"
                )
            new = copy.deepcopy(request.data)
            new_meta = new.setdefault("metadata", {})
            for kept in ("uid", "creationTimestamp", "namespace", "name"):
                if kept in meta:
                    new_meta[kept] = meta[kept]
            new_meta["resourceVersion"] = str(next(self._versions))
            generation = int(meta.get("generation", 1))
            new_meta["generation"] = generation + 1 if _essence(new) != _essence(current) else generation
            if "status" in current and self._has_status_subresource(request):
                new["status"] = current["status"]
            self._objects[key].create(new)
            raw = self._objects[key].raw
            await self._buses[request.resource].put({"type": "MODIFIED", "object": raw})
        return aiohttp.web.json_response(raw)

    def _stamp_new(self, request: kmock.Request) -> dict[str, Any]:
        obj = copy.deepcopy(request.data)
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            # kmock keys objects by name; the API server makes one from generateName (kopf's events use it).
            meta["name"] = f"{meta['generateName']}{uuid.uuid4().hex[:10]}"
        if request.namespace and not meta.get("namespace"):
            meta["namespace"] = request.namespace
        meta.setdefault("uid", str(uuid.uuid4()))
        meta["creationTimestamp"] = _now()
        meta["resourceVersion"] = str(next(self._versions))
        meta["generation"] = 1
        return obj  # type: ignore[no-any-return]

    def _prepare_update(self, request: kmock.Request) -> dict[str, Any] | None:
        assert request.resource is not None and request.name is not None
        key = (request.resource, request.namespace, request.name)
        if key not in self.objects or self.objects[key].deleted:
            return None  # let kmock answer 404
        current = dict(self.objects[key].raw)
        # A merge patch that names `metadata.resourceVersion` is conditional on it, as an update is: a stale
        # one is 409 Conflict (the API server stores the patched object with that version as a precondition:
        # https://github.com/kubernetes/kubernetes/issues/63104; controller-runtime's
        # MergeFromWithOptimisticLock relies on it). Checked for the status subresource too.
        sent = (request.data.get("metadata") or {}).get("resourceVersion")
        if sent and sent != (current.get("metadata") or {}).get("resourceVersion"):
            raise ConflictError(
                message=f"Operation cannot be fulfilled on {request.name}: the object has been modified; "
                "please apply your changes to the latest version and try again"
            )
        patch = copy.deepcopy(request.data)
        if request.subresource == "status":
            patch = {"status": patch.get("status")} if "status" in patch else {}
        elif request.subresource is None and "status" in patch and self._has_status_subresource(request):
            del patch["status"]
        merged = kmock_dicts.patch_dict(current, patch)
        meta = patch.setdefault("metadata", {})
        meta["resourceVersion"] = str(next(self._versions))
        if _essence(merged) != _essence(current):
            meta["generation"] = int(current.get("metadata", {}).get("generation", 1)) + 1
        return patch  # type: ignore[no-any-return]

    def _prepare_json_patch(self, request: kmock.Request) -> None:
        """JSON patches as the API server applies them: a failed `test` op is 422 (kopf relies on it for
        optimistic concurrency and retries on the next cycle), and the result gets a new resourceVersion."""
        assert request.resource is not None and request.name is not None
        key = (request.resource, request.namespace, request.name)
        if key not in self.objects or self.objects[key].deleted:
            return
        current = dict(self.objects[key].raw)
        try:
            merged = jsonpatch.apply_patch(current, list(request.data), in_place=False)
        except (jsonpatch.JsonPatchTestFailed, jsonpatch.JsonPatchConflict, jsonpointer.JsonPointerException) as err:
            raise UnprocessableEntityError(message=f"the JSON patch cannot be applied: {err}") from None
        meta_ops: list[dict[str, Any]] = [
            {"op": "add", "path": "/metadata/resourceVersion", "value": str(next(self._versions))}
        ]
        if _essence(merged) != _essence(current):
            generation = int(current.get("metadata", {}).get("generation", 1)) + 1
            meta_ops.append({"op": "add", "path": "/metadata/generation", "value": generation})
        request.data.extend(meta_ops)

    def _has_status_subresource(self, request: kmock.Request) -> bool:
        resource = request.resource
        for known in self.resources:
            if known == resource:
                return "status" in self.resources[known].subresources
        return False


@attrs.frozen
class UnprocessableEntityError(kmock.KubernetesError):
    status: int = 422
    reason: str = "Invalid"
    message: str = "the request cannot be applied to the object"


@attrs.frozen
class ConflictError(kmock.KubernetesError):
    status: int = 409
    reason: str = "Conflict"
    message: str = "the object has been modified"


def _essence(obj: Any) -> Any:
    """What `metadata.generation` tracks: everything but metadata and status."""
    return {k: v for k, v in dict(obj).items() if k not in ("metadata", "status")}


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


# The reason an API server gives with each status (metav1.StatusReason,
# https://kubernetes.io/docs/reference/generated/kubernetes-api/v1.30/#status-v1-meta).
_REASONS = {
    401: "Unauthorized",
    403: "Forbidden",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
}


def _failure(status: int, plural: str) -> aiohttp.web.Response:
    reason = _REASONS.get(status, "InternalError")
    return aiohttp.web.json_response(
        {
            "apiVersion": "v1",
            "kind": "Status",
            "metadata": {},
            "status": "Failure",
            "message": f"{plural} could not be listed at the cluster scope ({reason})",
            "reason": reason,
            "details": {"kind": plural},
            "code": status,
        },
        status=status,
    )
