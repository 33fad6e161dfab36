"""Two integrations that would send the same Bill to the same Stripe account and mode: which one writes it.

The rule a person can predict: **the older integration that sends Bills writes a Bill both select**; the younger
one leaves it to the older one and says so (the `Overlapping` condition, a Warning event, the run's counts), and
writes the Bills only it selects. "Older" is the Kubernetes object's creationTimestamp, then namespace and name (a
total order, the same in every process and shard). An older integration that sends nothing (suspended, disabled, in
Plan mode, not connected, its Stripe account not known) owns nothing: Bills both select are then the younger one's,
so disconnecting an old integration to migrate to a new one hands its Bills over. When one stops or starts sending,
its peers' next pass sees it (the owners' digest changes, so their progress starts over and they read every Bill
again).

Ownership is read once per pass, so it can move while a pass runs (a peer resumed, a selection widened): two passes
may then write the same Bill at the same moment. Each checks Stripe first, by the Bill's durable identity
(decisions.identifies), so only writes that race each other can both land; the next pass of either keeps one
invoice per Bill (decisions.sort_out: the oldest, the other drafts deleted).

Leaving a Bill to another integration is not an error event and does not count toward auto-disable: nothing is
lost (the owner sends it), and disabling the younger one would also stop the Bills that are its alone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property

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
    # Why it sends no Bills now, as a person reads it: "suspended", "disabled", "in Plan mode", "not connected",
    # "its Stripe account is not known yet" (none: it sends them).
    notes: tuple[str, ...] = ()
    # A digest of what decides which Bills it selects and what it sends of them (spec.accountIds,
    # restrictedAccountIds, accountFilter, onlySendBillOnApproval, excludedLineItemTypes): when it changes, Bills
    # left to it may now be no one's.
    selection: str = ""
    excluded: frozenset[str] = frozenset()  # its spec.excludedLineItemTypes

    @property
    def writes(self) -> bool:
        """Whether it sends Bills now: nothing in its notes keeps it from sending."""
        return not self.notes

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
    # The listing was refused (RBAC), not merely failed: it will not succeed by retrying.
    forbidden: bool = False

    # Computed once per Overlap (one per pass), not for every Bill that asks `owner` or `sharers`: sorting the peers
    # for each Bill was 2% of the operator's CPU with 20 integrations (benchmarks/README.md).
    @cached_property
    def older(self) -> tuple[Peer, ...]:
        return tuple(sorted((p for p in self.peers if p.seniority < self.me), key=lambda p: p.seniority))

    @cached_property
    def younger(self) -> tuple[Peer, ...]:
        return tuple(sorted((p for p in self.peers if p.seniority > self.me), key=lambda p: p.seniority))

    @cached_property
    def owners(self) -> tuple[Peer, ...]:
        """The older peers that send Bills: each writes the Bills it selects that this integration also selects."""
        return tuple(p for p in self.older if p.writes)

    @property
    def needs_account(self) -> bool:
        return any(p.selector.needs_account for p in self.peers)

    def owner(self, bill: Bill | MalformedBill, account: Account | None) -> Peer | None:
        """The oldest older peer sending Bills that selects the Bill: it writes the Bill, this integration does not."""
        return next((p for p in self.owners if p.selects(bill, account)), None)

    def sharers(self, bill: Bill | MalformedBill, account: Account | None) -> tuple[Peer, ...]:
        """The younger peers that also select a Bill this integration writes (they leave it to this one)."""
        return tuple(p for p in self.younger if p.selects(bill, account))

    def owners_digest(self) -> str:
        """A digest of the owners and their selections: when one goes away, stops sending or changes what it
        selects, Bills this integration left to it may be no one's, so its sync progress starts over
        (progress.progress_for)."""
        if not self.owners:
            return ""
        basis = "|".join(f"{p.uid}:{p.selection}" for p in self.owners)
        return hashlib.sha256(basis.encode()).hexdigest()[:12]


def selection_digest(
    account_ids: Sequence[str],
    restricted: Sequence[str],
    account_filter: str | None,
    only_approved: bool,
    excluded: Sequence[str] = (),
) -> str:
    """A digest of what decides which Bills an integration selects, and which of their lines it sends."""
    basis = repr((sorted(account_ids), sorted(restricted), (account_filter or "").strip(), only_approved))
    if excluded:  # digests recorded before the excluded types counted stay the same for integrations without any
        basis += repr(sorted(excluded))
    return hashlib.sha256(basis.encode()).hexdigest()[:12]
