"""The idempotency key each attempt of a write is sent with: the write's own key, or one derived from it once Stripe
has saved a refusal under that key.

Stripe saves the status and body of the first request made with a key "after endpoint execution begins", and answers
every later request with the key the same, "including 500 errors" (https://docs.stripe.com/api/idempotent_requests).
Whether that holds for a 429 `lock_timeout`, Stripe does not say. Its SDKs retry a lock timeout with the same key
when the API asks them to (`Stripe-Should-Retry: true`: "advise us to retry (eg; in cases of lock timeouts)",
stripe-python's _http_client.py), yet one integration saw a lock_timeout replayed under its key
(`Idempotent-Replayed: true`, https://github.com/useautumn/autumn/pull/3491). Were it saved, every retry with the
key would get the same 429, and the Bill would fail for the whole pass.

A 429 is a refusal: nothing was done. So once Stripe says it saved one under the key, the write goes on under a key
derived from it (`<key>-r<n>`, the same on every attempt that follows, so each stays idempotent). Stripe says so by
a replay (`Idempotent-Replayed: true`, which proves the key's one execution was that refusal), or by
`Stripe-Should-Retry: false` ("The API may ask us not to retry (eg; if doing so would be a no-op)", the same file).
The latter is not taken as proof when an earlier attempt under the key had an unknown outcome (a network error, a
5xx, a 409): the key is kept, and the write ends for this pass; the next pass lists Stripe first and uses new keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MAX_KEY = 255  # Stripe's limit (https://docs.stripe.com/api/idempotent_requests)


def _header(headers: Mapping[str, Any] | None, name: str) -> str | None:
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

    def answered(self, key: str, status: int, headers: Mapping[str, Any] | None) -> bool:
        """Record an attempt's failed answer (`status` 0 for a network error); whether the write now goes on under a
        new key, because Stripe saved a refusal under the one it was sent with."""
        sent = self.sent(key)
        if status == 429:
            replayed = _header(headers, "Idempotent-Replayed") == "true"
            no_op = _header(headers, "Stripe-Should-Retry") == "false" and sent not in self._uncertain
            if replayed or no_op:
                renewals = self._derived.get(key, (0, key))[0] + 1
                suffix = f"-r{renewals}"
                self._derived[key] = (renewals, key[: MAX_KEY - len(suffix)] + suffix)
                return True
        elif status == 0 or status == 409 or status >= 500:
            self._uncertain.add(sent)
        return False
