"""Two integrations over the same Bills and the same Stripe account and mode: one Bill is invoiced once, the older
integration writes it, the younger one leaves it to the older one and says so; a malformed Bill is reported only by
the integrations whose selection could include it."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from m3stripe.adapters.stripe_gateway import StripeGateway
from m3stripe.adapters.stripe_ledger import StripeLedger
from m3stripe.domain.billing import Account, MalformedBill
from m3stripe.domain.overlap import Overlap, malformed_skip
from m3stripe.domain.runs import ErrorBudget, EventKind, SyncState
from m3stripe.domain.sync_engine import build_engine
from tests.domain.builders import T0, engine_spec, make_bill, make_line, peer, selector
from tests.support.engine_world import ORG, world

# The rule, as a person predicts it


def test_the_oldest_older_integration_that_selects_a_bill_owns_it() -> None:
    everything = engine_spec(ORG)
    older = peer("uk", everything, created=T0)
    oldest_but_elsewhere = peer("us", engine_spec(ORG, accountIds=["acc-us"]), created=T0 - timedelta(days=9))
    younger = peer("uk-copy", everything, created=T0 + timedelta(hours=1))
    overlap = Overlap((T0 + timedelta(minutes=1), "billing", "me"), (younger, older, oldest_but_elsewhere))
    bill = make_bill([make_line("l", "1")], account_id="acc-uk")
    assert overlap.owner(bill, None) == older  # the older one that selects it, not the oldest of all
    assert overlap.sharers(bill, None) == (younger,)
    assert overlap.owner(make_bill([make_line("l", "1")], account_id="acc-us"), None) == oldest_but_elsewhere


def test_integrations_created_in_the_same_second_are_ordered_by_namespace_then_name() -> None:
    spec = engine_spec(ORG)
    a, b = peer("a", spec, created=T0, namespace="team-1"), peer("b", spec, created=T0, namespace="team-1")
    bill = make_bill([make_line("l", "1")])
    assert Overlap((T0, "team-1", "b"), (a,)).owner(bill, None) == a
    assert Overlap((T0, "team-1", "a"), (b,)).owner(bill, None) is None
    assert Overlap((T0, "team-0", "z"), (a,)).owner(bill, None) is None


def test_a_peer_with_a_filter_selects_only_bills_whose_account_it_read_and_matches() -> None:
    uk = peer("uk", engine_spec(ORG, accountFilter='address.country == "UK"'), created=T0)
    overlap = Overlap((T0 + timedelta(1), "billing", "me"), (uk,))
    bill = make_bill([make_line("l", "1")], account_id="acc-1")
    british = Account(id="acc-1", name="A", code="a", currency="GBP", address={"country": "UK"})
    american = Account(id="acc-1", name="A", code="a", currency="USD", address={"country": "US"})
    assert overlap.needs_account
    assert overlap.owner(bill, british) == uk
    assert overlap.owner(bill, american) is None
    assert overlap.owner(bill, None) is None


def test_a_malformed_bill_is_reported_only_where_the_selection_could_include_it() -> None:
    everything = selector(engine_spec(ORG))
    allow_list = selector(engine_spec(ORG, accountIds=["acc-1"]))
    restricted = selector(engine_spec(ORG, restrictedAccountIds=["acc-1"]))
    uk_only = selector(engine_spec(ORG, accountFilter='address.country == "UK"'))
    broken = MalformedBill("b-1", "m3ter Bill b-1: lineItems[0].subtotal is missing", 1, account_id="acc-2")
    american = Account(id="acc-2", name="B", code="b", currency="USD", address={"country": "US"})
    assert malformed_skip(everything, broken, None) is None
    assert malformed_skip(allow_list, broken, None) == "account not in accountIds"
    assert malformed_skip(restricted, MalformedBill("b-2", "x", account_id="acc-1"), None) is not None
    assert malformed_skip(uk_only, broken, american) == "account does not match accountFilter"
    assert malformed_skip(uk_only, broken, None) is None  # the Account could not be read: it could be the UK's
    accountless = MalformedBill("b-3", "m3ter Bill b-3: accountId is None")
    assert malformed_skip(everything, accountless, None) is None
    assert malformed_skip(uk_only, accountless, None) is None
    assert malformed_skip(allow_list, accountless, None) is not None


# Through the engine, over the emulators


async def test_two_identical_integrations_invoice_each_bill_once_and_the_younger_leaves_them_to_the_older() -> None:
    async with world() as w:
        bills = [await w.customer_bill(f"c{i}", f"{i + 1}.00") for i in range(6)]
        spec = engine_spec(ORG)
        older, younger = peer("uk", spec, created=T0), peer("uk-copy", spec, created=T0 + timedelta(minutes=5))
        first, second = await asyncio.gather(
            w.run(spec=spec, integration_id=older.uid, overlap=Overlap(older.seniority, (younger,))),
            w.run(spec=spec, integration_id=younger.uid, overlap=Overlap(younger.seniority, (older,))),
        )
        for bill_id in bills:
            (invoice,) = w.invoices_of(bill_id)
            assert invoice["metadata"]["m3stripe_integration"] == older.uid
        assert (first.sent, dict(first.shared_with), dict(first.left_to)) == (6, {"billing/uk-copy": 6}, {})
        assert (second.sent, second.skipped, second.failed, dict(second.left_to)) == (0, 6, 0, {"billing/uk": 6})
        assert second.events == [] and "6 to billing/uk" in second.summary()


async def test_an_integration_overlapping_another_only_partly_writes_the_bills_that_are_its_alone() -> None:
    async with world() as w:
        a1, a2, a3 = (w.m3ter_account(code) for code in ("one", "two", "three"))
        for account in (a1, a2, a3):
            await w.customer_for(account)
        b1, b2, b3 = w.bill(a1, "1.00"), w.bill(a2, "2.00"), w.bill(a3, "3.00")
        wide, narrow = engine_spec(ORG, accountIds=[a1, a2]), engine_spec(ORG, accountIds=[a2, a3])
        older, younger = peer("wide", wide, created=T0), peer("narrow", narrow, created=T0 + timedelta(days=1))
        first = await w.run(spec=wide, integration_id=older.uid, overlap=Overlap(older.seniority, (younger,)))
        second = await w.run(spec=narrow, integration_id=younger.uid, overlap=Overlap(younger.seniority, (older,)))
        assert (first.sent, dict(first.shared_with)) == (2, {"billing/narrow": 1})
        assert (second.sent, dict(second.left_to)) == (1, {"billing/wide": 1})
        for bill_id, writer in ((b1, older), (b2, older), (b3, younger)):
            (invoice,) = w.invoices_of(bill_id)
            assert invoice["metadata"]["m3stripe_integration"] == writer.uid


async def test_another_teams_malformed_bill_is_no_error_of_this_integration() -> None:
    async with world() as w:
        mine, theirs = w.m3ter_account("mine"), w.m3ter_account("theirs")
        await w.customer_for(mine)
        good = w.bill(mine, "5.00")
        broken = w.bill(theirs, "7.00")
        w.m3ter.corrupt_bill(ORG, broken, set={"lineItems[0].subtotal": "12,50"})
        spec = engine_spec(ORG, restrictedAccountIds=[theirs])
        budget = ErrorBudget(spec.autoDisableThreshold)
        engine = build_engine(
            spec, integration_id="mine", source=w.source, stripe=StripeLedger(StripeGateway(w.sdk)), budget=budget
        )
        report = await engine.run_pass(SyncState())
        assert (report.sent, report.skipped, report.failed, report.events) == (1, 1, 0, [])
        assert budget.consecutive == 0 and len(w.invoices_of(good)) == 1
        # The team whose Account it is reports it, as m3ter's validation kind naming the field.
        theirs_only = engine_spec(ORG, accountIds=[theirs])
        report = await w.run(spec=theirs_only, integration_id="theirs", overlap=Overlap((T0, "billing", "theirs")))
        (event,) = report.events
        assert (
            event.kind is EventKind.VALIDATION and event.bill_id == broken and "lineItems[0].subtotal" in event.message
        )


async def test_a_malformed_bill_both_overlapping_integrations_select_is_reported_by_the_older_one_only() -> None:
    async with world() as w:
        account = w.m3ter_account("shared")
        broken = w.bill(account, "7.00")
        w.m3ter.corrupt_bill(ORG, broken, set={"version": "two"})
        spec = engine_spec(ORG)
        older, younger = peer("a", spec, created=T0), peer("b", spec, created=T0 + timedelta(seconds=1))
        first = await w.run(spec=spec, integration_id=older.uid, overlap=Overlap(older.seniority, (younger,)))
        second = await w.run(spec=spec, integration_id=younger.uid, overlap=Overlap(younger.seniority, (older,)))
        assert [e.bill_id for e in first.events] == [broken]
        assert second.events == [] and dict(second.left_to) == {"billing/a": 1}
        assert second.skipped == 1


def test_the_peers_are_ordered_once_per_overlap_not_for_every_bill_that_asks() -> None:
    everything = engine_spec(ORG)
    peers = (peer("b", everything, created=T0 + timedelta(hours=1)), peer("a", everything, created=T0))
    overlap = Overlap((T0 + timedelta(minutes=1), "billing", "me"), peers)
    assert overlap.owners is overlap.owners and overlap.younger is overlap.younger
    assert [p.name for p in overlap.owners] == ["a"] and [p.name for p in overlap.younger] == ["b"]
