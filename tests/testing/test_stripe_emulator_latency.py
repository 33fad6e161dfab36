"""The Stripe emulator's latency profiles: fixed and long-tailed, drawn per request after the rate limiter.

No test here asserts on how long a request took: a scripted profile says which request waits how long, and the
order in which replies arrive (or whether a draw happened at all) shows where the latency applies.
"""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import AsyncIterator

import httpx
import pytest

from m3stripe.testing.stripe_emulator import Fixed, LogNormal, StripeEmulator, long_tailed
from m3stripe.testing.stripe_emulator.__main__ import _parser
from m3stripe.testing.stripe_emulator.latency import parse

KEY = "sk_test_latencyProfiles0001"


class Scripted:
    """A profile that hands out the given latencies in order (then 0) and counts its draws."""

    def __init__(self, *seconds: float) -> None:
        self.queue = list(seconds)
        self.draws = 0
        self.drawn = asyncio.Event()

    @property
    def median(self) -> float:
        return 0.0

    @property
    def mean(self) -> float:
        return 0.0

    def sample(self) -> float:
        self.draws += 1
        self.drawn.set()
        return self.queue.pop(0) if self.queue else 0.0

    def describe(self) -> str:
        return "scripted"


@pytest.fixture
async def emulator() -> AsyncIterator[StripeEmulator]:
    async with StripeEmulator(seed=5) as emu:
        emu.add_api_key(KEY)
        yield emu


@pytest.fixture
async def http(emulator: StripeEmulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=emulator.url, headers={"Authorization": f"Bearer {KEY}"}) as client:
        yield client


def test_the_long_tailed_profile_has_the_median_and_p99_it_is_given_and_repeats_with_its_seed() -> None:
    profile = long_tailed()  # median 250 ms, p99 1.2 s: the planning figure with a tail above 1 s
    draws = [profile.sample() for _ in range(20_000)]
    cuts = statistics.quantiles(draws, n=100)
    assert cuts[49] == pytest.approx(0.25, rel=0.05)
    assert cuts[98] == pytest.approx(1.2, rel=0.1) and cuts[98] > 1.0
    assert max(draws) <= profile.cap
    assert statistics.fmean(draws) == pytest.approx(profile.mean, rel=0.05)
    again = long_tailed(seed=3)
    first = long_tailed(seed=3)
    assert [first.sample() for _ in range(5)] == [again.sample() for _ in range(5)]


def test_profiles_parse_from_their_command_line_form() -> None:
    assert parse("0.25") == Fixed(0.25) and parse("fixed:0.05") == Fixed(0.05)
    tail = parse("lognormal:median=0.3,p99=2,seed=9,cap=5")
    assert isinstance(tail, LogNormal)
    assert (tail.median, tail.p99, tail.seed, tail.cap) == (0.3, 2.0, 9, 5.0)
    assert isinstance(parse("lognormal"), LogNormal) and parse("lognormal").median == 0.25
    for bad in ("fast", "fixed:-1", "lognormal:median=2,p99=1", "lognormal:mean=1", "fixed:", "lognormal:p99"):
        with pytest.raises(ValueError, match="bad latency profile"):
            parse(bad)
    args = _parser().parse_args(["--latency-profile", "lognormal:seed=4", "--contract-mode"])
    assert isinstance(args.latency_profile, LogNormal) and args.contract_mode
    with pytest.raises(SystemExit):
        _parser().parse_args(["--latency", "0.1", "--latency-profile", "0.2"])


def test_latency_seconds_is_the_fixed_profile() -> None:
    emulator = StripeEmulator(latency_seconds=0.05)
    assert emulator.latency == Fixed(0.05) and emulator.latency_seconds == 0.05
    emulator.latency = long_tailed()
    assert emulator.latency_seconds == 0.25  # a profile's median
    emulator.latency_seconds = 0
    assert emulator.latency == Fixed(0.0)


async def test_each_request_waits_on_its_own(emulator: StripeEmulator, http: httpx.AsyncClient) -> None:
    emulator.latency = profile = Scripted(1.5)  # the first request is held for 1.5 s, the next not at all
    slow = asyncio.create_task(http.get("/v1/customers"))
    await asyncio.wait_for(profile.drawn.wait(), 10)
    quick = await http.post("/v1/customers", data={"name": "served while the other waits"})
    assert quick.status_code == 200 and not slow.done()
    assert (await slow).json()["data"][0]["id"] == quick.json()["id"]  # it was served after the write


async def test_a_rate_limited_request_is_answered_without_latency(
    emulator: StripeEmulator, http: httpx.AsyncClient
) -> None:
    emulator.set_rate_limit(1)
    emulator.latency = profile = Scripted()
    assert (await http.get("/v1/customers")).status_code == 200
    assert (await http.get("/v1/customers")).status_code == 429
    assert (
        profile.draws == 1
    )  # refused at once (the emulator's choice: Stripe is silent): only the one served took time
    assert (await http.get("/v1/customers", headers={"Authorization": "Bearer sk_test_unknown"})).status_code == 401
    assert profile.draws == 1


async def test_the_control_endpoints_set_the_latency_and_the_endpoint_limit(emulator: StripeEmulator) -> None:
    async with httpx.AsyncClient(base_url=emulator.url) as control:
        answer = await control.post("/_emulator/latency", data={"profile": "lognormal:median=0.2,p99=1.5"})
        assert answer.json() == {"latency": "log-normal, median 200 ms, p99 1500 ms"}
        assert (await control.get("/_emulator/stats")).json()["latency"] == "log-normal, median 200 ms, p99 1500 ms"
        assert (await control.post("/_emulator/latency", data={"profile": "slow"})).status_code == 400
        limits = await control.post("/_emulator/rate_limit", data={"per_second": "100", "endpoint_per_second": "60"})
        assert limits.status_code == 200
        stats = (await control.get("/_emulator/stats")).json()
        assert stats["rate_limits"] == {"live": 100.0, "test": 100.0, "endpoint": 60.0}
        assert stats["locks"] == {"reading": "strict", "refusals_saved": True, "refused": 0}
        # 0 turns a limit off, as the command line's --rate-limit 0 does; a negative one is refused.
        assert (await control.post("/_emulator/rate_limit", data={"per_second": "0"})).status_code == 200
        assert (await control.get("/_emulator/stats")).json()["rate_limits"]["test"] is None
        assert (await control.post("/_emulator/rate_limit", data={"per_second": "-1"})).status_code == 400
    assert isinstance(emulator.latency, LogNormal) and emulator.latency.median == 0.2
