"""Stripe's rate limits: its documented figures, and a per-account token bucket (``per_second`` tokens a
second, bursts of up to one second's worth)."""

from __future__ import annotations

import math
from collections.abc import Callable

# https://docs.stripe.com/rate-limits: "Live mode: 100 requests per second", "Sandbox: 25 requests per
# second", "Individual API endpoints (unless otherwise noted): 25 requests per second"; the global
# limit is per Stripe account and mode, the endpoint one per "named API operation".
STRIPE_LIVE_PER_SECOND = 100.0
STRIPE_TEST_PER_SECOND = 25.0
STRIPE_ENDPOINT_PER_SECOND = 25.0


class TokenBucket:
    def __init__(self, per_second: float, clock: Callable[[], float]) -> None:
        if per_second <= 0:
            raise ValueError("per_second must be positive (or None to disable rate limiting)")
        self.rate = per_second
        self.capacity = max(per_second, 1.0)
        self.tokens = self.capacity
        self.clock = clock
        self.updated = clock()

    def take(self) -> float:
        """Take a token; 0.0 when granted, else the seconds until one is available."""
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


def retry_after_seconds(wait: float) -> int:
    return max(1, math.ceil(wait))
