"""Finding what Stripe already holds for a Bill costs one list request per Bill, whatever the customer's history,
and never misses an earlier write of the same Bill.

The operator's StripeWriter talks through the official stripe SDK over HTTP to a StripeEmulator (contract mode)
on the test's event loop; the emulator's clock is moved to place objects in time, as Stripe's `created` does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from m3stripe.adapters.m3ter_token import M3terCredentials
from m3stripe.adapters.stripe_gateway import RetryPolicy, StripeGateway
from m3stripe.adapters.stripe_ledger import StripeLedger
from m3stripe.domain.billing import Bill
from m3stripe.domain.mapping import (
    META_BILL,
    META_INTEGRATION,
    META_LINE,
    META_LINE_INDEX,
    META_ORGANIZATION,
    META_VERSION,
    map_bill,
)
from m3stripe.domain.stripe_writer import StripeWriter
from m3stripe.testing.stripe_emulator import StripeEmulator
from tests.domain.builders import make_bill, make_line, make_spec
from tests.support.clock import Clock
from tests.support.world import World, open_world

KEY = "sk_test_writerHistory01"
INTEGRATION = "int-history"
CREDS = M3terCredentials("org", "writer-client", "writer-secret")
T0 = datetime(2026, 6, 1, tzinfo=UTC)


@dataclass(kw_only=True)
class WriterWorld(World):
    """The Stripe emulator on the hand-moved `clock`, and the operator's StripeWriter over the stripe SDK."""

    clock: Clock

    def at(self, when: datetime) -> None:
        self.clock.set(when)

    def writer(self) -> StripeWriter:
        return StripeWriter(StripeLedger(StripeGateway(self.sdk, retry=RetryPolicy(max_attempts=1))))

    def lists(self) -> int:
        return sum(
            1 for r in self.stripe.requests if r.method == "GET" and r.path in ("/v1/invoices", "/v1/invoiceitems")
        )


def run(body: Callable[[WriterWorld], Coroutine[Any, Any, None]]) -> None:
    async def main() -> None:
        clock = Clock(T0)
        emulator = StripeEmulator(seed=7, clock=clock, contract_mode=True)
        async with open_world(CREDS, KEY, stripe_emulator=emulator) as base:
            await body(WriterWorld(**base.parts(), clock=clock))

    asyncio.run(main())


def bill(bill_id: str, *, created: datetime | None, version: int = 1, amounts: tuple[str, ...] = ("1.00",)) -> Bill:
    lines = [make_line(f"{bill_id}-line-{i}", a, description="usage") for i, a in enumerate(amounts)]
    return make_bill(
        lines,
        bill_id=bill_id,
        version=version,
        account_id="acc",
        account_code=None,
        last_modified=created or T0,
        created=created,
    )


async def write(
    world: WriterWorld,
    writer: StripeWriter,
    b: Bill,
    customer: str,
    *,
    invoice: bool,
    integration: str = INTEGRATION,
    organization: str = "org",
) -> bool:
    plan = map_bill(b, make_spec(organization=organization, createStripeInvoice=invoice), integration)
    if invoice:
        return (await writer.write_invoice(plan, customer, not_before=b.created)).changed
    return (await writer.write_items(plan, customer, not_before=b.created)).changed


async def customer(world: WriterWorld) -> str:
    return str((await world.sdk.v1.customers.create_async(params={"name": "history"})).id)


async def history(world: WriterWorld, customer_id: str, size: int, *, invoice: bool) -> None:
    """`size` earlier invoices (or items) of this integration for other Bills, a month before T0."""
    world.at(T0 - timedelta(days=30))
    for n in range(size):
        meta = {
            META_INTEGRATION: INTEGRATION,
            META_BILL: f"old-{n}",
            META_VERSION: "1",
            META_LINE: "l",
            META_LINE_INDEX: "0",
        }
        if invoice:
            await world.sdk.v1.invoices.create_async(
                params={"customer": customer_id, "metadata": meta, "auto_advance": False}
            )
        else:
            await world.sdk.v1.invoice_items.create_async(
                params={"customer": customer_id, "amount": 100, "currency": "usd", "metadata": meta}
            )


