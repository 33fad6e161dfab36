"""Throughput at Stripe's real latency (issue 22): the sync engine against a Stripe that takes a quarter second.

Run from the repository root with the project's virtualenv::

    python benchmarks/latency_throughput.py                       # every scenario at both profiles (full sizes)
    python benchmarks/latency_throughput.py --quick               # the same at small sizes, a smoke run
    python benchmarks/latency_throughput.py --scenario few --profiles fixed:0.05,fixed:0.25,lognormal

Scenarios (``--scenario``; sizes per integration, ``--quick`` in brackets):

* ``many``: many customers, 3,000 Bills over 1,000 customers [300 over 100] at 100 requests/s.
* ``few``: 2 customers x 500 Bills [x 15] at 25 requests/s, Stripe's test-mode limit.
* ``accounts-8``: 8 integrations on 8 Stripe accounts, each 500 Bills over 50 customers [50 over 10] at 25/s.
* ``accounts-20``: 20 integrations on 20 Stripe accounts, each 300 Bills over 30 customers [30 over 10] at 25/s
  (500 requests/s in all, from one operator process).

Each runs at every latency profile of ``--profiles`` (the Stripe emulator's ``latency.parse`` forms; default
``fixed:0.25`` and ``lognormal``, a median of 250 ms and a p99 of 1.2 s: Stripe publishes no latency, issue 22
plans for a quarter to half a second per invoice write).

How a run is measured
---------------------
The Stripe and m3ter emulators each run in their own process (``python -m m3stripe.testing.stripe_emulator``,
``... .m3ter_emulator``; bench_processes.py), seeded over HTTP: one Stripe account and one m3ter Organization
per integration. The Stripe emulator then enforces the integrations' rate limit (and the per-endpoint one, as
the client computes it) and draws each served request's latency from the profile; m3ter answers after a
fixed ``--m3ter-latency``. The passes, one per integration and all at once, run in a fresh interpreter
(bench_fleet.py) built as the operator builds them, with the operator's default concurrency; its CPU time
over the passes is the operator's. Afterwards every Stripe account is checked: exactly one draft invoice per
Bill with the right customer, lines and total (or the Bill's lines as pending items), and no request outside
the SDK's contract. Only then do the figures count.

The table
---------
* **share of the ceiling**: Bills/s against the rate limit divided by the fewest Stripe requests per Bill the
  API allows (bench_report.minimum_requests_per_bill; invoice mode: list + create + add_lines = 3, and the
  customer pages), all accounts together; **per account**: each account's own Bills/s over its own pass.
* **bounds**, as shares of the ceiling, at the profile's mean latency with each Bill's requests in a row (list,
  create, add_lines: 3 x the latency per Bill): *per customer* is what the engine's shape allows each customer:
  CUSTOMER_CONCURRENCY (4) Bills at once, so customers x 4 / (3 x latency). Under the emulator's strict lock reading
  (``--stripe-locks strict``, the default: Stripe would answer a second creation for a customer with lock_timeout)
  the operator makes the write for the customer (creating its invoice; in items mode each pending item) one at a
  time once Stripe refused one (domain/customer_writes.py), so customers x min(4 / (3 x latency), 1 / latency).
  Under ``--stripe-locks addressed`` (Stripe locks only the objects a write names) they stay concurrent.
  *concurrency* is the Bills in flight per integration (the operator's `concurrency_for`) / (3 x latency), Little's
  law.
* **operator CPU per Stripe request**: the operator process's CPU over the passes / the Stripe requests it sent
  (retries included); with its share of one core, and the emulators' CPU next to it (a busy emulator would
  mean the measuring side bounds the figures, not the operator).

This is not a test: pytest collects ``tests/`` only; ``tests/benchmarks`` runs each scenario at a tiny size.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench_deployed import run_deployed
from bench_emulators import Mode
from bench_processes import Fleet
from bench_report import minimum_requests_per_bill, requests_in_a_row
from m3stripe.adapters.stripe_rate_limit import LimiterRegistry
from m3stripe.domain.sync_engine import CUSTOMER_CONCURRENCY
from m3stripe.testing.stripe_emulator.latency import parse
from m3stripe.testing.stripe_emulator.locks import READINGS

HERE = Path(__file__).resolve().parent
DEFAULT_PROFILES = "fixed:0.25,lognormal"
# An account is "at its ceiling" from this share up (issue 22's criterion for many accounts at once).
AT_CEILING = 0.9


@dataclasses.dataclass(frozen=True)
class Scenario:
    name: str
    integrations: int
    customers: int  # per integration
    bills: int  # per integration
    rps: int  # each integration's requestsPerSecond, and its Stripe account's limit

    def scaled(self, scale: float) -> Scenario:
        bills = max(1, round(self.bills * scale))
        return dataclasses.replace(self, bills=bills, customers=min(self.customers, bills))

    def label_of(self, as_deployed: bool) -> str:
        return f"{self.label} (as deployed)" if as_deployed else self.label

    @property
    def label(self) -> str:
        each = f"{self.bills:,} Bills / {self.customers:,} customers @ {self.rps}/s"
        return f"{self.name}: {each}" if self.integrations == 1 else f"{self.name}: {self.integrations} x ({each})"


SCENARIOS: dict[str, Scenario] = {
    "many": Scenario("many", 1, 1000, 3000, 100),
    "few": Scenario("few", 1, 2, 1000, 25),
    "accounts-8": Scenario("accounts-8", 8, 50, 500, 25),
    "accounts-20": Scenario("accounts-20", 20, 30, 300, 25),
}
QUICK: dict[str, Scenario] = {
    "many": Scenario("many", 1, 100, 300, 100),
    "few": Scenario("few", 1, 2, 30, 25),
    "accounts-8": Scenario("accounts-8", 8, 10, 50, 25),
    "accounts-20": Scenario("accounts-20", 20, 10, 30, 25),
}


@dataclasses.dataclass
class RunSummary:
    """One scenario at one profile: what the operator did, what it cost, whether Stripe holds the right thing."""

    scenario: Scenario
    profile: str
    mode: Mode
    lines: int
    concurrency: int
    sent: int
    failed: int
    wall_seconds: float
    per_account: list[tuple[int, float]]  # (Bills sent, pass seconds) per integration
    stripe_requests: int  # as the emulator counted them, 429s included
    gateway_requests: int  # as the operator sent them, retries included
    rate_limited: int
    operator_cpu_seconds: float
    operator_peak_rss_bytes: int
    stripe_cpu_seconds: float
    m3ter_cpu_seconds: float
    loop_lag_p99: float
    round_trip_p50: float
    round_trip_p99: float
    seed_seconds: float
    load_before: float
    verified: bool
    problems: list[str]
    as_deployed: bool = False
    # As deployed: how long after its integration was created each pass started (whole seconds, from its record).
    start_delays: list[float] = dataclasses.field(default_factory=list)
    kube_cpu_seconds: float = 0.0  # as deployed: the Kubernetes API emulator's CPU (the benchmark's own process)
    profile_text: str = ""
    locks: str = "strict"  # the Stripe emulator's lock reading (locks.py)
    lock_timeouts: str = "saved"  # whether it saves a lock_timeout under the request's idempotency key (locks.py)

    @property
    def minimum(self) -> float:
        s = self.scenario
        return minimum_requests_per_bill(self.mode, lines=self.lines, bills=s.bills, customers=s.customers)

    @property
    def account_ceiling(self) -> float:
        """Bills/s one account allows: its rate limit over the fewest requests per Bill."""
        return self.scenario.rps / self.minimum

    @property
    def bills_per_second(self) -> float:
        return self.sent / self.wall_seconds if self.wall_seconds else 0.0

    @property
    def share(self) -> float:
        return self.bills_per_second / (self.account_ceiling * self.scenario.integrations)

    @property
    def account_shares(self) -> list[float]:
        return [sent / seconds / self.account_ceiling if seconds else 0.0 for sent, seconds in self.per_account]

    @property
    def in_a_row(self) -> int:
        return requests_in_a_row(self.mode, self.lines)

    @property
    def bill_seconds(self) -> float:
        """How long one Bill's writes take at the profile's mean latency, each request after the one before."""
        return self.in_a_row * parse(self.profile).mean

    @property
    def customer_bound(self) -> float:
        """Bills/s the engine's shape allows per customer, all customers of all accounts side by side: up to
        CUSTOMER_CONCURRENCY Bills at once; under the strict lock reading the writes for the customer one at a time."""
        per_customer = CUSTOMER_CONCURRENCY / self.bill_seconds
        if self.locks == "strict":
            customer_writes = 1 if self.mode == "invoice" else self.lines  # the create, or each pending item
            per_customer = min(per_customer, 1 / (customer_writes * parse(self.profile).mean))
        return self.scenario.customers * self.scenario.integrations * per_customer

    @property
    def slot_bound(self) -> float:
        """Bills/s when `concurrency` Bills per integration are written at once (Little's law)."""
        return self.concurrency * self.scenario.integrations / self.bill_seconds

    @property
    def cpu_ms_per_request(self) -> float:
        return 1000 * self.operator_cpu_seconds / max(1, self.gateway_requests)


# --- one run ------------------------------------------------------------------------------------------


async def run_one(fleet: Fleet, scenario: Scenario, profile: str, args: argparse.Namespace, tag: str) -> RunSummary:
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    ids = [str(uuid.uuid4()) for _ in range(scenario.integrations)]
    run = await fleet.seed(
        integrations=scenario.integrations,
        customers=scenario.customers,
        bills=scenario.bills,
        lines=args.lines,
        run=tag,
        integration_ids=ids,
    )
    seed_seconds = time.perf_counter() - started
    # The emulator's per-endpoint limit is the one the client applies (25/s scaled with a raised account).
    endpoint_rps = LimiterRegistry().get("any", False, scenario.rps).endpoint_per_second
    await fleet.arm(rps=scenario.rps, endpoint_rps=endpoint_rps, latency=profile)
    plan = {
        "stripe_url": fleet.stripe.url,
        "m3ter_url": fleet.m3ter.url,
        "mode": args.mode,
        "rps": scenario.rps,
        "concurrency": args.concurrency,
        "integrations": [dataclasses.asdict(i) for i in run.integrations],
    }
    if args.as_deployed:
        out = await asyncio.to_thread(run_deployed, plan, tag)
        # The operator names an integration by its StripeIntegration's uid (in every Stripe object's metadata).
        run.integrations = [
            dataclasses.replace(i, id=o["id"]) for i, o in zip(run.integrations, out["integrations"], strict=True)
        ]
    else:
        profile_file = f"{args.profile}.{scenario.name}.{tag}" if args.profile else None
        out = await asyncio.to_thread(_operator_process, plan, profile_file)
        if out is None:
            raise RuntimeError(f"the operator's process failed; the emulators' log:\n{fleet.log()}")
    stats = await fleet.disarm()
    verifications = await fleet.verify(run, mode=args.mode)
    integrations = out["integrations"]
    # The emulator's contract violations are every integration's problems: each is listed once.
    problems = list(dict.fromkeys(p for v in verifications for p in v.problems))[:10]
    failed = sum(i["failed"] for i in integrations)
    return RunSummary(
        scenario=scenario,
        profile=profile,
        locks=args.stripe_locks,
        lock_timeouts=args.stripe_lock_timeouts,
        mode=args.mode,
        lines=args.lines,
        concurrency=out["concurrency"],
        sent=sum(i["sent"] for i in integrations),
        failed=failed,
        wall_seconds=out["wall_seconds"],
        per_account=[(i["sent"], i["seconds"]) for i in integrations],
        stripe_requests=stats.stripe_requests,
        # As deployed, the operator's own count is not reachable: the emulator's (its checks of the keys included).
        gateway_requests=stats.stripe_requests if args.as_deployed else sum(i["requests"] for i in integrations),
        as_deployed=args.as_deployed,
        start_delays=[i["started_after"] for i in integrations if "started_after" in i],
        kube_cpu_seconds=out.get("kube_cpu_seconds", 0.0),
        rate_limited=stats.stripe_statuses.get("429", 0),
        operator_cpu_seconds=out["cpu_seconds"],
        operator_peak_rss_bytes=out["peak_rss_bytes"],
        stripe_cpu_seconds=stats.stripe_cpu_seconds,
        m3ter_cpu_seconds=stats.m3ter_cpu_seconds,
        loop_lag_p99=out["loop_lag_p99"],
        round_trip_p50=out["round_trip_p50"],
        round_trip_p99=out["round_trip_p99"],
        seed_seconds=seed_seconds,
        load_before=load_before,
        verified=all(v.ok for v in verifications) and failed == 0,
        problems=problems,
        profile_text=out.get("profile", ""),
    )


def _operator_process(plan: dict[str, Any], profile_file: str | None) -> dict[str, Any] | None:
    """The passes in a fresh interpreter (bench_fleet.py): its figures, or None when it failed."""
    with tempfile.TemporaryDirectory() as tmp:
        plan_path, out_path = Path(tmp, "plan.json"), Path(tmp, "out.json")
        plan_path.write_text(json.dumps(plan), encoding="utf-8")
        command = [sys.executable, str(HERE / "bench_fleet.py"), str(plan_path), str(out_path)]
        if profile_file:
            command.append(f"--profile={profile_file}")
        done = subprocess.run(command, check=False)
        if done.returncode != 0 or not out_path.exists():
            return None
        result: dict[str, Any] = json.loads(out_path.read_text(encoding="utf-8"))
        return result


# --- output -------------------------------------------------------------------------------------------


def _profile_label(profile: str, locks: str = "strict", lock_timeouts: str = "saved") -> str:
    """The latency profile, and the lock readings that are not the defaults."""
    label = parse(profile).describe() + ("" if locks == "strict" else f", {locks} locks")
    return label + ("" if lock_timeouts == "saved" else ", lock_timeouts not saved under the key")


def detail(r: RunSummary) -> str:
    s = r.scenario
    shares = r.account_shares
    lines = [
        f"== {s.label_of(r.as_deployed)}; Stripe latency {_profile_label(r.profile, r.locks, r.lock_timeouts)} ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC) ==",
        f"  Bills          {r.sent} sent, {r.failed} failed, in {r.wall_seconds:.1f} s ({r.bills_per_second:.2f}/s); "
        f"seeded in {r.seed_seconds:.1f} s",
        f"  ceiling        {r.account_ceiling:.2f} Bills/s per account x {s.integrations}: {100 * r.share:.1f}%",
        f"  per account    {_spread(shares)}",
        f"  bounds         {r.customer_bound:.1f} Bills/s with each customer's Bills {CUSTOMER_CONCURRENCY} at once"
        + (
            " and the writes for it (an invoice's creation, a pending item) one at a time, "
            if r.locks == "strict"
            else " (Stripe's locks: addressed, the writes for it at once), "
        )
        + f"{r.slot_bound:.1f} with {r.concurrency} Bills in flight per integration "
        f"({r.in_a_row} requests in a row per Bill at a mean {1000 * parse(r.profile).mean:.0f} ms)",
        f"  Stripe         {r.stripe_requests} requests ({r.stripe_requests / max(1, r.sent):.3f}/Bill, minimum "
        f"{r.minimum:.3f}), {r.rate_limited} answered 429; "
        + (
            "(as deployed: the round trips are the operator's metrics)"
            if r.as_deployed
            else f"round trip p50 {1000 * r.round_trip_p50:.0f} ms, p99 {1000 * r.round_trip_p99:.0f} ms (after the limiter)"
        ),
        f"  operator       concurrency {r.concurrency}; CPU {r.operator_cpu_seconds:.1f} s = "
        f"{r.cpu_ms_per_request:.2f} ms per Stripe request, {100 * r.operator_cpu_seconds / r.wall_seconds:.0f}% of a "
        f"core; {'' if r.as_deployed else f'event-loop lag p99 {1000 * r.loop_lag_p99:.0f} ms; '}"
        f"peak RSS {r.operator_peak_rss_bytes / 2**20:.0f} MiB",
        f"  emulators      CPU: Stripe {r.stripe_cpu_seconds:.1f} s "
        f"({100 * r.stripe_cpu_seconds / r.wall_seconds:.0f}% of a core), m3ter {r.m3ter_cpu_seconds:.1f} s"
        + (f", Kubernetes API {r.kube_cpu_seconds:.1f} s" if r.as_deployed else "")
        + "; "
        f"load average before the run {r.load_before:.2f} on {os.cpu_count()} CPUs",
        f"  verified       {'OK' if r.verified else 'FAILED'}",
    ]
    if r.start_delays:
        lines.insert(
            4,
            f"  start          the passes started {min(r.start_delays):.0f} to {max(r.start_delays):.0f} s after their "
            "integrations were created (the credential checks, kopf; whole seconds)",
        )
    lines += [f"  PROBLEM: {p}" for p in r.problems]
    if r.profile_text:
        lines += [f"    {line}" for line in r.profile_text.splitlines() if line.strip()]
    return "\n".join(lines)


def _min_median_max_at(shares: list[float]) -> tuple[float, float, float, int]:
    """The accounts' shares of their ceilings: the lowest, the median, the highest, how many reached AT_CEILING."""
    return min(shares), statistics.median(shares), max(shares), sum(share >= AT_CEILING for share in shares)


def _spread(shares: list[float]) -> str:
    if len(shares) == 1:
        return f"{100 * shares[0]:.1f}% of its ceiling"
    low, median, high, at = _min_median_max_at(shares)
    return (
        f"min {100 * low:.1f}%, median {100 * median:.1f}%, max {100 * high:.1f}% "
        f"of each one's ceiling; {at} of {len(shares)} at {100 * AT_CEILING:.0f}% or more"
    )


def table(rows: list[RunSummary]) -> str:
    header = (
        "| scenario | Stripe latency | Bills sent | pass (s) | Bills/s | share of the ceiling | per account: min / "
        "median / max (>= 90%) | bounds: per customer / concurrency (of the ceiling) | Stripe requests/Bill (minimum) | operator CPU per "
        "Stripe request | CPU s: operator (% of a core) / Stripe emulator / m3ter emulator | loop lag p99 | verified |"
    )
    out = [header, "|" + "---|" * (header.count("|") - 1)]
    for r in rows:
        shares = r.account_shares
        per_account = "-"
        if len(shares) > 1:
            low, median, high, at = _min_median_max_at(shares)
            per_account = f"{100 * low:.0f}% / {100 * median:.0f}% / {100 * high:.0f}% ({at} of {len(shares)})"
        ceiling = r.account_ceiling * r.scenario.integrations
        bound = f"{100 * r.customer_bound / ceiling:.0f}% / {100 * r.slot_bound / ceiling:.0f}%"
        out.append(
            f"| {r.scenario.label_of(r.as_deployed)} | {_profile_label(r.profile, r.locks, r.lock_timeouts)} | {r.sent} | {r.wall_seconds:.1f} | "
            f"{r.bills_per_second:.2f} | {100 * r.share:.1f}% of {ceiling:.1f} | {per_account} | {bound} | "
            f"{r.stripe_requests / max(1, r.sent):.3f} ({r.minimum:.3f}) | {r.cpu_ms_per_request:.2f} ms | "
            f"{r.operator_cpu_seconds:.1f} ({100 * r.operator_cpu_seconds / r.wall_seconds:.0f}%) / "
            f"{r.stripe_cpu_seconds:.1f} / {r.m3ter_cpu_seconds:.1f} | {'-' if r.as_deployed else f'{1000 * r.loop_lag_p99:.0f} ms'} | "
            f"{'OK' if r.verified else 'FAILED'} |"
        )
    return "\n".join(out)


def capacity_note(rows: list[RunSummary]) -> str:
    """What the measured CPU per request means for one replica: accounts it drives at their ceiling per core."""
    notes = []
    for r in rows:
        if r.scenario.integrations > 1 and r.gateway_requests:
            per_core = 1000 / r.cpu_ms_per_request
            notes.append(
                f"* {r.scenario.name} at {_profile_label(r.profile, r.locks, r.lock_timeouts)}: {r.cpu_ms_per_request:.2f} ms of operator CPU "
                f"per request, so one core sends at most {per_core:.0f} requests/s: {per_core / 25:.0f} accounts at "
                f"25/s or {per_core / 100:.1f} at 100/s"
            )
    return "\n".join(notes)


# --- command line -------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--scenario",
        choices=(*SCENARIOS, "all"),
        action="append",
        help="a scenario to run (repeatable; default: all)",
    )
    parser.add_argument(
        "--profiles",
        default=DEFAULT_PROFILES,
        help="comma-separated Stripe latency profiles (SECONDS, fixed:SECONDS, lognormal[:median=S,p99=S,seed=N]); "
        "default: %(default)s",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run of a minute or two")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply each scenario's Bills (default 1)")
    parser.add_argument("--mode", choices=("invoice", "items"), default="invoice", help="default: %(default)s")
    parser.add_argument("--lines", type=int, default=3, help="line items per Bill (default: %(default)s)")
    parser.add_argument(
        "--concurrency", type=int, default=None, help="Bills in flight per integration (default: the operator's)"
    )
    parser.add_argument(
        "--m3ter-latency", type=float, default=0.05, help="seconds m3ter takes per request (default: %(default)s)"
    )
    parser.add_argument(
        "--no-contract", action="store_true", help="do not check requests against the SDK's types (less emulator CPU)"
    )
    parser.add_argument(
        "--as-deployed",
        action="store_true",
        help="run the operator's own process (python -m m3stripe run, kopf, an emulated Kubernetes API) instead of "
        "the passes alone (bench_deployed.py)",
    )
    parser.add_argument(
        "--stripe-locks",
        choices=READINGS,
        default="strict",
        help="which objects the Stripe emulator locks for a write (its locks.py): strict, the default, also the "
        "customer an invoice is created for; addressed, only the objects a write names",
    )
    parser.add_argument(
        "--stripe-lock-timeouts",
        choices=("saved", "unsaved"),
        default="saved",
        help="whether the Stripe emulator saves a lock_timeout under the request's idempotency key (its locks.py; "
        "default: %(default)s)",
    )
    parser.add_argument("--profile", metavar="FILE", help="cProfile the operator's process; stats to FILE.<run>")
    parser.add_argument("--json", metavar="FILE", help="also write every run's figures here")
    return parser


