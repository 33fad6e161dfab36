from __future__ import annotations

import copy
import pickle
from decimal import Decimal
from typing import Any

import pytest

from m3stripe.domain.account_filter import (
    MAX_EXPRESSION_LENGTH,
    MAX_NESTING_DEPTH,
    AccountFilter,
    FilterNotes,
    FilterSyntaxError,
    parse_filter,
)

UK_ACCOUNT: dict[str, Any] = {
    "id": "a1b2c3",
    "code": "acme-uk",
    "accountCode": "acme-uk",
    "currency": "GBP",
    "address": {"country": "UK", "locality": "London"},
    "customFields": {"country": "UK", "tier": 2, "seats": "15", "region": "emea", "label": "big deal"},
}


def matches(expression: str, record: dict[str, Any] = UK_ACCOUNT) -> bool:
    return AccountFilter.parse(expression).matches(record)


def syntax_error(expression: str) -> FilterSyntaxError:
    with pytest.raises(FilterSyntaxError) as info:
        AccountFilter.parse(expression)
    return info.value


# --------------------------------------------------------------- documented examples


def test_documented_unquoted_literal() -> None:
    assert matches("address.country == UK")
    assert not matches("address.country == US")


def test_documented_quoted_custom_field() -> None:
    assert matches('customFields.country == "UK"')
    assert not matches('customFields.country == "uk"')


def test_notification_style_calculation() -> None:
    expression = "(customFields.tier >= 2 AND customFields.region != null) OR currency == 'USD'"
    assert matches(expression)
    assert not matches(expression, {"currency": "EUR", "customFields": {"tier": 1}})
    assert matches(expression, {"currency": "USD"})


# ------------------------------------------------------------------------ operators


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("customFields.tier == 2", True),
        ("customFields.tier == 3", False),
        ("customFields.tier != 3", True),
        ("customFields.tier != 2", False),
        ("customFields.tier < 3", True),
        ("customFields.tier < 2", False),
        ("customFields.tier <= 2", True),
        ("customFields.tier <= 1", False),
        ("customFields.tier > 1", True),
        ("customFields.tier > 2", False),
        ("customFields.tier >= 2", True),
        ("customFields.tier >= 3", False),
        ("currency < 'USD'", True),
        ("currency > 'USD'", False),
        ("currency >= 'GBP'", True),
        ("currency <= 'GBO'", False),
    ],
)
def test_comparison_operators(expression: str, expected: bool) -> None:
    assert matches(expression) is expected


def test_operators_without_spaces() -> None:
    assert matches("customFields.tier>=2 AND currency!='USD'")


def test_and_or_not() -> None:
    assert matches("currency == GBP AND address.country == UK")
    assert not matches("currency == GBP AND address.country == FR")
    assert matches("currency == EUR OR address.country == UK")
    assert not matches("currency == EUR OR address.country == FR")
    assert matches("NOT currency == EUR")
    assert not matches("NOT currency == GBP")
    assert matches("NOT NOT currency == GBP")


def test_and_binds_tighter_than_or() -> None:
    # true OR (false AND false) -> true; (true OR false) AND false would be false.
    assert matches("currency == GBP OR currency == EUR AND currency == JPY")
    assert not matches("(currency == GBP OR currency == EUR) AND currency == JPY")
    # (false AND true) OR true
    assert matches("currency == EUR AND id == a1b2c3 OR address.country == UK")


def test_not_binds_tighter_than_and_or() -> None:
    # (NOT true) OR true -> true; NOT (true OR true) would be false.
    assert matches("NOT currency == GBP OR address.country == UK")
    assert not matches("NOT (currency == GBP OR address.country == UK)")
    # (NOT false) AND true
    assert matches("NOT currency == EUR AND address.country == UK")


def test_not_negates_whole_comparison() -> None:
    assert AccountFilter.parse("NOT a == b") == AccountFilter.parse("NOT (a == b)")


def test_parentheses_nest() -> None:
    assert matches("((currency == GBP) AND ((address.country == UK)))")
    assert matches("NOT (currency == EUR AND (id == x OR id == y))")


