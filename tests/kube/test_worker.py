"""The worker and its sync driver, in process: a real IntegrationWorker reconciling a StripeIntegration.

Everything runs on the test's event loop: the Kubernetes emulator behind kmock's server (read and written
through the official kubernetes client, as the operator does), the Stripe emulator in contract mode and
the m3ter emulator. There is no operator process and no kopf: each test calls `IntegrationWorker.reconcile`
once per step, with the object as the API server holds it, as kopf's daemon would hand it over.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from m3stripe.adapters.stripe_client import open_client
from m3stripe.api import names
from m3stripe.domain.mapping import META_ACCOUNT, META_BILL, META_VERSION
from tests.support.kube_world import KEY, ORG, KubeWorld
from tests.support.status import condition


async def test_a_pass_sends_every_bill_once_and_reports_connected_ready_and_a_complete_run(world: KubeWorld) -> None:
    accounts = [world.m3ter_account(f"a{i}") for i in range(3)]
    customers = [await world.customer_for(a) for a in accounts]
    bills = [world.bill(a, f"{i + 1}.00") for i, a in enumerate(accounts)]
    await world.create_integration()

    status = await world.reconcile()

    assert status["connected"] is True and status["stripeAccountId"] == world.account
    for type_ in ("Connected", "SourceConnected", "Ready"):
        assert condition(status, type_)["status"] == "True", status["conditions"]
    assert (condition(status, "Synced")["status"], condition(status, "Synced")["reason"]) == ("True", "RunComplete")
    last = status["lastSync"]
    assert (last["status"], last["billsSent"], last["billsFailed"]) == ("COMPLETE", 3, 0)
    assert status["lastSuccessfulSyncTime"] == last["completionTime"]
    (run,) = status["recentRuns"]
    assert run["status"] == "COMPLETE" and run["runId"] == last["runId"]
    assert {o["billId"]: o["stripeId"] for o in run["stripeObjects"]} == {
        b: world.invoices_of(b)[0]["id"] for b in bills
    }
    assert status["consecutiveErrors"] == 0 and not status.get("openEvents") and not status["disabled"]
    for bill_id, customer, total in zip(bills, customers, (100, 200, 300), strict=True):
        (invoice,) = world.invoices_of(bill_id)
        assert (invoice["customer"], invoice["status"], invoice["total"]) == (customer, "draft", total)
        assert invoice["metadata"]["m3stripe_integration"] == status["integrationId"]
    assert ("Normal", "Connected") in [(t, r) for t, r, _ in world.events]
    assert [t for t, r, _ in world.events if r == "BillsSent"] == ["Normal"]
    assert not [e for e in world.events if e[0] == "Warning"], world.events

    # Asked again, the worker finds every Bill already in Stripe: nothing is written twice.
    again = await world.run_now()
    assert (again["lastSync"]["billsSent"], again["lastSync"]["billsUnchanged"]) == (0, 3)
    assert len(world.invoices()) == 3 and len(again["recentRuns"]) == 2
    # And without a request, the next pass is not due before syncInterval: no run at all.
    quiet = await world.reconcile()
    assert quiet["recentRuns"] == again["recentRuns"]


async def test_a_regenerated_bill_updates_its_draft_invoice_rather_than_creating_a_second_one(world: KubeWorld) -> None:
    bill_id, invoice = await world.sent_bill("regen")

    version = world.m3ter.regenerate_bill(ORG, bill_id, lines=[{"line_item_type": "USAGE", "subtotal": "25.00"}])
    status = await world.run_now()

    assert (status["lastSync"]["status"], status["lastSync"]["billsSent"]) == ("COMPLETE", 1)
    (updated,) = world.invoices_of(bill_id)
    assert (updated["id"], updated["status"], updated["total"]) == (invoice["id"], "draft", 2500)
    assert updated["metadata"][META_VERSION] == str(version)
    (obj,) = status["recentRuns"][0]["stripeObjects"]
    assert (obj["billId"], obj["stripeId"]) == (bill_id, invoice["id"])
    assert len(world.invoices()) == 1


async def test_a_finalized_invoice_is_left_alone_when_its_bill_is_regenerated_and_the_run_says_so(
    world: KubeWorld,
) -> None:
    bill_id, invoice = await world.sent_bill("final")
    await world.sdk.v1.invoices.finalize_invoice_async(invoice["id"])  # a person finalized it in Stripe

    world.m3ter.regenerate_bill(ORG, bill_id, lines=[{"line_item_type": "USAGE", "subtotal": "99.00"}])
    status = await world.run_now()

    (after,) = world.invoices_of(bill_id)
    assert (after["id"], after["status"], after["total"]) == (invoice["id"], "open", 1000)
    assert len(world.invoices()) == 1
    last = status["lastSync"]
    assert (last["status"], last["billsSent"], last["billsFailed"]) == ("INVOICE_ALREADY_PAID", 0, 1)
    synced = condition(status, "Synced")
    assert (synced["status"], synced["reason"]) == ("False", "InvoiceAlreadyPaid")
    (event,) = status["openEvents"]
    assert event["kind"] == "integration.perform.error" and event["billId"] == bill_id
    assert invoice["id"] in event["message"]
    (warning,) = [e for e in world.events if e[1] == "PerformError"]
    assert warning[0] == "Warning" and event["id"] in warning[2]
    # Connected and Ready stay True: a finalized invoice is the Bill's problem, not the integration's.
    assert condition(status, "Ready")["status"] == "True" and not status["disabled"]


async def test_a_bill_whose_account_has_no_stripe_mapping_is_an_open_event_and_the_other_bills_are_sent(
    world: KubeWorld,
) -> None:
    mapped, lonely = world.m3ter_account("mapped"), world.m3ter_account("lonely")
    await world.customer_for(mapped)
    sent = [world.bill(mapped, "1.00"), world.bill(mapped, "2.00")]
    unmapped = world.bill(lonely, "3.00")
    await world.create_integration()

    status = await world.reconcile()

    assert (status["lastSync"]["billsSent"], status["lastSync"]["billsFailed"]) == (2, 1)
    assert [len(world.invoices_of(b)) for b in sent] == [1, 1] and world.invoices_of(unmapped) == []
    (event,) = status["openEvents"]
    assert (event["kind"], event["billId"]) == ("integration.missingaccountmapping.error", unmapped)
    assert f"{META_ACCOUNT}={lonely}" in event["message"]
    (warning,) = [e for e in world.events if e[1] == "MissingAccountMapping"]
    assert warning[0] == "Warning" and event["id"] in warning[2]
    assert status["consecutiveErrors"] == 0  # the Bills sent after it reset the budget
    assert status["sync"]["retryBillIds"] == [unmapped]

    # Once the customer exists, the next pass sends the Bill it could not map.
    await world.customer_for(lonely)
    status = await world.run_now()
    assert (status["lastSync"]["status"], status["lastSync"]["billsSent"]) == ("COMPLETE", 1)
    assert len(world.invoices_of(unmapped)) == 1 and not status["sync"].get("retryBillIds")


async def test_a_stripe_key_stripe_refuses_gives_ready_false_with_the_authentication_reason_and_no_invoice(
    world: KubeWorld,
) -> None:
    account = world.m3ter_account("refused")
    await world.customer_for(account)
    await world.create_integration()
    first = await world.reconcile()  # connected; nothing to send yet
    assert condition(first, "Ready")["status"] == "True" and first["lastSync"]["billsSent"] == 0

    bill_id = world.bill(account)
    world.stripe.revoke_api_key(KEY)  # revoked in Stripe's dashboard; the worker's check of it is still fresh
    status = await world.run_now()

    assert status["lastSync"]["status"] == "AUTH_FAILED" and status["lastSync"]["billsSent"] == 0
    assert world.invoices_of(bill_id) == [] and world.invoices() == []
    (event,) = status["openEvents"]
    assert event["kind"] == "integration.authentication.error"
    assert ("Warning", "AuthenticationError") in [(t, r) for t, r, _ in world.events]
    # The refusal makes the worker ask Stripe about the key again at once: the integration is disconnected.
    status = await world.reconcile()
    ready, connected = condition(status, "Ready"), condition(status, "Connected")
    assert (ready["status"], ready["reason"]) == ("False", "StripeAuthFailed")
    assert (connected["status"], connected["reason"]) == ("False", "StripeAuthFailed")
    assert status["connected"] is False and KEY[-8:] not in str(status)
    assert ("Warning", "Disconnected") in [(t, r) for t, r, _ in world.events]
    # Disconnected, the worker runs no pass, even when asked: still nothing in Stripe.
    runs = len(status["recentRuns"])
    await world.annotate(names.ANNOTATION_REQUESTED_AT, "while-refused")
    status = await world.reconcile()
    assert len(status["recentRuns"]) == runs and world.invoices() == []


async def test_auto_disable_threshold_successive_errors_disable_the_integration_and_a_success_resets_the_count(
    world: KubeWorld,
) -> None:
    early = [world.m3ter_account(f"early{i}") for i in range(2)]
    for a in early:
        world.bill(a)
    await world.create_integration(autoDisableThreshold=3)

    # Two errors, one fewer than the threshold: counted, not disabled.
    status = await world.reconcile()
    assert (status["consecutiveErrors"], status["disabled"]) == (2, False)
    assert condition(status, "Ready")["status"] == "True"

    # Their customers appear: the retried Bills are sent, and the count starts again from zero.
    for a in early:
        await world.customer_for(a)
    status = await world.run_now()
    assert (status["lastSync"]["billsSent"], status["consecutiveErrors"], status["disabled"]) == (2, 0, False)
    assert "AutoDisabled" not in world.reasons()

    # Three errors in a row after the success: the third disables the integration. Had the success not reset
    # the count, the first of them would have (2 + 1), and the pass would have stopped there.
    late_accounts = [world.m3ter_account(f"late{i}") for i in range(3)]
    late = [world.bill(a) for a in late_accounts]
    status = await world.run_now()
    assert (status["consecutiveErrors"], status["lastSync"]["billsFailed"]) == (3, 3)
    assert {e["billId"] for e in status["openEvents"] if e["kind"] == "integration.missingaccountmapping.error"} >= set(
        late
    )
    assert status["disabled"] is True
    ready = condition(status, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "AutoDisabled")
    assert "disabled itself after 3 successive error events" in status["disabledMessage"]
    assert any(e["kind"] == "integration.disabled.error" for e in status["openEvents"])
    # One Warning says so, with the message of the disablement (the Ready transition does not repeat it).
    disabled_events = [(t, m) for t, r, m in world.events if r == "AutoDisabled"]
    assert len(disabled_events) == 1
    assert all(t == "Warning" and status["disabledMessage"] in m for t, m in disabled_events)

    # Disabled, it sends nothing even when asked and though the cause is gone, until re-enabled.
    sent_before, runs = len(world.invoices()), len(status["recentRuns"])
    for a in late_accounts:
        await world.customer_for(a)
    await world.annotate(names.ANNOTATION_REQUESTED_AT, "while-disabled")
    status = await world.reconcile()
    assert len(status["recentRuns"]) == runs and len(world.invoices()) == sent_before


async def test_a_replay_annotation_re_sends_the_named_bill_and_echoes_last_handled_replay(world: KubeWorld) -> None:
    world.m3ter_lag[0] = timedelta(minutes=10)  # the Account and its Bills were last modified well before the pass
    account = world.m3ter_account("replayed")
    await world.customer_for(account)
    bill_id, other = world.bill(account, "4.00"), world.bill(account, "5.00")
    await world.create_integration()
    await world.reconcile()
    (invoice,) = world.invoices_of(bill_id)
    await world.sdk.v1.invoices.delete_async(invoice["id"])  # a person deleted the draft
    (other_invoice,) = world.invoices_of(other)

    # An ordinary pass does not notice: the Bill was last modified before the watermark.
    quiet = await world.run_now()
    assert quiet["lastSync"]["billsSent"] == 0 and world.invoices_of(bill_id) == []

    token = f"{bill_id} #1"
    await world.annotate(names.ANNOTATION_REPLAY, token)
    status = await world.reconcile()

    assert status["lastHandledReplay"] == token
    assert (status["lastSync"]["status"], status["lastSync"]["billsSent"]) == ("COMPLETE", 1)
    (again,) = world.invoices_of(bill_id)
    assert again["id"] != invoice["id"] and again["total"] == 400 and again["status"] == "draft"
    assert [i["id"] for i in world.invoices_of(other)] == [other_invoice["id"]]  # not named: untouched
    # Handled once: the same annotation value asks for nothing more.
    runs = len(status["recentRuns"])
    status = await world.reconcile()
    assert len(status["recentRuns"]) == runs and len(world.invoices_of(bill_id)) == 1


async def _moved_to_another_account(world: KubeWorld) -> tuple[str, str, dict[str, Any]]:
    """A Bill sent long after it was last modified; then the Secret holds a key of another Stripe account,
    whose Customer for the Bill's Account exists. The Bill's id, the other account, the first pass's status."""
    world.m3ter_lag[0] = timedelta(minutes=10)  # the Bill is older than the watermark's overlap
    bill_id, invoice = await world.sent_bill("moved")
    first = await world.status()
    other_key = "sk_test_51workerAnotherAccount"
    other = world.stripe.add_api_key(other_key)
    async with open_client(other_key, api_base=world.stripe.url) as sdk:
        await sdk.v1.customers.create_async(params={"metadata": {META_ACCOUNT: invoice["metadata"][META_ACCOUNT]}})
    await world.put_secret("stripe", {"apiKey": other_key})  # what a move from test mode to live looks like
    return bill_id, other, first


