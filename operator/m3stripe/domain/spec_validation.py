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
from m3stripe.domain.billing import ADDRESS_KEYS
from m3stripe.domain.selection import Selector

# The top-level keys of the record a filter is evaluated against (`Account.as_filter_record`); a path
# that starts anywhere else can never match an Account, so it is a typo, not a filter.
FILTER_ROOTS = ("id", "name", "accountName", "code", "accountCode", "currency", "address", "customFields")


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

    def selector(self) -> Selector:
        """A new Selector of this spec (accounts, filter, approval), with its own filter notes."""
        return Selector(
            account_ids=frozenset(self.spec.accountIds),
            restricted_account_ids=frozenset(self.spec.restrictedAccountIds),
            account_filter=self.account_filter,
            only_approved=self.spec.onlySendBillOnApproval,
        )


def parse_spec(raw: object) -> ParsedSpec | list[SpecProblem]:
    """A validated spec with its compiled account filter, or every problem found in it."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        # The API server's schema makes spec an object; an object stored without that schema may not be.
        return [SpecProblem("spec", f"must be an object of fields, not a {_json_type(raw)}")]
    try:
        spec = StripeIntegrationSpec.model_validate(dict(raw))
    except ValidationError as err:
        return [_from_pydantic(e, raw) for e in err.errors(include_url=False)]
    problems = [SpecProblem(f, m) for f, m in spec.cross_field_problems()]
    account_filter: AccountFilter | None = None
    # "" is the usual "no filter" of a template; only whitespace is text that cannot mean what it says.
    if spec.accountFilter and not spec.accountFilter.strip():
        problems.append(
            SpecProblem(
                "spec.accountFilter",
                "is blank; remove the field to send the Bills of every Account, or write an expression such as "
                'address.country == "UK"',
            )
        )
    else:
        try:
            account_filter = parse_filter(spec.accountFilter)
        except FilterSyntaxError as err:
            problems.append(SpecProblem("spec.accountFilter", str(err)))
    if account_filter is not None:
        problems.extend(_unknown_filter_fields(account_filter))
        problems.extend(_text_ordered_by_number(account_filter))
    if problems:
        return problems
    return ParsedSpec(spec=spec, account_filter=account_filter)


def _unknown_filter_fields(account_filter: AccountFilter) -> list[SpecProblem]:
    problems: list[SpecProblem] = []
    for dotted in sorted(account_filter.fields()):
        root, _, rest = dotted.partition(".")
        if root not in FILTER_ROOTS:
            problems.append(
                SpecProblem(
                    "spec.accountFilter",
                    f"field {dotted!r} is not a field of an m3ter Account, so the filter can never mean what it says; "
                    f"fields start with one of {', '.join(FILTER_ROOTS)} (e.g. customFields.country)",
                )
            )
        elif root == "address" and rest and rest.split(".")[0] not in ADDRESS_KEYS:
            problems.append(
                SpecProblem(
                    "spec.accountFilter",
                    f"field {dotted!r}: m3ter addresses have no {rest.split('.')[0]!r}; use one of "
                    f"{', '.join('address.' + k for k in ADDRESS_KEYS)}",
                )
            )
        elif root not in ("address", "customFields") and rest:
            problems.append(
                SpecProblem("spec.accountFilter", f"field {dotted!r}: {root} is a plain value with no fields")
            )
    return problems


# An Account's own fields are text (the m3ter SDK types every field of AccountResponse and Address `str`); these
# never hold a numeral: the id is m3ter's UUID ("The UUID of the entity", SDK types/account_response.py), the currency
# a currency code, the country a country code or name. A name, a code or a postal code may ("02134": ordering US ZIP
# codes by a number is a filter that means what it says), so those are not refused.
NEVER_NUMERALS = ("id", "currency", "address.country")


def _text_ordered_by_number(account_filter: AccountFilter) -> list[SpecProblem]:
    """Ordering by a number a field that never holds a numeral is false for every Account: refused like the other
    filters that cannot mean what they say."""
    problems: list[SpecProblem] = []
    for dotted, text in account_filter.number_orderings():
        if dotted not in NEVER_NUMERALS:
            continue
        problems.append(
            SpecProblem(
                "spec.accountFilter",
                f"{text!r} orders the text field {dotted} by a number, which is false for every Account (m3ter's "
                f'{dotted} is never written as a number); compare text with text (quote the value: "…")',
            )
        )
    return problems


def _json_type(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "list"
    return type(value).__name__


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
