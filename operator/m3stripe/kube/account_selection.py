"""Whether the account selection keeps any Account at all: status.accountSelection and the AccountsSelected condition.

A filter that matches no Account (`address.country == "United Kingdom"` where m3ter holds "UK", an `accountIds`
typo) sends nothing while every other condition looks healthy. So the selection is counted over every Account of
the Organization, once per spec generation and then daily, and the count stays in status as a condition, not only
as a Kubernetes Event that expires.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from m3stripe.api.conditions import Observation, parse_rfc3339, rfc3339
from m3stripe.api.status import AccountSelection, ConditionType, StripeIntegrationStatus
from m3stripe.domain.ports import BillSource
from m3stripe.domain.selection import account_coverage
from m3stripe.domain.spec_validation import ParsedSpec

RECOUNT_AFTER = timedelta(hours=24)


def selects_accounts(parsed: ParsedSpec) -> bool:
    """Whether the spec narrows the Accounts at all (without accountIds and a filter, every Account is kept)."""
    return bool(parsed.spec.accountIds) or parsed.account_filter is not None


def count_due(parsed: ParsedSpec, status: StripeIntegrationStatus, now: datetime) -> bool:
    """Whether to count again: a new generation, a day after the last count, or no readable count at all."""
    if not selects_accounts(parsed):
        return False
    record = status.accountSelection
    if record is None or record.observedGeneration != status.observedGeneration:
        return True
    try:
        counted = parse_rfc3339(record.time)
    except ValueError:
        counted = None
    return counted is None or now - counted >= RECOUNT_AFTER


async def count_selection(
    parsed: ParsedSpec, source: BillSource, generation: int | None, now: datetime
) -> AccountSelection:
    """status.accountSelection for this spec (raises BillSourceError when m3ter cannot list the Accounts)."""
    coverage = await account_coverage(parsed.selector(), source.list_accounts())
    return AccountSelection(
        observedGeneration=generation, time=rfc3339(now), accounts=coverage.accounts, selected=coverage.selected
    )


def selection_observation(parsed: ParsedSpec, record: AccountSelection | None) -> Observation | None:
    """AccountsSelected: False while the selection keeps none of the Organization's Accounts; None when the spec
    selects every Account (nothing to say) or nothing was counted yet."""
    if not selects_accounts(parsed):
        return Observation(
            ConditionType.ACCOUNTS_SELECTED, "True", "AllAccounts", "no accountIds and no accountFilter: every Account"
        )
    if record is None:
        return None
    accounts, selected = record.accounts, record.selected
    what = _what(parsed)
    if selected == 0:
        message = (
            f"{what} keep(s) none of the Organization's {accounts} Account(s) (counted {record.time}): no Bill is "
            "sent. Check the names and values against the Accounts in m3ter (field names and values are "
            "case-sensitive; custom fields are customFields.<name>), or the ids in spec.accountIds"
        )
        return Observation(ConditionType.ACCOUNTS_SELECTED, "False", "NoAccountSelected", message)
    message = f"{what} keep(s) {selected} of the Organization's {accounts} Account(s) (counted {record.time})"
    return Observation(ConditionType.ACCOUNTS_SELECTED, "True", "AccountsSelected", message)


def _what(parsed: ParsedSpec) -> str:
    parts = []
    if parsed.spec.accountIds:
        parts.append(f"spec.accountIds ({len(parsed.spec.accountIds)})")
    if parsed.spec.restrictedAccountIds:
        parts.append("spec.restrictedAccountIds")
    if parsed.account_filter is not None:
        parts.append(f"spec.accountFilter {str(parsed.account_filter)!r}")
    return " with ".join(parts) if parts else "the account selection"
