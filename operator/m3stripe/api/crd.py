"""Render the StripeIntegration CustomResourceDefinition from the pydantic models."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from m3stripe.api import names
from m3stripe.api.spec import StripeIntegrationSpec
from m3stripe.api.status import StripeIntegrationStatus

CRD_FILENAME = f"{names.GROUP}_{names.PLURAL}.yaml"

# JSON-Schema keywords that a CRD's structural OpenAPI v3 schema accepts; anything else is dropped.
_ALLOWED = {
    "type",
    "format",
    "description",
    "default",
    "enum",
    "pattern",
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minItems",
    "maxItems",
    "uniqueItems",
    "items",
    "properties",
    "required",
    "additionalProperties",
    "nullable",
    "x-kubernetes-validations",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-int-or-string",
}


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    """Resolve $ref and collapse Optional (anyOf [X, null]) into a structural schema."""
    if isinstance(node, list):
        return [_inline(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    if "$ref" in node:
        target = copy.deepcopy(defs[node.pop("$ref").rsplit("/", 1)[-1]])
        # Field-level descriptions and defaults win over the referenced model's own.
        target.update({k: v for k, v in node.items() if k in ("description", "default")})
        node = target
    if "anyOf" in node:
        variants = [v for v in node.pop("anyOf") if v.get("type") != "null"]
        if len(variants) != 1:
            raise ValueError(f"cannot express a union in a structural schema: {variants}")
        merged = _inline(variants[0], defs)
        merged.update({k: v for k, v in node.items() if k in ("description",)})
        node = merged
    if "const" in node:
        node["enum"] = [node.pop("const")]
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "properties":
            out[key] = {name: _inline(sub, defs) for name, sub in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = _inline(value, defs)
        elif key == "additionalProperties" and value is False:
            continue  # structural schemas prune unknown fields instead
        elif key in _ALLOWED:
            out[key] = value
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    if out.get("default") is None:
        out.pop("default", None)
    # An enum that only lists defaults is still an enum; defaults of enums arrive as their value.
    return out


def openapi_schema(model: type[BaseModel]) -> dict[str, Any]:
    """A model's JSON schema as a CRD structural schema."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    return _inline(raw, defs)  # type: ignore[no-any-return]


def build_crd() -> dict[str, Any]:
    """The whole CRD as a dict, ready to be dumped to YAML."""
    spec_schema = openapi_schema(StripeIntegrationSpec)
    status_schema = openapi_schema(StripeIntegrationStatus)
    # Status is written by the operator only; a default on it would be applied on every read.
    _strip_defaults(status_schema)
    ready = '.status.conditions[?(@.type=="Ready")]'
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": names.CRD_NAME,
            "labels": {"app.kubernetes.io/name": "m3stripe", "app.kubernetes.io/component": "crd"},
            "annotations": {
                # A CRD deletion cascades to every integration: keep it out of automated pruning.
                "argocd.argoproj.io/sync-options": "Prune=false,ServerSideApply=true",
            },
        },
        "spec": {
            "group": names.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": names.KIND,
                "listKind": f"{names.KIND}List",
                "plural": names.PLURAL,
                "singular": names.SINGULAR,
                "shortNames": list(names.SHORT_NAMES),
                "categories": list(names.CATEGORIES),
            },
            "versions": [
                {
                    "name": names.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": "Destination", "type": "string", "jsonPath": ".spec.destination"},
                        {"name": "Connected", "type": "boolean", "jsonPath": ".status.connected"},
                        {"name": "Disabled", "type": "boolean", "jsonPath": ".status.disabled"},
                        {"name": "Errors", "type": "integer", "jsonPath": ".status.consecutiveErrors"},
                        {"name": "Ready", "type": "string", "jsonPath": f"{ready}.status"},
                        {"name": "Reason", "type": "string", "jsonPath": f"{ready}.reason"},
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                        {"name": "Message", "type": "string", "jsonPath": f"{ready}.message", "priority": 1},
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": (
                                "StripeIntegration sends the Bills of one m3ter organization to Stripe, "
                                "as m3ter's native Bill -> Stripe integration does."
                            ),
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {
                                    "type": "string",
                                    "description": "API version of this object.",
                                },
                                "kind": {"type": "string", "description": "Kind of this object."},
                                "metadata": {"type": "object"},
                                "spec": spec_schema,
                                "status": status_schema,
                            },
                        }
                    },
                }
            ],
        },
    }


def _strip_defaults(node: Any) -> None:
    if isinstance(node, dict):
        node.pop("default", None)
        for value in node.values():
            _strip_defaults(value)
    elif isinstance(node, list):
        for value in node:
            _strip_defaults(value)


def render_crd_yaml() -> str:
    header = "# Generated from m3stripe.api by `m3stripe crds`; do not edit by hand.\n"
    return header + yaml.safe_dump(build_crd(), sort_keys=False, width=120, allow_unicode=True)


def write_crds(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / CRD_FILENAME
    path.write_text(render_crd_yaml(), encoding="utf-8")
    return path
