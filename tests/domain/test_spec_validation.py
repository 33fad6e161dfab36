"""parse_spec: a valid spec with its compiled filter, or problems that name the field and the fix."""

from __future__ import annotations

from typing import Any

import pytest

from m3stripe.api.spec import StripeIntegrationSpec
from m3stripe.domain.account_filter import AccountFilter
from m3stripe.domain.spec_validation import ParsedSpec, SpecProblem, parse_spec


def raw(**fields: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "destination": "StripeTestMode",
        "m3ter": {"organizationId": "org1", "credentialsRef": {"name": "m3ter"}},
    }
    spec.update(fields)
    return spec


def problems(spec: dict[str, Any] | None) -> list[SpecProblem]:
    result = parse_spec(spec)
    assert isinstance(result, list), result
    return result


def messages(spec: dict[str, Any] | None) -> list[str]:
    return [str(p) for p in problems(spec)]


def test_valid_spec_with_filter() -> None:
    result = parse_spec(raw(accountFilter='customFields.country == "UK"', accountIds=["a"]))
    assert isinstance(result, ParsedSpec)
    assert isinstance(result.spec, StripeIntegrationSpec)
    assert result.spec.accountIds == ["a"]
    assert isinstance(result.account_filter, AccountFilter)
    assert result.account_filter.matches({"customFields": {"country": "UK"}})
    assert not result.account_filter.matches({"customFields": {"country": "FR"}})


@pytest.mark.parametrize("expression", [None, ""])
def test_valid_spec_without_filter(expression: str | None) -> None:
    result = parse_spec(raw(accountFilter=expression))
    assert isinstance(result, ParsedSpec)
    assert result.account_filter is None


@pytest.mark.parametrize("expression", ["   ", "\t\n"])
def test_a_whitespace_only_filter_is_a_problem_not_every_account(expression: str) -> None:
    assert any("spec.accountFilter: is blank" in p for p in messages(raw(accountFilter=expression)))


@pytest.mark.parametrize(
    ("expression", "named"),
    [
        ('customFeilds.country == "UK"', "'customFeilds.country' is not a field of an m3ter Account"),
        ('addres.country == "UK"', "'addres.country'"),
        ('address.contry == "UK"', "m3ter addresses have no 'contry'"),
        ('name.first == "x"', "name is a plain value"),
    ],
)
def test_a_filter_field_no_account_can_have_is_named(expression: str, named: str) -> None:
    assert any(p.startswith("spec.accountFilter: ") and named in p for p in messages(raw(accountFilter=expression)))


def test_filter_fields_every_account_has_are_accepted() -> None:
    expression = 'customFields.anything == "x" AND address.country == UK AND currency == "GBP" AND accountCode != null'
    assert isinstance(parse_spec(raw(accountFilter=expression)), ParsedSpec)


@pytest.mark.parametrize(("value", "kind"), [(["a"], "list"), ("spec", "string"), (5, "number"), (True, "boolean")])
def test_a_spec_that_is_not_an_object_is_one_problem_not_a_crash(value: object, kind: str) -> None:
    result = parse_spec(value)
    assert isinstance(result, list)
    assert [str(p) for p in result] == [f"spec: must be an object of fields, not a {kind}"]


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("syncInterval", "99999999999999h", "longer than the maximum of 24h"),
        ("syncInterval", "25h", "longer than the maximum of 24h"),
        ("eventRetention", "99999999999999h", "longer than the maximum of 8760h"),
        ("eventRetention", "30s", "at least 1m"),
        ("eventRetention", "9" * 40 + "h", "at most 32 characters"),
    ],
)
def test_durations_are_bounded(field: str, value: str, says: str) -> None:
    assert any(p.startswith(f"spec.{field}: ") and says in p for p in messages(raw(**{field: value}))), messages(
        raw(**{field: value})
    )


def test_unknown_field() -> None:
    found = problems(raw(accountIDs=["a"]))
    assert [p.field for p in found] == ["spec.accountIDs"]
    assert found[0].message.startswith("unknown field")
    assert str(found[0]).startswith("spec.accountIDs: unknown field")


