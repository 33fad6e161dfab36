"""Stripe's object locks: a write to an object another request is still writing is answered 429 `lock_timeout`.

Stripe: "This object cannot be accessed right now because another API request or Stripe process is currently
accessing it. If you see this error intermittently, retry the request. If you see this error frequently and are
making multiple concurrent requests to a single object, make your requests serially or at a lower rate."
(https://docs.stripe.com/error-codes#lock-timeout; a 429, https://docs.stripe.com/rate-limits). The API "may ...
advise us to retry (eg; in cases of lock timeouts)" with Stripe-Should-Retry (the SDK's _http_client.py).

Which objects a request locks, and for how long, Stripe does not say. The emulator takes the strict reading: a
write holds every object it changes for its whole duration (its latency included), and a second write to one of
them is refused at once, without waiting: an invoice for its writes (lines, update, finalize, delete, an item
attached to it), a customer for creating its invoice or a pending invoice item (both change what the customer
holds), an invoice item for its own update or deletion. Reads lock nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from .errors import StripeError

LOCK_TIMEOUT = (
    "This object cannot be accessed right now because another API request or Stripe process is currently accessing "
    "it. If you see this error intermittently, retry the request. If you see this error frequently and are making "
    "multiple concurrent requests to a single object, make your requests serially or at a lower rate."
)

Key = tuple[str, bool, str, str]  # (account, livemode, object kind, object id)


def lock_timeout() -> StripeError:
    return StripeError(429, LOCK_TIMEOUT, code="lock_timeout", headers={"Stripe-Should-Retry": "true"})


def objects_written(method: str, path: str, params: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The objects a request changes, as (kind, id); none for reads."""
    if method not in ("POST", "DELETE"):
        return []
    parts = [p for p in path.split("/") if p][1:]  # without the "v1"
    if not parts:
        return []
    if parts[0] == "invoices":
        if len(parts) == 1:
            customer = params.get("customer")
            return [("customer", str(customer))] if customer else []
        return [("invoice", parts[1])]
    if parts[0] == "invoiceitems":
        if len(parts) == 1:
            if params.get("invoice"):
                return [("invoice", str(params["invoice"]))]
            customer = params.get("customer")
            return [("customer", str(customer))] if customer else []
        return [("invoiceitem", parts[1])]
    if parts[0] == "customers" and len(parts) == 2:
        return [("customer", parts[1])]
    return []


class ObjectLocks:
    """The objects writes in flight hold, per account and mode."""

    def __init__(self) -> None:
        self._held: set[Key] = set()
        self.refused = 0  # lock_timeout answers given, for tests and benchmarks

    @contextlib.contextmanager
    def holding(self, account: str, livemode: bool, objects: list[tuple[str, str]]) -> Iterator[None]:
        keys = [(account, livemode, kind, object_id) for kind, object_id in objects]
        if any(key in self._held for key in keys):
            self.refused += 1
            raise lock_timeout()
        self._held.update(keys)
        try:
            yield
        finally:
            self._held.difference_update(keys)