async def test_a_key_of_another_stripe_account_starts_the_sync_over_so_that_account_gets_every_bill(
    world: KubeWorld,
) -> None:
    bill_id, other, first = await _moved_to_another_account(world)
    status = await world.run_now()

    held = [i for i in world.stripe.state(other)["invoices"].values() if i["metadata"].get(META_BILL) == bill_id]
    assert len(held) == 1, "the old watermark kept a Bill sent to the first account from the one now in use"
    assert len(world.invoices_of(bill_id)) == 1  # the first account keeps what it had
    assert status["sync"]["scope"] != first["sync"]["scope"]
    assert other not in str(status["sync"]) and world.account not in str(status["sync"])
    (reset,) = [m for _, r, m in world.events if r == "SyncProgressReset"]
    assert "another Stripe account" in reset
    # Once the progress belongs to the new account, the next pass reads on from its watermark.
    again = await world.run_now()
    assert again["lastSync"]["billsSent"] == 0 and world.reasons().count("SyncProgressReset") == 1


async def test_a_plan_after_a_move_to_another_stripe_account_shows_what_that_account_lacks(world: KubeWorld) -> None:
    bill_id, _, _ = await _moved_to_another_account(world)
    await world.patch_spec(mode="Plan")
    status = await world.reconcile()

    planned = {b["billId"]: b["action"] for b in status["plan"]["items"]}
    assert planned == {bill_id: "CreateInvoice"}, "a plan from the old watermark would show nothing to send"
