"""The engine's rules, in process: the real SyncEngine (built by `build_engine`) over the in-loop emulators.

m3ter Bills come through the official m3ter SDK from the m3ter emulator, and go through the official stripe
SDK to the Stripe emulator in contract mode, both on the test's event loop.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import stripe

from m3stripe.adapters.m3ter_source import M3terSource
from m3stripe.adapters.m3ter_token import M3terCredentials
from m3stripe.adapters.stripe_client import open_client
from m3stripe.adapters.stripe_gateway import StripeGateway
from m3stripe.adapters.stripe_ledger import StripeLedgerReader
from m3stripe.domain.mapping import META_ACCOUNT, META_VERSION
from m3stripe.domain.runs import ErrorBudget, EventKind, RunStatus, SyncState
from m3stripe.domain.sync_engine import build_engine
from tests.domain.builders import engine_spec
from tests.support.engine_world import CREDS, ORG, next_state, world


async def test_a_pass_sends_each_bill_once_as_a_draft_invoice_of_its_customer() -> None:
    async with world() as w:
        accounts = [w.m3ter_account(f"a{i}") for i in range(3)]
        customers = [await w.customer_for(a) for a in accounts]
        bills = [w.bill(a, f"{i + 1}.00") for i, a in enumerate(accounts)]
        report = await w.run()
        assert (report.status, report.sent, report.failed, report.events) == (RunStatus.COMPLETE, 3, 0, [])
        for bill_id, customer, amount in zip(bills, customers, (100, 200, 300), strict=True):
            (invoice,) = w.invoices_of(bill_id)
            assert (invoice["customer"], invoice["status"], invoice["total"]) == (customer, "draft", amount)
        # The next pass finds every Bill already in Stripe: nothing is written twice.
        again = await w.run(SyncState())
        assert (again.sent, again.unchanged) == (0, 3)
        assert len(w.invoices()) == 3


async def test_a_regenerated_bill_updates_its_draft_invoice_in_place() -> None:
    async with world() as w:
        bill_id = await w.customer_bill("regen", "10.00")
        first = await w.run()
        (invoice,) = w.invoices_of(bill_id)
        version = w.m3ter.regenerate_bill(ORG, bill_id, lines=[{"line_item_type": "USAGE", "subtotal": "25.00"}])
        second = await w.run(next_state(first))
        assert (second.sent, second.failed) == (1, 0)
        (updated,) = w.invoices_of(bill_id)
        assert updated["id"] == invoice["id"] and updated["status"] == "draft"
        assert (updated["total"], updated["metadata"][META_VERSION]) == (2500, str(version))


async def test_a_finalized_invoice_is_left_alone_and_the_changed_bill_reports_invoice_already_paid() -> None:
    async with world() as w:
        bill_id = await w.customer_bill("final", "10.00")
        first = await w.run()
        (invoice,) = w.invoices_of(bill_id)
        await w.sdk.v1.invoices.finalize_invoice_async(invoice["id"])
        w.m3ter.regenerate_bill(ORG, bill_id, lines=[{"line_item_type": "USAGE", "subtotal": "99.00"}])
        second = await w.run(next_state(first))
        assert (second.sent, second.failed, second.status) == (0, 1, RunStatus.INVOICE_ALREADY_PAID)
        (event,) = second.events
        assert event.kind is EventKind.PERFORM and event.bill_id == bill_id and invoice["id"] in event.message
        (after,) = w.invoices_of(bill_id)
        assert (after["id"], after["status"], after["total"]) == (invoice["id"], "open", 1000)


async def test_a_bill_without_a_stripe_customer_is_a_missing_mapping_retried_once_the_customer_exists() -> None:
    async with world() as w:
        account = w.m3ter_account("lonely")
        bill_id = w.bill(account)
        first = await w.run()
        (event,) = first.events
        assert event.kind is EventKind.MISSING_ACCOUNT_MAPPING and f"{META_ACCOUNT}={account}" in event.message
        assert first.retry_bill_ids == [bill_id] and w.invoices() == []
        await w.customer_for(account)
        second = await w.run(next_state(first))
        assert (second.sent, second.events, second.retry_bill_ids) == (1, [], [])
        assert len(w.invoices_of(bill_id)) == 1


async def test_a_refused_stripe_key_stops_the_pass_keeps_the_watermark_and_writes_nothing() -> None:
    async with world() as w:
        account = w.m3ter_account("refused")
        await w.customer_for(account)
        bills = [w.bill(account, f"{n}.00") for n in range(1, 6)]
        earlier = datetime.now(UTC) - timedelta(days=1)
        async with open_client("sk_test_51revokedEngineKey", api_base=w.stripe.url) as refused:
            report = await w.run(SyncState(watermark=earlier, last_sweep=earlier), client=refused, concurrency=1)
        assert report.status is RunStatus.AUTH_FAILED and report.stopped_early
        assert report.events[0].kind is EventKind.AUTHENTICATION and "valid key" in report.events[0].message
        assert report.sent == 0 and report.failed < len(bills)
        assert report.watermark == earlier and w.invoices() == []


async def test_refused_m3ter_credentials_stop_the_pass_as_an_authentication_error() -> None:
    async with world() as w:
        w.bill(w.m3ter_account("m3ter-refused"))
        wrong = M3terSource(M3terCredentials(ORG, CREDS.client_id, "not-the-secret"), base_url=w.m3ter.url)
        try:
            report = await w.run(source=wrong)
        finally:
            await wrong.aclose()
        assert report.status is RunStatus.AUTH_FAILED and report.watermark is None
        (event,) = report.events
        assert event.kind is EventKind.AUTHENTICATION and "m3ter refused the credentials" in event.message


async def test_the_error_budget_spent_stops_the_pass_before_every_bill_is_tried() -> None:
    async with world() as w:
        bills = [w.bill(w.m3ter_account(f"unmapped{i}")) for i in range(8)]
        budget = ErrorBudget(3)
        report = await w.run(budget=budget, concurrency=1)
        assert budget.exhausted and report.stopped_early == "too many successive errors"
        assert 3 <= len(report.events) < len(bills)
        # Not every candidate was looked at: the watermark stays, the failed ones are remembered.
        assert report.watermark is None and set(report.retry_bill_ids) <= set(bills)


async def test_a_success_resets_the_error_budget() -> None:
    async with world() as w:
        account = w.m3ter_account("mapped")
        await w.customer_for(account)
        w.bill(account)
        budget = ErrorBudget(3, consecutive=2)
        report = await w.run(budget=budget)
        assert report.sent == 1 and budget.consecutive == 0


async def test_a_replayed_bill_is_written_again_though_the_watermark_is_past_it() -> None:
    async with world() as w:
        account = w.m3ter_account("replayed")
        await w.customer_for(account)
        bill_id = w.bill(account)
        await w.run()
        (invoice,) = w.invoices_of(bill_id)
        await w.sdk.v1.invoices.delete_async(invoice["id"])  # a person deleted the draft
        later = datetime.now(UTC) + timedelta(hours=1)
        state = SyncState(watermark=later, last_sweep=later)
        quiet = await w.run(state)
        assert (quiet.sent, quiet.unchanged, w.invoices_of(bill_id)) == (0, 0, [])
        replayed = await w.run(state, replay=frozenset({bill_id}))
        assert replayed.sent == 1
        (again,) = w.invoices_of(bill_id)
        assert again["id"] != invoice["id"]


async def test_an_engine_built_for_a_plan_spec_decides_through_the_read_only_ledger_and_writes_nothing() -> None:
    async with world() as w:
        bill_id = await w.customer_bill("planned")
        spec = engine_spec(ORG, mode="Plan")
        engine = build_engine(
            spec,
            integration_id=w.integration_id,
            source=w.source,
            stripe=StripeLedgerReader(StripeGateway(w.sdk)),
            budget=ErrorBudget(10),
        )
        assert engine.ledger is None and engine.planner is not None
        report = await engine.run_pass(SyncState())
        assert report.sent == 1 and w.invoices() == []
        assert engine.planner.bills[bill_id].action == "CreateInvoice"


def test_an_engine_for_a_send_spec_refuses_a_read_only_ledger() -> None:
    client = stripe.StripeClient("sk_test_51engineAAAA", base_addresses={"api": "http://127.0.0.1:9"})
    with pytest.raises(TypeError, match="read-only"):
        build_engine(
            engine_spec(ORG),
            integration_id="int-1",
            source=None,  # type: ignore[arg-type]
            stripe=StripeLedgerReader(StripeGateway(client)),
            budget=ErrorBudget(10),
        )
