"""The emulators each in their own process (``python -m m3stripe.testing.stripe_emulator`` and ``.m3ter_emulator``),
seeded, armed, counted and checked over HTTP: the measuring side gets its own cores' worth of scheduling, and
the operator's process holds nothing but the operator.

A `Fleet` is one Stripe emulator and one m3ter emulator; each `Run` seeded on them has one Stripe account and
one m3ter Organization per integration, each account's Customers made through Stripe's API as a person would
make them. Runs share the processes (each starts in a second or so) but no account or Organization.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from typing import IO, Any

import httpx

from bench_emulators import (
    CURRENCY,
    M3TER_CLIENT_SECRET,
    Mode,
    Verification,
    _line_amounts,
    bill_lines,
    check_stripe_state,
    create_customers,
    expected_amounts,
)

START_TIMEOUT_SECONDS = 60.0
FIXTURE_CHUNK = 1000


@dataclasses.dataclass(frozen=True)
class Integration:
    """What one integration of the fleet needs to run a pass (it crosses to the operator's process as JSON)."""

    id: str
    org: str
    client_id: str
    client_secret: str
    stripe_key: str
    stripe_account: str


@dataclasses.dataclass
class Expected:
    """What Stripe must hold for one integration after its pass."""

    bills: dict[str, tuple[str, list[int]]] = dataclasses.field(default_factory=dict)  # id -> (account, amounts)
    customer_of: dict[str, str] = dataclasses.field(default_factory=dict)  # m3ter account id -> Stripe customer


def cpu_seconds_of(pid: int) -> float:
    """User + system CPU of a live process (Linux /proc), in seconds."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    # After the command name: state is field 3, utime 14 and stime 15 (proc(5)); fields[0] is field 3.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class EmulatorProcess:
    """One emulator as `python -m <module> --port 0 ...`; its first line of output is its URL."""

    def __init__(self, module: str, args: Sequence[str], log: IO[bytes]) -> None:
        self.module = module
        self.process = subprocess.Popen(
            [sys.executable, "-m", module, "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        self.url = ""

    async def started(self) -> str:
        assert self.process.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(self.process.stdout.readline), START_TIMEOUT_SECONDS)
        if not line.startswith("http://"):
            raise RuntimeError(f"{self.module} did not start (exit {self.process.poll()}); see its log")
        self.url = line.strip()
        return self.url

    @property
    def cpu_seconds(self) -> float:
        return cpu_seconds_of(self.process.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


@dataclasses.dataclass
class Run:
    """The integrations of one run, and what Stripe must hold for each after its pass."""

    integrations: list[Integration] = dataclasses.field(default_factory=list)
    expected: list[Expected] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class _Armed:
    """The counters when the measured pass started (`Fleet.arm`)."""

    stats: dict[str, Any]
    stripe_cpu_seconds: float
    m3ter_cpu_seconds: float
    violations: int


@dataclasses.dataclass(frozen=True)
class FleetStats:
    stripe_requests: int
    stripe_statuses: dict[str, int]
    stripe_endpoints: dict[str, int]
    stripe_cpu_seconds: float
    m3ter_cpu_seconds: float


class Fleet:
    """The Stripe and m3ter emulators in two processes, seeded (`seed`) with a Stripe account and an m3ter
    Organization per integration."""

    def __init__(
        self,
        *,
        contract_mode: bool = True,
        m3ter_latency: float = 0.0,
        seed: int = 2026,
        locks: str = "strict",
        lock_timeouts: str = "saved",
    ) -> None:
        self._log = tempfile.TemporaryFile()  # noqa: SIM115  (closed in close(), with the processes)
        stripe_args = ["--seed", str(seed), "--locks", locks, "--lock-timeouts", lock_timeouts]
        stripe_args += ["--contract-mode"] if contract_mode else []
        self.stripe = EmulatorProcess("m3stripe.testing.stripe_emulator", stripe_args, self._log)
        self.m3ter = EmulatorProcess("m3stripe.testing.m3ter_emulator", ["--latency", str(m3ter_latency)], self._log)
        self._armed = _Armed({}, 0.0, 0.0, 0)

    async def __aenter__(self) -> Fleet:
        try:
            await asyncio.gather(self.stripe.started(), self.m3ter.started())
        except BaseException:
            self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.stripe.stop()
        self.m3ter.stop()
        self._log.close()

    def log(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-4000:]

    async def seed(
        self, *, integrations: int, customers: int, bills: int, lines: int, run: str, integration_ids: Sequence[str]
    ) -> Run:
        """Per integration: an m3ter Organization with `customers` Accounts and `bills` Bills (round-robin over the
        Accounts), a Stripe account whose Customers carry the Account ids. No rate limit and no latency yet."""
        seeded = Run()
        async with httpx.AsyncClient(timeout=120) as http:
            fixtures: dict[str, Any] = {"clients": [], "accounts": []}
            for i in range(integrations):
                org = _organization(run, i)
                fixtures["clients"].append(
                    {"client_id": _client(run, i), "client_secret": M3TER_CLIENT_SECRET, "organization_id": org}
                )
                for c in range(customers):
                    fixtures["accounts"].append(
                        {
                            "organization_id": org,
                            "name": f"Account {c}",
                            "code": f"acct-{c:05d}",
                            "currency": CURRENCY,
                        }
                    )
            accounts = _ok(await http.post(f"{self.m3ter.url}/_emulator/fixtures", json=fixtures))["accounts"]
            bills_fixture: dict[str, Any] = {"bills": []}
            amounts: list[list[str]] = []
            for i in range(integrations):
                own = accounts[i * customers : (i + 1) * customers]
                for n in range(bills):
                    subtotals = _line_amounts(i * bills + n, lines)
                    amounts.append(subtotals)
                    bills_fixture["bills"].append(
                        {
                            "organization_id": _organization(run, i),
                            "account_id": own[n % customers],
                            "lines": bill_lines(subtotals),
                        }
                    )
            bill_ids: list[str] = []
            for start in range(0, len(bills_fixture["bills"]), FIXTURE_CHUNK):  # aiohttp takes 1 MiB a body
                chunk = {"bills": bills_fixture["bills"][start : start + FIXTURE_CHUNK]}
                bill_ids += _ok(await http.post(f"{self.m3ter.url}/_emulator/fixtures", json=chunk))["bills"]
            for i in range(integrations):
                key = f"sk_test_51bench{run}x{i:04d}LATENCY"
                account = f"acct_bench{run}{i:04d}"
                _ok(await http.post(f"{self.stripe.url}/_emulator/keys", data={"api_key": key, "account": account}))
                expected = Expected()
                for n in range(bills):
                    bill_id = bill_ids[i * bills + n]
                    expected.bills[bill_id] = (
                        accounts[i * customers + n % customers],
                        expected_amounts(amounts[i * bills + n]),
                    )
                seeded.integrations.append(
                    Integration(
                        integration_ids[i],
                        _organization(run, i),
                        _client(run, i),
                        M3TER_CLIENT_SECRET,
                        key,
                        account,
                    )
                )
                seeded.expected.append(expected)
        await asyncio.gather(
            *(
                self._create_customers(integration, accounts[i * customers : (i + 1) * customers], seeded.expected[i])
                for i, integration in enumerate(seeded.integrations)
            )
        )
        return seeded

    async def _create_customers(self, integration: Integration, account_ids: list[str], expected: Expected) -> None:
        expected.customer_of.update(await create_customers(integration.stripe_key, self.stripe.url, account_ids))

    async def arm(self, *, rps: float, endpoint_rps: float, latency: str) -> None:
        """The limits and the latency profile on, the counters read: the measured pass starts now."""
        async with httpx.AsyncClient(base_url=self.stripe.url) as http:
            _ok(await http.post("/_emulator/rate_limit", data={"per_second": rps, "endpoint_per_second": endpoint_rps}))
            _ok(await http.post("/_emulator/latency", data={"profile": latency}))
            stats = _ok(await http.get("/_emulator/stats"))
            violations = len(_ok(await http.get("/_emulator/contract"))["violations"])
        self._armed = _Armed(stats, self.stripe.cpu_seconds, self.m3ter.cpu_seconds, violations)

    async def disarm(self) -> FleetStats:
        """The limits and the latency off, so the reads that verify the pass are not refused; what the pass cost since
        `arm`: Stripe requests (429s included) and each emulator's CPU."""
        async with httpx.AsyncClient(base_url=self.stripe.url) as http:
            stats = _ok(await http.get("/_emulator/stats"))
            _ok(await http.post("/_emulator/rate_limit", data={"per_second": ""}))
            _ok(await http.post("/_emulator/latency", data={"profile": "0"}))
        before = self._armed.stats
        return FleetStats(
            stripe_requests=int(stats["request_count"]) - int(before["request_count"]),
            stripe_statuses=_since(stats["statuses"], before["statuses"]),
            stripe_endpoints=_since(stats["endpoints"], before["endpoints"]),
            stripe_cpu_seconds=self.stripe.cpu_seconds - self._armed.stripe_cpu_seconds,
            m3ter_cpu_seconds=self.m3ter.cpu_seconds - self._armed.m3ter_cpu_seconds,
        )

    async def verify(self, run: Run, *, mode: Mode) -> list[Verification]:
        """Each integration's Stripe account against its Bills (bench_emulators.check_stripe_state), and the
        contract violations since `arm`."""
        async with httpx.AsyncClient(base_url=self.stripe.url, timeout=300) as http:
            contract = _ok(await http.get("/_emulator/contract"))["violations"][self._armed.violations :]
            violations = [f"{v['method']} {v['path']}: {'; '.join(v['problems'])}" for v in contract]
            results = []
            for integration, expected in zip(run.integrations, run.expected, strict=True):
                state = _ok(
                    await http.get(
                        "/_emulator/state", params={"account": integration.stripe_account, "livemode": "false"}
                    )
                )
                results.append(
                    check_stripe_state(
                        state,
                        expected=expected.bills,
                        customer_of=expected.customer_of,
                        mode=mode,
                        integration_id=integration.id,
                        violations=violations,
                    )
                )
        return results


def _since(now: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in now.items() if v - before.get(k, 0)}


def _organization(run: str, i: int) -> str:
    """The m3ter Organization of the run's `i`th integration."""
    return f"org-{run}-{i:02d}"


def _client(run: str, i: int) -> str:
    """The m3ter API client of the run's `i`th integration."""
    return f"client-{run}-{i:02d}"


def _ok(response: httpx.Response) -> Any:
    if response.status_code != 200:
        raise RuntimeError(f"{response.request.method} {response.request.url}: {response.status_code} {response.text}")
    return response.json()
