"""What a pass found of other integrations selecting the same Bills: status.overlaps and the Overlapping condition.

A record is kept per other integration while both integrations' selections stay the same, so an incremental pass
that met none of the shared Bills does not make the overlap look resolved; it goes when the other integration is
deleted or re-targeted, or when either selection changes and a pass finds no shared Bill any more.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from m3stripe.api.conditions import Observation, rfc3339
from m3stripe.api.status import ConditionType, OverlapRecord
from m3stripe.domain.overlap import Overlap
from m3stripe.domain.runs import RunReport

MAX_RECORDS = 50


def fold_overlaps(
    previous: Sequence[OverlapRecord], overlap: Overlap, report: RunReport, my_selection: str, now: datetime
) -> tuple[list[OverlapRecord], list[OverlapRecord]]:
    """status.overlaps after this pass, and the records that are new (each deserves a Warning event)."""
    if overlap.unknown:
        return list(previous), []  # the peers could not be listed: what was known stays
    before = {r.uid: r for r in previous}
    owners = {p.uid for p in overlap.owners}
    records: list[OverlapRecord] = []
    fresh: list[OverlapRecord] = []
    for peer in sorted(overlap.peers, key=lambda p: p.seniority):
        selections = hashlib.sha256(f"{peer.selection}|{my_selection}".encode()).hexdigest()[:12]
        count = report.left_to.get(peer.where, 0) + report.shared_with.get(peer.where, 0)
        old = before.get(peer.uid)
        if old is not None and old.selections != selections:
            old = None  # either selection changed: what was seen says nothing of the new ones
        if count == 0 and old is None:
            continue  # no Bill both select has been seen: not (yet) an overlap
        fields: dict[str, Any] = {
            "integration": peer.where,
            "uid": peer.uid,
            "sends": peer.uid in owners,
            "bills": count or (old.bills if old is not None else 0),
            "notes": ", ".join(peer.notes) or None,
            "selections": selections,
            "lastSeen": old.lastSeen if old is not None and not count else rfc3339(now),
        }
        record = OverlapRecord.model_validate({k: v for k, v in fields.items() if v is not None})
        records.append(record)
        if old is None:
            fresh.append(record)
    return records[:MAX_RECORDS], fresh


def overlap_observation(records: Sequence[OverlapRecord], overlap: Overlap | None) -> Observation:
    """The Overlapping condition: True while another integration selects some of the same Bills."""
    older = [r for r in records if r.sends]
    younger = [r for r in records if not r.sends]
    if older:
        names = ", ".join(_named(r) for r in older)
        message = (
            f"{names} also select(s) Bills this integration selects, for the same m3ter Organization and Stripe "
            f"account and mode, and is older: those Bills are left to it (the older integration sends the Bills both "
            "select; this one sends only the Bills that are its alone). Narrow spec.accountIds, "
            "spec.restrictedAccountIds or spec.accountFilter so that each Bill is selected once, or delete the copy"
        )
        if younger:
            message += (
                f"; this integration sends the Bills it shares with the younger {', '.join(_named(r) for r in younger)}"
            )
        return Observation(ConditionType.OVERLAPPING, "True", "LeavesBillsToOlder", message)
    if younger:
        names = ", ".join(_named(r) for r in younger)
        message = (
            f"{names} also select(s) Bills this integration selects, for the same m3ter Organization and Stripe "
            "account and mode, and is younger: this integration sends those Bills, the younger one leaves them. "
            "Narrow one selection so that each Bill is selected once, or delete the copy"
        )
        return Observation(ConditionType.OVERLAPPING, "True", "SharesBillsWithYounger", message)
    if overlap is not None and overlap.unknown:
        message = (
            f"{overlap.unknown}. Overlap with other integrations cannot be seen, so this one sends every Bill it "
            "selects: each is checked in Stripe before it is written, but two integrations writing the same Bill at "
            "the same moment could both create a draft (the next pass deletes the later one)"
        )
        return Observation(ConditionType.OVERLAPPING, "Unknown", "PeersUnreadable", message)
    return Observation(
        ConditionType.OVERLAPPING,
        "False",
        "NoOverlap",
        "no other integration has selected a Bill this one selects, for the same Stripe account and mode",
    )


def overlap_event(record: OverlapRecord) -> str:
    """The Warning event for a newly seen overlap."""
    who = _named(record)
    if record.sends:
        return (
            f"{who} also selects {record.bills} of the Bills this pass read, for the same m3ter Organization "
            "and Stripe account and mode; it is older, so it sends them and this integration leaves them to it"
        )
    return (
        f"{who} also selects {record.bills} of the Bills this pass sent, for the same m3ter Organization and "
        "Stripe account and mode; it is younger, so this integration sends them and it leaves them"
    )


def _named(record: OverlapRecord) -> str:
    return f"{record.integration} ({record.notes})" if record.notes else record.integration
