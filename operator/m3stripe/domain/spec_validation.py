"""Turn a raw spec into a model, or into problems that name the field and say how to fix it.

The CRD's schema and CEL rules reject most bad specs at admission, but objects stored before a rule
existed (or applied to an API server without the CRD's validation) still reach the operator, so the
operator checks everything again and reports what it finds as a condition instead of crashing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from m3stripe.api.spec import StripeIntegrationSpec
from m3stripe.domain.account_filter import AccountFilter, FilterSyntaxError, parse_filter


@dataclass(frozen=True)
class SpecProblem:
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


@dataclass(frozen=True)
class ParsedSpec:
    spec: StripeIntegrationSpec
    account_filter: AccountFilter | None


def parse_spec(raw: Mapping[str, Any] | None) -> ParsedSpec | list[SpecProblem]:
    """A validated spec with its compiled account filter, or every problem found in it."""
    try:
        spec = StripeIntegrationSpec.model_validate(dict(raw or {}))
    except ValidationError as err:
        return [_from_pydantic(e, raw or {}) for e in err.errors(include_url=False)]
    problems = [SpecProblem(f, m) for f, m in spec.cross_field_problems()]
    account_filter: AccountFilter | None = None
    try:
        account_filter = parse_filter(spec.accountFilter)
    except FilterSyntaxError as err:
        problems.append(SpecProblem("spec.accountFilter", str(err)))
    if problems:
        return problems
    return ParsedSpec(spec=spec, account_filter=account_filter)


def _from_pydantic(error: Mapping[str, Any], raw: Mapping[str, Any]) -> SpecProblem:
    loc = [str(part) for part in error.get("loc", ())]
    path = "spec" + "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in loc)
    kind = error.get("type", "")
    if kind == "extra_forbidden":
        return SpecProblem(path, "unknown field; check its spelling against `kubectl explain stripeintegration.spec`")
    if kind == "missing":
        return SpecProblem(path, "required field is missing")
    message = str(error.get("msg", "invalid value"))
    if kind == "enum" and "expected" in error.get("ctx", {}):
        message = f"unknown value {_value_at(raw, loc)!r}; expected one of {error['ctx']['expected']}"
    elif kind == "string_pattern_mismatch":
        message = f"value {_value_at(raw, loc)!r} does not match the pattern {error['ctx']['pattern']}"
    elif kind.startswith("value_error"):
        message = message.removeprefix("Value error, ")
    return SpecProblem(path, message)


def _value_at(raw: Any, loc: list[str]) -> Any:
    node = raw
    for part in loc:
        if isinstance(node, Mapping):
            node = node.get(part)
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node
