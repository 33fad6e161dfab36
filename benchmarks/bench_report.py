"""The benchmark's one table: each run's figures against the API minimum and the bounds that apply to it."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

CUSTOMER_PAGE = 100  # Stripe's largest list page
ADD_LINES_CHUNK = 50  # stripe_writer.ADD_LINES_CHUNK, restated: the report must not need the operator


def requests_in_a_row(mode: str, lines: int) -> int:
    """A new Bill's requests that wait on each other: the list, the create, the add_lines (or each item)."""
    return 2 + math.ceil(lines / ADD_LINES_CHUNK) if mode == "invoice" else 1 + lines


def minimum_requests_per_bill(mode: str, *, lines: int, bills: int, customers: int) -> float:
    """The fewest Stripe requests per new Bill the API allows while keeping find-before-create (sync_throughput.py):
    its requests in a row, and the pass's customer pages spread over its Bills."""
    return requests_in_a_row(mode, lines) + max(1, math.ceil(customers / CUSTOMER_PAGE)) / bills


@dataclasses.dataclass
class Summary:
    """One run's figures, as plain JSON (it crosses from the run's interpreter to the table's)."""

    scenario: str
    mode: str
    bills: int
    accounts: int
    lines: int
    history: int
    unchanged_bills: int
    rps: float
    latency: float
    sent: int
    elapsed: float
    stripe_requests: int
    m3ter_requests: int
    peak_rss_bytes: int
    verified: bool
    failed: int
    engine_cpu_seconds: float = 0.0
    emulator_cpu_seconds: float = 0.0

    @property
    def minimum(self) -> float:
        return minimum_requests_per_bill(self.mode, lines=self.lines, bills=self.bills, customers=self.accounts)

    @property
    def per_bill(self) -> float:
        return self.stripe_requests / max(1, self.sent)

    @property
    def bills_per_second(self) -> float:
        return self.sent / self.elapsed if self.elapsed else 0.0

    @property
    def ceiling(self) -> float:
        """Bills/s at the rate limit, at the minimum requests per Bill."""
        return self.rps / self.minimum

    @property
    def ordering_bound(self) -> float:
        """Bills/s per-customer ordering allows: each customer's Bills one after another, customers in parallel."""
        per_bill_seconds = requests_in_a_row(self.mode, self.lines) * self.latency
        return self.accounts / per_bill_seconds if per_bill_seconds else math.inf

    @property
    def bound(self) -> float:
        return min(self.ceiling, self.ordering_bound)

    def write(self, path: str) -> None:
        Path(path).write_text(json.dumps(dataclasses.asdict(self)), encoding="utf-8")

    @classmethod
    def read(cls, path: str) -> Summary:
        data: dict[str, Any] = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls(**data)


def print_table(rows: list[Summary]) -> str:
    header = (
        "| scenario | mode | Bills sent | Stripe requests/Bill (minimum; extra) | m3ter requests/pass | pass (s) | "
        "Bills/s | share of the rate-limit ceiling | per-customer ordering | CPU s: operator / emulators | "
        "peak RSS (operator) | verified |"
    )
    out = [header, "|" + "---|" * 12]
    for r in rows:
        extra = r.per_bill - r.minimum
        # Per-customer ordering binds only with few customers; with many, the rate limit binds first.
        ordering = (
            f"bound {r.ordering_bound:.1f} Bills/s; {100 * r.bills_per_second / r.bound:.0f}% of min(ceiling, bound)"
            if r.ordering_bound < r.ceiling * 4
            else "far above the ceiling"
        )
        out.append(
            f"| {r.scenario} | {r.mode} | {r.sent} | {r.per_bill:.3f} ({r.minimum:.3f}; {extra:+.3f}) | "
            f"{r.m3ter_requests} | {r.elapsed:.1f} | {r.bills_per_second:.2f} | {100 * r.bills_per_second / r.ceiling:.1f}% of {r.ceiling:.1f} | {ordering} | "
            f"{r.engine_cpu_seconds:.1f} / {r.emulator_cpu_seconds:.1f} | {r.peak_rss_bytes / 2**20:.0f} MiB | {'OK' if r.verified and not r.failed else 'FAILED'} |"
        )
    return "\n".join(out)
