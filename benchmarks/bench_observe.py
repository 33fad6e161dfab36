"""What the operator side of a benchmark watches while a pass runs: the gateway's outcomes and the loop's lag."""

from __future__ import annotations

import asyncio
import time
from collections import Counter


class CountingObserver:
    """A StripeObserver that keeps what the gateway saw: statuses, retries, time queued at the limiter."""

    def __init__(self) -> None:
        self.statuses: Counter[int] = Counter()
        self.retries: Counter[str] = Counter()
        self.limiter_waits = 0
        self.limiter_wait_seconds = 0.0
        self.round_trips: list[float] = []

    def request(self, endpoint: str, status: int, seconds: float) -> None:
        self.statuses[status] += 1
        self.round_trips.append(seconds)

    def retry(self, endpoint: str, reason: str) -> None:
        self.retries[reason] += 1

    def rate_limit_wait(self, seconds: float) -> None:
        self.limiter_waits += 1
        self.limiter_wait_seconds += seconds


class LoopLag:
    """How late the engine's event loop runs a timer (50 ms by default): a busy loop is late to read every reply too.

    Each tick wakes the loop, and a wake-up costs the process more CPU than the tick's own work (the rate limit's
    wake-ups were most of the CPU of a request at 100/s: benchmarks/README.md): a pass that sends few requests a
    second would see the ticks in its CPU per request, so both benchmarks tick every 50 ms."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.samples: list[float] = []

    async def run(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(self.interval)
            self.samples.append(max(0.0, time.perf_counter() - before - self.interval))


def peak_rss_bytes(pid: int | str = "self") -> int:
    """A live process's peak RSS (VmHWM in /proc/PID/status, Linux): exec starts it afresh, while ru_maxrss carries
    the parent's peak over a fork and exec (a child of a 400 MiB process reported 413 MiB, its VmHWM 13)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def quantile(samples: list[float], q: float) -> float:
    """The q-quantile of samples (nearest rank below), 0.0 when there are none."""
    if not samples:
        return 0.0
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def quantiles_ms(samples: list[float]) -> str:
    if not samples:
        return "no samples"

    def at(q: float) -> float:
        return 1000 * quantile(samples, q)

    return f"mean {1000 * sum(samples) / len(samples):.1f}, p50 {at(0.5):.1f}, p99 {at(0.99):.1f}, max {at(1.0):.1f} ms"
