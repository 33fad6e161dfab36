"""The client-side budget of each Stripe account and mode: a leaky bucket for the account, one per endpoint.

Rate limits follow https://docs.stripe.com/rate-limits: a global budget per Stripe account and mode
("Live mode: 100 requests per second", "Sandbox: 25 requests per second") and, on top of it, a
budget per endpoint ("Individual API endpoints (unless otherwise noted): 25 requests per second";
"Stripe considers each named API operation a separate endpoint").
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import itertools

# https://docs.stripe.com/rate-limits: "Individual API endpoints (unless otherwise noted): 25 requests
# per second". None of the endpoints the operator calls is "otherwise noted" (the exceptions listed
# there are the Files, Search, Meter events, Payment Intents updates and Subscriptions APIs).
ENDPOINT_REQUESTS_PER_SECOND = 25
# The same page's global defaults: "Live mode: 100 requests per second", "Sandbox: 25 requests per second".
DEFAULT_REQUESTS_PER_SECOND = {True: 100, False: 25}
# A waiting request is let go with the others whose slots freed within this time, not alone the moment its own slot
# frees: each wake-up of the event loop costs the process more than the request it lets go (at 100 requests/s, a
# third of the CPU of the SDK's requests, benchmarks/sdk_floor.py). Waiting a little longer never sends sooner than
# the bucket allows. An urgent request is still let go the moment a slot frees.
BATCH_SECONDS = 0.05
# Float slack when comparing the bucket's level with its size: a timer set for the moment a slot frees fires then.
_EPSILON = 1e-9
_URGENT_RANK = 0  # a waiter's rank in the heap: urgent ones sort first


def budget_label(account: str, livemode: bool) -> str:
    """The metrics label of one Stripe budget (account and mode): `live.<digest>` or `test.<digest>`.

    The account id is not put in a label in clear (treated as sensitive, as everywhere else here: `scrub`):
    the digest is the first 12 hex digits of its SHA-256, the same digest `status.sync.scope` records
    (m3stripe.domain.progress.scope_id), so `printf %s acct_... | sha256sum | cut -c1-12` finds it.
    """
    return f"{'live' if livemode else 'test'}.{hashlib.sha256(account.encode()).hexdigest()[:12]}"


class Bucket:
    """A leaky bucket of `rate` requests a second, at most `rate` at once (aiolimiter's `AsyncLimiter(rate, 1.0)`),
    whose waiters are served urgent first, then in the order they came, and let go in batches (BATCH_SECONDS).

    Urgent is a request made while holding what other Bills wait for (`domain.ports.URGENT`). Waiting for a slot in
    line behind every other request of the account, or even for the next slot to free, would hold them all up: at
    a quarter second a request and the account's rate nearly used, a customer's invoices would be created a slot's
    wait apart (issue 22). So one slot of the burst is kept for urgent requests (with a rate of 2 or more): the
    others fill the bucket to `rate - 1`, an urgent one to `rate`. The bucket's rate is the same for all.
    aiolimiter serves its waiters in arrival order only, hence this class.
    """

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._reserve = 1.0 if rate >= 2 else 0.0
        self._level = 0.0
        self._checked = 0.0
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._arrivals = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def acquire(self, *, urgent: bool = False) -> None:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            # A bucket outliving its event loop (tests): what waited there can never be served.
            self._loop, self._waiters, self._timer = loop, [], None
        self._leak(loop.time())
        # Only an urgent waiter is ahead of an urgent request (the heap's first waiter is urgent if any is).
        ahead = bool(self._waiters) and (not urgent or self._waiters[0][0] == _URGENT_RANK)
        if not ahead and self._room(urgent):
            self._level += 1
            return
        future: asyncio.Future[None] = loop.create_future()
        heapq.heappush(self._waiters, (_URGENT_RANK if urgent else _URGENT_RANK + 1, next(self._arrivals), future))
        self._serve()
        await future  # cancelled while waiting: `_serve` skips it

    def has_capacity(self, *, urgent: bool = False) -> bool:
        """Whether a request would get a slot now, without waiting."""
        if self._loop is not None:
            self._leak(self._loop.time())
        return not any(not w[2].done() for w in self._waiters) and self._room(urgent)

    def _room(self, urgent: bool) -> bool:
        return self._level + 1 <= self.rate - (0 if urgent else self._reserve) + _EPSILON

    def _leak(self, now: float) -> None:
        self._level = max(0.0, self._level - (now - self._checked) * self.rate)
        self._checked = now

    def _serve(self) -> None:
        loop = self._loop
        assert loop is not None
        self._leak(loop.time())
        while self._waiters:
            rank, _, future = self._waiters[0]
            if not future.done():
                if not self._room(rank == _URGENT_RANK):
                    break
                self._level += 1
                future.set_result(None)
            heapq.heappop(self._waiters)
        if not self._waiters:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            return
        urgent = self._waiters[0][0] == _URGENT_RANK
        delay = (self._level + 1 - self.rate + (0 if urgent else self._reserve)) / self.rate
        when = loop.time() + (delay if urgent else max(delay, BATCH_SECONDS))
        if self._timer is not None:
            if self._timer.when() <= when:
                return  # the wake-up already set comes first (a later arrival does not put off a batch)
            self._timer.cancel()
        self._timer = loop.call_at(when, self._wake)

    def _wake(self) -> None:
        self._timer = None
        self._serve()


class StripeRateLimit:
    """The client-side budget of one Stripe account in one mode: a global bucket and one per endpoint.

    Every integration and every key writing to that account and mode shares it (Stripe counts per
    account, https://docs.stripe.com/rate-limits). Its global rate is the lowest any of its users
    asked for, so no integration's `requestsPerSecond` is exceeded however many share the account.

    An account whose limits Stripe raised ("Stripe may increase rate limits for specific accounts",
    same page) is configured with a `requestsPerSecond` above the mode's default; Stripe does not say
    how a raise applies to the per-endpoint limit, so it is scaled by the same factor (never below 25).
    """

    def __init__(
        self,
        per_second: float,
        endpoint_per_second: float = ENDPOINT_REQUESTS_PER_SECOND,
        *,
        mode_default_per_second: float | None = None,
        budget: str = "",
    ) -> None:
        # Which budget this is, for the metrics (`budget_label`); "" for a limit no registry handed out.
        self.budget = budget
        self._rates: dict[str, float] = {}
        self._mode_default = mode_default_per_second
        self.endpoint_per_second = endpoint_per_second
        # A one-second window at the full rate: no burst above Stripe's per-second limit.
        self._global = Bucket(per_second)
        self._endpoints: dict[str, Bucket] = {}

    @property
    def per_second(self) -> float:
        return self._global.rate

    def use(self, owner: str, per_second: float) -> None:
        self._rates[owner] = per_second
        rate = min(self._rates.values())
        if rate != self._global.rate:
            # Every gateway asks this object on each request, so a new bucket takes effect at once.
            self._global = Bucket(rate)
        if self._mode_default is not None:
            endpoint = ENDPOINT_REQUESTS_PER_SECOND * max(1.0, rate / self._mode_default)
            if endpoint != self.endpoint_per_second:
                self.endpoint_per_second = endpoint
                self._endpoints.clear()

    def endpoint(self, endpoint: str) -> Bucket:
        bucket = self._endpoints.get(endpoint)
        if bucket is None:
            bucket = self._endpoints[endpoint] = Bucket(self.endpoint_per_second)
        return bucket

    async def acquire(self, endpoint: str, *, urgent: bool = False) -> None:
        # The endpoint's budget first: a request waiting for its endpoint holds no global capacity.
        await self.endpoint(endpoint).acquire(urgent=urgent)
        await self._global.acquire(urgent=urgent)

    def time_left(self) -> float | None:
        """Seconds a request acquired now may run before the gateway abandons it; None: unbounded."""
        return None

    def cut_off(self, endpoint: str) -> None:
        """Called when a request outlived `time_left()`: raise what the caller should see."""
        return None


class LimiterRegistry:
    """One StripeRateLimit per (Stripe account, mode): live and test mode have separate budgets."""

    def __init__(self) -> None:
        self._limits: dict[tuple[str, bool], StripeRateLimit] = {}

    def get(self, account: str, livemode: bool, per_second: float, *, owner: str = "") -> StripeRateLimit:
        key = (account, livemode)
        limit = self._limits.get(key)
        if limit is None:
            limit = self._limits[key] = StripeRateLimit(
                per_second,
                mode_default_per_second=DEFAULT_REQUESTS_PER_SECOND[livemode],
                budget=budget_label(account, livemode),
            )
        limit.use(owner or f"rate:{per_second}", per_second)
        return limit
