"""The deployment manifests: rendered with the real kustomize (kubectl), validated against the
Kubernetes schemas, and checked for least-privilege RBAC, a restricted pod, and consistency with
the operator (ports, leader election, timeouts) and the image (Dockerfile)."""

from __future__ import annotations

import ast
import functools
import json
import re
import shutil
import tomllib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from m3stripe.kube.config import OperatorConfig, unknown_variables, variables
from tests.deploy.kustomize import K8S_VERSIONS, kustomize_build

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
OVERLAYS = ("cluster-wide", "single-namespace", "high-availability")
SINGLE_REPLICA = ("cluster-wide", "single-namespace")
OPERATOR_NS = "m3stripe-system"
SA = "m3stripe-operator"
LEASE = "m3stripe"
# Kinds outside the Kubernetes API schemas: their CRDs come with this tree (validated against the
# CRD's schema below) or with the Prometheus Operator (checked structurally below).
CRD_KINDS: frozenset[tuple[str, str]] = frozenset()
PROMETHEUS_OPERATOR_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}
WILDCARD = "*"


@functools.cache
def _rendered(overlay: str) -> tuple[dict[str, Any], ...]:
    return tuple(kustomize_build(DEPLOY / "overlays" / overlay))


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def objs(overlay: str) -> tuple[dict[str, Any], ...]:
    return _rendered(overlay)


def _of_kind(objs: tuple[dict[str, Any], ...], kind: str) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind]


def _one(objs: tuple[dict[str, Any], ...], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in _of_kind(objs, kind) if name is None or o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def _deployment(objs: tuple[dict[str, Any], ...]) -> dict[str, Any]:
    return _one(objs, "Deployment", "m3stripe-operator")


def _container(objs: tuple[dict[str, Any], ...]) -> dict[str, Any]:
    containers = _deployment(objs)["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["operator"]
    return dict(containers[0])


def _operator_argv(objs: tuple[dict[str, Any], ...]) -> list[str]:
    """The operator's arguments after `m3stripe run`, with Kubernetes' $(VAR) expansion applied."""
    container = _container(objs)
    env = {e["name"]: e["value"] for e in container.get("env", ()) if "value" in e}
    env |= {e["name"]: f"<{e['name']}>" for e in container.get("env", ()) if "valueFrom" in e}

    def expand(arg: str) -> str:
        return re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), arg).replace("$$", "$")

    if "command" not in container:
        return [expand(a) for a in container["args"]]
    # The HA overlay's shell wrapper: the words after `exec m3stripe run`.
    assert container["command"] == ["/bin/sh", "-c"], container["command"]
    script = expand(" ".join(container["args"]))
    match = re.search(r"exec m3stripe run (.*)$", script, flags=re.S)
    assert match, script
    return match.group(1).split()


def _flag(argv: list[str], name: str) -> list[str]:
    return [a.split("=", 1)[1] for a in argv if a.startswith(f"--{name}=")]


# --------------------------------------------------------------------------- rendering & schemas


