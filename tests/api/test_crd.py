"""The CRD is generated from the pydantic models; its schema, CEL rules and examples are checked here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from m3stripe.api import names
from m3stripe.api.crd import CRD_FILENAME, build_crd, render_crd_yaml
from m3stripe.api.spec import LineItemType
from m3stripe.testing.crd_validation import CrdValidator

ROOT = Path(__file__).resolve().parents[2]


def _obj(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "destination": "StripeTestMode",
        "m3ter": {"organizationId": "org1", "credentialsRef": {"name": "m3ter"}},
    }
    base.update(spec)
    return {"apiVersion": names.API_VERSION, "kind": names.KIND, "metadata": {"name": "x"}, "spec": base}


@pytest.fixture(scope="module")
def validator() -> CrdValidator:
    return CrdValidator()


def test_crds_directory_matches_the_models() -> None:
    on_disk = (ROOT / "crds" / CRD_FILENAME).read_text(encoding="utf-8")
    assert on_disk == render_crd_yaml(), "crds/ drifted from the models: run `m3stripe crds` and commit the result"


def test_every_schema_field_has_a_description() -> None:
    schema = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    missing: list[str] = []

    def walk(node: dict[str, Any], path: str) -> None:
        for name, sub in (node.get("properties") or {}).items():
            if name != "metadata" and not sub.get("description"):
                missing.append(f"{path}.{name}")
            walk(sub, f"{path}.{name}")
        if isinstance(node.get("items"), dict):
            walk(node["items"], f"{path}[]")

    walk(schema, "")
    assert missing == []


def test_names_columns_and_subresources() -> None:
    crd = build_crd()
    spec = crd["spec"]
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert spec["scope"] == "Namespaced" and spec["group"] == "m3stripe.dev"
    assert spec["names"]["shortNames"] and spec["names"]["categories"]
    version = spec["versions"][0]
    assert version["name"] == "v1alpha1" and version["subresources"] == {"status": {}}
    columns = {c["name"]: c for c in version["additionalPrinterColumns"]}
    assert list(columns) == [
        "Destination",
        "Connected",
        "Disabled",
        "Errors",
        "Ready",
        "Reason",
        "Age",
        "Message",
    ]
    assert columns["Message"]["priority"] == 1
    assert all(c.get("priority", 0) == 0 for n, c in columns.items() if n != "Message")
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]
    conditions = status["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map" and conditions["x-kubernetes-list-map-keys"] == ["type"]
    # Kopf's bookkeeping lives in annotations, so the status schema stays strict (no preserve-unknown).
    assert "x-kubernetes-preserve-unknown-fields" not in str(status)


def test_spec_enums_and_defaults() -> None:
    spec = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    assert spec["entityType"]["enum"] == ["Bill"] and spec["entityType"]["default"] == "Bill"
    assert spec["destination"]["enum"] == ["Stripe", "StripeTestMode"]
    assert spec["sortLineItemsBy"]["enum"] == ["None", "Subtotal", "AggregationId"]
    assert spec["excludedLineItemTypes"]["items"]["enum"] == [t.value for t in LineItemType]
    assert len(LineItemType) == 19
    assert spec["onlySendBillOnApproval"]["default"] is False
    assert spec["useExternalMappingAccountCode"]["default"] is False
    assert spec["sendDueDate"]["default"] is False
    assert spec["credentialRef"]["properties"]["name"]["pattern"].startswith("^[a-z0-9]")
    assert (
        "credentialRef"
        not in build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["required"]
    )


def test_generated_file_is_current_via_cli(tmp_path: Path) -> None:
    from m3stripe.cli import main

    assert main(["crds", "-o", str(tmp_path)]) == 0
    assert (tmp_path / CRD_FILENAME).read_text(encoding="utf-8") == render_crd_yaml()


@pytest.mark.parametrize(
    ("spec", "field_path"),
    [
        ({"accountIds": ["a", "b"], "restrictedAccountIds": ["b"]}, ".spec.restrictedAccountIds"),
        (
            {"sendDueDate": True, "createStripeInvoice": False, "collectionMethod": "SendInvoice"},
            ".spec.sendDueDate",
        ),
        ({"sendDueDate": True}, ".spec.collectionMethod"),
        ({"poNumberCustomField": "PO", "createStripeInvoice": False}, ".spec.poNumberCustomField"),
        ({"automaticTax": "Enabled", "createStripeInvoice": False}, ".spec.automaticTax"),
        ({"syncInterval": "5s"}, ".spec.syncInterval"),
        ({"syncInterval": "25h"}, ".spec.syncInterval"),
        ({"eventRetention": "30s"}, ".spec.eventRetention"),
        ({"eventRetention": "8761h"}, ".spec.eventRetention"),
        ({"reconcileInterval": "30m"}, ".spec.reconcileInterval"),
        ({"reconcileInterval": "721h"}, ".spec.reconcileInterval"),
    ],
)
def test_every_cel_rule_rejects_what_it_is_for(validator: CrdValidator, spec: dict[str, Any], field_path: str) -> None:
    errors = validator.validate(_obj(**spec))
    assert [e.path for e in errors] == [field_path], errors


@pytest.mark.parametrize(
    "spec",
    [
        {"accountIds": ["a"], "restrictedAccountIds": ["b"]},
        {"sendDueDate": True, "collectionMethod": "SendInvoice"},
        {"poNumberCustomField": "PO"},
        {"automaticTax": "Enabled", "taxBehavior": "Exclusive", "taxCode": "txcd_10103001"},
        {"automaticTax": "AccountDefault", "createStripeInvoice": False, "taxBehavior": "Inclusive"},
        {"syncInterval": "10s"},
        {"syncInterval": "1h30m"},
        {"syncInterval": "24h"},
        {"eventRetention": "1m"},
        {"eventRetention": "8760h"},
        {"reconcileInterval": "1h"},
        {"reconcileInterval": "720h"},
    ],
)
def test_every_cel_rule_accepts_valid_specs(validator: CrdValidator, spec: dict[str, Any]) -> None:
    assert validator.validate(_obj(**spec)) == []


def test_every_cel_rule_is_covered_by_a_case(validator: CrdValidator) -> None:
    covered = {
        ".spec.restrictedAccountIds",
        ".spec.sendDueDate",
        ".spec.collectionMethod",
        ".spec.poNumberCustomField",
        ".spec.automaticTax",
        ".spec.syncInterval",
        ".spec.eventRetention",
        ".spec.reconcileInterval",
    }
    rule_paths = {path + rule["fieldPath"] for path, rule in validator.rules()}
    assert rule_paths == covered


def test_schema_rejects_bad_values(validator: CrdValidator) -> None:
    assert validator.validate(_obj(destination="Paypal"))
    assert validator.validate(_obj(excludedLineItemTypes=["TIP"]))
    assert validator.validate(_obj(credentialRef={"name": "Not_A_DNS_Name"}))
    assert validator.validate(_obj(integrationDisabledNotificationUsers=["not-an-email"]))
    assert validator.validate(_obj(priceDataProductId="price_123"))
    assert validator.validate(_obj(automaticTax="On"))
    assert validator.validate(_obj(taxBehavior="exclusive"))  # the CRD spells Exclusive
    assert validator.validate(_obj(taxCode="txcd_123"))
    assert validator.validate(_obj(unknownField=True))
    # Durations are bounded in length too, so a CEL duration() never sees an overflowing value.
    assert validator.validate(_obj(syncInterval="9" * 40 + "h"))


def _manifests() -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    for path in sorted((ROOT / "deploy").rglob("*.yaml")):
        if path.is_relative_to(ROOT / "deploy" / "helm") and "templates" in path.parts:
            continue  # Go templates, not YAML: tests/deploy/test_helm_chart.py renders them
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if isinstance(doc, dict) and doc.get("kind") == names.KIND:
                found.append((str(path.relative_to(ROOT)), doc))
    return found


def test_there_are_examples() -> None:
    assert len(_manifests()) >= 3


@pytest.mark.parametrize(("where", "manifest"), _manifests(), ids=[w for w, _ in _manifests()])
def test_every_example_manifest_validates(validator: CrdValidator, where: str, manifest: dict[str, Any]) -> None:
    assert manifest["apiVersion"] == names.API_VERSION
    assert validator.validate(manifest) == [], where
    # The operator's own parser agrees with the API server's schema.
    from m3stripe.domain.spec_validation import ParsedSpec, parse_spec

    assert isinstance(parse_spec(manifest["spec"]), ParsedSpec), where


def test_operator_directory_is_not_importable() -> None:
    import operator

    assert Path(operator.__file__ or "").parent != ROOT / "operator"
    assert not (ROOT / "operator" / "__init__.py").exists()
