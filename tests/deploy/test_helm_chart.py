"""The Helm chart (deploy/helm/m3stripe): rendered with Helm 4's own Go code, validated against the Kubernetes
schemas, and equal, object for object, to the kustomize overlays it stands beside, but for the differences
listed in INTENDED_DIFFERENCES (and in the README).

Helm comes from the `helm-python-sdk` package: Helm's Go SDK as a shared library, called through ctypes (no
helm binary, no network). Rendering with it is `helm template`: the same engine, values coalescing and
values.schema.json validation as `helm install`.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

from tests.deploy.kustomize import K8S_VERSIONS, kustomize_build

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "m3stripe"
OVERLAYS = ROOT / "deploy" / "overlays"
RELEASE = "m3stripe"
NAMESPACE = "m3stripe-system"
HA = {"replicas": 2}
SINGLE_NAMESPACE = {"watchNamespaces": ["billing"]}

# What the chart renders differently from the overlays, on purpose (README "Deploy", Helm):
INTENDED_DIFFERENCES = {
    "namespace": "no Namespace object: a Helm release lives in its namespace (helm install --create-namespace, "
    "Argo CD CreateNamespace with managedNamespaceMetadata, Flux install.createNamespace)",
    "configmap": "the operator's ConfigMap is m3stripe-operator-config without kustomize's hash suffix; the pod "
    "template's checksum/config annotation rolls the Deployment when it changes instead",
    "labels": "Helm's labels helm.sh/chart and app.kubernetes.io/managed-by on every object's metadata",
    "crd": "the CRD carries helm.sh/resource-policy: keep (crds.keep), so helm uninstall leaves it",
    "single-namespace": "watchNamespaces renders --namespace=<ns> per namespace instead of the overlay's "
    "--namespace=$(WATCH_NAMESPACE) and its WATCH_NAMESPACE variable",
}
HELM_LABELS = ("helm.sh/chart", "app.kubernetes.io/managed-by")
CONFIG_HASH = re.compile(r"^m3stripe-operator-config-[a-z0-9]{10}$")
Objects = dict[tuple[str, str | None, str], dict[str, Any]]


@functools.cache
def _chart() -> helm.Chart:
    return helm.Chart.load(CHART)


def render(values: dict[str, Any] | None = None, *, namespace: str = NAMESPACE) -> list[dict[str, Any]]:
    """`helm template m3stripe deploy/helm/m3stripe -n <namespace>` with `values`: every object, NOTES left out."""
    manifests = _chart().render(values or {}, name=RELEASE, namespace=namespace, is_install=True)
    return [
        doc
        for path, text in sorted(manifests.items())
        if path.endswith((".yaml", ".yml"))
        for doc in yaml.safe_load_all(text)
        if doc
    ]


def by_key(objs: list[dict[str, Any]]) -> Objects:
    keyed = {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o for o in objs}
    assert len(keyed) == len(objs), "duplicate objects"
    return keyed


def one(objs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def container(objs: list[dict[str, Any]]) -> dict[str, Any]:
    return dict(one(objs, "Deployment")["spec"]["template"]["spec"]["containers"][0])


def without_intended_differences(chart: list[dict[str, Any]], overlay: list[dict[str, Any]]) -> tuple[Objects, Objects]:
    """Both renders with the INTENDED_DIFFERENCES taken out, keyed by (kind, namespace, name)."""
    chart, overlay = copy.deepcopy(chart), copy.deepcopy(overlay)
    overlay = [o for o in overlay if o["kind"] != "Namespace"]
    for obj in overlay:
        if obj["kind"] == "ConfigMap" and CONFIG_HASH.match(obj["metadata"]["name"]):
            obj["metadata"]["name"] = "m3stripe-operator-config"
        if obj["kind"] == "Deployment":
            for source in obj["spec"]["template"]["spec"]["containers"][0]["envFrom"]:
                if CONFIG_HASH.match(source["configMapRef"]["name"]):
                    source["configMapRef"]["name"] = "m3stripe-operator-config"
    for obj in chart:
        labels = obj["metadata"].get("labels") or {}
        for label in HELM_LABELS:
            assert label in labels, f"{obj['kind']} {obj['metadata']['name']} lacks Helm's label {label}"
            del labels[label]
        if obj["kind"] == "Deployment":
            annotations = obj["spec"]["template"]["metadata"]["annotations"]
            assert re.fullmatch(r"[0-9a-f]{64}", annotations.pop("checksum/config"))
        if obj["kind"] == "CustomResourceDefinition":
            assert obj["metadata"]["annotations"].pop("helm.sh/resource-policy") == "keep"
    return by_key(chart), by_key(overlay)


def assert_same_objects(chart: Objects, overlay: Objects) -> None:
    assert sorted(chart, key=str) == sorted(overlay, key=str), "the chart and the overlay install different objects"
    for key, obj in overlay.items():
        assert chart[key] == obj, f"{key} differs:\nchart:   {json.dumps(chart[key])}\noverlay: {json.dumps(obj)}"


# --------------------------------------------------------------------------- the same objects as kustomize


def test_the_default_render_installs_what_the_cluster_wide_overlay_installs() -> None:
    assert_same_objects(*without_intended_differences(render(), kustomize_build(OVERLAYS / "cluster-wide")))


def test_two_replicas_render_the_high_availability_overlay_with_its_disruption_budget_and_spread() -> None:
    objs = render(HA)
    assert_same_objects(*without_intended_differences(objs, kustomize_build(OVERLAYS / "high-availability")))
    pod = one(objs, "Deployment")["spec"]["template"]["spec"]
    assert pod["topologySpreadConstraints"][0]["topologyKey"] == "kubernetes.io/hostname"
    assert one(objs, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1


def test_watched_namespaces_render_the_single_namespace_overlay() -> None:
    overlay = kustomize_build(OVERLAYS / "single-namespace")
    for obj in overlay:  # INTENDED_DIFFERENCES["single-namespace"]
        if obj["kind"] == "Deployment":
            operator = obj["spec"]["template"]["spec"]["containers"][0]
            operator["env"] = [e for e in operator["env"] if e["name"] != "WATCH_NAMESPACE"]
            operator["args"] = [a.replace("$(WATCH_NAMESPACE)", "billing") for a in operator["args"]]
    assert_same_objects(*without_intended_differences(render(SINGLE_NAMESPACE), overlay))


def test_a_shard_watches_its_namespaces_with_roles_there_and_no_cluster_role() -> None:
    objs = render({"watchNamespaces": ["team-a", "team-b"], "leaderElection": {"leaseName": "m3stripe-teams"}})
    assert [a for a in container(objs)["args"] if a.startswith("--namespace=")] == [
        "--namespace=team-a",
        "--namespace=team-b",
    ]
    roles = {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in objs if "Role" in o["kind"]}
    assert ("ClusterRole", None, "m3stripe-operator") not in roles
    assert {("Role", "team-a", "m3stripe-operator"), ("RoleBinding", "team-b", "m3stripe-operator")} <= roles
    lease_role = one(objs, "Role", "m3stripe-operator-leader-election")
    assert lease_role["rules"][1]["resourceNames"] == ["m3stripe-teams"]
    assert one(objs, "ConfigMap", "m3stripe-operator-config")["data"]["M3STRIPE_LEASE_NAME"] == "m3stripe-teams"


# --------------------------------------------------------------------------- every object is valid


EVERYTHING = {
    "replicas": 3,
    "image": {"digest": "sha256:" + "a" * 64},
    "imagePullSecrets": [{"name": "registry"}],
    "watchNamespaces": ["billing", "finance"],
    "smtp": {"host": "smtp.example.com", "port": 465, "from": "m3stripe@example.com", "security": "tls"},
    "extraEnv": [{"name": "M3STRIPE_STRIPE_TIMEOUT", "value": "20s"}],
    "podAnnotations": {"example.com/team": "billing"},
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ops", "effect": "NoSchedule"}],
    "affinity": {
        "podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {
                    "topologyKey": "kubernetes.io/hostname",
                    "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "m3stripe"}},
                }
            ]
        }
    },
}


@pytest.mark.parametrize(
    "values", [{}, HA, SINGLE_NAMESPACE, EVERYTHING], ids=["default", "high-availability", "shard", "everything"]
)
def test_every_rendered_object_validates_against_the_kubernetes_schemas(values: dict[str, Any]) -> None:
    import kubernetes_validate

    versions = [kubernetes_validate.latest_version() if v == "latest" else v for v in K8S_VERSIONS]
    checked = 0
    for obj in render(values):
        if obj["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # the Prometheus Operator's kinds: checked structurally in test_manifests
        for version in versions:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as err:
                raise AssertionError(f"{obj['kind']} {obj['metadata']['name']} (Kubernetes {version}): {err}") from None
        checked += 1
    assert checked >= 10


def test_helm_lint_finds_nothing() -> None:
    report = helm.lint(CHART, strict=True, kube_version="v1.30.0")
    problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
    assert not problems, problems


# --------------------------------------------------------------------------- values


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"replicas": "two"}, "/replicas"),
        ({"replicas": 0}, "/replicas"),
        ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
        ({"image": {"digest": "latest"}}, "/image/digest"),
        ({"watchNamespaces": ["Billing"]}, "/watchNamespaces/0"),
        ({"leaderElection": {"leaseDuration": "7.5s"}}, "/leaderElection/leaseDuration"),
        ({"leaderElection": {"leaseName": "Not_A_Name"}}, "/leaderElection/leaseName"),
        ({"smtp": {"security": "ssl"}}, "/smtp/security"),
        ({"smtp": {"port": 70000}}, "/smtp/port"),
        ({"metrics": {"port": 8080}}, "/metrics/port"),
        ({"metrics": {"serviceMonitor": {"enabled": "yes"}}}, "/metrics/serviceMonitor/enabled"),
        ({"crds": {"keep": "no"}}, "/crds/keep"),
        ({"config": {"M3STRIPE_LEASE_NAME": "other"}}, "M3STRIPE_LEASE_NAME"),
        ({"config": {"PATH": "/tmp"}}, "PATH"),
        ({"replica": 2}, "'replica'"),
    ],
)
def test_the_values_schema_rejects_a_bad_value_with_a_message_naming_it(values: dict[str, Any], named: str) -> None:
    with pytest.raises(helm.HelmValuesError) as info:
        render(values)
    assert named in str(info.value), str(info.value)


def test_a_renew_deadline_too_close_to_the_lease_duration_is_refused() -> None:
    with pytest.raises(helm.HelmError, match=r"leaderElection\.renewDeadline \(14s\) must stay at least 2s below"):
        render({"leaderElection": {"renewDeadline": "14s"}})


def test_a_service_monitor_without_its_service_is_refused() -> None:
    with pytest.raises(helm.HelmError, match=r"metrics\.serviceMonitor\.enabled needs metrics\.service\.enabled"):
        render({"metrics": {"service": {"enabled": False}}})


def test_image_resources_and_security_contexts_come_from_the_values() -> None:
    objs = render(
        {
            "image": {"repository": "registry.example.com/m3stripe", "tag": "0.1.0-rc1", "pullPolicy": "Always"},
            "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": None, "memory": "1Gi"}},
            "podSecurityContext": {"runAsNonRoot": True, "runAsUser": 20000, "fsGroup": 20000},
            "securityContext": {"readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}},
        }
    )
    operator = container(objs)
    assert (operator["image"], operator["imagePullPolicy"]) == ("registry.example.com/m3stripe:0.1.0-rc1", "Always")
    # Helm merges maps into the defaults: `cpu: null` removes the default CPU limit.
    assert operator["resources"]["limits"] == {"memory": "1Gi"}
    assert operator["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert one(objs, "Deployment")["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == 20000
    assert container(render({"image": {"digest": "sha256:" + "b" * 64}}))["image"].endswith("@sha256:" + "b" * 64)


def test_lease_durations_smtp_settings_and_extra_env_reach_the_operator() -> None:
    objs = render(
        {
            "leaderElection": {"leaseDuration": "30s", "renewDeadline": "20s", "retryPeriod": "4s"},
            "smtp": {"host": "smtp.example.com", "port": 465, "from": "ops@example.com", "security": "tls"},
            "extraEnv": [{"name": "M3STRIPE_STRIPE_TIMEOUT", "value": "20s"}],
            "config": {"M3STRIPE_SYNC_CONCURRENCY": 4},
        }
    )
    data = one(objs, "ConfigMap", "m3stripe-operator-config")["data"]
    assert {k: data[k] for k in data if k.startswith(("M3STRIPE_LEASE_", "M3STRIPE_SMTP_"))} == {
        "M3STRIPE_LEASE_NAME": "m3stripe",
        "M3STRIPE_LEASE_DURATION": "30s",
        "M3STRIPE_LEASE_RENEW_DEADLINE": "20s",
        "M3STRIPE_LEASE_RETRY_PERIOD": "4s",
        "M3STRIPE_SMTP_HOST": "smtp.example.com",
        "M3STRIPE_SMTP_PORT": "465",
        "M3STRIPE_SMTP_FROM": "ops@example.com",
        "M3STRIPE_SMTP_SECURITY": "tls",
    }
    assert data["M3STRIPE_SYNC_CONCURRENCY"] == "4"
    env = {e["name"]: e for e in container(objs)["env"]}
    assert env["M3STRIPE_STRIPE_TIMEOUT"]["value"] == "20s"
    # The SMTP login only ever comes from a Secret, never from values into the ConfigMap.
    assert env["M3STRIPE_SMTP_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "m3stripe-smtp",
        "key": "password",
        "optional": True,
    }


def test_a_changed_setting_rolls_the_deployment() -> None:
    def checksum(values: dict[str, Any]) -> str:
        return str(one(render(values), "Deployment")["spec"]["template"]["metadata"]["annotations"]["checksum/config"])

    assert checksum({}) == checksum({})
    assert checksum({}) != checksum({"config": {"M3STRIPE_SECRET_POLL_INTERVAL": "1m"}})
    assert checksum({}) != checksum({"leaderElection": {"retryPeriod": "3s"}})


@pytest.mark.parametrize(
    ("values", "gone"),
    [
        ({"metrics": {"service": {"enabled": False}, "serviceMonitor": {"enabled": False}}}, {"Service"}),
        ({"metrics": {"serviceMonitor": {"enabled": False}}}, {"ServiceMonitor"}),
        ({"prometheusRule": {"enabled": False}}, {"PrometheusRule"}),
        ({"grafanaDashboard": {"enabled": False}}, {"ConfigMap/m3stripe-grafana-dashboard"}),
        ({"crds": {"install": False}}, {"CustomResourceDefinition"}),
        ({"metrics": {"serviceMonitor": {"enabled": False}}, "rbac": {"aggregateToDefaultRoles": False}}, set()),
        ({"rbac": {"peersClusterRole": False}}, {"ClusterRole/m3stripe-operator-peers"}),
    ],
)
def test_each_monitoring_object_and_the_crd_is_a_toggle(values: dict[str, Any], gone: set[str]) -> None:
    def names(objs: list[dict[str, Any]]) -> set[str]:
        return {o["kind"] for o in objs} | {f"{o['kind']}/{o['metadata']['name']}" for o in objs}

    missing = names(render()) - names(render(values))
    assert gone <= missing
    if values.get("rbac", {}).get("aggregateToDefaultRoles") is False:
        assert "ClusterRole/m3stripe-stripeintegrations-view" in missing


def test_the_crd_is_kept_on_uninstall_unless_told_otherwise() -> None:
    crd = one(render(), "CustomResourceDefinition")
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert "Prune=false" in crd["metadata"]["annotations"]["argocd.argoproj.io/sync-options"]
    crd = one(render({"crds": {"keep": False}}), "CustomResourceDefinition")
    assert "helm.sh/resource-policy" not in crd["metadata"]["annotations"]
    # The CRD is a template, not in crds/ (which Helm never upgrades): see templates/crds.yaml.
    assert not (CHART / "crds").exists()


def test_the_release_namespace_is_where_the_operator_and_its_lease_live() -> None:
    objs = render(namespace="billing-ops")
    namespaced = [o for o in objs if o["kind"] not in ("ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition")]
    assert {o["metadata"]["namespace"] for o in namespaced} == {"billing-ops"}
    binding = one(objs, "ClusterRoleBinding", "m3stripe-operator")
    assert binding["subjects"][0]["namespace"] == "billing-ops"
    # A shard in its own namespace binds the shared peers ClusterRole under its own name.
    peers = one(objs, "ClusterRoleBinding", "m3stripe-operator-peers-billing-ops")
    assert peers["roleRef"]["name"] == "m3stripe-operator-peers"
    assert peers["subjects"][0]["namespace"] == "billing-ops"


# --------------------------------------------------------------------------- in step with the rest


def test_the_chart_version_moves_with_the_package() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["version"] == chart["appVersion"] == version
    assert container(render())["image"] == f"ghcr.io/m3stripe/m3stripe-operator:{version}"


@pytest.mark.parametrize(
    ("copy_path", "source"),
    [
        ("files/crds/m3stripe.dev_stripeintegrations.yaml", ROOT / "crds" / "m3stripe.dev_stripeintegrations.yaml"),
        ("files/monitoring/prometheusrule.yaml", ROOT / "deploy" / "monitoring" / "prometheusrule.yaml"),
        ("files/monitoring/grafana-dashboard.json", ROOT / "deploy" / "monitoring" / "grafana-dashboard.json"),
    ],
)
def test_the_charts_copies_are_current(copy_path: str, source: Path) -> None:
    """Helm reads only files inside the chart (and Argo CD refuses symlinks out of it): copies, checked here."""
    copied = (CHART / copy_path).read_bytes()
    assert hashlib.sha256(copied).digest() == hashlib.sha256(source.read_bytes()).digest(), (
        f"deploy/helm/m3stripe/{copy_path} is stale: cp {source.relative_to(ROOT)} deploy/helm/m3stripe/{copy_path}"
    )


def test_every_value_is_in_the_schema_and_every_schema_key_in_the_values() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(schema["properties"]) == set(values)
    assert schema["additionalProperties"] is False
    _chart().validate_schema(values)


# --------------------------------------------------------------------------- GitOps examples


def test_argocd_application_installs_the_chart_with_the_namespace_labelled_restricted() -> None:
    app = yaml.safe_load((ROOT / "deploy" / "argocd" / "application-helm.yaml").read_text())
    source = app["spec"]["source"]
    assert (ROOT / source["path"] / "Chart.yaml").is_file()
    _chart().validate_schema(source["helm"]["valuesObject"])
    sync = app["spec"]["syncPolicy"]
    assert "CreateNamespace=true" in sync["syncOptions"] and "ServerSideApply=true" in sync["syncOptions"]
    namespace = one(kustomize_build(OVERLAYS / "cluster-wide"), "Namespace")
    labels = {k: v for k, v in namespace["metadata"]["labels"].items() if k.startswith("pod-security.")}
    assert sync["managedNamespaceMetadata"]["labels"] == labels


def test_flux_helm_release_installs_the_chart_and_gates_the_integrations_on_it() -> None:
    flux = ROOT / "deploy" / "flux"
    docs = [d for d in yaml.safe_load_all((flux / "m3stripe-helm.yaml").read_text()) if d]
    kustomizations = {d["metadata"]["name"]: d["spec"] for d in docs if d["kind"] == "Kustomization"}
    operator = kustomizations["m3stripe-operator"]
    [release] = [d for d in yaml.safe_load_all((ROOT / operator["path"] / "helmrelease.yaml").read_text()) if d]
    assert (release["apiVersion"], release["kind"]) == ("helm.toolkit.fluxcd.io/v2", "HelmRelease")
    assert {"kind": "HelmRelease", "name": release["metadata"]["name"]}.items() <= operator["healthChecks"][0].items()
    assert kustomizations["m3stripe-integrations"]["dependsOn"] == [{"name": "m3stripe-operator"}]
    assert (ROOT / release["spec"]["chart"]["spec"]["chart"] / "Chart.yaml").is_file()
    _chart().validate_schema(release["spec"]["values"])