def test_ne_is_negation_of_eq_for_mixed_values() -> None:
    values = [None, True, False, 1, Decimal("1.0"), "1", "x", 2.5, {"a": 1}, ["x"]]
    literals = ["null", "true", "false", "1", "'1'", "'x'", "2.5", "x"]
    for value in values:
        for literal in literals:
            record = {"v": value}
            assert matches(f"v != {literal}", record) is not matches(f"v == {literal}", record)


# ----------------------------------------------------------------- case and syntax


@pytest.mark.parametrize(
    "expression",
    [
        "currency == GBP and address.country == UK",
        "currency == GBP And address.country == UK",
        "currency == EUR or address.country == UK",
        "not currency == EUR",
        "Not (currency == EUR)",
        "customFields.missing == NULL",
        "customFields.missing == Null",
    ],
)
def test_keywords_are_case_insensitive(expression: str) -> None:
    assert matches(expression)


def test_identifiers_starting_with_keywords_are_paths() -> None:
    record = {"notes": "n", "order": 1, "android": True, "nullable": None, "truest": "t"}
    assert matches("notes == 'n' AND order == 1 AND android == true", record)
    assert matches("nullable == null AND truest == 't'", record)


def test_multiline_expression_and_whitespace() -> None:
    assert matches("\n  currency == GBP\n\tAND\n  address.country == UK\n")


# ------------------------------------------------------------------ null semantics


def test_null_equality() -> None:
    record: dict[str, Any] = {"a": None, "customFields": {}}
    assert matches("a == null", record)
    assert matches("missing == null", record)
    assert matches("customFields.missing == null", record)
    assert matches("null == a", record)
    assert not matches("a != null", record)
    assert matches("customFields != null", record)
    assert not matches("customFields == null", record)
    assert matches("null == null", record)


@pytest.mark.parametrize("op", ["<", "<=", ">", ">="])
def test_ordering_with_null_is_false(op: str) -> None:
    record = {"a": None, "n": 5}
    assert not matches(f"a {op} 5", record)
    assert not matches(f"missing {op} 5", record)
    assert not matches(f"n {op} null", record)
    assert not matches(f"a {op} null", record)


def test_missing_fields_are_null_at_every_level() -> None:
    assert matches("address.region == null")
    assert matches("customFields.nope.deeper == null")
    # A path through a non-mapping value is missing, not an error.
    assert matches("currency.code == null")
    assert matches("customFields.country.length == null")
    assert matches("address.country == null", {})


def test_nested_custom_fields_and_address() -> None:
    record = {"customFields": {"billing": {"entity": "ltd"}}, "address": {"country": "DE"}}
    assert matches("customFields.billing.entity == 'ltd' AND address.country == DE", record)


# ---------------------------------------------------------------- value comparison


def test_numbers_compare_as_decimals() -> None:
    record = {"n": 10, "d": Decimal("0.30"), "f": 0.1, "big": 10**30}
    assert matches("n == 10.0", record)
    assert matches("n > 9.99999", record)
    assert matches("d == 0.3", record)
    assert matches("f == 0.1", record)  # float 0.1 is read by its shortest repr
    assert matches("big > 999999999999999999999999999999", record)
    assert matches("n > -5", record)
    assert matches("n < 9 OR n >= 10", record)


def test_string_holding_number_compares_numerically_with_number_literal() -> None:
    # "15" > 9 numerically although "15" < "9" as text.
    assert matches("customFields.seats > 9")
    assert matches("customFields.seats == 15.00")
    assert not matches("customFields.seats < 9")
    assert matches("customFields.padded == 7", {"customFields": {"padded": " 007 "}})


def test_strings_compare_as_strings() -> None:
    assert matches("customFields.seats == '15'")
    assert not matches("customFields.seats == '15.0'")
    assert matches("customFields.seats < '9'")  # text order


