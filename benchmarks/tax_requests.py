"""What Stripe Tax costs in requests: Stripe requests per Bill with automatic tax on and off, per line form.

Run from the repository root with the project's virtualenv::

    python benchmarks/tax_requests.py                 # 200 Bills over 20 customers, 3 lines each
    python benchmarks/tax_requests.py --bills 1000 --customers 100 --lines 5

One pass of the real engine (``build_engine``, the official stripe SDK through ``open_client`` and ``StripeGateway``,
the m3ter SDK through ``M3terSource``) per case, against the in-process emulators (Stripe in contract mode with
Stripe Tax active and a GB registration), the customers matched by metadata (one customers listing per pass, its
tax locations expanded in it) or by m3ter's External Mappings (then one customer read per customer and pass).
Each case is checked afterwards: one invoice per Bill whose amount before tax is the Bill's total.

Why the figures are what they are (README, *Tax*): with tax on, priced lines (``priceDataProductId``) stay
``add_lines`` lines, so a Bill costs what it costs untaxed; an amount line becomes an invoice item attached to the
draft (``add_lines`` has no place for a tax behaviour), one request per line; credits become one coupon per Bill
version (one more request) redeemed on the invoice.

This is not a test: pytest collects ``tests/`` only, and nothing here is named ``test_*``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from m3stripe.adapters.m3ter_source import M3terSource
from m3stripe.adapters.m3ter_token import M3terCredentials
from m3stripe.adapters.stripe_client import open_client
from m3stripe.adapters.stripe_gateway import StripeGateway
from m3stripe.adapters.stripe_ledger import StripeLedger
from m3stripe.api.spec import StripeIntegrationSpec
from m3stripe.domain.mapping import META_ACCOUNT, META_BILL
from m3stripe.domain.runs import ErrorBudget, SyncState
from m3stripe.domain.sync_engine import build_engine
from m3stripe.testing.m3ter_emulator import M3terEmulator
from m3stripe.testing.stripe_emulator import StripeEmulator

ORG = "org-tax-bench"
CREDS = M3terCredentials(ORG, "bench-client", "bench-secret")
KEY = "sk_test_51taxBenchGB"
PRODUCT = "prod_BenchUsage"
UK = {"line1": "1 High Street", "city": "London", "postal_code": "SW1A 1AA", "country": "GB"}
TAX_OFF: dict[str, Any] = {"automaticTax": "Disabled"}
TAX_ON: dict[str, Any] = {"automaticTax": "Enabled", "taxBehavior": "Exclusive", "taxCode": "txcd_10103001"}


@dataclass(frozen=True)
class Case:
    name: str
    spec: dict[str, Any]
    priced: bool  # priceDataProductId set
    credit: bool  # each Bill has one credit line besides its charges
    external_mappings: bool = False


CASES = [
    Case("tax off, amount lines", TAX_OFF, priced=False, credit=False),
    Case("tax on, amount lines", TAX_ON, priced=False, credit=False),
    Case("tax off, priced lines", TAX_OFF, priced=True, credit=False),
    Case("tax on, priced lines", TAX_ON, priced=True, credit=False),
    Case("tax on, priced lines + a credit", TAX_ON, priced=True, credit=True),
    Case("tax on, priced lines, External Mappings", TAX_ON, priced=True, credit=False, external_mappings=True),
]


@dataclass(frozen=True)
class Figures:
    case: Case
    bills: int
    requests: Counter[str]
    seconds: float
    verified: str

    @property
    def per_bill(self) -> float:
        return sum(self.requests.values()) / self.bills


async def run_case(case: Case, *, bills: int, customers: int, lines: int) -> Figures:
    stripe = StripeEmulator(seed=19, contract_mode=True)
    account = stripe.add_api_key(KEY, country="GB", default_currency="gbp")
    stripe.set_tax_settings(account, head_office=UK)
    stripe.set_tax_rate("GB", "20")
    stripe.add_tax_registration(account, "GB", "20")
    async with stripe, M3terEmulator() as m3ter, open_client(KEY, api_base=stripe.url) as client:
        m3ter.add_client(CREDS.client_id, CREDS.client_secret, ORG)
        await client.v1.products.create_async(params={"id": PRODUCT, "name": "Usage", "tax_code": "txcd_10103001"})
        accounts = []
        for c in range(customers):
            m3ter_account = m3ter.add_account(ORG, name=f"c{c}", code=f"c{c}", currency="GBP")
            created = await client.v1.customers.create_async(
                params={"address": UK, "metadata": {META_ACCOUNT: m3ter_account}}
            )
            if case.external_mappings:
                m3ter.add_external_mapping(ORG, m3ter_account, str(created.id))
            accounts.append(m3ter_account)
        totals: dict[str, int] = {}
        for b in range(bills):
            charges = [
                {"line_item_type": "USAGE", "subtotal": f"{10 + i}.{b % 100:02d}", "description": f"usage {i}"}
                for i in range(lines)
            ]
            credit = [{"line_item_type": "CREDIT_MEMO", "subtotal": "-1.00", "description": "Credit"}]
            bill_lines = charges + (credit if case.credit else [])
            bill_id = m3ter.add_bill(ORG, account_id=accounts[b % customers], lines=bill_lines, currency="GBP")
            totals[bill_id] = int(sum(Decimal(line["subtotal"]) for line in bill_lines) * 100)  # pence
        spec = StripeIntegrationSpec.model_validate(
            {
                "destination": "StripeTestMode",
                "credentialRef": {"name": "stripe"},
                "m3ter": {"organizationId": ORG, "credentialsRef": {"name": "m3ter"}},
                "useExternalMappingAccountCode": case.external_mappings,
                **({"priceDataProductId": PRODUCT} if case.priced else {}),
                **case.spec,
            }
        )
        source = M3terSource(CREDS, base_url=m3ter.url)
        try:
            stripe.requests.clear()
            started = time.perf_counter()
            engine = build_engine(
                spec,
                integration_id="int-tax-bench",
                source=source,
                stripe=StripeLedger(StripeGateway(client)),
                budget=ErrorBudget(10),
                concurrency=16,
            )
            report = await engine.run_pass(SyncState())
            seconds = time.perf_counter() - started
        finally:
            await source.aclose()
        requests = Counter(r.endpoint or f"{r.method} {r.path}" for r in stripe.requests)
        verified = _verify(stripe, account, totals, report.sent, report.events)
    return Figures(case, bills, requests, seconds, verified)


def _verify(stripe: StripeEmulator, account: str, totals: dict[str, int], sent: int, events: list[Any]) -> str:
    if events:
        return f"FAILED: {len(events)} event(s), first: {events[0].message[:120]}"
    held = stripe.state(account)["invoices"].values()
    invoices = Counter(i["metadata"].get(META_BILL) for i in held)
    if sent != len(totals) or set(invoices) != set(totals) or set(invoices.values()) != {1}:
        return f"FAILED: {sent} sent, {len(invoices)} Bills invoiced, not one invoice per Bill"
    for invoice in held:
        exclusive = sum(t["amount"] for t in invoice["total_taxes"] if t["tax_behavior"] == "exclusive")
        if invoice["total"] - exclusive != totals[invoice["metadata"][META_BILL]]:
            return f"FAILED: invoice {invoice['id']} before tax is not its Bill's total"
    return "OK"


def render(results: list[Figures], *, lines: int) -> str:
    rows = [
        "| case | Bills | Stripe requests/Bill | by endpoint (per Bill) | pass (s) | verified |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        endpoints = ", ".join(f"{e} {n / r.bills:.2f}" for e, n in sorted(r.requests.items(), key=lambda kv: -kv[1]))
        rows.append(f"| {r.case.name} | {r.bills} | {r.per_bill:.2f} | {endpoints} | {r.seconds:.1f} | {r.verified} |")
    return f"{lines} charge line(s) per Bill\n" + "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bills", type=int, default=200)
    parser.add_argument("--customers", type=int, default=20)
    parser.add_argument("--lines", type=int, default=3, help="charge lines per Bill (default: %(default)s)")
    args = parser.parse_args()
    results = [
        asyncio.run(run_case(case, bills=args.bills, customers=args.customers, lines=args.lines)) for case in CASES
    ]
    print(render(results, lines=args.lines))


if __name__ == "__main__":
    main()
