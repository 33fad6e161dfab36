"""A sync pass whose m3ter token is revoked half-way carries on with one new token (issue 13)."""

from __future__ import annotations

import pytest

from m3stripe.adapters.stripe_client import open_client
from m3stripe.adapters.stripe_gateway import metadata_of
from m3stripe.domain.account_filter import parse_filter
from m3stripe.domain.mapping import META_ACCOUNT, META_BILL
from m3stripe.domain.runs import RunStatus
from m3stripe.testing.m3ter_emulator import M3terEmulator
from m3stripe.testing.stripe_emulator import StripeEmulator
from tests.adapters.service_user import CREDS, ORG
from tests.domain.builders import engine_spec
from tests.support.engine_world import send_pass
from tests.support.world import m3ter_source

STRIPE_KEY = "sk_test_51tokenREVOKEDmidPASS"


class RevokingEmulator(M3terEmulator):
    """Revokes every issued token once the pass has made ``after`` requests for Accounts."""

    def __init__(self, *, after: int, status: int) -> None:
        super().__init__()
        self.after = after
        self.status = status
        self.account_reads = 0

    def record_request(self, method: str, path: str, query: dict[str, str]) -> None:
        super().record_request(method, path, query)
        if "/accounts/" in path:
            self.account_reads += 1
            if self.account_reads == self.after:
                self.revoke_tokens(status=self.status)


@pytest.mark.parametrize("status", [403, 401])
async def test_a_token_revoked_mid_pass_is_replaced_and_every_bill_is_sent(status: int) -> None:
    async with RevokingEmulator(after=3, status=status) as m3ter, StripeEmulator() as stripe_emulator:
        m3ter.add_client(CREDS.client_id, CREDS.client_secret, ORG)
        accounts = [m3ter.add_account(ORG, name=f"A{i}", code=f"a{i}", currency="USD") for i in range(6)]
        bills = [
            m3ter.add_bill(ORG, account_id=account, lines=[{"line_item_type": "USAGE", "subtotal": "7.5"}])
            for account in accounts
        ]
        stripe_emulator.add_api_key(STRIPE_KEY)
        # Every Bill reads its Account: the revocation lands mid-pass.
        spec = engine_spec(ORG, accountFilter='currency == "USD"')
        async with open_client(STRIPE_KEY, api_base=stripe_emulator.url) as client:
            for account in accounts:
                await client.v1.customers.create_async(params={"name": account, "metadata": {META_ACCOUNT: account}})
            async with m3ter_source(CREDS, m3ter.url) as source:
                report = await send_pass(
                    spec, source=source, client=client, account_filter=parse_filter(spec.accountFilter), concurrency=2
                )
            invoices = await client.v1.invoices.list_async(params={"limit": 100})
        tokens = m3ter.tokens_issued
    assert m3ter.account_reads >= 3, "the revocation happened during the pass"
    assert report.status is RunStatus.COMPLETE and report.events == []
    assert report.sent == len(bills)
    assert sorted(str(metadata_of(invoice)[META_BILL]) for invoice in invoices.data) == sorted(bills)
    assert tokens == 2, "one new token, shared by the requests that met the revoked one"