def test_non_numeric_string_vs_number_is_unequal_and_unordered() -> None:
    record = {"s": "abc", "nan": "NaN", "inf": "Infinity"}
    assert not matches("s == 1", record)
    assert matches("s != 1", record)
    for op in ("<", "<=", ">", ">="):
        assert not matches(f"s {op} 1", record)
    assert not matches("nan == 1 OR nan < 1 OR nan > 1", record)
    assert not matches("inf > 1", record)


def test_number_field_vs_quoted_numeric_literal() -> None:
    assert matches("customFields.tier == '2'")
    assert matches("customFields.tier < '10'")


def test_decimal_nan_field_is_never_equal_or_ordered() -> None:
    record = {"x": Decimal("NaN")}
    assert not matches("x == 1 OR x < 1 OR x > 1 OR x >= 1 OR x <= 1", record)
    assert matches("x != 1", record)


def test_booleans() -> None:
    record = {"active": True, "archived": False, "one": 1}
    assert matches("active == true AND archived == FALSE", record)
    assert matches("active != false", record)
    assert not matches("one == true", record)  # bool is not a number
    assert not matches("active == 'true'", record)
    assert not matches("active > false", record)


def test_mixed_types_are_unordered() -> None:
    record = {"m": {"a": 1}, "s": "x"}
    assert not matches("m > 1 OR m < 'a' OR s > 1", record)


# -------------------------------------------------------------------- quoted strings


def test_quoted_strings_with_spaces_and_escapes() -> None:
    record = {
        "label": "big deal",
        "quote": 'say "hi"',
        "apostrophe": "O'Brien",
        "path": "C:\\tmp",
        "lines": "a\nb\tc",
        "unicode": "Zürich",
    }
    assert matches("label == 'big deal' AND label == \"big deal\"", record)
    assert matches('quote == "say \\"hi\\"" AND quote == \'say "hi"\'', record)
    assert matches("apostrophe == 'O\\'Brien' AND apostrophe == \"O'Brien\"", record)
    assert matches("path == 'C:\\\\tmp'", record)
    assert matches("lines == 'a\\nb\\tc'", record)
    assert matches("unicode == 'Z\\u00fcrich' AND unicode == 'Zürich'", record)


def test_keyword_and_operator_text_inside_strings_is_data() -> None:
    record = {"s": "a == b AND NOT (c)"}
    assert matches("s == 'a == b AND NOT (c)'", record)


def test_empty_string() -> None:
    assert matches("s == ''", {"s": ""})
    assert not matches("s == ''", {})


# ---------------------------------------------------------------------- bare words


def test_bare_word_is_string_literal_when_not_a_record_field() -> None:
    assert matches("customFields.region == emea")
    assert matches("address.locality == London")
    assert matches("customFields.dotted == v1.beta", {"customFields": {"dotted": "v1.beta"}})


def test_bare_word_is_a_field_reference_when_record_has_it() -> None:
    record = {"code": "acme", "accountCode": "acme", "id": "x", "UK": "GB"}
    assert matches("accountCode == code", record)
    assert not matches("accountCode == id", record)
    # The rule follows the record: with a top-level UK key, UK is that field.
    assert not matches("address.country == UK", {"address": {"country": "UK"}, "UK": "GB"})
    assert matches("address.country == UK", {"address": {"country": "GB"}, "UK": "GB"})


def test_bare_word_present_with_null_value_is_a_field() -> None:
    assert matches("a == b", {"a": None, "b": None})
    assert not matches("a == b", {"a": "b", "b": None})


def test_left_hand_word_is_always_a_path() -> None:
    assert not matches("UK == 'UK'")
    assert matches("UK == null")


def test_keywords_are_not_bare_words() -> None:
    error = syntax_error("customFields.region == and")
    assert error.position == 23
    assert error.reason == "unexpected keyword 'and'"
    assert syntax_error("x == not").position == 5


