"""Exactly once per Bill, not per Kubernetes object (issue 18), through the real worker in process.

A re-created integration (delete and apply, a status lost, a rename into another namespace, an upgrade from objects
written with the uid in their metadata) resumes and never repeats; two integrations over the same Bills and the same
Stripe account invoice each Bill once, the older one writing, both saying so; all of it under Stripe faults too.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from m3stripe.api import names
from m3stripe.domain.mapping import META_INTEGRATION, META_ORGANIZATION, META_VERSION
from m3stripe.testing.stripe_emulator.faults import Fault
from tests.support.kube_world import ORG, KubeWorld
from tests.support.status import condition


async def mapped_bills(w: KubeWorld, count: int, prefix: str = "c") -> list[str]:
    bills = []
    for i in range(count):
        account = w.m3ter_account(f"{prefix}{i}")
        await w.customer_for(account)
        bills.append(w.bill(account, f"{i + 1}.00"))
    return bills


def one_invoice_each(w: KubeWorld, bills: list[str]) -> list[dict[str, Any]]:
    found = []
    for bill_id in bills:
        invoices = w.invoices_of(bill_id)
        assert len(invoices) == 1, (bill_id, invoices)
        found.append(invoices[0])
    return found


# --------------------------------------------------------------------------- re-creation resumes, never repeats


async def test_an_integration_deleted_and_applied_again_sends_nothing_twice_and_only_what_is_new(w: KubeWorld) -> None:
    bills = await mapped_bills(w, 7)
    first = await w.apply("uk")
    assert (await first.reconcile())["lastSync"]["billsSent"] == 7
    before = {i["id"] for i in w.invoices()}
    await first.delete()
    (new_bill,) = await mapped_bills(w, 1, prefix="new")
    again = await w.apply("uk")  # the same manifest, as a cluster rebuilt from git applies it
    assert again.uid != first.uid
    status = await again.reconcile()
    last = status["lastSync"]
    assert (last["billsSent"], last["billsUnchanged"], last["billsFailed"]) == (1, 7, 0), last
    one_invoice_each(w, [*bills, new_bill])
    assert {i["id"] for i in w.invoices()} - before == {w.invoices_of(new_bill)[0]["id"]}


async def test_a_status_lost_or_stripped_resumes_from_stripe_and_sends_nothing_twice(w: KubeWorld) -> None:
    bills = await mapped_bills(w, 5)
    uk = await w.apply("uk")
    await uk.reconcile()
    # etcd restored from an old backup, or a tool that strips status, then the operator restarts: the progress is
    # gone, the object is not.
    resource = (names.GROUP, names.VERSION, uk.namespace, names.PLURAL)
    await asyncio.to_thread(w.custom.patch_namespaced_custom_object_status, *resource, uk.name, {"status": None})
    assert not await uk.status()
    uk.restart()
    (late,) = await mapped_bills(w, 1, prefix="late")
    status = await uk.reconcile()
    last = status["lastSync"]
    assert (last["billsSent"], last["billsUnchanged"]) == (1, 5), last
    one_invoice_each(w, [*bills, late])


async def test_a_rename_into_another_namespace_resumes_a_regenerated_bill_updates_its_draft_a_finalized_one_is_left(
    w: KubeWorld,
) -> None:
    bills = await mapped_bills(w, 3)
    old = await w.apply("invoices", "billing")
    await old.reconcile()
    draft, finalized, unchanged = one_invoice_each(w, bills)
    await w.sdk.v1.invoices.finalize_invoice_async(finalized["id"])
    await old.delete()
    w.m3ter.regenerate_bill(ORG, bills[0], lines=[{"line_item_type": "USAGE", "subtotal": "41.00"}])
    w.m3ter.regenerate_bill(ORG, bills[1], lines=[{"line_item_type": "USAGE", "subtotal": "42.00"}])
    moved = await w.apply("stripe-invoices", "finance")
    status = await moved.reconcile()
    last = status["lastSync"]
    assert (last["billsSent"], last["billsUnchanged"], last["billsFailed"]) == (1, 1, 1), last
    updated, still_final, same = one_invoice_each(w, bills)
    assert updated["id"] == draft["id"] and updated["total"] == 4100 and updated["metadata"][META_VERSION] == "2"
    assert updated["metadata"][META_INTEGRATION] == moved.uid and updated["metadata"][META_ORGANIZATION] == ORG
    assert still_final["id"] == finalized["id"] and still_final["status"] == "open" and still_final["total"] == 200
    assert same == unchanged
    (event,) = status["openEvents"]
    assert event["kind"] == "integration.perform.error" and finalized["id"] in event["message"]


async def test_objects_written_with_the_uid_in_their_metadata_are_recognised_after_an_upgrade(w: KubeWorld) -> None:
    bills = await mapped_bills(w, 4)
    old = await w.apply("uk")
    await old.reconcile()
    # What an operator before the Organization was recorded left in Stripe: no m3ter_organization_id anywhere (the
    # emulator's stored objects are edited in place, as no API call removes a line's metadata key).
    stored = w.stripe._mode_state(w.account, False)
    for collection in (stored.invoices, stored.invoice_items):
        for obj in collection.objects.values():
            obj["metadata"].pop(META_ORGANIZATION, None)
    assert all(META_ORGANIZATION not in i["metadata"] for i in w.invoices())
    assert all(META_ORGANIZATION not in li["metadata"] for i in w.invoices() for li in i["lines"]["data"])
    await old.delete()
    upgraded = await w.apply("uk")
    status = await upgraded.reconcile()
    assert (status["lastSync"]["billsSent"], status["lastSync"]["billsUnchanged"]) == (0, 4), status["lastSync"]
    one_invoice_each(w, bills)


async def test_re_creation_under_stripe_faults_still_sends_nothing_twice(w: KubeWorld) -> None:
    bills = await mapped_bills(w, 6)
    first = await w.apply("uk")
    await first.reconcile()
    await first.delete()
    w.stripe.inject_random(
        {Fault.SERVER_ERROR: 0.3, Fault.RATE_LIMIT: 0.2, Fault.DROP_AFTER_WRITE: 0.1},
        seed=18,
        path_prefix="/v1/invoice",
    )
    more = await mapped_bills(w, 4, prefix="late")
    again = await w.apply("uk")
    status = await again.reconcile()
    for _ in range(6):
        if not status.get("sync", {}).get("retryBillIds"):
            break
        status = await again.run_now()
    w.stripe.clear_faults()
    status = await again.run_now()
    assert status["lastSync"]["billsFailed"] == 0, status["lastSync"]
    one_invoice_each(w, [*bills, *more])


async def test_the_first_pass_after_re_creation_reads_each_customer_once_not_each_bill_again_and_again(
    w: KubeWorld,
) -> None:
    accounts = [w.m3ter_account(f"big{i}") for i in range(2)]
    for account in accounts:
        await w.customer_for(account)
    bills = [w.bill(accounts[n % 2], f"{n + 1}.00") for n in range(20)]
    first = await w.apply("uk")
    await first.reconcile()
    await first.delete()
    before = len(w.stripe.requests)
    again = await w.apply("uk")
    status = await again.reconcile()
    assert status["lastSync"]["billsUnchanged"] == 20
    requests = list(w.stripe.requests)[before:]
    assert [r for r in requests if r.method != "GET"] == []
    # Each customer's invoices are listed once, with their lines (Stripe embeds them in the invoice); per Bill only
    # the normal re-read of what was created meanwhile: never the customer's history, nor each invoice's lines.
    invoice_lists = [r for r in requests if r.path == "/v1/invoices"]
    line_reads = [r for r in requests if r.path.endswith("/lines")]
    assert len(invoice_lists) <= len(bills) + len(accounts) and line_reads == []
    one_invoice_each(w, bills)


# --------------------------------------------------------------------------- overlap is seen and refused


async def test_two_identical_integrations_invoice_each_bill_once_and_both_say_which_sends_it(w: KubeWorld) -> None:
    bills = await mapped_bills(w, 8)
    older = await w.apply("uk")
    await asyncio.sleep(1.05)  # creationTimestamp has whole seconds: the copy is younger
    copy = await w.apply("uk-copy")
    await asyncio.gather(older.reconcile(), copy.reconcile())
    older_status, copy_status = await older.status(), await copy.status()
    # Whichever pass ran first, the younger one never writes a Bill the older one selects.
    await older.run_now()
    await copy.run_now()
    invoices = one_invoice_each(w, bills)
    assert {i["metadata"][META_INTEGRATION] for i in invoices} == {older.uid}
    copy_status = await copy.status()
    overlapping = condition(copy_status, "Overlapping")
    assert (overlapping["status"], overlapping["reason"]) == ("True", "LeavesBillsToOlder")
    assert "billing/uk " in overlapping["message"] + " " and "older" in overlapping["message"]
    (record,) = copy_status["overlaps"]
    assert (record["integration"], record["sends"], record["uid"]) == ("billing/uk", True, older.uid)
    assert copy_status["lastSync"]["billsSent"] == 0 and copy_status["consecutiveErrors"] == 0
    assert not copy_status.get("openEvents")  # leaving a Bill to the owner is no error, and costs no error budget
    assert "Overlapping" in copy.reasons()
    older_status = await older.status()
    mine = condition(older_status, "Overlapping")
    assert (mine["status"], mine["reason"]) == ("True", "SharesBillsWithYounger") and "billing/uk-copy" in mine[
        "message"
    ]
    assert "Overlapping" in older.reasons()


async def test_a_partly_overlapping_integration_writes_only_the_bills_that_are_its_alone(w: KubeWorld) -> None:
    a1, a2, a3 = (w.m3ter_account(code) for code in ("one", "two", "three"))
    for account in (a1, a2, a3):
        await w.customer_for(account)
    wide = await w.apply("wide", accountIds=[a1, a2])
    await wide.reconcile()  # connected, no Bill yet
    await asyncio.sleep(1.05)
    narrow = await w.apply("narrow", accountIds=[a2, a3])
    b1, b2, b3 = w.bill(a1, "1.00"), w.bill(a2, "2.00"), w.bill(a3, "3.00")
    await narrow.reconcile()  # the younger one passes first: it still leaves the shared Bill to the older one
    await wide.run_now()
    invoices = one_invoice_each(w, [b1, b2, b3])
    writers = {b: i["metadata"][META_INTEGRATION] for b, i in zip((b1, b2, b3), invoices, strict=True)}
    assert writers == {b1: wide.uid, b2: wide.uid, b3: narrow.uid}
    status = await narrow.status()
    assert condition(status, "Overlapping")["reason"] == "LeavesBillsToOlder"
    assert status["overlaps"][0]["bills"] == 1


async def test_when_the_older_integration_goes_the_younger_one_starts_over_and_sends_what_it_had_left_to_it(
    w: KubeWorld,
) -> None:
    bills = await mapped_bills(w, 3)
    older = await w.apply("uk")
    await older.reconcile()
    await asyncio.sleep(1.05)
    copy = await w.apply("uk-copy")
    status = await copy.reconcile()
    assert status["lastSync"]["billsSent"] == 0 and status["lastSync"]["billsSkipped"] == 3
    await older.delete()
    (late,) = await mapped_bills(w, 1, prefix="late")
    status = await copy.run_now()
    last = status["lastSync"]
    assert (last["billsSent"], last["billsUnchanged"]) == (1, 3), last
    assert "SyncProgressReset" in copy.reasons()
    assert condition(status, "Overlapping")["status"] == "False" and not status.get("overlaps")
    one_invoice_each(w, [*bills, late])


async def test_an_older_integration_that_sends_nothing_owns_nothing_and_takes_its_bills_back_when_it_sends_again(
    w: KubeWorld,
) -> None:
    bills = await mapped_bills(w, 2)
    older = await w.apply("uk")
    await older.reconcile()
    await asyncio.sleep(1.05)
    copy = await w.apply("uk-copy")
    await copy.reconcile()
    await older.patch_spec(suspend=True)  # a suspended integration sends nothing: its Bills are the copy's
    (while_suspended,) = await mapped_bills(w, 1, prefix="held")
    status = await copy.run_now()
    assert status["lastSync"]["billsSent"] == 1, status["lastSync"]
    (record,) = status["overlaps"]
    assert (record["integration"], record["sends"], record["notes"]) == ("billing/uk", False, "suspended")
    await older.patch_spec(suspend=False)
    (after,) = await mapped_bills(w, 1, prefix="after")
    status = await copy.run_now()
    assert status["lastSync"]["billsSent"] == 0 and status["lastSync"]["billsSkipped"] >= 1, status["lastSync"]
    await older.run_now()
    invoices = one_invoice_each(w, [*bills, while_suspended, after])
    writers = [i["metadata"][META_INTEGRATION] for i in invoices]
    assert writers == [older.uid, older.uid, copy.uid, older.uid]


async def test_a_disconnected_older_integration_hands_its_bills_to_the_new_one(w: KubeWorld) -> None:
    # A migration: the old integration is disconnected (m3ter's "remove credential") and a new one applied.
    old = await w.apply("old")
    await old.reconcile()
    await old.patch_spec(credentialRef=None)
    await old.reconcile()
    await asyncio.sleep(1.05)
    new = await w.apply("new")
    bills = await mapped_bills(w, 3)
    status = await new.reconcile()
    assert status["lastSync"]["billsSent"] == 3, status["lastSync"]
    assert {i["metadata"][META_INTEGRATION] for i in one_invoice_each(w, bills)} == {new.uid}


async def test_when_the_peers_cannot_be_listed_and_none_are_known_the_pass_is_postponed_and_sends_nothing(
    w: KubeWorld,
) -> None:
    older = await w.apply("uk")
    await older.reconcile()  # connected, nothing to send yet
    await asyncio.sleep(1.05)
    copy = await w.apply("uk-copy")
    bills = await mapped_bills(w, 2)
    w.k8s.peers_list_status = 503  # the API server is overloaded: the copy cannot tell the Bills are the older one's
    status = await copy.reconcile()
    assert w.invoices() == [], "a pass blind to its peers would write the older integration's Bills"
    last = status["lastSync"]
    assert (last["status"], last["billsSent"]) == ("AWAITING_RETRY", 0), last
    (event,) = status["openEvents"]
    assert event["kind"] == "integration.perform.error" and "postponed" in event["message"], event
    assert "HTTP 503" in event["message"] and "retried on the next pass" in event["message"]
    w.k8s.peers_list_status = None
    status = await copy.run_now()
    assert status["lastSync"]["billsSkipped"] == 2 and status["lastSync"]["billsSent"] == 0, status["lastSync"]
    await older.run_now()
    assert {i["metadata"][META_INTEGRATION] for i in one_invoice_each(w, bills)} == {older.uid}


async def test_a_failed_listing_of_the_peers_keeps_the_peers_of_the_last_pass(w: KubeWorld) -> None:
    older = await w.apply("uk")
    await older.reconcile()
    await asyncio.sleep(1.05)
    copy = await w.apply("uk-copy")
    await copy.reconcile()  # the copy has seen the older one
    bills = await mapped_bills(w, 2)
    w.k8s.peers_list_status = 503
    status = await copy.run_now()
    last = status["lastSync"]
    assert (last["status"], last["billsSent"], last["billsSkipped"]) == ("COMPLETE", 0, 2), last
    assert w.invoices() == [] and "SyncProgressReset" not in copy.reasons()
    w.k8s.peers_list_status = None
    await older.run_now()
    one_invoice_each(w, bills)


async def test_without_the_rbac_grant_to_list_peers_the_pass_runs_and_says_overlap_is_unknown(w: KubeWorld) -> None:
    bills = await mapped_bills(w, 2)
    uk = await w.apply("uk")
    await uk.reconcile()
    w.k8s.peers_list_status = 403  # deployed without the ClusterRole m3stripe-operator-peers
    uk.restart()  # and no peers known from an earlier pass: refused for good, so the pass runs without them
    (late,) = await mapped_bills(w, 1, prefix="late")
    status = await uk.run_now()
    assert status["lastSync"]["billsSent"] == 1, status["lastSync"]
    overlapping = condition(status, "Overlapping")
    assert (overlapping["status"], overlapping["reason"]) == ("Unknown", "PeersUnreadable")
    assert "m3stripe-operator-peers" in overlapping["message"]
    assert "SyncProgressReset" not in uk.reasons()
    one_invoice_each(w, [*bills, late])


async def test_integrations_on_other_stripe_accounts_or_modes_are_no_overlap(w: KubeWorld) -> None:
    bills = await mapped_bills(w, 2)
    other_key = "sk_test_51anotherStripeAccount"
    w.stripe.add_api_key(other_key)
    older = await w.apply("to-another-account")
    await asyncio.to_thread(w.kube_client.put_secret, "billing", "other-stripe", {"apiKey": other_key})
    patch = {"spec": {"credentialRef": {"name": "other-stripe"}}}
    resource = (names.GROUP, names.VERSION, "billing", names.PLURAL)
    await asyncio.to_thread(w.custom.patch_namespaced_custom_object, *resource, older.name, patch)
    await older.reconcile()
    await asyncio.sleep(1.05)
    mine = await w.apply("mine")
    status = await mine.reconcile()
    assert status["lastSync"]["billsSent"] == 2 and condition(status, "Overlapping")["status"] == "False"
    one_invoice_each(w, bills)


@pytest.mark.parametrize("faults", [False, True], ids=["clean", "stripe-faults"])
async def test_overlapping_integrations_passing_at_once_never_double_a_bill(w: KubeWorld, faults: bool) -> None:
    bills = await mapped_bills(w, 10)
    a = await w.apply("a")
    await asyncio.sleep(1.05)
    b = await w.apply("b")
    if faults:
        w.stripe.inject_random(
            {Fault.SERVER_ERROR: 0.25, Fault.DROP_AFTER_WRITE: 0.1}, seed=7, path_prefix="/v1/invoice"
        )
    await asyncio.gather(a.reconcile(), b.reconcile())
    for _ in range(5):
        await asyncio.gather(a.run_now(), b.run_now())
    w.stripe.clear_faults()
    _, last_of_b = await asyncio.gather(a.run_now(), b.run_now())
    one_invoice_each(w, bills)
    # Who wrote each Bill depends on the race: b's first pass may list a before a has connected (an integration
    # that sends nothing owns nothing, domain.overlap), and sort_out keeps the oldest invoice of a Bill both wrote.
    # Once both are connected they agree: a owns what both select, and b says so.
    overlapping = condition(last_of_b, "Overlapping")
    assert overlapping["status"] == "True" and "billing/a" in overlapping["message"], overlapping


async def test_a_plan_of_the_younger_integration_shows_the_shared_bills_left_to_the_older_one(w: KubeWorld) -> None:
    bills = await mapped_bills(w, 2)
    older = await w.apply("uk")
    await older.reconcile()
    await asyncio.sleep(1.05)
    (late,) = await mapped_bills(w, 1, prefix="late")
    planning = await w.apply("uk-plan", mode="Plan")
    status = await planning.reconcile()
    plan = {item["billId"]: item for item in status["plan"]["items"]}
    assert plan[late]["action"] == "Nothing" and plan[late]["reason"].startswith("left to billing/uk, the older")
    assert all(plan[b]["action"] == "Nothing" for b in bills)
    assert condition(status, "Overlapping")["reason"] == "LeavesBillsToOlder"
    assert w.invoices_of(late) == []  # the plan wrote nothing; the older one sends it on its next pass
    await older.run_now()
    one_invoice_each(w, [*bills, late])