@pytest.mark.parametrize("invoice", [True, False], ids=["invoice", "items"])
@pytest.mark.parametrize("size", [0, 10, 250])
def test_finding_earlier_writes_costs_one_list_per_bill_whatever_the_customers_history(
    invoice: bool, size: int
) -> None:
    async def body(world: WriterWorld) -> None:
        cus = await customer(world)
        await history(world, cus, size, invoice=invoice)
        writer = world.writer()
        before = world.lists()
        for n in range(10):
            world.at(T0 + timedelta(seconds=n))
            assert await write(world, writer, bill(f"new-{n}", created=T0 - timedelta(minutes=5)), cus, invoice=invoice)
        assert world.lists() - before == 10  # one per Bill, with 0, 10 or 250 earlier objects
        for n in range(10):
            assert len(world.invoices_of(f"new-{n}") if invoice else world.items_of(f"new-{n}")) == 1

    run(body)


def test_bills_listed_newest_first_cost_one_list_each() -> None:
    async def body(world: WriterWorld) -> None:
        cus = await customer(world)
        world.at(T0)
        writer = world.writer()
        before = world.lists()
        for n in range(10):  # m3ter lists changed Bills newest first: each next one was created a bit earlier
            assert await write(world, writer, bill(f"b-{n}", created=T0 - timedelta(seconds=3 * n)), cus, invoice=True)
        assert world.lists() - before == 10

    run(body)


@pytest.mark.parametrize("invoice", [True, False], ids=["invoice", "items"])
def test_a_regenerated_bill_finds_what_its_first_version_wrote_long_before(invoice: bool) -> None:
    async def body(world: WriterWorld) -> None:
        cus = await customer(world)
        created = T0 - timedelta(days=60)
        world.at(created + timedelta(minutes=1))
        assert await write(world, world.writer(), bill("regen", created=created), cus, invoice=invoice)
        await history(world, cus, 120, invoice=invoice)  # a month of other invoices since
        world.at(T0)
        writer = world.writer()  # a new pass
        # Another customer's Bill first, then a Bill of this customer created recently: the index starts late.
        assert await write(world, writer, bill("recent", created=T0 - timedelta(hours=2)), cus, invoice=invoice)
        v2 = bill("regen", created=created, version=2, amounts=("2.00",))
        assert await write(world, writer, v2, cus, invoice=invoice)
        assert not await write(world, world.writer(), v2, cus, invoice=invoice)  # the next pass: nothing to do
        if invoice:
            (held,) = world.invoices_of("regen")
            assert held["metadata"][META_VERSION] == "2" and held["total"] == 200
        else:
            (item,) = world.items_of("regen")
            assert item["amount"] == 200

    run(body)


@pytest.mark.parametrize("invoice", [True, False], ids=["invoice", "items"])
def test_a_write_by_another_process_after_the_index_was_built_is_found(invoice: bool) -> None:
    async def body(world: WriterWorld) -> None:
        cus = await customer(world)
        world.at(T0)
        ours = world.writer()
        assert await write(world, ours, bill("first", created=T0), cus, invoice=invoice)  # builds the index
        world.at(T0 + timedelta(seconds=30))
        # An earlier pass's request that was still in flight, or a second process: it writes "late".
        late = bill("late", created=T0)
        assert await write(world, world.writer(), late, cus, invoice=invoice)
        world.at(T0 + timedelta(seconds=31))
        assert not await write(world, ours, late, cus, invoice=invoice)
        assert len(world.invoices_of("late") if invoice else world.items_of("late")) == 1

    run(body)


def test_a_bill_without_a_creation_time_searches_the_whole_history() -> None:
    async def body(world: WriterWorld) -> None:
        cus = await customer(world)
        world.at(T0 - timedelta(days=400))
        assert await write(world, world.writer(), bill("ancient", created=None), cus, invoice=True)
        await history(world, cus, 150, invoice=True)
        world.at(T0)
        writer = world.writer()
        assert await write(world, writer, bill("recent", created=T0), cus, invoice=True)
        assert not await write(world, writer, bill("ancient", created=None), cus, invoice=True)
        assert len(world.invoices_of("ancient")) == 1

    run(body)


