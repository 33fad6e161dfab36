"""The engine's world with Stripe Tax (issue 19): a GB Stripe account, Stripe Tax active on it (head office in London)
with a GB registration, the taxed product, and m3ter Accounts in GBP with their customers' addresses."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from m3stripe.adapters.m3ter_token import M3terCredentials
from m3stripe.testing.stripe_emulator import StripeEmulator
from tests.support.engine_world import EngineWorld, open_engine_world

ORG = "org-tax"
CREDS = M3terCredentials(ORG, "tax-client", "tax-secret")
KEY = "sk_test_51taxEngineGB"
PRODUCT = "prod_TaxedUsage"
UK = {"line1": "1 High Street", "city": "London", "postal_code": "SW1A 1AA", "country": "GB"}
# A spec that taxes every line, exclusive of tax, through the taxed product.
TAXED = {"automaticTax": "Enabled", "taxBehavior": "Exclusive", "priceDataProductId": PRODUCT}


@dataclass(kw_only=True)
class TaxWorld(EngineWorld):
    async def customer(self, code: str, address: dict[str, str] | None = UK) -> tuple[str, str]:
        """An m3ter Account and its Stripe customer (with `address`, or none)."""
        account = self.m3ter_account(code)
        params: dict[str, Any] = {} if address is None else {"address": address}
        return account, await self.customer_for(account, **params)

    def usage_and_credit(self, account: str, usage: str, credit: str) -> str:
        """A Bill of a USAGE line of `usage` and a CREDIT_MEMO line of `credit` (negative)."""
        lines = [
            {"line_item_type": "USAGE", "subtotal": usage},
            {"line_item_type": "CREDIT_MEMO", "subtotal": credit},
        ]
        return self.m3ter.add_bill(self.org, account_id=account, lines=lines, currency=self.currency)

    def taxed_by_the_account_default(self) -> None:
        """The Stripe account's own settings tax every invoice (exclusive, the usage tax code), as a spec with
        automaticTax and taxBehavior AccountDefault leaves it to them."""
        self.stripe.set_tax_settings(self.account, tax_behavior="exclusive", tax_code="txcd_10103001")
        self.stripe.set_invoice_automatic_tax_default(self.account, "enabled_when_possible")

    def usage_lines(self, subtotals: Iterable[str]) -> list[dict[str, Any]]:
        return [
            {"line_item_type": "USAGE", "subtotal": s, "description": f"usage {i}"} for i, s in enumerate(subtotals)
        ]


@asynccontextmanager
async def world(
    *, tax: bool = True, registered: bool = True, rate: str = "20", **emulator_options: Any
) -> AsyncIterator[TaxWorld]:
    """A GB Stripe account; with `tax`, Stripe Tax active on it (head office in London) and, if `registered`, a GB
    registration at `rate`%; without, Stripe Tax is pending (no head office), as on a new account."""
    emulator = StripeEmulator(**{"seed": 19, "contract_mode": True, **emulator_options})
    async with open_engine_world(
        TaxWorld,
        creds=CREDS,
        key=KEY,
        stripe_emulator=emulator,
        account={"country": "GB", "default_currency": "gbp"},
        currency="GBP",
        integration_id="int-tax",
        concurrency=8,  # build_engine's default
    ) as w:
        if tax:
            emulator.set_tax_settings(w.account, head_office=UK)
            emulator.set_tax_rate("GB", rate)
            if registered:
                emulator.add_tax_registration(w.account, "GB", rate)
            await w.sdk.v1.products.create_async(params={"id": PRODUCT, "name": "Usage", "tax_code": "txcd_10103001"})
        yield w


def taxes(invoice: dict[str, Any]) -> tuple[int, int]:
    """(exclusive, inclusive) tax of an invoice, from its total_taxes."""
    exclusive = sum(t["amount"] for t in invoice["total_taxes"] if t["tax_behavior"] == "exclusive")
    inclusive = sum(t["amount"] for t in invoice["total_taxes"] if t["tax_behavior"] == "inclusive")
    return exclusive, inclusive