def _profiles(text: str) -> list[str]:
    # `lognormal:median=0.25,p99=1.2` holds commas: a new profile starts at a part that names a kind or a number.
    profiles: list[str] = []
    for part in text.split(","):
        head = part.split(":", 1)[0].strip()
        if not profiles or head in ("fixed", "lognormal", "long-tailed") or _is_number(head):
            profiles.append(part.strip())
        else:
            profiles[-1] += "," + part.strip()
    for profile in profiles:
        parse(profile)  # a bad one fails now, not after an hour of runs
    return profiles


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


async def _main(args: argparse.Namespace) -> int:
    names = (
        [n for n in SCENARIOS] if not args.scenario or "all" in args.scenario else list(dict.fromkeys(args.scenario))
    )
    sizes = QUICK if args.quick else SCENARIOS
    profiles = _profiles(args.profiles)
    rows: list[RunSummary] = []
    failed = 0
    fleet = Fleet(
        contract_mode=not args.no_contract,
        m3ter_latency=args.m3ter_latency,
        locks=args.stripe_locks,
        lock_timeouts=args.stripe_lock_timeouts,
    )
    async with fleet:
        for name in names:
            scenario = sizes[name].scaled(args.scale)
            for profile in profiles:
                print(
                    f"[{scenario.label}; {_profile_label(profile, args.stripe_locks, args.stripe_lock_timeouts)}] ...",
                    file=sys.stderr,
                    flush=True,
                )
                started = time.perf_counter()
                summary = await run_one(fleet, scenario, profile, args, tag=f"r{len(rows)}")
                print(detail(summary), flush=True)
                print(f"  (run took {time.perf_counter() - started:.0f} s in all)", flush=True)
                failed += not summary.verified
                rows.append(summary)
    print(f"\n== m3stripe at Stripe's latency ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs) ==")
    print(table(rows))
    note = capacity_note(rows)
    if note:
        print("\n" + note)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:  # noqa: ASYNC230  (once, after the runs)
            json.dump([{**dataclasses.asdict(r), "profile_text": ""} for r in rows], out, indent=1)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.lines < 1 or args.scale <= 0 or (args.concurrency is not None and args.concurrency < 1):
        raise SystemExit("--lines and --concurrency must be at least 1, --scale above 0")
    if args.as_deployed and args.profile:
        raise SystemExit("--profile profiles the passes alone (bench_fleet.py), not --as-deployed")
    return asyncio.run(_main(args))


if __name__ == "__main__":
    sys.exit(main())
