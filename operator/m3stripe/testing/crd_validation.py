"""Validate objects against the generated CRD the way the API server would: defaults, schema, CEL.

For tests and CI (it needs the `test` extra: jsonschema and cel-python). It applies the structural
schema's defaults, checks the OpenAPI constraints with jsonschema, rejects unknown fields (as
`kubectl apply` with strict field validation does), and evaluates every `x-kubernetes-validations`
rule with a CEL implementation.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import celpy
import jsonschema

from m3stripe.api.crd import build_crd


@dataclass(frozen=True)
class SchemaError:
    """What the API server would refuse, and where (`field: message`).

    Its own value, not the operator's `SpecProblem`: this validator is the tests' stand-in for the API server,
    so it shares nothing with the operator's checks it is compared against.
    """

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"

    @property
    def path(self) -> str:
        """The field, as the API server's messages name it (`.spec.x`, or the CEL rule's fieldPath)."""
        return self.field


def crd_schema() -> dict[str, Any]:
    return build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]  # type: ignore[no-any-return]


def apply_defaults(schema: dict[str, Any], obj: Any) -> Any:
    """Fill in defaults as the API server does when it stores an object."""
    if not isinstance(obj, dict) or schema.get("type") != "object":
        if isinstance(obj, list) and "items" in schema:
            return [apply_defaults(schema["items"], item) for item in obj]
        return obj
    out = dict(obj)
    for name, sub in (schema.get("properties") or {}).items():
        if name not in out and "default" in sub:
            out[name] = copy.deepcopy(sub["default"])
        if name in out:
            out[name] = apply_defaults(sub, out[name])
    return out


def _to_jsonschema(node: Any) -> Any:
    """OpenAPI v3 structural schema -> JSON Schema: unknown properties are errors (strict validation)."""
    if isinstance(node, list):
        return [_to_jsonschema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _to_jsonschema(v) for k, v in node.items() if not k.startswith("x-kubernetes-")}
    if node.get("type") == "object" and "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    if node.get("x-kubernetes-list-type") == "set":
        out["uniqueItems"] = True
    return out


class CrdValidator:
    """Validates an object as the API server would against the generated CRD: its schema and its CEL rules."""

    def __init__(self, schema: dict[str, Any] | None = None) -> None:
        self.schema = schema or crd_schema()
        json_schema = _to_jsonschema(self.schema)
        # metadata is validated by the API server itself, not by the CRD's schema.
        json_schema["properties"]["metadata"] = {"type": "object"}
        self._validator = jsonschema.Draft7Validator(json_schema)
        self._cel = celpy.Environment()
        self._programs: dict[str, Any] = {}

    def rules(self) -> list[tuple[str, dict[str, Any]]]:
        """Every CEL rule with the path of the schema node it sits on."""
        found: list[tuple[str, dict[str, Any]]] = []

        def walk(node: dict[str, Any], path: str) -> None:
            for rule in node.get("x-kubernetes-validations") or ():
                found.append((path, rule))
            for name, sub in (node.get("properties") or {}).items():
                walk(sub, f"{path}.{name}")
            if isinstance(node.get("items"), dict):
                walk(node["items"], f"{path}[*]")

        walk(self.schema, "")
        return found

    def evaluate(self, rule: str, value: Any) -> bool:
        program = self._programs.get(rule)
        if program is None:
            program = self._programs[rule] = self._cel.program(self._cel.compile(rule))
        result = program.evaluate({"self": celpy.json_to_cel(value)})  # type: ignore[attr-defined]
        if isinstance(result, celpy.celtypes.BoolType | bool):
            return bool(result)
        raise ValueError(f"CEL rule {rule!r} did not evaluate to a bool: {result!r}")

    def validate(self, obj: dict[str, Any]) -> list[SchemaError]:
        """Errors for the object after defaulting; empty when the API server would accept it."""
        defaulted = apply_defaults(self.schema, obj)
        errors = [
            SchemaError("." + ".".join(str(p) for p in e.absolute_path), e.message)
            for e in sorted(self._validator.iter_errors(defaulted), key=lambda e: list(map(str, e.absolute_path)))
        ]
        if errors:
            return errors
        for path, rule in self.rules():
            for value, where in _values_at(defaulted, path):
                if not self.evaluate(rule["rule"], value):
                    errors.append(SchemaError(where + rule.get("fieldPath", ""), rule["message"]))
        return errors


def _values_at(obj: Any, path: str) -> list[tuple[Any, str]]:
    nodes: list[tuple[Any, str]] = [(obj, "")]
    for part in [p for p in path.split(".") if p]:
        nxt: list[tuple[Any, str]] = []
        is_items = part.endswith("[*]")
        name = part.removesuffix("[*]")
        for node, where in nodes:
            if isinstance(node, dict) and name in node:
                value = node[name]
                if is_items and isinstance(value, list):
                    nxt.extend((item, f"{where}.{name}[{i}]") for i, item in enumerate(value))
                elif not is_items:
                    nxt.append((value, f"{where}.{name}"))
        nodes = nxt
    return nodes
