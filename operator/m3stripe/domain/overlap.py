"""Two integrations that would send the same Bill to the same Stripe account and mode: which one writes it.

The rule a person can predict: **the older integration writes a Bill both select**; the younger one leaves it
to the older one and says so (the `Overlapping` condition, a Warning event, the run's counts), and writes the
Bills only it selects. "Older" is the Kubernetes object's creationTimestamp, then namespace and name (a total
order, the same in every process and shard). Whether the older one is suspended, disabled or only planning does
not change who owns the Bill, so ownership moves only when an integration is created, deleted or re-targeted,
never in the middle of its pass; a re-created integration is the youngest, so it takes over nothing from a
live one.

Leaving a Bill to another integration is not an error event and does not count toward auto-disable: nothing is
lost (the owner sends it), and disabling the younger one would also stop the Bills that are its alone. What
keeps a Bill from being invoiced twice whatever the integrations' states is Stripe itself: every integration
recognises what Stripe holds for the Bill by its durable identity (stripe_writer.identifies).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from m3stripe.domain.billing import Account, Bill, MalformedBill
from m3stripe.domain.selection import Selector

Seniority = tuple[datetime, str, str]  # (creationTimestamp, namespace, name): smaller is older


@dataclass(frozen=True)
class Peer:
    """Another integration sending Bills of the same m3ter Organization to the same Stripe account and mode."""

    namespace: str
    name: str
    uid: str
    created: datetime
    selector: Selector = field(compare=False)
    # What a person should know of it: "suspended", "disabled", "in Plan mode", "its Stripe account is not known".
    notes: tuple[str, ...] = ()
    # A digest of what decides which Bills it selects (spec.accountIds, restrictedAccountIds, accountFilter,
    # onlySendBillOnApproval): when it changes, Bills left to it may now be no one's.
    selection: str = ""

    @property
    def where(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def seniority(self) -> Seniority:
        return (self.created, self.namespace, self.name)

    def described(self) -> str:
        return f"{self.where} ({', '.join(self.notes)})" if self.notes else self.where

    def selects(self, bill: Bill | MalformedBill, account: Account | None) -> bool:
        """Whether this peer would send the Bill (as its own engine decides, see `selects`)."""
        return selects(self.selector, bill, account)


def selects(selector: Selector, bill: Bill | MalformedBill, account: Account | None) -> bool:
    """Whether an integration with this selector would send (or, for a malformed Bill, report) the Bill.

    `account` is the Bill's m3ter Account when read (None: not read or not found). A selector whose filter needs
    the Account cannot select a Bill without one, except a malformed Bill, which it reports (see `malformed_skip`).
    """
    if isinstance(bill, MalformedBill):
        return malformed_skip(selector, bill, account) is None
    if selector.by_bill(bill) is not None:
        return False
    if selector.account_filter is None:
        return True
    return account is not None and selector.by_account(account) is None


def malformed_skip(selector: Selector, bill: MalformedBill, account: Account | None) -> str | None:
    """Why an integration does not report a malformed Bill (None: it does).

    A malformed Bill is reported only by the integrations whose selection could include it, so another team's
    broken Bill does not count toward this integration's auto-disable. What cannot be read cannot exclude it:
    without an accountId only an allow-list (`accountIds`) excludes it; with one, the account lists and the
    filter apply as for any Bill (the approval rule cannot: its status is part of what may be unreadable).
    """
    if bill.account_id is None:
        return (
            "the Bill has no readable accountId and spec.accountIds lists the only accounts sent"
            if (selector.account_ids)
            else None
        )
    skip = selector.by_account_id(bill.account_id)
    if skip is not None:
        return str(skip)
    if selector.account_filter is not None and account is not None:
        filtered = selector.by_account(account)
        if filtered is not None:
            return str(filtered)
    return None


@dataclass(frozen=True)
class Overlap:
    """This integration's peers on the same Stripe account and mode, split by seniority."""

    me: Seniority
    peers: tuple[Peer, ...] = ()
    # Why the peers could not be listed ("" when they were): overlap with integrations elsewhere is then unknown.
    unknown: str = ""

    @property
    def older(self) -> tuple[Peer, ...]:
        return tuple(sorted((p for p in self.peers if p.seniority < self.me), key=lambda p: p.seniority))

    @property
    def younger(self) -> tuple[Peer, ...]:
        return tuple(sorted((p for p in self.peers if p.seniority > self.me), key=lambda p: p.seniority))

    @property
    def needs_account(self) -> bool:
        return any(p.selector.needs_account for p in self.peers)

    def owner(self, bill: Bill | MalformedBill, account: Account | None) -> Peer | None:
        """The oldest older peer that selects the Bill: it writes the Bill, this integration does not."""
        return next((p for p in self.older if p.selects(bill, account)), None)

    def sharers(self, bill: Bill | MalformedBill, account: Account | None) -> tuple[Peer, ...]:
        """The younger peers that also select a Bill this integration writes (they leave it to this one)."""
        return tuple(p for p in self.younger if p.selects(bill, account))

    def owners_digest(self) -> str:
        """A digest of the older peers and their selections: when one goes away or changes what it selects, Bills
        this integration left to it may be no one's, so its sync progress starts over (progress.progress_for)."""
        if not self.older:
            return ""
        basis = "|".join(f"{p.uid}:{p.selection}" for p in self.older)
        return hashlib.sha256(basis.encode()).hexdigest()[:12]


def no_overlap(me: Seniority) -> Overlap:
    return Overlap(me)


def selection_digest(
    account_ids: Sequence[str], restricted: Sequence[str], account_filter: str | None, only_approved: bool
) -> str:
    """A digest of what decides which Bills an integration selects."""
    basis = repr((sorted(account_ids), sorted(restricted), (account_filter or "").strip(), only_approved))
    return hashlib.sha256(basis.encode()).hexdigest()[:12]
