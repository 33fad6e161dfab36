"""A stateful emulator of the Stripe API endpoints the operator uses, for the official stripe SDK.

Point ``stripe.StripeClient(key, base_addresses={"api": emulator.url})`` at it::

    async with StripeEmulator() as emulator:
        account = emulator.add_api_key("sk_test_123")
        client = stripe.StripeClient("sk_test_123", base_addresses={"api": emulator.url})
        customer = await client.v1.customers.create_async(params={"email": "a@example.com"})
        emulator.inject(Fault.DROP_AFTER_WRITE, path_prefix="/v1/invoiceitems")
        emulator.state(account)["invoice_items"]

It speaks form-encoded requests with bracket nesting, answers Stripe's error envelopes (unknown and
missing parameters, ``resource_missing``, invalid keys), honours idempotency keys, lists with cursor
pagination, enforces the invoice lifecycle and currency rules, models Stripe Tax (tax settings and
registrations, a customer's tax location, automatic tax on invoices: tax.py; tests set rates and the
Dashboard-only settings with ``set_tax_settings``, ``set_tax_rate``, ``add_tax_registration``, ...), and
can rate-limit, add latency (a fixed one or a long-tailed profile: latency.py) and inject faults.
Run ``python -m m3stripe.testing.stripe_emulator --help`` to serve it from another process.
"""

from .app import ContractViolation, RequestRecord
from .errors import StripeError
from .faults import Fault
from .latency import Fixed, LatencyProfile, LogNormal, long_tailed
from .server import AccountSnapshot, StripeEmulator

__all__ = [
    "AccountSnapshot",
    "ContractViolation",
    "Fault",
    "Fixed",
    "LatencyProfile",
    "LogNormal",
    "RequestRecord",
    "StripeEmulator",
    "StripeError",
    "long_tailed",
]
