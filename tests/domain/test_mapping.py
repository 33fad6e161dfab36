"""Bill -> Stripe mapping: line selection and order, minor units, price_data, metadata and invoice fields."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from m3stripe.domain.billing import Bill, LineItem
from m3stripe.domain.mapping import (
    META_ACCOUNT,
    META_BILL,
    META_INTEGRATION,
    META_LINE,
    META_LINE_INDEX,
    META_ORGANIZATION,
    META_PO_FIELD,
    META_QUANTITY,
    META_VERSION,
    MappingError,
    map_bill,
    select_lines,
)
from tests.domain import builders
from tests.domain.builders import make_spec

TODAY = date(2025, 6, 15)
INTEGRATION = "int-uid-1"


def make_line(line_id: str, subtotal: str, **fields: Any) -> LineItem:
    """A STANDING_CHARGE line unless `line_type` says otherwise."""
    return builders.make_line(line_id, subtotal, **{"line_type": "STANDING_CHARGE", **fields})


def make_bill(lines: list[LineItem], **fields: Any) -> Bill:
    return builders.make_bill(lines, **{"version": 7, **fields})


def ids(lines: list[LineItem]) -> list[str]:
    return [line.id for line in lines]


# --------------------------------------------------------------------------- select_lines


def test_excluded_line_types_are_dropped() -> None:
    lines = [
        make_line("a", "1", line_type="STANDING_CHARGE"),
        make_line("b", "2", line_type="USAGE"),
        make_line("c", "3", line_type="MINIMUM_SPEND"),
        make_line("d", "4", line_type="USAGE"),
    ]
    spec = make_spec(excludedLineItemTypes=["USAGE", "MINIMUM_SPEND"])
    assert ids(select_lines(lines, spec)) == ["a"]


def test_no_exclusions_and_sort_none_keep_m3ter_order() -> None:
    lines = [make_line("z", "9"), make_line("a", "-1"), make_line("m", "5", aggregation_id="agg")]
    assert ids(select_lines(lines, make_spec())) == ["z", "a", "m"]
    assert ids(select_lines(lines, make_spec(sortLineItemsBy="None"))) == ["z", "a", "m"]


def test_sort_by_subtotal_is_ascending_and_stable() -> None:
    lines = [
        make_line("ten-first", "10.00"),
        make_line("credit", "-5.00"),
        make_line("two", "2.00"),
        make_line("ten-second", "10"),
        make_line("zero", "0"),
    ]
    result = select_lines(lines, make_spec(sortLineItemsBy="Subtotal"))
    assert ids(result) == ["credit", "zero", "two", "ten-first", "ten-second"]


def test_sort_by_aggregation_id_puts_none_last_and_is_stable() -> None:
    lines = [
        make_line("standing", "1", aggregation_id=None),
        make_line("b-1", "1", aggregation_id="agg-b"),
        make_line("a-1", "1", aggregation_id="agg-a"),
        make_line("credit", "-1", aggregation_id=None),
        make_line("b-2", "1", aggregation_id="agg-b"),
        make_line("a-2", "1", aggregation_id="agg-a"),
    ]
    result = select_lines(lines, make_spec(sortLineItemsBy="AggregationId"))
    assert ids(result) == ["a-1", "a-2", "b-1", "b-2", "standing", "credit"]


def test_select_lines_does_not_mutate_the_input() -> None:
    lines = [make_line("b", "2"), make_line("a", "1")]
    select_lines(lines, make_spec(sortLineItemsBy="Subtotal"))
    assert ids(lines) == ["b", "a"]


def test_plan_follows_the_sorted_selection() -> None:
    bill = make_bill(
        [
            make_line("big", "30", line_type="STANDING_CHARGE"),
            make_line("usage", "5", line_type="USAGE"),
            make_line("small", "1", line_type="STANDING_CHARGE"),
        ]
    )
    plan = map_bill(bill, make_spec(sortLineItemsBy="Subtotal", excludedLineItemTypes=["USAGE"]), INTEGRATION)
    assert [p.line_id for p in plan.lines] == ["small", "big"]
    assert plan.total == 3100  # only the lines sent


# --------------------------------------------------------------------------- minor units


@pytest.mark.parametrize(
    ("currency", "subtotal", "minor"),
    [
        ("USD", "12.34", 1234),
        ("USD", "12.345", 1235),  # half up
        ("USD", "12.3449", 1234),
        ("USD", "-12.345", -1235),  # ties away from zero for credits too
        ("JPY", "1234", 1234),  # zero-decimal
        ("JPY", "1234.5", 1235),
        ("KWD", "1.234", 1230),  # three decimals, charged in steps of 10
        ("KWD", "1.235", 1240),
        ("KWD", "12.5", 12500),
    ],
)
def test_amounts_in_the_currency_minor_unit(currency: str, subtotal: str, minor: int) -> None:
    plan = map_bill(make_bill([make_line("l", subtotal, currency=currency)], currency=currency), make_spec(), "i")
    assert plan.lines[0].amount == minor
    assert plan.total == minor
    assert plan.currency == currency.lower()


def test_line_currency_case_does_not_matter() -> None:
    plan = map_bill(make_bill([make_line("l", "1", currency="usd")], currency="USD"), make_spec(), INTEGRATION)
    assert plan.lines[0].amount == 100


def test_credit_keeps_its_sign_and_no_line_is_discountable() -> None:
    bill = make_bill([make_line("charge", "20.00"), make_line("credit", "-5.50", line_type="CREDIT_MEMO")])
    plan = map_bill(bill, make_spec(), INTEGRATION)
    charge, credit = plan.lines
    assert credit.amount == -550
    params = credit.line_params()
    assert params["amount"] == -550
    assert params["discountable"] is False
    assert charge.line_params()["discountable"] is False  # m3ter priced it: no Stripe coupon applies
    assert charge.line_params()["amount"] == 2000
    assert plan.total == 1450


def test_line_with_another_currency_is_a_mapping_error() -> None:
    bill = make_bill([make_line("usd", "1"), make_line("eur", "1", currency="EUR")])
    with pytest.raises(MappingError) as info:
        map_bill(bill, make_spec(), INTEGRATION)
    assert "eur" in str(info.value)
    assert "EUR" in str(info.value)
    assert "USD" in str(info.value)


def test_invalid_bill_currency_is_a_mapping_error_not_a_money_error() -> None:
    with pytest.raises(MappingError, match="bill-1"):
        map_bill(make_bill([make_line("l", "1", currency="")], currency="US"), make_spec(), INTEGRATION)


# --------------------------------------------------------------------------- price_data


def test_price_data_with_integral_quantity_that_divides_the_amount() -> None:
    bill = make_bill([make_line("u", "12.00", line_type="USAGE", quantity="3")])
    plan = map_bill(bill, make_spec(priceDataProductId="prod_ABC123"), INTEGRATION)
    line = plan.lines[0]
    assert line.price_data == {"currency": "usd", "product": "prod_ABC123", "unit_amount_decimal": "400"}
    assert line.quantity == 3
    params = line.line_params()
    assert params["price_data"] == line.price_data
    assert params["quantity"] == 3
    assert "amount" not in params
    assert int(params["price_data"]["unit_amount_decimal"]) * params["quantity"] == line.amount


@pytest.mark.parametrize("quantity", ["7", "2.5", "0", "-3"])
def test_price_data_falls_back_to_quantity_one(quantity: str) -> None:
    # 10.00 USD = 1000 minor units: 7 does not divide it; 2.5 is not integral; 0 and negatives are not quantities.
    bill = make_bill([make_line("u", "10.00", line_type="USAGE", quantity=quantity)])
    line = map_bill(bill, make_spec(priceDataProductId="prod_X"), INTEGRATION).lines[0]
    assert line.quantity == 1
    assert line.price_data is not None
    assert line.price_data["unit_amount_decimal"] == "1000"


def test_price_data_accepts_an_integral_decimal_quantity() -> None:
    bill = make_bill([make_line("u", "10.00", line_type="USAGE", quantity="4.000")])
    line = map_bill(bill, make_spec(priceDataProductId="prod_X"), INTEGRATION).lines[0]
    assert line.quantity == 4
    assert line.price_data is not None
    assert line.price_data["unit_amount_decimal"] == "250"


def test_price_data_currency_is_lower_case_and_zero_decimal_aware() -> None:
    bill = make_bill([make_line("u", "1500", currency="JPY", quantity="3")], currency="JPY")
    line = map_bill(bill, make_spec(priceDataProductId="prod_X"), INTEGRATION).lines[0]
    assert line.price_data == {"currency": "jpy", "product": "prod_X", "unit_amount_decimal": "500"}
    assert line.quantity == 3


def test_credits_stay_plain_amounts_with_price_data() -> None:
    bill = make_bill([make_line("credit", "-3.00", line_type="CREDIT_MEMO", quantity="3")])
    line = map_bill(bill, make_spec(priceDataProductId="prod_X"), INTEGRATION).lines[0]
    assert line.price_data is None
    assert line.quantity is None
    params = line.line_params()
    assert params["amount"] == -300
    assert params["discountable"] is False
    assert "price_data" not in params
    assert "quantity" not in params


def test_invoice_item_params_add_customer_and_currency_only_without_price_data() -> None:
    bill = make_bill([make_line("charge", "2.00"), make_line("credit", "-1.00")])
    plain = map_bill(bill, make_spec(), INTEGRATION)
    item = plain.lines[0].invoice_item_params("cus_1", plain.currency)
    assert item["customer"] == "cus_1"
    assert item["currency"] == "usd"
    assert item["amount"] == 200

    priced = map_bill(bill, make_spec(priceDataProductId="prod_X"), INTEGRATION)
    item = priced.lines[0].invoice_item_params("cus_1", priced.currency)
    assert item["customer"] == "cus_1"
    assert "currency" not in item  # price_data carries it; Stripe rejects both
    assert item["price_data"]["currency"] == "usd"
    credit = priced.lines[1].invoice_item_params("cus_1", priced.currency)
    assert credit["currency"] == "usd"
    assert credit["amount"] == -100


# --------------------------------------------------------------------------- descriptions and periods


def test_long_descriptions_are_truncated_to_500_characters() -> None:
    bill = make_bill([make_line("long", "1", description="x" * 800), make_line("exact", "1", description="y" * 500)])
    long_line, exact_line = map_bill(bill, make_spec(), INTEGRATION).lines
    assert len(long_line.description) == 500
    assert long_line.description.startswith("x" * 499)
    assert exact_line.description == "y" * 500
    assert long_line.line_params()["description"] == long_line.description


def test_description_falls_back_to_product_name_then_type() -> None:
    bill = make_bill(
        [
            make_line("p", "1", description="", product_name="Widgets"),
            make_line("t", "1", description="", line_type="MINIMUM_SPEND"),
        ]
    )
    p, t = map_bill(bill, make_spec(), INTEGRATION).lines
    assert p.description == "Widgets"
    assert t.description == "MINIMUM_SPEND"


def test_usage_description_mentions_units() -> None:
    bill = make_bill([make_line("u", "5", line_type="USAGE", quantity="1500.00", description="API calls")])
    assert map_bill(bill, make_spec(), INTEGRATION).lines[0].description == "API calls (1500 units)"


def test_service_period_becomes_unix_seconds() -> None:
    start = datetime(2025, 5, 1, tzinfo=UTC)
    end = datetime(2025, 6, 1, tzinfo=UTC)
    bill = make_bill([make_line("p", "1", start=start, end=end), make_line("n", "1")])
    with_period, without = map_bill(bill, make_spec(), INTEGRATION).lines
    assert with_period.line_params()["period"] == {"start": int(start.timestamp()), "end": int(end.timestamp())}
    assert "period" not in without.line_params()


# --------------------------------------------------------------------------- metadata


def test_metadata_links_every_object_to_organization_bill_version_account_line_and_the_writing_integration() -> None:
    bill = make_bill([make_line("line-a", "1"), make_line("line-b", "2")], bill_id="B-42", version=12)
    plan = map_bill(bill, make_spec(organization="org-7"), "uid-9")
    expected = {
        META_INTEGRATION: "uid-9",
        META_ORGANIZATION: "org-7",
        META_BILL: "B-42",
        META_VERSION: "12",
        META_ACCOUNT: "acc-1",
    }
    assert plan.metadata == expected
    assert plan.organization_id == "org-7"
    assert [META_INTEGRATION, META_ORGANIZATION, META_BILL, META_VERSION, META_ACCOUNT, META_LINE] == [
        "m3stripe_integration",
        "m3ter_organization_id",
        "m3ter_bill_id",
        "m3ter_bill_version",
        "m3ter_account_id",
        "m3ter_line_id",
    ]
    for index, (planned, line_id) in enumerate(zip(plan.lines, ["line-a", "line-b"], strict=True)):
        assert planned.metadata == {**expected, META_LINE: line_id, META_LINE_INDEX: str(index)}
        assert planned.line_params()["metadata"] == planned.metadata
    assert plan.invoice_create_params("cus_1")["metadata"] == expected
    assert (plan.bill_id, plan.version, plan.account_id) == ("B-42", 12, "acc-1")


# --------------------------------------------------------------------------- totals and limits


def test_total_mismatch_names_both_amounts_and_the_difference() -> None:
    bill = make_bill([make_line("a", "10.00"), make_line("b", "2.25")], total="13.00")
    with pytest.raises(MappingError) as info:
        map_bill(bill, make_spec(), INTEGRATION)
    message = str(info.value)
    assert "13.00 USD" in message
    assert "12.25 USD" in message
    assert "-0.75 USD" in message
    assert "bill-1" in message


def test_total_matching_after_rounding_to_minor_units_is_accepted() -> None:
    bill = make_bill([make_line("a", "10.001"), make_line("b", "2.25")], total="12.25")
    assert map_bill(bill, make_spec(), INTEGRATION).total == 1225


def test_total_is_checked_against_all_lines_even_when_some_are_excluded() -> None:
    bill = make_bill([make_line("a", "10"), make_line("u", "5", line_type="USAGE")], total="15")
    plan = map_bill(bill, make_spec(excludedLineItemTypes=["USAGE"]), INTEGRATION)
    assert plan.total == 1000


def test_too_many_lines_is_an_error_naming_both_numbers_never_a_split() -> None:
    bill = make_bill([make_line(f"l{i}", "1") for i in range(4)])
    with pytest.raises(MappingError) as info:
        map_bill(bill, make_spec(maxLinesPerInvoice=3), INTEGRATION)
    message = str(info.value)
    assert "4 lines" in message
    assert "at most 3" in message
    assert "not split" in message


def test_line_limit_counts_lines_after_exclusion() -> None:
    bill = make_bill([make_line("a", "1"), make_line("b", "1"), make_line("u", "1", line_type="USAGE")])
    assert len(map_bill(bill, make_spec(maxLinesPerInvoice=2, excludedLineItemTypes=["USAGE"]), "i").lines) == 2
    assert len(map_bill(bill, make_spec(maxLinesPerInvoice=3), INTEGRATION).lines) == 3


# --------------------------------------------------------------------------- invoice fields


def test_invoice_create_params_never_auto_advance_nor_sweep_pending_items() -> None:
    specs = [
        make_spec(),
        make_spec(collectionMethod="SendInvoice"),
        make_spec(collectionMethod="SendInvoice", sendDueDate=True, poNumberCustomField="PO"),
    ]
    bill = make_bill([make_line("a", "1")], due=TODAY, po="PO-1")
    for spec in specs:
        params = map_bill(bill, spec, INTEGRATION, today=TODAY).invoice_create_params("cus_9")
        assert params["auto_advance"] is False
        assert params["pending_invoice_items_behavior"] == "exclude"
        assert params["customer"] == "cus_9"
        assert params["currency"] == "usd"
        assert params["description"] == "m3ter Bill bill-1"


def test_charge_automatically_is_explicit_and_sets_no_due_fields() -> None:
    params = map_bill(make_bill([make_line("a", "1")], due=TODAY), make_spec(), INTEGRATION, today=TODAY)
    fields = params.invoice_create_params("cus_1")
    assert fields["collection_method"] == "charge_automatically"
    for key in ("days_until_due", "due_date", "custom_fields"):
        assert key not in fields


def test_po_number_goes_into_the_configured_custom_field() -> None:
    bill = make_bill([make_line("a", "1")], po="PO-2025-001")
    fields = map_bill(bill, make_spec(poNumberCustomField="Purchase order"), INTEGRATION).invoice_create_params("c")
    assert fields["custom_fields"] == [{"name": "Purchase order", "value": "PO-2025-001"}]


def test_po_number_is_ignored_without_a_configured_field_or_without_a_po() -> None:
    with_po = make_bill([make_line("a", "1")], po="PO-1")
    assert "custom_fields" not in map_bill(with_po, make_spec(), INTEGRATION).invoice_fields
    without_po = make_bill([make_line("a", "1")])
    assert "custom_fields" not in map_bill(without_po, make_spec(poNumberCustomField="PO"), INTEGRATION).invoice_fields


def test_po_number_up_to_140_characters_is_accepted_and_longer_is_an_error() -> None:
    spec = make_spec(poNumberCustomField="PO")
    ok = map_bill(make_bill([make_line("a", "1")], po="p" * 140), spec, INTEGRATION)
    assert ok.invoice_create_params("cus_1")["custom_fields"][0]["value"] == "p" * 140
    with pytest.raises(MappingError) as info:
        map_bill(make_bill([make_line("a", "1")], po="p" * 141), spec, INTEGRATION)
    assert "141" in str(info.value)
    assert "140" in str(info.value)


def test_send_due_date_sets_the_end_of_the_due_day_in_utc() -> None:
    spec = make_spec(collectionMethod="SendInvoice", sendDueDate=True)
    due = date(2025, 7, 31)
    fields = map_bill(make_bill([make_line("a", "1")], due=due), spec, INTEGRATION, today=TODAY).invoice_fields
    assert fields["collection_method"] == "send_invoice"
    assert fields["due_date"] == int(datetime(2025, 7, 31, 23, 59, 59, tzinfo=UTC).timestamp())
    assert fields["due_date"] == 1754006399
    assert "days_until_due" not in fields


def test_due_today_is_accepted() -> None:
    spec = make_spec(collectionMethod="SendInvoice", sendDueDate=True)
    fields = map_bill(make_bill([make_line("a", "1")], due=TODAY), spec, INTEGRATION, today=TODAY).invoice_fields
    assert fields["due_date"] == int(datetime(2025, 6, 15, 23, 59, 59, tzinfo=UTC).timestamp())


def test_past_due_date_is_a_mapping_error() -> None:
    spec = make_spec(collectionMethod="SendInvoice", sendDueDate=True)
    bill = make_bill([make_line("a", "1")], due=date(2025, 6, 14))
    with pytest.raises(MappingError) as info:
        map_bill(bill, spec, INTEGRATION, today=TODAY)
    assert "2025-06-14" in str(info.value)
    assert "past" in str(info.value)


def test_past_due_date_is_ignored_when_due_dates_are_not_sent() -> None:
    bill = make_bill([make_line("a", "1")], due=date(2020, 1, 1))
    fields = map_bill(bill, make_spec(collectionMethod="SendInvoice"), INTEGRATION, today=TODAY).invoice_fields
    assert "due_date" not in fields
    assert fields["days_until_due"] == 30


def test_send_invoice_without_a_due_date_is_due_in_30_days() -> None:
    spec = make_spec(collectionMethod="SendInvoice", sendDueDate=True)
    fields = map_bill(make_bill([make_line("a", "1")], due=None), spec, INTEGRATION, today=TODAY).invoice_fields
    assert fields["collection_method"] == "send_invoice"
    assert fields["days_until_due"] == 30
    assert "due_date" not in fields


def test_plan_is_pure_for_the_same_input() -> None:
    bill = make_bill([make_line("a", "1.10"), make_line("b", "-0.10")], total="1.00", po="PO")
    spec = make_spec(poNumberCustomField="PO", priceDataProductId="prod_X")
    assert map_bill(bill, spec, INTEGRATION, today=TODAY) == map_bill(bill, spec, INTEGRATION, today=TODAY)
    changed = map_bill(replace(bill, version=8), spec, INTEGRATION, today=TODAY)
    assert changed.metadata[META_VERSION] == "8"


# --------------------------------------------------------------------------- rounding lines finer than a minor unit


def _within_one_step(plan_amounts: list[int], exact: list[str], currency: str) -> bool:
    from m3stripe.domain.money import minor_unit_step, to_minor_units

    step = minor_unit_step(currency)
    # The exact value in minor units, unrounded: 0.0037 USD is 0.37 cents.
    scale = Decimal(to_minor_units(Decimal(1), currency)) if currency not in ("ISK", "UGX") else Decimal(100)
    return all(abs(Decimal(a) - Decimal(e) * scale) <= step for a, e in zip(plan_amounts, exact, strict=True))


def test_forty_usage_lines_of_fractions_of_a_cent_add_up_to_the_bill_total() -> None:
    lines = [make_line(f"u{i}", "0.0037", line_type="USAGE") for i in range(40)]  # 0.148 USD in all
    plan = map_bill(make_bill(lines, total="0.15"), make_spec(), INTEGRATION)
    assert plan.total == 15
    amounts = [line.amount for line in plan.lines]
    assert set(amounts) <= {0, 1}
    assert _within_one_step(amounts, ["0.0037"] * 40, "USD")


def test_lines_each_rounded_alone_would_miss_the_total_but_together_they_hit_it() -> None:
    lines = [make_line("a", "10.004"), make_line("b", "10.004"), make_line("c", "10.004")]  # 30.012
    plan = map_bill(make_bill(lines, total="30.01"), make_spec(), INTEGRATION)
    assert [line.amount for line in plan.lines] == [1001, 1000, 1000]  # the tie goes to the first line
    assert plan.total == 3001


def test_ties_go_to_the_earlier_line_so_the_same_version_always_gets_the_same_amounts() -> None:
    lines = [make_line("a", "0.005"), make_line("b", "0.005"), make_line("c", "0.005")]
    first = map_bill(make_bill(lines, total="0.02"), make_spec(), INTEGRATION)
    again = map_bill(make_bill(lines, total="0.02"), make_spec(), INTEGRATION)
    assert [line.amount for line in first.lines] == [1, 1, 0]
    assert first == again


def test_the_largest_remainders_get_the_extra_minor_units() -> None:
    lines = [make_line("a", "0.001"), make_line("b", "0.009"), make_line("c", "0.006"), make_line("d", "-0.004")]
    plan = map_bill(make_bill(lines, total="0.01"), make_spec(), INTEGRATION)  # 0.012
    assert [line.amount for line in plan.lines] == [0, 1, 1, -1]
    assert plan.total == 1


def test_with_excluded_lines_the_total_is_the_rounded_sum_of_the_kept_lines() -> None:
    lines = [
        make_line("a", "1.004", line_type="USAGE"),
        make_line("b", "2.004", line_type="USAGE"),
        make_line("x", "7.00", line_type="MINIMUM_SPEND"),
    ]
    plan = map_bill(make_bill(lines, total="10.01"), make_spec(excludedLineItemTypes=["MINIMUM_SPEND"]), INTEGRATION)
    assert plan.total == 301  # 3.008 rounded, not 10.01 - 7.00
    assert [line.amount for line in plan.lines] == [101, 200]  # equal remainders: the earlier line


def test_m3ter_rounding_mode_decides_the_kept_total() -> None:
    from decimal import ROUND_DOWN, ROUND_HALF_EVEN

    from m3stripe.domain.billing import CurrencyRounding

    lines = [make_line("a", "1.005", line_type="USAGE"), make_line("x", "1", line_type="MINIMUM_SPEND")]
    spec = make_spec(excludedLineItemTypes=["MINIMUM_SPEND"])
    bill = make_bill(lines, total="2.01")
    assert map_bill(bill, spec, INTEGRATION).total == 101  # HALF_UP when m3ter's rule is unknown
    even = CurrencyRounding("USD", 2, ROUND_HALF_EVEN)
    assert map_bill(bill, spec, INTEGRATION, rounding=even).total == 100
    down = CurrencyRounding("USD", 2, ROUND_DOWN)
    assert map_bill(bill, spec, INTEGRATION, rounding=down).total == 100


def test_m3ter_decimal_places_coarser_than_stripe_round_the_total_to_whole_units() -> None:
    from m3stripe.domain.billing import CurrencyRounding

    lines = [make_line("a", "10.60", line_type="USAGE"), make_line("x", "1", line_type="MINIMUM_SPEND")]
    spec = make_spec(excludedLineItemTypes=["MINIMUM_SPEND"])
    whole = CurrencyRounding("USD", 0, "ROUND_HALF_UP")
    plan = map_bill(make_bill(lines, total="12"), spec, INTEGRATION, rounding=whole)
    assert plan.total == 1100
    assert [line.amount for line in plan.lines] == [1100]  # whole m3ter units


def test_a_difference_within_half_a_minor_unit_per_line_is_rounding_and_beyond_it_an_error() -> None:
    lines = [make_line("a", "10"), make_line("b", "10"), make_line("c", "10")]
    assert map_bill(make_bill(lines, total="30.01"), make_spec(), INTEGRATION).total == 3001
    assert map_bill(make_bill(lines, total="29.99"), make_spec(), INTEGRATION).total == 2999
    with pytest.raises(MappingError) as info:
        map_bill(make_bill(lines, total="30.02"), make_spec(), INTEGRATION)
    message = str(info.value)
    assert "30.02 USD" in message and "30.00 USD" in message and "-0.02 USD" in message
    assert "0.015 USD" in message  # what rounding three lines can explain


def test_whole_lines_can_each_give_up_a_step_as_well_as_take_one() -> None:
    lines = [make_line("a", "1.00"), make_line("b", "1.00")]
    up = map_bill(make_bill(lines, total="2.01"), make_spec(), INTEGRATION)
    down = map_bill(make_bill(lines, total="1.99"), make_spec(), INTEGRATION)
    assert [line.amount for line in up.lines] == [101, 100]
    assert [line.amount for line in down.lines] == [99, 100]  # the earlier line, as when adding


def test_a_step_is_taken_from_a_whole_line_not_from_a_fractional_one_already_at_its_floor() -> None:
    lines = [make_line("a", "0.011"), make_line("b", "1.00"), make_line("c", "0.011")]  # 1.022, floors 1.02
    plan = map_bill(make_bill(lines, total="1.01"), make_spec(), INTEGRATION)
    assert [line.amount for line in plan.lines] == [1, 99, 1]  # 0 would be 1.1 cents from 0.011


def test_whole_kronur_lines_give_up_a_krona_when_the_total_is_lower() -> None:
    lines = [make_line(f"l{i}", "1", currency="ISK") for i in range(3)]
    plan = map_bill(make_bill(lines, currency="ISK", total="2"), make_spec(), INTEGRATION)
    assert [line.amount for line in plan.lines] == [0, 100, 100]


def test_iskr_lines_round_to_whole_kronur_and_add_up_to_the_total() -> None:
    lines = [make_line(f"l{i}", "0.4", currency="ISK") for i in range(5)]  # 2 kr
    plan = map_bill(make_bill(lines, currency="ISK", total="2"), make_spec(), INTEGRATION)
    assert [line.amount for line in plan.lines] == [100, 100, 0, 0, 0]
    assert plan.total == 200


def test_ugx_amounts_are_sent_as_two_decimal_values_in_whole_shillings() -> None:
    bill = make_bill([make_line("a", "5000", currency="UGX"), make_line("b", "0.5", currency="UGX")], currency="UGX")
    plan = map_bill(bill, make_spec(), INTEGRATION)
    assert [line.amount for line in plan.lines] == [500000, 100]
    assert plan.currency == "ugx"


def test_three_decimal_lines_are_whole_steps_of_ten() -> None:
    lines = [make_line("a", "0.0013", currency="KWD"), make_line("b", "0.0125", currency="KWD")]
    plan = map_bill(make_bill(lines, currency="KWD", total="0.014"), make_spec(), INTEGRATION)
    assert all(line.amount % 10 == 0 for line in plan.lines)
    assert plan.total == 10  # 0.014 KWD rounds to 0.010 (the last digit must be 0)


# --------------------------------------------------------------------------- Stripe's limits and steps


def test_a_bill_over_stripes_largest_amount_is_a_mapping_error_naming_the_limit() -> None:
    bill = make_bill([make_line("big", "1000000.00")])
    with pytest.raises(MappingError) as info:
        map_bill(bill, make_spec(), INTEGRATION)
    message = str(info.value)
    assert "999999.99 USD" in message and "99999999" in message and "bill-1" in message
    assert map_bill(make_bill([make_line("max", "999999.99")]), make_spec(), INTEGRATION).total == 99999999


def test_idr_is_held_to_eight_digits_as_no_stripe_page_documents_an_exception() -> None:
    idr = make_bill([make_line("idr", "1000000.00", currency="IDR")], currency="IDR")
    with pytest.raises(MappingError, match="99999999"):
        map_bill(idr, make_spec(), INTEGRATION)


def test_a_line_over_the_largest_amount_is_refused_even_when_credits_bring_the_total_under_it() -> None:
    bill = make_bill([make_line("big", "1000000.00"), make_line("credit", "-500000.00")])
    with pytest.raises(MappingError, match=r"largest line is 1000000\.00 USD"):
        map_bill(bill, make_spec(), INTEGRATION)


def test_an_isk_unit_price_never_breaks_the_krona_step() -> None:
    bill = make_bill([make_line("u", "2", currency="ISK", quantity="4", line_type="USAGE")], currency="ISK")
    line = map_bill(bill, make_spec(priceDataProductId="prod_X"), INTEGRATION).lines[0]
    assert line.quantity == 1  # not 4 x 0.50 kr
    assert line.price_data is not None and line.price_data["unit_amount_decimal"] == "200"
    assert line.metadata[META_QUANTITY] == "4"
    whole = make_bill([make_line("u", "8", currency="ISK", quantity="4", line_type="USAGE")], currency="ISK")
    kept = map_bill(whole, make_spec(priceDataProductId="prod_X"), INTEGRATION).lines[0]
    assert (kept.quantity, kept.price_data and kept.price_data["unit_amount_decimal"]) == (4, "200")
    assert META_QUANTITY not in kept.metadata


def test_a_three_decimal_unit_price_ends_in_zero() -> None:
    bill = make_bill([make_line("u", "0.020", currency="KWD", quantity="4")], currency="KWD")
    line = map_bill(bill, make_spec(priceDataProductId="prod_X"), INTEGRATION).lines[0]
    assert line.quantity == 1 and line.price_data is not None and line.price_data["unit_amount_decimal"] == "20"


# --------------------------------------------------------------------------- discounts, identity, updates


def test_invoices_never_inherit_a_customer_discount_and_no_line_is_discountable() -> None:
    plan = map_bill(make_bill([make_line("a", "1")]), make_spec(priceDataProductId="prod_X"), INTEGRATION)
    assert plan.invoice_create_params("cus_1")["discounts"] == ""
    assert plan.invoice_update_params([], {})["discounts"] == ""
    assert plan.lines[0].line_params()["discountable"] is False
    assert plan.lines[0].invoice_item_params("cus_1", "usd")["discountable"] is False


def test_identical_lines_keep_their_own_positions() -> None:
    bill = make_bill([make_line("same", "5"), make_line("same", "5")])
    first, second = map_bill(bill, make_spec(), INTEGRATION).lines
    assert (first.index, second.index) == (0, 1)
    assert first.metadata[META_LINE_INDEX] == "0" and second.metadata[META_LINE_INDEX] == "1"


def test_an_update_without_a_po_number_removes_the_po_field_and_keeps_the_others() -> None:
    spec = make_spec(poNumberCustomField="PO number")
    plan = map_bill(make_bill([make_line("a", "1")], po=None), spec, INTEGRATION)
    current = [{"name": "PO number", "value": "PO-1"}, {"name": "VAT", "value": "GB1"}]
    update = plan.invoice_update_params(current, {META_PO_FIELD: "PO number"})
    assert update["custom_fields"] == [{"name": "VAT", "value": "GB1"}]
    assert update["metadata"][META_PO_FIELD] == ""  # "" unsets the key
    only_po = plan.invoice_update_params(current[:1], {META_PO_FIELD: "PO number"})
    assert only_po["custom_fields"] == ""  # "Pass an empty string to remove previously-defined fields"


def test_an_update_after_the_po_field_was_renamed_or_unset_still_removes_the_old_field() -> None:
    plan = map_bill(make_bill([make_line("a", "1")], po="PO-2"), make_spec(), INTEGRATION)
    update = plan.invoice_update_params([{"name": "Old PO", "value": "PO-1"}], {META_PO_FIELD: "Old PO"})
    assert update["custom_fields"] == ""
    renamed = map_bill(make_bill([make_line("a", "1")], po="PO-2"), make_spec(poNumberCustomField="PO"), "i")
    update = renamed.invoice_update_params([{"name": "Old PO", "value": "PO-1"}], {META_PO_FIELD: "Old PO"})
    assert update["custom_fields"] == [{"name": "PO", "value": "PO-2"}]
    assert update["metadata"][META_PO_FIELD] == "PO"


def test_an_update_names_the_collection_method_the_due_date_and_the_description() -> None:
    charge = map_bill(make_bill([make_line("a", "1")], due=TODAY), make_spec(), INTEGRATION, today=TODAY)
    update = charge.invoice_update_params([], {})
    assert update["collection_method"] == "charge_automatically"
    assert "due_date" not in update and "days_until_due" not in update
    assert update["description"] == "m3ter Bill bill-1"
    spec = make_spec(collectionMethod="SendInvoice", sendDueDate=True)
    without_due = map_bill(make_bill([make_line("a", "1")], due=None), spec, INTEGRATION, today=TODAY)
    update = without_due.invoice_update_params([], {})
    assert (update["collection_method"], update["days_until_due"]) == ("send_invoice", 30)