def test_unknown_nested_field() -> None:
    assert messages(raw(m3ter={"organizationId": "o", "credentialsRef": {"name": "m", "extra": 1}}))[0].startswith(
        "spec.m3ter.credentialsRef.extra: unknown field"
    )


def test_missing_required_field() -> None:
    spec = raw()
    del spec["destination"]
    assert messages(spec) == ["spec.destination: required field is missing"]
    assert "spec.destination: required field is missing" in messages(None)
    assert "spec.m3ter: required field is missing" in messages({})


def test_bad_enum_in_list_names_value_and_index() -> None:
    found = problems(raw(excludedLineItemTypes=["USAGE", "USEAGE"]))
    assert len(found) == 1
    assert found[0].field == "spec.excludedLineItemTypes[1]"
    assert "'USEAGE'" in found[0].message
    assert "'STANDING_CHARGE'" in found[0].message


def test_bad_enum_scalar() -> None:
    found = problems(raw(destination="Live"))
    assert found[0].field == "spec.destination"
    assert "'Live'" in found[0].message
    assert "'StripeTestMode'" in found[0].message


def test_pattern_mismatch_names_the_value() -> None:
    found = problems(raw(priceDataProductId="price_123"))
    assert found[0].field == "spec.priceDataProductId"
    assert "'price_123'" in found[0].message
    assert "prod_" in found[0].message


def test_value_error_prefix_is_dropped() -> None:
    assert messages(raw(syncInterval="5s")) == ["spec.syncInterval: must be at least 10s"]


def test_every_schema_problem_is_reported() -> None:
    fields = {p.field for p in problems(raw(bogus=1, destination="Live", excludedLineItemTypes=["X"]))}
    assert fields == {"spec.bogus", "spec.destination", "spec.excludedLineItemTypes[0]"}


def test_overlapping_account_lists() -> None:
    found = problems(raw(accountIds=["a", "b", "c"], restrictedAccountIds=["c", "b", "d"]))
    assert [p.field for p in found] == ["spec.restrictedAccountIds"]
    assert "b, c" in found[0].message


def test_send_due_date_needs_send_invoice() -> None:
    found = problems(raw(sendDueDate=True))
    assert [p.field for p in found] == ["spec.collectionMethod"]
    assert "SendInvoice" in found[0].message
    assert isinstance(parse_spec(raw(sendDueDate=True, collectionMethod="SendInvoice")), ParsedSpec)


def test_invoice_only_fields_need_create_stripe_invoice() -> None:
    fields = {
        p.field
        for p in problems(
            raw(createStripeInvoice=False, sendDueDate=True, collectionMethod="SendInvoice", poNumberCustomField="PO")
        )
    }
    assert fields == {"spec.sendDueDate", "spec.poNumberCustomField"}


def test_bad_account_filter_reports_line_and_column() -> None:
    found = problems(raw(accountFilter="currency == 'GBP'\n  AND AND"))
    assert [p.field for p in found] == ["spec.accountFilter"]
    assert "line 2, column 7" in found[0].message


def test_filter_and_cross_field_problems_are_reported_together() -> None:
    fields = [p.field for p in problems(raw(accountFilter="name ==", sendDueDate=True))]
    assert fields == ["spec.collectionMethod", "spec.accountFilter"]


@pytest.mark.parametrize("expression", ["address.country >= 5", "5 < id", 'currency <= 3 AND name == "x"'])
def test_a_field_that_never_holds_a_numeral_ordered_by_a_number_is_refused_naming_the_comparison(
    expression: str,
) -> None:
    (problem,) = [p for p in messages(raw(accountFilter=expression)) if "orders the text field" in p]
    assert problem.startswith("spec.accountFilter: ") and "quote the value" in problem


@pytest.mark.parametrize(
    "expression",
    [
        "customFields.tier >= 2",
        "2 <= customFields.tier",
        'address.country >= "M"',
        "address.postCode >= 90000",  # US ZIP codes are numerals
        "name > 5",
        "code < 1000",
    ],
)
def test_numbers_ordering_custom_fields_and_text_ordering_text_are_accepted(expression: str) -> None:
    assert isinstance(parse_spec(raw(accountFilter=expression)), ParsedSpec)
