"""The idempotency key each attempt of a write is sent with: the write's own key, or one derived from it once Stripe
has saved a refusal under that key.

Stripe saves the status and body of the first request made with a key "after endpoint execution begins", and answers
every later request with the key the same, "including 500 errors" (https://docs.stripe.com/api/idempotent_requests).
"We save results only after the execution of an endpoint begins": nothing is saved when the parameters fail
validation, or when the request conflicts with another executing concurrently, since no endpoint began
(https://docs.stripe.com/idempotency). Whether a 429 `lock_timeout` is such a conflict, or a result of an endpoint
that began, Stripe does not say: that sentence may speak only of two requests with one key (a 409). Its SDKs retry a
lock timeout with the same key when the API asks them to (`Stripe-Should-Retry: true`: "advise us to retry (eg; in
cases of lock timeouts)", stripe-python's _http_client.py), yet one integration reports "a 429 lock_timeout with
idempotent-replayed: true: Stripe had cached the lock_timeout from attempt 1 under our deterministic ... key and
replayed it" (https://github.com/useautumn/autumn/pull/3491). Were it saved, every retry with the key would get the
same 429.

What this rests on: a 429 is a refusal, nothing was done ("This object cannot be accessed right now because another
API request or Stripe process is currently accessing it", https://docs.stripe.com/error-codes#lock-timeout; a rate
limit refuses the request, https://docs.stripe.com/rate-limits). So once Stripe says it saved one under the key, the
write goes on under a key derived from it (`<key>-r<n>`, the same for every attempt that follows, so each stays
idempotent). Stripe says so by a replay of a 429 (`Idempotent-Replayed: true`, which shows that the key's one
execution was that refusal), or by a `lock_timeout` with `Stripe-Should-Retry: false`: the SDK expects that header
"to be false in most cases when a 500 is returned, since our idempotency framework would typically replay it
anyway", and the API sends it when retrying "would be a no-op" (the same file). The latter is not taken as proof
after an attempt under the key whose outcome is unknown (a network error, a 5xx, a 409): the key is kept. The call
then ends, but for a customer's write made without the customer's lock, which the writer makes once more holding
it, with the same key (domain.customer_writes): a replay then renews it. Either way, the next pass lists Stripe
first and uses new keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def header(headers: Mapping[str, Any] | None, name: str) -> str | None:
    """A reply header's value, whatever its case (the SDK's errors keep the transport's headers as they came)."""
    for key, value in (headers or {}).items():
        if key.lower() == name.lower():
            return str(value)
    return None


class IdempotencyKeys:
    """The keys a pass's writes are sent with (one gateway per pass)."""

    def __init__(self) -> None:
        self._derived: dict[str, tuple[int, str]] = {}  # a write's own key -> (renewals, the key sent now)
        self._uncertain: set[str] = set()  # keys an attempt was sent with whose outcome is unknown

    def sent(self, key: str) -> str:
        """The key the next attempt of the write whose own key is `key` carries."""
        derived = self._derived.get(key)
        return derived[1] if derived is not None else key

    def answered(self, key: str, sent: str, status: int, code: str | None, headers: Mapping[str, Any] | None) -> bool:
        """Record the failed answer (`status` 0 for a network error) to an attempt of the write whose own key is
        `key`, sent with `sent`; whether the write now goes on under a new key, because Stripe saved a refusal under
        the one it was sent with."""
        if status == 429:
            replayed = header(headers, "Idempotent-Replayed") == "true"
            no_op = (
                code == "lock_timeout"
                and header(headers, "Stripe-Should-Retry") == "false"
                and sent not in self._uncertain
            )
            if replayed or no_op:
                # Once per key spent. Defensive: a write's attempts are made one at a time, by the one task that writes
                # its Bill, so no answer to an attempt made with an older key comes after a renewal.
                if sent == self.sent(key):
                    renewals = self._derived.get(key, (0, key))[0] + 1
                    self._derived[key] = (renewals, f"{key}-r{renewals}")
                return True
        elif status == 0 or status == 409 or status >= 500:
            self._uncertain.add(sent)
        return False