def test_fields_are_the_paths_read_and_right_hand_bare_words_are_not_among_them() -> None:
    parsed = AccountFilter.parse(
        "(address.country == UK OR customFields.country == 'UK') AND NOT id == accountCode AND 1 == 1"
    )
    assert parsed.fields() == frozenset({"address.country", "customFields.country", "id"})
    # UK and accountCode are bare words: text, unless the record has such a top-level key.
    assert parsed.matches({"address": {"country": "UK"}, "id": "a"})
    assert not parsed.matches({"address": {"country": "UK"}, "UK": "GB", "id": "a"})
    assert not parsed.matches({"address": {"country": "UK"}, "id": "accountCode"})
    assert not parsed.matches({"address": {"country": "UK"}, "id": "a", "accountCode": "a"})


# ------------------------------------------------------------------------- routing


def test_filters_route_accounts_to_disjoint_destinations() -> None:
    accounts: dict[str, dict[str, Any]] = {
        "uk": {"address": {"country": "UK"}},
        "fr": {"address": {"country": "FR"}},
        "no-country": {"address": {}},
        "no-address": {},
        "null-country": {"address": {"country": None}},
    }
    uk = AccountFilter.parse("address.country == UK")
    rest = AccountFilter.parse("address.country != UK OR address.country == null")
    routed = {
        name: [dest for dest, f in (("uk", uk), ("rest", rest)) if f.matches(account)]
        for name, account in accounts.items()
    }
    assert routed == {
        "uk": ["uk"],
        "fr": ["rest"],
        "no-country": ["rest"],
        "no-address": ["rest"],
        "null-country": ["rest"],
    }


def test_three_way_routing_by_currency_and_tier() -> None:
    destinations = {
        "enterprise": AccountFilter.parse("customFields.tier >= 3"),
        "eu": AccountFilter.parse("NOT customFields.tier >= 3 AND (currency == EUR OR currency == 'GBP')"),
        "default": AccountFilter.parse("NOT customFields.tier >= 3 AND NOT (currency == EUR OR currency == GBP)"),
    }
    accounts: list[dict[str, Any]] = [
        {"currency": "EUR", "customFields": {"tier": 3}},
        {"currency": "EUR", "customFields": {"tier": "1"}},
        {"currency": "GBP"},
        {"currency": "USD", "customFields": {"tier": "4"}},
        {"currency": "USD", "customFields": {"tier": "gold"}},
        {},
    ]
    for account in accounts:
        hits = [name for name, f in destinations.items() if f.matches(account)]
        assert len(hits) == 1, (account, hits)


# --------------------------------------------------------------------------- API


def test_parse_filter_blank_is_none() -> None:
    assert parse_filter(None) is None
    assert parse_filter("") is None
    assert parse_filter("  \n\t ") is None
    parsed = parse_filter(" currency == GBP ")
    assert parsed is not None
    assert parsed.matches(UK_ACCOUNT)


def test_str_repr_equality_and_hash() -> None:
    parsed = AccountFilter.parse("currency == GBP")
    assert str(parsed) == "currency == GBP"
    assert repr(parsed) == "AccountFilter.parse('currency == GBP')"
    same = AccountFilter.parse("currency==GBP")
    assert parsed == same
    assert hash(parsed) == hash(same)
    assert parsed != AccountFilter.parse("currency == 'GBP'")  # bare word vs literal
    assert parsed != "currency == GBP"


def test_parse_rejects_non_string() -> None:
    with pytest.raises(TypeError):
        AccountFilter.parse(None)  # type: ignore[arg-type]


def test_filter_is_reusable_across_records() -> None:
    parsed = AccountFilter.parse("customFields.tier > 1")
    results = [parsed.matches({"customFields": {"tier": n}}) for n in range(4)]
    assert results == [False, False, True, True]


# -------------------------------------------------------------------- syntax errors


def test_malformed_guide_example_points_at_first_equals() -> None:
    expression = "customFields != null AND = = UK"
    error = syntax_error(expression)
    assert (error.line, error.column, error.position) == (1, 26, 25)
    assert error.expression == expression
    assert error.expected is not None
    assert {"quoted string", "number", "null", "field path", "NOT", "'('"} <= error.expected
    assert error.message == (
        "unexpected '=' at line 1, column 26 (position 25): expected a value (quoted string, number, "
        "true, false, null, or field path), NOT, or '('; near: 'customFields != null AND = = UK'"
    )
    assert str(error) == (error.message + "\n    customFields != null AND = = UK\n" + " " * (4 + 25) + "^")
    assert isinstance(error, ValueError)


