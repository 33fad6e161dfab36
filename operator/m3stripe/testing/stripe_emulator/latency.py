"""How long the emulated Stripe takes to answer: a latency profile, drawn once per request.

Stripe publishes no latency figures (its status page shows availability, its docs none), so the profiles
here are a choice, not a vendor's rule. Issue 22 plans for a quarter to half a second per invoice write;
`long_tailed()` (a log-normal with a median of 250 ms and a p99 of 1.2 s, the tail of a shared service
under load) and `Fixed(0.25)` are the two profiles the benchmarks run at. Every request draws from the
same profile: reads are no faster than writes here, which is the cautious side for a writer that waits
on both.

A profile is set on the emulator (``StripeEmulator(latency=long_tailed())``, ``emulator.latency = ...``),
on its command line (``--latency-profile lognormal:median=0.25,p99=1.2,seed=7``) or through the control
endpoint (``POST /_emulator/latency`` with ``profile=...``); ``latency_seconds`` is the fixed profile.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, Protocol

# z of the 99th percentile of the standard normal distribution (2.326...).
_Z99 = NormalDist().inv_cdf(0.99)
# No drawn latency exceeds this: a reply later than the client's timeout (the operator's is 30 s) would be a
# timeout, which is a fault (faults.Fault.TIMEOUT), not a latency.
DEFAULT_CAP_SECONDS = 10.0


class LatencyProfile(Protocol):
    """Seconds to hold one request before it is served; `median` is the profile's typical value, `mean` its
    average (a log-normal's uncapped)."""

    @property
    def median(self) -> float: ...

    @property
    def mean(self) -> float: ...

    def sample(self) -> float: ...

    def describe(self) -> str: ...


@dataclass(frozen=True)
class Fixed:
    """The same latency for every request (0: none)."""

    seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.seconds < 0 or not math.isfinite(self.seconds):
            raise ValueError(f"a latency must be a finite number of seconds, at least 0: {self.seconds!r}")

    @property
    def median(self) -> float:
        return self.seconds

    @property
    def mean(self) -> float:
        return self.seconds

    def sample(self) -> float:
        return self.seconds

    def describe(self) -> str:
        return f"fixed {self.seconds * 1000:g} ms"


class LogNormal:
    """A long-tailed latency: log-normal with the given median and 99th percentile, seeded, capped at `cap`.

    Draws come from one seeded generator in the order requests arrive, so a run's set of latencies repeats
    while which request gets which depends on arrival order.
    """

    def __init__(
        self, median: float = 0.25, p99: float = 1.2, *, seed: int | None = 0, cap: float = DEFAULT_CAP_SECONDS
    ) -> None:
        if not 0 < median < p99 <= cap:
            raise ValueError(f"a log-normal latency needs 0 < median < p99 <= cap: {median!r}, {p99!r}, {cap!r}")
        self._median = median
        self.p99 = p99
        self.seed = seed
        self.cap = cap
        self.mu = math.log(median)
        self.sigma = math.log(p99 / median) / _Z99
        self._rng = random.Random(seed)

    @property
    def median(self) -> float:
        return self._median

    @property
    def mean(self) -> float:
        """The mean of the (uncapped) distribution: exp(mu + sigma^2 / 2)."""
        return math.exp(self.mu + self.sigma**2 / 2)

    def sample(self) -> float:
        return min(self.cap, self._rng.lognormvariate(self.mu, self.sigma))

    def describe(self) -> str:
        return f"log-normal, median {self._median * 1000:g} ms, p99 {self.p99 * 1000:g} ms"


def long_tailed(*, seed: int | None = 0) -> LogNormal:
    """The issue's planning figure with a tail: LogNormal's defaults, median 250 ms, p99 1.2 s (above the issue's 1 s)."""
    return LogNormal(seed=seed)


def parse(text: str) -> LatencyProfile:
    """A profile from its command-line form.

    ``0.25`` or ``fixed:0.25``: 250 ms on every request. ``lognormal`` (median 0.25, p99 1.2, seed 0) or
    ``lognormal:median=0.25,p99=1.2,seed=7,cap=10``: the long-tailed one.
    """
    kind, _, rest = text.strip().partition(":")
    try:
        if kind == "fixed":
            return Fixed(float(rest))
        if kind in ("lognormal", "long-tailed"):
            options = dict(part.split("=", 1) for part in rest.split(",") if part.strip()) if rest else {}
            unknown = set(options) - {"median", "p99", "seed", "cap"}
            if unknown:
                raise ValueError(f"unknown options {sorted(unknown)}")
            # What is not given keeps LogNormal's own default.
            given: dict[str, Any] = {name: int(v) if name == "seed" else float(v) for name, v in options.items()}
            return LogNormal(**given)
        if not rest:
            return Fixed(float(kind))
    except ValueError as err:
        raise ValueError(f"bad latency profile {text!r}: {err}") from None
    raise ValueError(f"bad latency profile {text!r}: use SECONDS, fixed:SECONDS or lognormal[:median=,p99=,seed=,cap=]")
