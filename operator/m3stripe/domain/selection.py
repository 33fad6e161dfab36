"""Which Bills an integration sends: account lists, the account filter, and the approval rule."""

from __future__ import annotations

import enum
from collections.abc import AsyncIterable
from dataclasses import dataclass, field

from m3stripe.domain.account_filter import AccountFilter, FilterNotes
from m3stripe.domain.billing import Account, Bill


class Skip(enum.StrEnum):
    """Why a Bill is not sent. None of these is an error."""

    NOT_ALLOWED = "account not in accountIds"
    RESTRICTED = "account in restrictedAccountIds"
    FILTERED = "account does not match accountFilter"
    NOT_APPROVED = "Bill not approved (onlySendBillOnApproval)"
    NO_LINES = "no lines left after excludedLineItemTypes"


@dataclass(frozen=True)
class Selector:
    """Which Bills an integration sends (accounts, filter, approval): decided per Bill, never by reading Stripe."""

    account_ids: frozenset[str]
    restricted_account_ids: frozenset[str]
    account_filter: AccountFilter | None
    only_approved: bool
    # What the filter met on this pass's Accounts (fields none has, text compared with numbers).
    notes: FilterNotes | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.notes is None and self.account_filter is not None:
            object.__setattr__(self, "notes", FilterNotes(self.account_filter))

    def by_account_id(self, account_id: str) -> Skip | None:
        """The checks that need no Account lookup (cheap; done first)."""
        if account_id in self.restricted_account_ids:
            return Skip.RESTRICTED
        if self.account_ids and account_id not in self.account_ids:
            return Skip.NOT_ALLOWED
        return None

    def by_bill(self, bill: Bill) -> Skip | None:
        if self.only_approved and bill.status != "APPROVED":
            return Skip.NOT_APPROVED
        return self.by_account_id(bill.account_id)

    @property
    def needs_account(self) -> bool:
        return self.account_filter is not None

    def by_account(self, account: Account) -> Skip | None:
        if self.account_filter is None:
            return None
        record = account.as_filter_record()
        if self.notes is not None:
            self.notes.observe(record)
        if not self.account_filter.matches(record):
            return Skip.FILTERED
        return None


@dataclass(frozen=True)
class Coverage:
    """How many of the Organization's Accounts an integration's account selection (accountIds,
    restrictedAccountIds, accountFilter) keeps: none means it sends nothing, however healthy it looks."""

    accounts: int
    selected: int


async def account_coverage(selector: Selector, accounts: AsyncIterable[Account]) -> Coverage:
    """The selection evaluated over every Account (the approval rule is about Bills, not Accounts)."""
    total = selected = 0
    async for account in accounts:
        total += 1
        if selector.by_account_id(account.id) is None and selector.by_account(account) is None:
            selected += 1
    return Coverage(total, selected)
