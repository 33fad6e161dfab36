"""End to end: the operator process's Stripe requests keep Stripe's contract for the SDK's API version.

The `stack` fixture runs the Stripe emulator in contract mode and fails at teardown on any request
that breaks the SDK's generated parameter types (tests/conftest.py); these scenarios add what only
an operator run can show: the version header on every request, a restricted key's fallback check and
its missing permission, and that no key fragment or account id reaches status, events or the log.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from stripe._api_version import _ApiVersion

from m3stripe.testing.stack import LocalStack, OperatorProcess, wait_for
from tests.support.stack_world import Org

KEY = "sk_test_51contractKeyAAAAwxyz"
RESTRICTED = "rk_test_51contractRestrictedQ9z7"  # may write customers and read invoices, not write them


@pytest.fixture(scope="module")
def operator(stack: LocalStack) -> Iterator[OperatorProcess]:
    with stack.operator(M3STRIPE_SMTP_SECURITY="none", M3STRIPE_SMTP_FROM="operator@example.com") as op:
        yield op
    output = op.output()
    for fragment in (KEY, RESTRICTED, RESTRICTED[-4:]):
        assert fragment not in output, "a Stripe key (or a fragment Stripe echoes) reached the operator's log"


def setup(stack: LocalStack, key: str, **spec: Any) -> tuple[str, str, str]:
    """A namespace, an m3ter organization with one account and one Bill, and an integration; (ns, org, acct)."""
    org = Org(stack, "contract", key)
    account = org.account(country="UK")
    stack.stripe_client(KEY).v1.customers.create(params={"name": "x", "metadata": {"m3ter_account_id": account}})
    lines = [
        {"line_item_type": "STANDING_CHARGE", "subtotal": "100.00", "description": "Platform fee"},
        {"line_item_type": "USAGE", "quantity": 3, "unit_price": "2.50", "description": "API calls"},
    ]
    org.bill(account, lines, purchase_order_number="PO-9")
    ns, body = org.ns, org.spec(**spec)
    stack.kube.create_integration(ns, "sint", body)
    return ns, org.id, account


def first_run(stack: LocalStack, ns: str) -> dict[str, Any]:
    return wait_for(
        lambda: (s := stack.kube.get_integration(ns, "sint").get("status") or {}).get("lastSync") and s,
        timeout=90,
        what=f"the first run of {ns}/sint",
    )


@pytest.fixture(scope="module")
def stripe_account(stack: LocalStack) -> str:
    account = str(stack.call(lambda: stack.stripe.add_api_key(KEY)))
    stack.call(
        lambda: stack.stripe.add_api_key(
            RESTRICTED, account=account, permissions=["rak_customer_write", "rak_invoice_read", "rak_invoiceitem_read"]
        )
    )
    return account


@pytest.mark.parametrize(
    "spec",
    [
        {"poNumberCustomField": "PO number", "collectionMethod": "SendInvoice", "sendDueDate": True},
        {"createStripeInvoice": False},
    ],
    ids=["invoice", "items"],
)
def test_every_request_of_a_pass_carries_the_sdks_version_and_keeps_the_sdks_types(
    stack: LocalStack, operator: OperatorProcess, stripe_account: str, spec: dict[str, Any]
) -> None:
    before = stack.call(lambda: stack.stripe.contract_checked)
    ns, _, _ = setup(stack, KEY, **spec)
    status = first_run(stack, ns)
    assert status["recentRuns"][0]["status"] == "COMPLETE", status
    assert stack.call(lambda: stack.stripe.contract_checked) > before
    versions = stack.call(lambda: dict(stack.stripe.api_versions))
    assert set(versions) == {_ApiVersion.CURRENT}, versions
    assert stack.stripe_contract_violations() == ""


def test_a_write_refused_for_a_missing_permission_is_an_authentication_event_naming_it(
    stack: LocalStack, operator: OperatorProcess, stripe_account: str
) -> None:
    ns, _, _ = setup(stack, RESTRICTED)
    status = first_run(stack, ns)
    # The restricted key cannot read the account; the fallback check passed and learnt the account
    # from Stripe's 403 (it keys the account's shared rate limit).
    assert status.get("stripeAccountId") == stripe_account, status
    events = status["openEvents"]
    assert [e["kind"] for e in events] == ["integration.authentication.error"], events
    message = events[0]["message"]
    assert "rak_invoice_write" in message
    kube_events = wait_for(
        lambda: [e for e in stack.kube.events(ns, "sint") if e["reason"] == "AuthenticationError"],
        what="the AuthenticationError event",
    )
    texts = [message, *(e["message"] for e in kube_events)]
    for text in texts:
        assert stripe_account not in text, text
        assert RESTRICTED[-4:] not in text and RESTRICTED not in text, text
    assert RESTRICTED[-4:] not in json.dumps(status)