def test_every_overlay_renders_cleanly(objs: tuple[dict[str, Any], ...]) -> None:
    assert objs
    keys = [(o["apiVersion"], o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in objs]
    assert len(keys) == len(set(keys)), "duplicate objects"


def test_base_and_crds_render_on_their_own() -> None:
    # deploy/crds is applied first by hand (kubectl apply -k deploy/crds), deploy/base is the overlays' base.
    crds = kustomize_build(DEPLOY / "crds")
    assert {o["kind"] for o in crds} == {"CustomResourceDefinition"}
    assert kustomize_build(DEPLOY / "base")


def test_crd_copy_matches_the_generated_crd() -> None:
    generated = (ROOT / "crds" / "m3stripe.dev_stripeintegrations.yaml").read_text(encoding="utf-8")
    copy = (DEPLOY / "crds" / "m3stripe.dev_stripeintegrations.yaml").read_text(encoding="utf-8")
    assert copy == generated, "deploy/crds/ holds an old CRD: run `m3stripe crds -o deploy/crds`"


def test_objects_validate_against_the_kubernetes_schemas(overlay: str, objs: tuple[dict[str, Any], ...]) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    versions = [kubernetes_validate.latest_version() if v == "latest" else v for v in K8S_VERSIONS]
    not_core = CRD_KINDS | PROMETHEUS_OPERATOR_KINDS
    seen_not_core = set()
    for obj in objs:
        key = (obj["apiVersion"], obj["kind"])
        if key in not_core:
            seen_not_core.add(key)
            continue
        for version in versions:
            try:
                # strict: an unknown (misspelt) field is an error, as with server-side field validation.
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as err:
                pytest.fail(f"{overlay}: {obj['kind']}/{obj['metadata']['name']} invalid for {version}: {err.message}")
    # The skip list stays exact: a kind dropped from the manifests must leave it too.
    assert seen_not_core <= not_core


def _openapi_to_jsonschema(node: Any) -> Any:
    if isinstance(node, list):
        return [_openapi_to_jsonschema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _openapi_to_jsonschema(v) for k, v in node.items() if not k.startswith("x-kubernetes-")}
    if node.get("type") == "object" and "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


def test_no_kopf_peering_is_shipped(objs: tuple[dict[str, Any], ...]) -> None:
    """The Lease elects the writer; kopf runs without peering, so neither its objects nor its CRDs ship."""
    assert not [o for o in objs if o["apiVersion"].startswith("kopf.dev/")]
    crds = {o["metadata"]["name"] for o in _of_kind(objs, "CustomResourceDefinition")}
    assert crds == {"stripeintegrations.m3stripe.dev"}


SERVICE_MONITOR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["spec"],
    "properties": {
        "spec": {
            "type": "object",
            "required": ["selector", "endpoints"],
            "properties": {
                "selector": {"type": "object", "required": ["matchLabels"]},
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["port", "path"],
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string"},
                            "interval": {"type": "string", "pattern": r"^\d+[smh]$"},
                            "scrapeTimeout": {"type": "string", "pattern": r"^\d+[smh]$"},
                            "honorLabels": {"type": "boolean"},
                        },
                        "additionalProperties": False,
                    },
                },
            },
        }
    },
}
PROMETHEUS_RULE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["spec"],
    "properties": {
        "spec": {
            "type": "object",
            "required": ["groups"],
            "properties": {
                "groups": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["name", "rules"],
                        "properties": {
                            "rules": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "required": ["expr"],
                                    "oneOf": [{"required": ["alert"]}, {"required": ["record"]}],
                                },
                            }
                        },
                    },
                }
            },
        }
    },
}


def test_prometheus_operator_objects_are_well_formed(objs: tuple[dict[str, Any], ...]) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    monitor = _one(objs, "ServiceMonitor")
    rule = _one(objs, "PrometheusRule")
    jsonschema.validate(monitor, SERVICE_MONITOR_SCHEMA)
    jsonschema.validate(rule, PROMETHEUS_RULE_SCHEMA)
    assert monitor["metadata"]["namespace"] == rule["metadata"]["namespace"] == OPERATOR_NS
    # kube-prometheus-stack picks both up through the same release label.
    assert monitor["metadata"]["labels"].get("release") == rule["metadata"]["labels"].get("release")


# --------------------------------------------------------------------------- RBAC


def _roles(objs: tuple[dict[str, Any], ...]) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] in ("Role", "ClusterRole")]


def _rules(objs: tuple[dict[str, Any], ...]) -> Iterator[tuple[str, dict[str, Any]]]:
    for role in _roles(objs):
        for rule in role.get("rules") or ():
            yield f"{role['kind']}/{role['metadata']['name']}", rule


def _operator_rules(objs: tuple[dict[str, Any], ...]) -> list[dict[str, Any]]:
    """The rules granted to the operator's ServiceAccount through any binding."""
    rules: list[dict[str, Any]] = []
    for binding in [o for o in objs if o["kind"] in ("RoleBinding", "ClusterRoleBinding")]:
        subjects = binding.get("subjects") or ()
        if not any(s["kind"] == "ServiceAccount" and s["name"] == SA for s in subjects):
            continue
        for subject in subjects:
            assert subject == {"kind": "ServiceAccount", "name": SA, "namespace": OPERATOR_NS}
        ref = binding["roleRef"]
        role = _one(objs, ref["kind"], ref["name"])
        if binding["kind"] == "RoleBinding" and ref["kind"] == "Role":
            assert role["metadata"]["namespace"] == binding["metadata"]["namespace"]
        rules.extend(role["rules"])
    assert rules, "nothing is bound to the operator's ServiceAccount"
    return rules


