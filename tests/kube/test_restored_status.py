"""A status restored from elsewhere (a backup, another schema) that the worker cannot wholly read: what it cannot do
without is an InternalError where it is needed, what it does not need stays as it is, and nothing is guessed."""

from __future__ import annotations

import asyncio
from typing import Any

from m3stripe.api import names
from tests.support.kube_world import NAME, NS, KubeWorld
from tests.support.status import condition


async def restore(w: KubeWorld, status: dict[str, Any]) -> None:
    """The status subresource as a restore leaves it (the API server keeps what it is given)."""
    resource = (names.GROUP, names.VERSION, NS, names.PLURAL)
    await asyncio.to_thread(w.custom.patch_namespaced_custom_object_status, *resource, NAME, {"status": status})


async def step(w: KubeWorld) -> dict[str, Any]:
    """One turn of the worker's loop (IntegrationWorker.run): a reconcile, and an unexpected error reported."""
    assert w.worker is not None
    body = await w.body()
    try:
        await w.worker.reconcile(body)
    except Exception as err:
        await w.worker._internal_error(body, err)
    return await w.status()


async def sent_bill(w: KubeWorld) -> str:
    account = w.m3ter_account("a1")
    await w.customer_for(account)
    return w.bill(account, "10.00")


async def test_open_events_that_cannot_be_read_refuse_a_resolve_as_an_internal_error_and_stay_as_they_are(
    world: KubeWorld,
) -> None:
    await world.create_integration()
    await restore(world, {"openEvents": "garbage"})
    await world.annotate(names.ANNOTATION_RESOLVE, "evt-000000000000")
    status = await step(world)
    ready = condition(status, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "InternalError")
    assert "status.openEvents" in ready["message"] and status["openEvents"] == "garbage"
    assert "lastHandledResolve" not in status and "InternalError" in world.reasons()


async def test_an_error_count_that_cannot_be_read_stops_every_reconcile_before_any_pass(world: KubeWorld) -> None:
    await sent_bill(world)
    await world.create_integration()
    await restore(world, {"consecutiveErrors": "many"})
    for _ in range(2):
        status = await step(world)
        assert condition(status, "Ready")["reason"] == "InternalError" and "status.consecutiveErrors" in str(status)
    assert world.invoices() == [] and "lastSync" not in status and status["consecutiveErrors"] == "many"


async def test_a_retry_list_that_cannot_be_read_ends_its_pass_in_an_error_run_and_the_next_pass_starts_over(
    world: KubeWorld,
) -> None:
    bill_id = await sent_bill(world)
    await world.create_integration()
    await restore(world, {"sync": {"retryBillIds": 5}})
    status = await step(world)
    assert status["lastSync"]["status"] == "ERROR" and "status.sync.retryBillIds" in status["lastSync"]["message"]
    assert condition(status, "Synced")["reason"] == "InternalError" and world.invoices() == []
    assert status["sync"]["retryBillIds"] == [] and "watermark" not in status["sync"]  # the progress written anew
    status = await world.run_now()
    assert status["lastSync"]["status"] == "COMPLETE" and len(world.invoices_of(bill_id)) == 1


async def test_a_run_history_that_cannot_be_read_refuses_a_pass_before_it_sends_anything(world: KubeWorld) -> None:
    await sent_bill(world)
    await world.create_integration()
    await restore(world, {"recentRuns": 7})
    status = await step(world)
    assert condition(status, "Ready")["reason"] == "InternalError" and "status.recentRuns" in str(status)
    assert world.invoices() == [] and status["recentRuns"] == 7


async def test_a_condition_that_cannot_be_read_is_left_out_and_written_anew(world: KubeWorld) -> None:
    await world.create_integration()
    await restore(world, {"conditions": [{"type": "Ready", "status": "True"}, "text"]})
    status = await step(world)
    assert [c["type"] for c in status["conditions"]].count("Ready") == 1
    assert all(isinstance(c, dict) and c.get("lastTransitionTime") for c in status["conditions"])
    assert condition(status, "Ready")["status"] == "True"
