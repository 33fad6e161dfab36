"""One invoice per Bill, whatever raced to write it: one writer at a time per Bill within a pass, and when Stripe
holds several invoices of a Bill anyway (two integrations wrote it at the same moment, a copy made by hand), the next
pass keeps one (the oldest finalized, else the oldest draft), deletes the other drafts, and names finalized copies."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

from m3stripe.domain.billing import Bill, MalformedBill
from m3stripe.domain.overlap import Overlap
from m3stripe.domain.runs import EventKind, SyncState
from tests.domain.builders import T0, engine_spec, peer
from tests.support.engine_world import ORG, EngineWorld, world

# On fake time (looptime): the emulators run on the test's event loop, so Stripe's latency takes no real time
# and the racing writes overlap the same way on a loaded machine.
pytestmark = pytest.mark.looptime


class BillsAsListed:
    """The m3ter source, but its changed-Bill scan yields `bills`: a Bill regenerated while m3ter paged is met at
    two versions in one pass (candidates are told apart by id and version)."""

    def __init__(self, source: Any, bills: list[Bill | MalformedBill]) -> None:
        self._source, self._bills = source, bills

    def __getattr__(self, name: str) -> Any:
        return getattr(self._source, name)

    async def iter_bills(self, modified_since: Any = None) -> AsyncIterator[Bill | MalformedBill]:
        for bill in self._bills:
            yield bill


async def copy_of(w: EngineWorld, invoice: dict[str, Any], *, finalize: bool = False) -> dict[str, Any]:
    """A second invoice of the same Bill holding the same lines, as a second writer racing the first leaves it."""
    params = {"customer": invoice["customer"], "metadata": invoice["metadata"], "auto_advance": False}
    copy = await w.sdk.v1.invoices.create_async(params=params)
    lines = [
        {k: line[k] for k in ("amount", "description", "metadata", "discountable")} for line in invoice["lines"]["data"]
    ]
    await w.sdk.v1.invoices.add_lines_async(copy.id, params={"lines": lines})
    if finalize:
        await w.sdk.v1.invoices.finalize_invoice_async(copy.id)
    return dict(w.stripe.state(w.account)["invoices"][copy.id])


async def test_a_bill_met_at_two_versions_in_one_pass_has_one_invoice_at_the_newer_version() -> None:
    async with world() as w:
        w.stripe.latency_seconds = 0.02  # the two versions' writes would overlap
        account = w.m3ter_account("one")
        await w.customer_for(account)
        bill_id = w.bill(account, "5.00")
        first = await w.source.get_bill(bill_id)
        w.m3ter.regenerate_bill(ORG, bill_id, lines=[{"line_item_type": "USAGE", "subtotal": "7.00"}])
        second = await w.source.get_bill(bill_id)
        assert first is not None and second is not None
        report = await w.run(SyncState(), source=BillsAsListed(w.source, [first, second]))  # type: ignore[arg-type]
        assert report.events == []
        (invoice,) = w.invoices_of(bill_id)
        assert invoice["total"] == 700


async def test_a_second_draft_of_a_bill_is_deleted_by_the_next_pass_and_the_oldest_kept() -> None:
    async with world() as w:
        bill_id = await w.customer_bill("one", "9.00")
        await w.run()
        (first,) = w.invoices_of(bill_id)
        second = await copy_of(w, first)
        # The oldest by Stripe's `created`, then id: every integration and pass picks the same one.
        oldest = min((first, second), key=lambda i: (i["created"], i["id"]))
        report = await w.run()
        assert (report.sent, report.events) == (1, []), [e.message for e in report.events]
        (left,) = w.invoices_of(bill_id)
        assert left["id"] == oldest["id"] and left["total"] == 900


async def test_a_finalized_invoice_of_a_bill_is_kept_over_an_older_draft_which_is_deleted() -> None:
    async with world() as w:
        bill_id = await w.customer_bill("one", "9.00")
        await w.run()
        (draft,) = w.invoices_of(bill_id)
        finalized = await copy_of(w, draft, finalize=True)
        report = await w.run()
        assert report.events == []
        (left,) = w.invoices_of(bill_id)
        assert left["id"] == finalized["id"] and left["status"] == "open"


async def test_two_finalized_invoices_of_a_bill_are_an_event_naming_both_and_nothing_is_deleted() -> None:
    async with world() as w:
        bill_id = await w.customer_bill("one", "9.00")
        await w.run()
        (first,) = w.invoices_of(bill_id)
        await w.sdk.v1.invoices.finalize_invoice_async(first["id"])
        second = await copy_of(w, first, finalize=True)
        report = await w.run(SyncState())
        (event,) = report.events
        assert event.kind is EventKind.PERFORM and event.bill_id == bill_id
        assert first["id"] in event.message and second["id"] in event.message and "Void the copies" in event.message
        assert len(w.invoices_of(bill_id)) == 2


async def test_two_integrations_blind_to_each_other_may_race_but_the_next_pass_leaves_one_invoice_per_bill() -> None:
    async with world() as w:
        w.stripe.latency_seconds = 0.01
        bills = [await w.customer_bill(f"c{i}", f"{i + 1}.00") for i in range(6)]
        spec = engine_spec(ORG)
        a, b = peer("a", spec, created=T0), peer("b", spec, created=T0 + timedelta(minutes=5))
        # Neither knows of the other (their listings failed, or they run in clusters that cannot see each other).
        await asyncio.gather(
            w.run(spec=spec, integration_id=a.uid, overlap=Overlap(a.seniority)),
            w.run(spec=spec, integration_id=b.uid, overlap=Overlap(b.seniority)),
        )
        again = await w.run(spec=spec, integration_id=a.uid, overlap=Overlap(a.seniority, (b,)))
        assert again.events == []
        for number, bill_id in enumerate(bills, start=1):
            (invoice,) = w.invoices_of(bill_id)
            assert invoice["total"] == number * 100


async def test_an_owner_excluding_other_line_item_types_is_a_validation_event_for_the_younger_not_a_silent_skip() -> (
    None
):
    async with world() as w:
        bill_id = await w.customer_bill("c1", "9.00")  # one USAGE line
        fees_only = engine_spec(ORG, excludedLineItemTypes=["USAGE"])
        everything = engine_spec(ORG)
        older = peer("fees-only", fees_only, created=T0)
        older = type(older)(**{**older.__dict__, "excluded": frozenset({"USAGE"})})
        younger = peer("everything", everything, created=T0 + timedelta(days=1))
        report = await w.run(spec=everything, integration_id=younger.uid, overlap=Overlap(younger.seniority, (older,)))
        (event,) = report.events
        assert event.kind is EventKind.VALIDATION and event.bill_id == bill_id
        assert "billing/fees-only" in event.message and "excludedLineItemTypes" in event.message
        assert w.invoices_of(bill_id) == []
