"""The world of the in-process tests, which the layers' worlds build on: the m3ter and Stripe emulators on the test's
event loop, one m3ter Organization with its Service User, one Stripe key and its account, and the official SDKs'
clients (the stripe SDK's, for seeding and inspecting Stripe as a person in the dashboard would; `m3ter_source` for
the operator's M3terSource over the m3ter SDK)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, fields
from typing import Any

import stripe

from m3stripe.adapters.m3ter_source import M3terSource
from m3stripe.adapters.m3ter_token import M3terCredentials
from m3stripe.adapters.stripe_client import open_client
from m3stripe.domain.mapping import META_ACCOUNT, META_BILL
from m3stripe.testing.m3ter_emulator import M3terEmulator
from m3stripe.testing.stripe_emulator import StripeEmulator


@dataclass(kw_only=True)
class World:
    m3ter: M3terEmulator
    stripe: StripeEmulator
    creds: M3terCredentials  # the Organization's Service User, known to the m3ter emulator
    key: str
    account: str  # the Stripe account of `key`
    sdk: stripe.StripeClient
    currency: str = "USD"  # of the m3ter Accounts a test makes

    @property
    def org(self) -> str:
        return self.creds.organization_id

    def parts(self) -> dict[str, Any]:
        """This world's fields, for a layer's world made on top of it."""
        return {f.name: getattr(self, f.name) for f in fields(World)}

    # ---------------------------------------------------------------- m3ter
    def m3ter_account(self, code: str) -> str:
        return self.m3ter.add_account(self.org, name=code, code=code, currency=self.currency)

    def usage_lines(self, subtotals: Iterable[str]) -> list[dict[str, Any]]:
        return [{"line_item_type": "USAGE", "subtotal": s} for s in subtotals]

    def bill(self, m3ter_account: str, *subtotals: str, currency: str | None = None) -> str:
        """A Bill of the Account with one USAGE line per subtotal (one of 12.50 if none is given), in the Account's
        currency unless `currency` says otherwise."""
        lines = self.usage_lines(subtotals or ("12.50",))
        return self.m3ter.add_bill(self.org, account_id=m3ter_account, lines=lines, currency=currency)

    # ---------------------------------------------------------------- Stripe
    async def customer_for(self, m3ter_account: str, **params: Any) -> str:
        """The Stripe customer of the m3ter Account (found by its metadata), made with `params`."""
        created = await self.sdk.v1.customers.create_async(params={"metadata": {META_ACCOUNT: m3ter_account}, **params})
        return str(created.id)

    async def customer_bill(self, code: str, subtotal: str = "12.50") -> str:
        """A Bill of a new m3ter Account that has its Stripe customer."""
        account = self.m3ter_account(code)
        await self.customer_for(account)
        return self.bill(account, subtotal)

    def invoices(self) -> list[dict[str, Any]]:
        """Stripe's invoices on the account, in the order Stripe created them."""
        return list(self.stripe.state(self.account)["invoices"].values())

    def invoices_of(self, bill_id: str) -> list[dict[str, Any]]:
        return [i for i in self.invoices() if i["metadata"].get(META_BILL) == bill_id]

    def items_of(self, bill_id: str) -> list[dict[str, Any]]:
        items = self.stripe.state(self.account)["invoice_items"].values()
        return [i for i in items if i["metadata"].get(META_BILL) == bill_id]


@asynccontextmanager
async def open_world(
    creds: M3terCredentials,
    key: str,
    *,
    stripe_emulator: StripeEmulator | None = None,
    m3ter: M3terEmulator | None = None,
    **account: Any,
) -> AsyncIterator[World]:
    """Both emulators running (contract mode for Stripe unless a `stripe_emulator` is given), the Service User known
    to m3ter and `key` to Stripe (with the `account` options of `StripeEmulator.add_api_key`). At the end, every
    request sent to a Stripe emulator in contract mode kept Stripe's contract."""
    stripe_emulator = stripe_emulator or StripeEmulator(contract_mode=True)
    stripe_account = stripe_emulator.add_api_key(key, **account)
    async with stripe_emulator, m3ter or M3terEmulator() as m3ter_emulator:
        m3ter_emulator.add_client(creds.client_id, creds.client_secret, creds.organization_id)
        async with open_client(key, api_base=stripe_emulator.url) as sdk:
            yield World(
                m3ter=m3ter_emulator, stripe=stripe_emulator, creds=creds, key=key, account=stripe_account, sdk=sdk
            )
    assert not stripe_emulator.violations, stripe_emulator.contract_report()


@asynccontextmanager
async def m3ter_source(creds: M3terCredentials, url: str, **options: Any) -> AsyncIterator[M3terSource]:
    """An M3terSource that is closed afterwards, whatever the test did with it."""
    source = M3terSource(creds, base_url=url, **options)
    try:
        yield source
    finally:
        await source.aclose()
