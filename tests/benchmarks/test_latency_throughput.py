"""benchmarks/latency_throughput.py runs: every scenario at a tiny size prints its row, Stripe's state checked.

A smoke run only: nothing here looks at a figure (the benchmark prints them; no test asserts on speed).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ("many", "few", "accounts-8", "accounts-20")


def run_benchmark(tmp_path: Path, *options: str) -> tuple[str, list[dict[str, Any]]]:
    """latency_throughput.py at a quick size with `options`: what it printed, and every run's figures (--json)."""
    figures = tmp_path / "runs.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "latency_throughput.py"), "--quick", *options, f"--json={figures}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    runs: list[dict[str, Any]] = json.loads(figures.read_text(encoding="utf-8"))
    return done.stdout, runs


def test_every_scenario_runs_and_prints_its_row(tmp_path: Path) -> None:
    # The long-tailed profile (its options hold commas) at a few milliseconds: the path, not the latency.
    printed, runs = run_benchmark(tmp_path, "--scale=0.1", "--profiles=lognormal:median=0.002,p99=0.01,seed=1")
    table = printed.split("== m3stripe at Stripe's latency", 1)[1]
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| scenario")]
    assert [row.split(":", 1)[0].removeprefix("| ") for row in rows] == list(SCENARIOS)
    assert all(row.endswith("| OK |") and "log-normal, median 2 ms, p99 10 ms" in row for row in rows)
    assert [run["scenario"]["integrations"] for run in runs] == [1, 1, 8, 20]
    assert all(run["sent"] == run["scenario"]["bills"] * run["scenario"]["integrations"] for run in runs)


def test_the_few_customers_scenario_runs_against_a_stripe_that_locks_only_the_objects_a_write_names(
    tmp_path: Path,
) -> None:
    printed, [run] = run_benchmark(tmp_path, "--scenario=few", "--profiles=fixed:0.005", "--stripe-locks=addressed")
    assert "fixed 5 ms, addressed locks" in printed and "the writes for it at once" in printed
    # A smoke run of the flag: what the writer does under either reading, tests/domain/test_customer_concurrency.py.
    assert run["locks"] == "addressed" and run["sent"] == run["scenario"]["bills"] and run["verified"]


def test_the_few_customers_scenario_runs_against_a_stripe_that_saves_no_lock_timeout_under_the_key(
    tmp_path: Path,
) -> None:
    printed, [run] = run_benchmark(
        tmp_path, "--scenario=few", "--profiles=fixed:0.005", "--stripe-lock-timeouts=unsaved"
    )
    assert "fixed 5 ms, lock_timeouts not saved under the key" in printed
    assert run["lock_timeouts"] == "unsaved" and run["sent"] == run["scenario"]["bills"] and run["verified"]