# A Bill's identity in Stripe is durable: its m3ter Organization and Bill id, not the Kubernetes object that wrote it.


@pytest.mark.parametrize("invoice", [True, False], ids=["invoice", "items"])
def test_what_another_integration_of_the_same_organization_wrote_is_this_bills_and_is_never_written_again(
    invoice: bool,
) -> None:
    async def body(world: WriterWorld) -> None:
        cus = await customer(world)
        world.at(T0)
        b = bill("recreated", created=T0, amounts=("1.00", "2.50"))
        assert await write(world, world.writer(), b, cus, invoice=invoice, integration="uid-before-delete")
        # The same manifest applied again: a new Kubernetes object, a new uid, a new pass.
        assert not await write(world, world.writer(), b, cus, invoice=invoice, integration="uid-after-apply")
        v2 = bill("recreated", created=T0, version=2, amounts=("4.00",))
        assert await write(world, world.writer(), v2, cus, invoice=invoice, integration="uid-after-apply")
        if invoice:
            (held,) = world.invoices_of("recreated")
            assert held["total"] == 400 and held["metadata"][META_VERSION] == "2"
            assert held["metadata"][META_ORGANIZATION] == "org"
            assert held["metadata"][META_INTEGRATION] == "uid-after-apply"  # who wrote it last, for people
        else:
            (item,) = world.items_of("recreated")
            assert item["amount"] == 400

    run(body)


@pytest.mark.parametrize("invoice", [True, False], ids=["invoice", "items"])
def test_objects_written_before_the_organization_was_recorded_are_still_recognised_after_an_upgrade(
    invoice: bool,
) -> None:
    async def body(world: WriterWorld) -> None:
        cus = await customer(world)
        world.at(T0)
        b = bill("legacy", created=T0, amounts=("1.00", "2.50"))
        plan = map_bill(b, make_spec(organization="org", createStripeInvoice=invoice), "uid-of-an-older-operator")

        def legacy(meta: dict[str, str]) -> dict[str, str]:
            return {k: v for k, v in meta.items() if k != META_ORGANIZATION}

        # What an operator before the Organization was recorded wrote: the integration's uid, no Organization.
        if invoice:
            params = plan.invoice_create_params(cus)
            created = await world.sdk.v1.invoices.create_async(
                params={**params, "metadata": legacy(params["metadata"])}
            )
            lines = [{**p.line_params(), "metadata": legacy(p.metadata)} for p in plan.lines]
            await world.sdk.v1.invoices.add_lines_async(created.id, params={"lines": lines})  # type: ignore[typeddict-item]
        else:
            for p in plan.lines:
                params = p.invoice_item_params(cus, plan.currency)
                await world.sdk.v1.invoice_items.create_async(params={**params, "metadata": legacy(p.metadata)})
        world.at(T0 + timedelta(minutes=5))
        assert not await write(world, world.writer(), b, cus, invoice=invoice, integration="uid-after-upgrade")
        assert len(world.invoices_of("legacy") if invoice else world.items_of("legacy")) == (1 if invoice else 2)

    run(body)


def test_an_object_of_another_organization_is_not_this_bills_even_with_the_same_bill_id() -> None:
    async def body(world: WriterWorld) -> None:
        cus = await customer(world)
        world.at(T0)
        b = bill("shared-id", created=T0)
        assert await write(world, world.writer(), b, cus, invoice=True, organization="org-sandbox")
        assert await write(world, world.writer(), b, cus, invoice=True, organization="org-production")
        assert not await write(world, world.writer(), b, cus, invoice=True, organization="org-production")
        held = world.invoices_of("shared-id")
        assert sorted(i["metadata"][META_ORGANIZATION] for i in held) == ["org-production", "org-sandbox"]

    run(body)
