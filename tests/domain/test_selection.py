"""Which Bills an integration sends: account id lists, the account filter and the approval rule."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from m3stripe.domain.account_filter import AccountFilter
from m3stripe.domain.billing import Account, Bill, BillStatus
from m3stripe.domain.selection import Selector, Skip


def selector(
    allow: set[str] | None = None,
    deny: set[str] | None = None,
    expression: str | None = None,
    *,
    only_approved: bool = False,
) -> Selector:
    return Selector(
        account_ids=frozenset(allow or ()),
        restricted_account_ids=frozenset(deny or ()),
        account_filter=AccountFilter.parse(expression) if expression is not None else None,
        only_approved=only_approved,
    )


def bill(account_id: str, status: BillStatus = "APPROVED") -> Bill:
    return Bill(
        id=f"bill-{account_id}",
        version=1,
        account_id=account_id,
        account_code=None,
        status=status,
        currency="GBP",
        bill_total=Decimal(0),
        due_date=None,
        bill_date=None,
        purchase_order_number=None,
        last_modified=datetime(2025, 1, 1, tzinfo=UTC),
        line_items=(),
        external_invoice_reference=None,
        locked=False,
    )


def account(
    account_id: str = "acc-1",
    *,
    currency: str | None = "GBP",
    country: str | None = None,
    custom: dict[str, str | int | None] | None = None,
) -> Account:
    return Account(
        id=account_id,
        name="Acme Ltd",
        code="ACME",
        currency=currency,
        address={"country": country} if country is not None else {},
        custom_fields=custom or {},
    )


def test_both_lists_empty_means_every_account() -> None:
    s = selector()
    for account_id in ("a", "b", "anything"):
        assert s.by_account_id(account_id) is None
        assert s.by_bill(bill(account_id)) is None
    assert not s.needs_account


def test_allow_list_keeps_only_listed_accounts() -> None:
    s = selector(allow={"a", "b"})
    assert s.by_account_id("a") is None
    assert s.by_account_id("b") is None
    assert s.by_account_id("c") is Skip.NOT_ALLOWED
    assert s.by_bill(bill("c")) is Skip.NOT_ALLOWED


def test_deny_list_drops_listed_accounts_only() -> None:
    s = selector(deny={"x"})
    assert s.by_account_id("x") is Skip.RESTRICTED
    assert s.by_account_id("y") is None
    assert s.by_bill(bill("x")) is Skip.RESTRICTED


def test_deny_list_wins_over_allow_list() -> None:
    s = selector(allow={"a", "x"}, deny={"x"})
    assert s.by_account_id("x") is Skip.RESTRICTED
    assert s.by_account_id("a") is None
    assert s.by_account_id("z") is Skip.NOT_ALLOWED


def test_only_approved_skips_pending_bills_first() -> None:
    s = selector(deny={"x"}, only_approved=True)
    assert s.by_bill(bill("a", "PENDING")) is Skip.NOT_APPROVED
    assert s.by_bill(bill("a", "APPROVED")) is None
    assert s.by_bill(bill("x", "PENDING")) is Skip.NOT_APPROVED
    assert s.by_bill(bill("x", "APPROVED")) is Skip.RESTRICTED


def test_pending_bills_are_sent_when_approval_is_not_required() -> None:
    assert selector().by_bill(bill("a", "PENDING")) is None


def test_no_filter_accepts_every_account() -> None:
    assert selector().by_account(account(currency=None)) is None


@pytest.mark.parametrize(
    ("expression", "acct", "matches"),
    [
        ('customFields.country == "UK"', account(custom={"country": "UK"}), True),
        ('customFields.country == "UK"', account(custom={"country": "FR"}), False),
        ('customFields.country == "UK"', account(), False),
        ("address.country == UK", account(country="UK"), True),
        ("address.country == UK", account(country="DE"), False),
        ("currency == 'GBP' AND customFields.tier >= 2", account(custom={"tier": 3}), True),
        ("currency == 'GBP' AND customFields.tier >= 2", account(custom={"tier": "1"}), False),
        ("accountCode == 'ACME' OR name == 'Other'", account(), True),
        ("NOT customFields.region == null", account(custom={"region": "emea"}), True),
        ("NOT customFields.region == null", account(), False),
        ("id == 'acc-7'", account("acc-7"), True),
    ],
)
def test_account_filter_is_evaluated_against_the_filter_record(expression: str, acct: Account, matches: bool) -> None:
    s = selector(expression=expression)
    assert s.needs_account
    assert s.by_account(acct) is (None if matches else Skip.FILTERED)


def test_the_selector_notes_what_the_filter_met_on_the_accounts_it_read() -> None:
    s = selector(expression='customFields.countyr == "UK" OR customFields.tier > "gold"')
    assert s.by_account(account(custom={"tier": 2})) is Skip.FILTERED
    assert s.by_account(account("acc-2", custom={"tier": 3})) is Skip.FILTERED
    assert s.notes is not None and s.notes.accounts == 2
    warnings = s.notes.warnings()
    assert any("'customFields.countyr' is absent on all 2 Account(s)" in w for w in warnings)
    assert any("'customFields.tier > \"gold\"' compares text with a number on 2 Account(s)" in w for w in warnings)


def test_a_selector_without_filter_notes_nothing() -> None:
    assert selector().notes is None
