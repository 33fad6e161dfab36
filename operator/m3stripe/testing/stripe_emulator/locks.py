"""Stripe's object locks: a write to an object another request is still writing is answered 429 `lock_timeout`.

Stripe: "This object cannot be accessed right now because another API request or Stripe process is currently
accessing it. If you see this error intermittently, retry the request. If you see this error frequently and are
making multiple concurrent requests to a single object, make your requests serially or at a lower rate."
(https://docs.stripe.com/error-codes#lock-timeout; a 429, https://docs.stripe.com/rate-limits). The API "may ...
advise us to retry (eg; in cases of lock timeouts)" with Stripe-Should-Retry (the SDK's _http_client.py).

Which objects a request locks, and for how long, Stripe does not say. Both readings hold a write's objects for its
whole duration (its latency included), refuse a second write to one of them at once, without waiting, and lock
nothing for reads:
- "strict", the default (at least as strict as Stripe could be): a write locks every object it changes, an invoice
  for its writes (lines, update, finalize, delete, an item attached to it), a customer for creating its invoice or a
  pending invoice item (both change what the customer holds), an invoice item for its own update or deletion;
- "addressed": a write locks only the objects it names, the one in its path and the invoice an item is attached to
  (its lines and totals change). Creating an invoice or a pending item for a customer locks nothing that exists.
  That is an inference, not Stripe's word: none of the customer's fields in the SDK's `Customer` type
  (stripe/_customer.py) is said to change when a draft or a pending item is created. It is the reading under which
  a customer's invoices may be created concurrently: the benchmarks measure what the operator gains there
  (`domain.customer_writes` learns which reading an account answers with).

Whether Stripe saves a lock_timeout under the request's idempotency key, it does not say either. It saves a result
"after endpoint execution begins", and answers every retry with the key the same, "including 500 errors"
(https://docs.stripe.com/api/idempotent_requests); its SDKs retry a lock timeout with the same key when told to
(`Stripe-Should-Retry: true`), yet one integration saw one replayed under its key (`Idempotent-Replayed: true`,
https://github.com/useautumn/autumn/pull/3491). So by default (`refusals_saved`, at least as strict as Stripe could
be) a refused write that carries a key saves its 429 under it, with `Stripe-Should-Retry: false` (the API asks not
to retry "if doing so would be a no-op", stripe-python's _http_client.py), and every later request with the key gets
that 429 back. Either way, a refused write whose key already has a saved result is replayed, and one whose key is
in flight is a 409: Stripe's idempotency layer answers those without running the endpoint. (A replay whose objects
are free still holds them for its latency, as any write does: stricter than Stripe need be.)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any, Literal

from .errors import StripeError

LOCK_TIMEOUT = (
    "This object cannot be accessed right now because another API request or Stripe process is currently accessing "
    "it. If you see this error intermittently, retry the request. If you see this error frequently and are making "
    "multiple concurrent requests to a single object, make your requests serially or at a lower rate."
)

Key = tuple[str, bool, str, str]  # (account, livemode, object kind, object id)
Reading = Literal["strict", "addressed"]
READINGS: tuple[Reading, ...] = ("strict", "addressed")


def lock_timeout(*, saved: bool = False) -> StripeError:
    """The refusal; one saved under the request's idempotency key says retrying with the key is pointless."""
    return StripeError(
        429, LOCK_TIMEOUT, code="lock_timeout", headers={"Stripe-Should-Retry": "false" if saved else "true"}
    )


def objects_written(
    method: str, path: str, params: Mapping[str, Any], reading: Reading = "strict"
) -> list[tuple[str, str]]:
    """The objects a request locks under a reading, as (kind, id); none for reads."""
    if method not in ("POST", "DELETE"):
        return []
    parts = [p for p in path.split("/") if p][1:]  # without the "v1"
    if not parts:
        return []
    if parts[0] == "invoices":
        if len(parts) == 1:
            return _created_for(params, reading)
        return [("invoice", parts[1])]
    if parts[0] == "invoiceitems":
        if len(parts) == 1:
            if params.get("invoice"):
                return [("invoice", str(params["invoice"]))]
            return _created_for(params, reading)
        return [("invoiceitem", parts[1])]
    if parts[0] == "customers" and len(parts) == 2:
        return [("customer", parts[1])]
    return []


def _created_for(params: Mapping[str, Any], reading: Reading) -> list[tuple[str, str]]:
    """What creating an invoice or a pending item locks: its customer under the strict reading, nothing otherwise."""
    customer = params.get("customer")
    return [("customer", str(customer))] if customer and reading == "strict" else []


class ObjectLocks:
    """The objects writes in flight hold, per account and mode."""

    def __init__(self, reading: Reading = "strict", *, refusals_saved: bool = True) -> None:
        if reading not in READINGS:
            raise ValueError(f"unknown lock reading {reading!r}: one of {', '.join(READINGS)}")
        self.reading: Reading = reading
        self.refusals_saved = refusals_saved  # a refusal is saved under the request's idempotency key
        self._held: set[Key] = set()
        self.refused = 0  # lock_timeout answers given (replays of a saved one not counted), for tests and benchmarks

    @contextlib.contextmanager
    def holding(self, account: str, livemode: bool, objects: list[tuple[str, str]]) -> Iterator[None]:
        keys = [(account, livemode, kind, object_id) for kind, object_id in objects]
        if any(key in self._held for key in keys):
            raise lock_timeout()
        self._held.update(keys)
        try:
            yield
        finally:
            self._held.difference_update(keys)
