"""The CPU a Stripe request costs the operator's process with no engine at all: the floor under the sync benchmark.

The same requests a Bill costs in invoice mode (a list of the customer's invoices since a moment, an invoice's creation,
its lines added in one `add_lines`), made by `--concurrency` tasks through what the operator sends them with
(`open_client`: the stripe SDK's raw requests on aiohttp, `StripeGateway`, the account's rate limit), against the Stripe
emulator in a child process at the rate and latency of the 10,000-Bill scenario. What the sync benchmark's CPU per request
has above this figure is the engine's own (m3ter, the decisions, the index, the keys).

    python benchmarks/sdk_floor.py [--bills 3000] [--customers 300] [--rps 100] [--latency 0.02]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import sys
import time
from typing import Any

from bench_emulators import STRIPE_KEY, ProcessEmulators
from m3stripe.adapters.stripe_client import open_client
from m3stripe.adapters.stripe_gateway import StripeGateway
from m3stripe.adapters.stripe_rate_limit import LimiterRegistry
from m3stripe.domain.mapping import META_BILL, META_INTEGRATION, META_LINE_INDEX


def _lines(bill: int) -> list[dict[str, Any]]:
    return [
        {
            "amount": 1000 + n,
            "description": f"Usage {n} of Bill {bill}",
            "metadata": {META_BILL: f"bill-{bill}", META_LINE_INDEX: str(n)},
        }
        for n in range(3)
    ]


async def run(args: argparse.Namespace) -> None:
    emulators = ProcessEmulators()
    try:
        setup = await emulators.setup(
            bills=1, accounts=args.customers, lines=3, latency=args.latency, order="round-robin"
        )
        async with open_client(STRIPE_KEY, api_base=setup.stripe_url, timeout=30.0) as client:
            listing = StripeGateway(client).iterate_json("customers.list", "/v1/customers", {})
            customers = [customer["id"] async for customer in listing]
            limit = LimiterRegistry().get(setup.stripe_account, False, args.rps)
            await emulators.arm(rps=args.rps, endpoint_rps=limit.endpoint_per_second)
            gateway = StripeGateway(client, limiter=limit)
            bills = itertools.count()
            since = int(time.time()) - 3600

            async def worker() -> None:
                while (bill := next(bills)) < args.bills:
                    customer = customers[bill % len(customers)]
                    async for _ in gateway.iterate_json(
                        "invoices.list", "/v1/invoices", {"customer": customer, "created": {"gte": since}}
                    ):
                        pass
                    meta = {META_BILL: f"bill-{bill}", META_INTEGRATION: "floor"}
                    invoice = await gateway.json(
                        "invoices.create",
                        "post",
                        "/v1/invoices",
                        {"customer": customer, "auto_advance": False, "currency": "usd", "metadata": meta},
                        idempotency_key=f"floor-{bill}-invoice",
                    )
                    await gateway.json(
                        "invoices.add_lines",
                        "post",
                        f"/v1/invoices/{invoice['id']}/add_lines",
                        {"lines": _lines(bill)},
                        idempotency_key=f"floor-{bill}-lines",
                    )

            cpu, started = time.process_time(), time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(args.concurrency)))
            cpu, elapsed = time.process_time() - cpu, time.perf_counter() - started
        print(
            f"{gateway.requests} Stripe requests in {elapsed:.1f} s ({gateway.requests / elapsed:.1f}/s); "
            f"CPU {cpu:.1f} s = {1000 * cpu / gateway.requests:.2f} ms per request (the SDK on aiohttp, the gateway "
            f"and the rate limit, no engine; {os.cpu_count()} CPUs)"
        )
    finally:
        await emulators.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bills", type=int, default=3000)
    parser.add_argument("--customers", type=int, default=300)
    parser.add_argument("--rps", type=float, default=100)
    parser.add_argument("--latency", type=float, default=0.02)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    print(f"SDK floor: {args.bills} Bills' requests, {args.rps:g} req/s, {args.latency * 1000:g} ms", file=sys.stderr)
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