def test_single_equals_is_rejected() -> None:
    error = syntax_error("address.country = UK")
    assert (error.line, error.column, error.position) == (1, 17, 16)
    assert error.expected == {"comparison operator (==, !=, <, <=, >, >=)"}
    assert "expected a comparison operator (==, !=, <, <=, >, >=)" in error.message


def test_error_position_on_later_line() -> None:
    error = syntax_error("currency == GBP\nAND\n  address.country === UK")
    assert (error.line, error.column, error.position) == (3, 21, 40)
    assert "near: '  address.country === UK'" in error.message


def test_unterminated_string() -> None:
    for expression, position in [
        ('customFields.country == "UK', 24),
        ("customFields.country == 'UK", 24),
        ('x == "ends with backslash\\"', 5),
        ("x == 'no newline\n'", 5),
    ]:
        error = syntax_error(expression)
        assert error.reason == "unterminated string literal"
        assert error.position == position
        assert error.expected is None


def test_invalid_escape_sequences() -> None:
    error = syntax_error("x == 'a\\qb'")
    assert error.position == 7
    assert error.reason == "invalid escape sequence '\\\\q' in string"
    error = syntax_error("x == 'a\\u12G4'")
    assert error.position == 7
    assert "invalid escape sequence" in error.reason


def test_trailing_garbage() -> None:
    error = syntax_error("currency == GBP extra")
    assert error.position == 16
    assert error.reason == "unexpected 'extra'"
    assert error.expected == {"AND", "OR", "end of expression"}
    error = syntax_error("currency == GBP )")
    assert error.position == 16
    assert error.expected == {"end of expression"}
    error = syntax_error("currency == 1.2.3")
    assert error.position == 15
    assert error.reason == "unexpected '.'"


def test_chained_comparison_is_rejected() -> None:
    error = syntax_error("(a == 1 == 2)")
    assert error.position == 8
    assert error.expected == {"AND", "OR", "')'"}


def test_empty_parentheses() -> None:
    error = syntax_error("currency == GBP AND ()")
    assert error.position == 21
    assert error.reason == "unexpected ')'"


VALUE = "a value (quoted string, number, true, false, null, or field path)"
CONDITION_START = VALUE + ", NOT, or '('"


@pytest.mark.parametrize(
    ("expression", "position", "expected"),
    [
        ("currency ==", 11, VALUE),
        ("currency == GBP AND   ", 19, CONDITION_START),
        ("(currency == GBP", 16, "')'"),
        ("currency", 8, "a comparison operator (==, !=, <, <=, >, >=)"),
        ("NOT", 3, CONDITION_START),
    ],
)
def test_unexpected_end(expression: str, position: int, expected: str) -> None:
    error = syntax_error(expression)
    assert error.reason == "unexpected end of expression"
    assert error.position == position
    assert f"expected {expected};" in error.message


def test_empty_expression_is_a_syntax_error_for_parse() -> None:
    error = syntax_error("   ")
    assert error.reason == "empty expression"
    assert error.position == 0


def test_bare_value_is_not_a_condition() -> None:
    error = syntax_error("customFields.active AND x == 1")
    assert error.position == 20
    assert error.expected == {"comparison operator (==, !=, <, <=, >, >=)"}


def test_unexpected_character() -> None:
    error = syntax_error("x == 1 && y == 2")
    assert error.reason == "unexpected '&'"
    assert error.position == 7