def _grants(rules: list[dict[str, Any]]) -> set[tuple[str, str, str, tuple[str, ...]]]:
    """(apiGroup, resource, verb, resourceNames) for every permission the rules grant."""
    return {
        (group, resource, verb, tuple(rule.get("resourceNames") or ()))
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_no_rbac_wildcards(objs: tuple[dict[str, Any], ...]) -> None:
    offending = [
        (where, rule)
        for where, rule in _rules(objs)
        if any(
            WILDCARD in v
            for field in ("verbs", "resources", "apiGroups", "resourceNames")
            for v in rule.get(field) or ()
        )
        or "nonResourceURLs" in rule
    ]
    assert offending == []


def test_secrets_are_only_read_by_name(objs: tuple[dict[str, Any], ...]) -> None:
    for where, rule in _rules(objs):
        if "secrets" in rule["resources"]:
            assert rule["apiGroups"] == [""] and rule["verbs"] == ["get"], f"{where}: {rule}"


def test_crds_are_never_written(objs: tuple[dict[str, Any], ...]) -> None:
    for where, rule in _rules(objs):
        if "customresourcedefinitions" in rule["resources"]:
            assert set(rule["verbs"]) <= {"get", "list", "watch"}, f"{where}: {rule}"


def test_operator_rbac_is_exactly_what_it_does(overlay: str, objs: tuple[dict[str, Any], ...]) -> None:
    grants = _grants(_operator_rules(objs))
    expected: set[tuple[str, str, str, tuple[str, ...]]] = {
        ("m3stripe.dev", "stripeintegrations", v, ()) for v in ("get", "list", "watch", "patch")
    }
    # Status goes through the status subresource, with a (merge) patch only.
    expected |= {("m3stripe.dev", "stripeintegrations/status", "patch", ())}
    expected |= {("", "secrets", "get", ())}
    expected |= {
        ("", "events", "create", ()),
        ("events.k8s.io", "events", "create", ()),
        ("events.k8s.io", "events", "patch", ()),
    }
    # Leader election: the Lease, by name (create cannot be restricted by name).
    expected |= {("coordination.k8s.io", "leases", "create", ())}
    expected |= {("coordination.k8s.io", "leases", v, (LEASE,)) for v in ("get", "update")}
    if overlay != "single-namespace":
        expected |= {("apiextensions.k8s.io", "customresourcedefinitions", v, ()) for v in ("get", "list", "watch")}
        expected |= {("", "namespaces", v, ()) for v in ("list", "watch")}
    assert grants == expected


def test_single_namespace_mode_uses_a_role_in_the_watched_namespace_only() -> None:
    objs = _rendered("single-namespace")
    bindings = [o for o in objs if o["kind"] in ("RoleBinding", "ClusterRoleBinding")]
    # The one cluster-wide grant: listing StripeIntegrations, to see another shard's overlapping integrations.
    (peers,) = [b for b in bindings if b["kind"] == "ClusterRoleBinding"]
    assert _one(objs, "ClusterRole", peers["roleRef"]["name"])["rules"] == [
        {"apiGroups": ["m3stripe.dev"], "resources": ["stripeintegrations"], "verbs": ["list"]}
    ]
    bindings.remove(peers)
    assert {b["kind"] for b in bindings} == {"RoleBinding"}
    watched = _flag(_operator_argv(objs), "namespace")
    role = _one(objs, "Role", "m3stripe-operator")
    binding = next(b for b in bindings if b["roleRef"]["name"] == "m3stripe-operator")
    assert watched == [role["metadata"]["namespace"]] == [binding["metadata"]["namespace"]]


def test_single_namespace_follows_the_roles_namespace(tmp_path: Path) -> None:
    # One place to change the watched namespace: the Role in rbac.yaml; replacements carry it everywhere.
    tree = tmp_path / "deploy"
    shutil.copytree(DEPLOY, tree)
    shutil.copytree(ROOT / "crds", tmp_path / "crds")
    rbac = tree / "overlays" / "single-namespace" / "rbac.yaml"
    text = rbac.read_text(encoding="utf-8")
    # Only the Role's namespace: the RoleBinding's follows it.
    rbac.write_text(text.replace("namespace: billing", "namespace: tenant-a", 1))
    objs = tuple(kustomize_build(tree / "overlays" / "single-namespace"))
    assert _flag(_operator_argv(objs), "namespace") == ["tenant-a"]
    assert {
        o["metadata"]["namespace"]
        for o in objs
        if o["kind"] in ("Role", "RoleBinding") and o["metadata"]["name"] == "m3stripe-operator"
    } == {"tenant-a"}


def test_cluster_wide_modes_watch_every_namespace(overlay: str, objs: tuple[dict[str, Any], ...]) -> None:
    argv = _operator_argv(objs)
    if overlay == "single-namespace":
        assert len(_flag(argv, "namespace")) == 1
        return
    assert _flag(argv, "namespace") == [] and "-n" not in argv


def test_leader_election_is_on_with_its_lease_rbac_in_the_operators_namespace_only(
    objs: tuple[dict[str, Any], ...],
) -> None:
    argv = _operator_argv(objs)
    assert "--standalone" not in argv and not _flag(argv, "peering") and not _flag(argv, "priority")
    container = _container(objs)
    config = next(
        o for o in _of_kind(objs, "ConfigMap") if o["metadata"]["name"].startswith("m3stripe-operator-config")
    )
    assert config["data"]["M3STRIPE_LEASE_NAME"] == LEASE
    env = {e["name"]: e for e in container["env"]}
    # The Lease lives in the pod's namespace; the identity starts with the pod's name.
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    from m3stripe.api.durations import parse_duration
    from m3stripe.kube.leadership import LeaseSettings

    settings = LeaseSettings(
        lease_duration=parse_duration(config["data"]["M3STRIPE_LEASE_DURATION"]).total_seconds(),
        renew_deadline=parse_duration(config["data"]["M3STRIPE_LEASE_RENEW_DEADLINE"]).total_seconds(),
        retry_period=parse_duration(config["data"]["M3STRIPE_LEASE_RETRY_PERIOD"]).total_seconds(),
    )
    assert settings.problems() == []
    lease_rules = [
        (role, rule)
        for role in _roles(objs)
        for rule in role.get("rules") or ()
        if "leases" in rule["resources"] or "coordination.k8s.io" in rule["apiGroups"]
    ]
    assert lease_rules
    for role, rule in lease_rules:
        assert role["kind"] == "Role" and role["metadata"]["namespace"] == OPERATOR_NS, role["metadata"]
        assert rule["apiGroups"] == ["coordination.k8s.io"] and rule["resources"] == ["leases"]
        assert set(rule["verbs"]) <= {"get", "create", "update"}
        if set(rule["verbs"]) & {"get", "update"}:
            assert rule.get("resourceNames") == [LEASE]
    bindings = [
        b
        for b in _of_kind(objs, "RoleBinding")
        if b["roleRef"]["name"] in {r["metadata"]["name"] for r, _ in lease_rules}
    ]
    assert [b["metadata"]["namespace"] for b in bindings] == [OPERATOR_NS]


def test_namespace_users_get_view_and_edit_through_aggregation(objs: tuple[dict[str, Any], ...]) -> None:
    aggregated: dict[str, set[tuple[str, str, str, tuple[str, ...]]]] = {"view": set(), "edit": set(), "admin": set()}
    for role in _of_kind(objs, "ClusterRole"):
        labels = role["metadata"].get("labels") or {}
        for target in aggregated:
            if labels.get(f"rbac.authorization.k8s.io/aggregate-to-{target}") == "true":
                aggregated[target] |= _grants(role["rules"])
    read = {("m3stripe.dev", "stripeintegrations", v, ()) for v in ("get", "list", "watch")}
    write = {("m3stripe.dev", "stripeintegrations", v, ()) for v in ("create", "update", "patch", "delete")}
    assert read <= aggregated["view"] and not {g for g in aggregated["view"] if g[2] not in ("get", "list", "watch")}
    assert read | write <= aggregated["edit"] and read | write <= aggregated["admin"]
    # Status is the operator's: nobody gets to write it through aggregation.
    assert not {
        g for t in aggregated.values() for g in t if g[1].endswith("/status") and g[2] not in ("get", "list", "watch")
    }


# --------------------------------------------------------------------------- the pod


def _pod_spec(objs: tuple[dict[str, Any], ...]) -> dict[str, Any]:
    return dict(_deployment(objs)["spec"]["template"]["spec"])


def _effective(pod: dict[str, Any], container: dict[str, Any], key: str) -> Any:
    """A securityContext field as the kubelet resolves it: the container's wins over the pod's."""
    value = (container.get("securityContext") or {}).get(key)
    return value if value is not None else (pod.get("securityContext") or {}).get(key)


def test_pod_meets_the_restricted_pod_security_profile(objs: tuple[dict[str, Any], ...]) -> None:
    pod = _pod_spec(objs)
    container = _container(objs)
    sc = container.get("securityContext") or {}
    assert _effective(pod, container, "runAsNonRoot") is True
    assert (_effective(pod, container, "runAsUser") or 0) > 0
    assert (_effective(pod, container, "seccompProfile") or {}).get("type") == "RuntimeDefault"
    assert sc.get("allowPrivilegeEscalation") is False
    assert sc.get("readOnlyRootFilesystem") is True
    assert sc.get("privileged") in (None, False)
    assert sc.get("capabilities") == {"drop": ["ALL"]}
    for host in ("hostNetwork", "hostPID", "hostIPC"):
        assert not pod.get(host)
    assert all("hostPath" not in v for v in pod.get("volumes") or ())
    assert all("hostPort" not in p for p in container.get("ports") or ())
    namespace = _one(objs, "Namespace", OPERATOR_NS)
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_writable_tmp_on_a_read_only_root(objs: tuple[dict[str, Any], ...]) -> None:
    pod = _pod_spec(objs)
    mounts = {m["mountPath"]: m["name"] for m in _container(objs).get("volumeMounts") or ()}
    volumes = {v["name"]: v for v in pod.get("volumes") or ()}
    assert "/tmp" in mounts and "emptyDir" in volumes[mounts["/tmp"]]
    assert volumes[mounts["/tmp"]]["emptyDir"].get("sizeLimit")


def test_the_lease_lock_file_lives_on_a_pod_scoped_volume(objs: tuple[dict[str, Any], ...]) -> None:
    """It must outlive a container restart (fast resume) but not the pod, and be writable on a read-only root."""
    pod = _pod_spec(objs)
    container = _container(objs)
    env = {e["name"]: e.get("value") for e in container.get("env") or ()}
    lock_file = env.get("M3STRIPE_LEASE_LOCK_FILE") or OperatorConfig().lease.lock_file
    mounts = {m["mountPath"]: m for m in container.get("volumeMounts") or ()}
    volumes = {v["name"]: v for v in pod.get("volumes") or ()}
    directory = str(PurePosixPath(lock_file).parent)
    assert directory in mounts, f"no volume mounted at {directory}"
    assert not mounts[directory].get("readOnly")
    assert "emptyDir" in volumes[mounts[directory]["name"]]


def test_resources_have_requests_and_limits(objs: tuple[dict[str, Any], ...]) -> None:
    resources = _container(objs)["resources"]
    for kind in ("requests", "limits"):
        assert set(resources[kind]) >= {"cpu", "memory"}, kind


def _port(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    return int(next(p["containerPort"] for p in container["ports"] if p["name"] == port))


def test_liveness_probe_is_kopfs_healthz_and_there_is_no_readiness_probe(objs: tuple[dict[str, Any], ...]) -> None:
    container = _container(objs)
    probe = container["livenessProbe"]["httpGet"]
    assert (probe["path"], _port(container, probe["port"])) == ("/healthz", 8080)
    # The probe asks what the operator serves.
    assert _flag(_operator_argv(objs), "liveness") == ["http://0.0.0.0:8080/healthz"]
    # Kopf: readiness means nothing without a webhook; a failing one would only hide the metrics.
    assert "readinessProbe" not in container
    startup = container.get("startupProbe")
    if startup is not None:
        assert startup["httpGet"]["path"] == "/healthz"


def _ast_constant(path: Path, predicate: Any) -> float:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        found = predicate(node)
        if found is not None:
            return float(found)
    raise AssertionError(f"{path.relative_to(ROOT)} no longer sets the value this test checks against")


def _shutdown_budget() -> float:
    """Seconds the operator may need after SIGTERM, from the timeouts its code sets."""
    handlers = ROOT / "operator" / "m3stripe" / "kube" / "handlers.py"
    credentials = ROOT / "operator" / "m3stripe" / "adapters" / "stripe_client.py"

    def cancellation(node: ast.AST) -> Any:
        if (
            isinstance(node, ast.keyword)
            and node.arg == "cancellation_timeout"
            and isinstance(node.value, ast.Constant)
        ):
            return node.value.value
        return None

    def request_timeout(node: ast.AST) -> Any:
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.targets[0], ast.Attribute)
            and node.targets[0].attr == "request_timeout"
            and isinstance(node.value, ast.Constant)
        ):
            return node.value.value
        return None

    def stripe_timeout(node: ast.AST) -> Any:
        if isinstance(node, ast.AsyncFunctionDef | ast.FunctionDef) and node.name == "open_client":
            args = node.args.kwonlyargs
            for arg, default in zip(args, node.args.kw_defaults, strict=True):
                if arg.arg == "timeout" and isinstance(default, ast.Constant):
                    return default.value
        return None

    return (
        _ast_constant(handlers, cancellation)
        + _ast_constant(credentials, stripe_timeout)
        + _ast_constant(handlers, request_timeout)
    )