def test_too_long_expression() -> None:
    clause = "currency == GBP OR "
    expression = clause * (MAX_EXPRESSION_LENGTH // len(clause) + 1) + "id == x"
    assert len(expression) > MAX_EXPRESSION_LENGTH
    error = syntax_error(expression)
    assert error.reason.startswith("expression is too long")
    assert error.position == MAX_EXPRESSION_LENGTH
    # Just under the limit parses and evaluates.
    under = clause * ((MAX_EXPRESSION_LENGTH - 7) // len(clause)) + "id == x"
    assert len(under) <= MAX_EXPRESSION_LENGTH
    assert AccountFilter.parse(under).matches(UK_ACCOUNT)


def test_nesting_limit() -> None:
    ok = "NOT " * (MAX_NESTING_DEPTH - 1) + "x == 1"
    assert AccountFilter.parse(ok).matches({"x": 1 if MAX_NESTING_DEPTH % 2 else 2})
    error = syntax_error("NOT " * MAX_NESTING_DEPTH + "x == 1")
    assert error.reason.startswith("expression is nested too deeply")
    assert error.position == 0
    deep_parens = "(" * 1000 + "x == 1" + ")" * 1000  # redundant parentheses add no depth
    assert AccountFilter.parse(deep_parens).matches({"x": 1})


def test_long_line_snippet_is_windowed() -> None:
    expression = "a == 1 AND " * 20 + "= oops " + "AND b == 2 " * 20
    error = syntax_error(expression)
    assert error.position == 220
    near = error.message.split("near: ", 1)[1]
    assert near.startswith("'...") and near.endswith("...'")
    pointer_line, caret_line = str(error).splitlines()[1:]
    assert pointer_line[caret_line.index("^")] == "="


def test_syntax_error_survives_pickle_and_copy() -> None:
    error = syntax_error("x = 1")
    for clone in (pickle.loads(pickle.dumps(error)), copy.deepcopy(error)):
        assert isinstance(clone, FilterSyntaxError)
        assert str(clone) == str(error)
        assert (clone.line, clone.column, clone.position, clone.expected) == (1, 3, 2, error.expected)


# -- what a filter meets on real Accounts ----------------------------------------------------------


def _notes(expression: str, *records: dict[str, object]) -> list[str]:
    account_filter = parse_filter(expression)
    assert account_filter is not None
    notes = FilterNotes(account_filter)
    for record in records:
        notes.observe(record)
    return notes.warnings()


def test_a_field_present_on_no_account_is_named() -> None:
    warnings = _notes('customFields.countyr == "UK"', {"customFields": {"country": "UK"}}, {"customFields": {}})
    assert warnings == [
        "accountFilter field 'customFields.countyr' is absent on all 2 Account(s) read, so it is null in every "
        "comparison; check its name in m3ter (names are case-sensitive)"
    ]


def test_a_field_present_on_some_account_is_fine() -> None:
    assert _notes('customFields.country == "UK"', {"customFields": {}}, {"customFields": {"country": "FR"}}) == []


def test_no_account_read_means_nothing_to_say() -> None:
    assert _notes('customFields.countyr == "UK"') == []


@pytest.mark.parametrize(
    ("expression", "record", "named"),
    [
        ("name > 5", {"name": "Acme"}, "'name > 5'"),
        ('customFields.tier >= "gold"', {"customFields": {"tier": 2}}, "'customFields.tier >= \"gold\"'"),
        ("customFields.country == 44", {"customFields": {"country": "UK"}}, "'customFields.country == 44'"),
    ],
)
def test_text_compared_with_a_number_is_named(expression: str, record: dict[str, object], named: str) -> None:
    warnings = _notes(expression, record)
    assert len(warnings) == 1 and named in warnings[0] and "compares text with a number" in warnings[0]


@pytest.mark.parametrize(
    ("expression", "record"),
    [
        ('customFields.tier > "1"', {"customFields": {"tier": 2}}),  # numeric text compares as a number
        ('name == "Acme"', {"name": "Acme"}),
        ("customFields.tier == null", {"customFields": {"tier": None}}),
    ],
)
def test_comparisons_that_can_mean_what_they_say_are_not_warned(expression: str, record: dict[str, object]) -> None:
    assert _notes(expression, record) == []