def test_graceful_shutdown_outlasts_the_operators_own_timeouts(objs: tuple[dict[str, Any], ...]) -> None:
    grace = _pod_spec(objs)["terminationGracePeriodSeconds"]
    assert grace >= 30
    # Daemon cancellation + an in-flight Stripe request + the last status PATCH.
    assert grace > _shutdown_budget()


def test_rollout_strategy(overlay: str, objs: tuple[dict[str, Any], ...]) -> None:
    spec = _deployment(objs)["spec"]
    if overlay in SINGLE_REPLICA:
        # Never two operators side by side, even briefly.
        assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
        assert not _of_kind(objs, "PodDisruptionBudget")
        return
    assert spec["replicas"] == 2 and spec["strategy"]["type"] == "RollingUpdate"
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pdb = _one(objs, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == spec["selector"]["matchLabels"]


def test_service_account_is_dedicated_and_its_token_mounted_only_for_the_operator(
    objs: tuple[dict[str, Any], ...],
) -> None:
    pod = _pod_spec(objs)
    assert pod["serviceAccountName"] == SA
    assert _one(objs, "ServiceAccount", SA).get("automountServiceAccountToken") is False
    assert pod.get("automountServiceAccountToken") is True


def test_image_is_pinned_to_the_project_version(objs: tuple[dict[str, Any], ...]) -> None:
    image = _container(objs)["image"]
    version = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
    name, _, tag = image.rpartition(":")
    assert "/" in name and tag == version, image
    assert _container(objs)["imagePullPolicy"] == "IfNotPresent"


def test_metrics_are_served_scraped_and_match_the_alerts(objs: tuple[dict[str, Any], ...]) -> None:
    container = _container(objs)
    config = next(
        o for o in _of_kind(objs, "ConfigMap") if o["metadata"]["name"].startswith("m3stripe-operator-config")
    )
    assert container["envFrom"] == [{"configMapRef": {"name": config["metadata"]["name"]}}]
    metrics_port = int(config["data"]["M3STRIPE_METRICS_PORT"])
    assert _port(container, "metrics") == metrics_port == 9090
    service = _one(objs, "Service", "m3stripe-operator")
    pod_labels = _deployment(objs)["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    service_port = next(p for p in service["spec"]["ports"] if p["name"] == "metrics")
    assert _port(container, service_port["targetPort"]) == metrics_port
    monitor = _one(objs, "ServiceMonitor")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    endpoint = monitor["spec"]["endpoints"][0]
    assert (endpoint["port"], endpoint["path"]) == ("metrics", "/metrics")
    # The per-integration `namespace` label must survive the scrape.
    assert endpoint["honorLabels"] is True
    # Prometheus Operator names the job after the Service; the alerts select that job.
    rule = _one(objs, "PrometheusRule")
    exprs = [r["expr"] for group in rule["spec"]["groups"] for r in group["rules"]]
    jobs = {job for expr in exprs for job in re.findall(r'job="([^"]+)"', expr)}
    assert jobs <= {service["metadata"]["name"]}


def test_grafana_dashboard_configmap_is_found_by_the_sidecar(objs: tuple[dict[str, Any], ...]) -> None:
    dashboards = [
        o for o in _of_kind(objs, "ConfigMap") if (o["metadata"].get("labels") or {}).get("grafana_dashboard") == "1"
    ]
    assert len(dashboards) == 1
    (name, text), *_ = dashboards[0]["data"].items()
    assert name.endswith(".json") and json.loads(text)["title"]
    assert dashboards[0]["metadata"]["namespace"] == OPERATOR_NS


def test_operator_configuration_comes_from_the_environment_the_code_reads(objs: tuple[dict[str, Any], ...]) -> None:
    container = _container(objs)
    config = next(
        o for o in _of_kind(objs, "ConfigMap") if o["metadata"]["name"].startswith("m3stripe-operator-config")
    )
    names = set(config["data"]) | {e["name"] for e in container["env"]}
    code = (ROOT / "operator" / "m3stripe" / "kube" / "config.py").read_text(encoding="utf-8")
    for name in names - {"POD_NAME", "POD_NAMESPACE", "WATCH_NAMESPACE"}:
        # SMTP settings are read by prefix (M3STRIPE_SMTP_*), the rest by name.
        assert name in code or (name.startswith("M3STRIPE_SMTP_") and "M3STRIPE_SMTP_" in code), name
    secrets = [e["valueFrom"]["secretKeyRef"] for e in container["env"] if "secretKeyRef" in e.get("valueFrom", {})]
    # An install without SMTP must still start.
    assert secrets and all(ref["optional"] is True for ref in secrets)


def test_every_variable_the_manifests_set_is_a_setting_and_reads_as_one(objs: tuple[dict[str, Any], ...]) -> None:
    """A misspelt or removed variable in the ConfigMap would be ignored; a value the operator cannot read would stop
    every pod at start. Both are caught here, from the settings object itself."""
    container = _container(objs)
    config = next(
        o for o in _of_kind(objs, "ConfigMap") if o["metadata"]["name"].startswith("m3stripe-operator-config")
    )
    # WATCH_NAMESPACE is the shard's namespace, read by kubelet into `--namespace=$(WATCH_NAMESPACE)`.
    names = (set(config["data"]) | {e["name"] for e in container["env"]}) - {"WATCH_NAMESPACE"}
    assert names - variables() == set()
    assert unknown_variables(config["data"]) == []
    read = OperatorConfig.from_env(config["data"])  # SystemExit, naming the variable, if a value cannot be read
    assert read.lease.name == LEASE


def test_the_base_configmap_generator_names_only_settings() -> None:
    """Read from deploy/base itself, without rendering: the literals of the operator's ConfigMap."""
    kustomization = yaml.safe_load((DEPLOY / "base" / "kustomization.yaml").read_text(encoding="utf-8"))
    generator = next(g for g in kustomization["configMapGenerator"] if g["name"] == "m3stripe-operator-config")
    literals = dict(literal.split("=", 1) for literal in generator["literals"])
    assert set(literals) <= variables(), set(literals) - variables()
    OperatorConfig.from_env(literals)


def test_high_availability_replicas_run_the_same_command_and_elect_a_writer() -> None:
    objs = _rendered("high-availability")
    container = _container(objs)
    # No per-pod priority wrapper any more: the Lease, not kopf's priorities, picks the writer.
    assert "command" not in container
    assert _operator_argv(objs) == _operator_argv(_rendered("cluster-wide"))


# --------------------------------------------------------------------------- GitOps


def test_argocd_application_points_at_an_overlay_and_orders_crds_first(objs: tuple[dict[str, Any], ...]) -> None:
    app = yaml.safe_load((DEPLOY / "argocd" / "application.yaml").read_text(encoding="utf-8"))
    assert (app["apiVersion"], app["kind"]) == ("argoproj.io/v1alpha1", "Application")
    source = app["spec"]["source"]
    assert (ROOT / source["path"] / "kustomization.yaml").is_file()
    options = app["spec"]["syncPolicy"]["syncOptions"]
    assert "ServerSideApply=true" in options
    assert app["spec"]["destination"]["namespace"] == OPERATOR_NS
    for crd in _of_kind(objs, "CustomResourceDefinition"):
        annotations = crd["metadata"]["annotations"]
        assert int(annotations["argocd.argoproj.io/sync-wave"]) < 0
        # Deleting a CRD deletes all its objects: neither Argo CD nor Flux may prune one.
        assert "Prune=false" in annotations["argocd.argoproj.io/sync-options"]
        assert annotations["kustomize.toolkit.fluxcd.io/prune"] == "disabled"
    for obj in objs:
        if obj["kind"] != "CustomResourceDefinition":
            assert int((obj["metadata"].get("annotations") or {}).get("argocd.argoproj.io/sync-wave", "0")) >= 0


def test_flux_example_waits_for_the_operator_and_checks_the_integrations() -> None:
    docs = [d for d in yaml.safe_load_all((DEPLOY / "flux" / "m3stripe.yaml").read_text(encoding="utf-8")) if d]
    sources = {d["metadata"]["name"] for d in docs if d["kind"] == "GitRepository"}
    kustomizations = {d["metadata"]["name"]: d["spec"] for d in docs if d["kind"] == "Kustomization"}
    operator = kustomizations["m3stripe-operator"]
    assert operator["wait"] is True and operator["prune"] is True
    assert (ROOT / operator["path"] / "kustomization.yaml").is_file()
    integrations = kustomizations["m3stripe-integrations"]
    assert integrations["dependsOn"] == [{"name": "m3stripe-operator"}]
    assert {k["sourceRef"]["name"] for k in kustomizations.values()} <= sources
    checks = {(c["kind"], c["namespace"], c["name"]) for c in integrations["healthChecks"]}
    examples = {
        (d["kind"], d["metadata"]["namespace"], d["metadata"]["name"])
        for path in (ROOT / integrations["path"]).glob("*.yaml")
        for d in yaml.safe_load_all(path.read_text(encoding="utf-8"))
        if d and d["kind"] == "StripeIntegration"
    }
    assert checks and checks <= examples


# --------------------------------------------------------------------------- the image


def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    logical = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))
    return [
        (parts[0].upper(), parts[1].strip() if len(parts) > 1 else "")
        for line in logical.splitlines()
        if line.strip()
        for parts in [line.strip().split(None, 1)]
    ]


def test_dockerfile_builds_the_package_from_the_repository_in_two_stages() -> None:
    instructions = _dockerfile()
    args = dict(a.split("=", 1) for i, a in instructions if i == "ARG" and "=" in a)
    stages = [a for i, a in instructions if i == "FROM"]
    assert len(stages) >= 2, "multi-stage: build tools stay out of the runtime image"
    for stage in stages:
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], stage.split()[0])
        # A pinned minor tag (or a digest), never latest.
        assert re.fullmatch(r"python:3\.11-slim(-\w+)?(@sha256:[0-9a-f]{64})?", image), image
    copies = [a for i, a in instructions if i == "COPY"]
    assert "pyproject.toml README.md ./" in copies and "operator ./operator" in copies
    runs = " ".join(a for i, a in instructions if i == "RUN")
    assert "pip install --no-cache-dir ." in runs
    assert any(a.startswith("--from=") for a in copies), "the runtime stage copies the built environment"
    for src in ("pyproject.toml", "operator"):
        assert (ROOT / src).exists(), src


def test_dockerfile_runtime_is_non_root_and_runs_the_operator() -> None:
    instructions = _dockerfile()
    runtime = instructions[max(n for n, (i, _) in enumerate(instructions) if i == "FROM") :]
    users = [a for i, a in runtime if i == "USER"]
    assert users, "the runtime stage sets USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) == 10001, "numeric, so runAsNonRoot can verify it"
    env = " ".join(a for i, a in runtime if i == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env and "PYTHONUNBUFFERED=1" in env
    assert json.loads(next(a for i, a in runtime if i == "ENTRYPOINT")) == ["m3stripe", "run"]
    assert set(next(a for i, a in runtime if i == "EXPOSE").split()) == {"8080", "9090"}
    # The manifests run the image as the user it was built for.
    for overlay in OVERLAYS:
        objs = _rendered(overlay)
        assert _effective(_pod_spec(objs), _container(objs), "runAsUser") == int(uid)


def test_dockerignore_sends_only_what_the_build_copies() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*", "an allow-list: nothing (no .venv, .git, kubeconfig) reaches the builder by accident"
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    copied = {src for i, a in _dockerfile() if i == "COPY" and not a.startswith("--from=") for src in a.split()[:-1]}
    assert copied <= allowed
