"""The operator as deployed, for latency_throughput.py ``--as-deployed``: ``python -m m3stripe run`` as its own
process, with kopf, against an emulated Kubernetes API (``LocalStack``), its integrations created as
StripeIntegrations; Stripe and m3ter are the fleet's emulator processes (bench_processes.py).

What bench_fleet.py leaves out is in here: kopf and its watches, the workers, the credential checks, the
status patches (checkpoints every few seconds, the run's record), events and metrics. The process's CPU is
read from /proc between the moment every integration is created and the moment the last one's pass is
COMPLETE; a pass's end is when its line appears in the operator's log (read every POLL_SECONDS).
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench_observe import peak_rss_bytes
from bench_processes import cpu_seconds_of
from bench_spec import bench_spec
from m3stripe.kube.config import OperatorConfig
from m3stripe.testing.stack import LocalStack, wait_for

POLL_SECONDS = 0.1
IDLE_SECONDS = 3.0  # the operator's start-up done (kopf's first listings), before the clock starts
PASS_TIMEOUT_SECONDS = 3600.0


def _time(record: dict[str, Any], field: str) -> datetime:
    return datetime.fromisoformat(str(record[field]).replace("Z", "+00:00"))


def run_deployed(plan: dict[str, Any], tag: str) -> dict[str, Any]:
    """One pass of every integration of `plan` by the operator's own process: bench_fleet.py's figures."""
    with tempfile.TemporaryDirectory() as tmp, LocalStack(Path(tmp)) as stack:
        env = {
            "STRIPE_API_BASE": plan["stripe_url"],
            "M3TER_BASE_URL": plan["m3ter_url"],
            # The Deployment's defaults, not the tests' quick polling (LocalStack.operator_env).
            "M3STRIPE_SECRET_POLL_INTERVAL": "30s",
            "M3STRIPE_CREDENTIAL_RETRY_INTERVAL": "20s",
        }
        if plan["concurrency"]:
            env["M3STRIPE_SYNC_CONCURRENCY"] = str(plan["concurrency"])
        names: list[tuple[str, str]] = []
        uids: list[str] = []  # the operator's integration ids (in each Stripe object's metadata)
        for n, integration in enumerate(plan["integrations"]):
            ns = f"bench-{tag}-{n:02d}"
            stack.ensure_namespace(ns)
            stack.kube.put_secret(
                ns, "m3ter", {"clientId": integration["client_id"], "clientSecret": integration["client_secret"]}
            )
            stack.kube.put_secret(ns, "stripe", {"apiKey": integration["stripe_key"]})
            names.append((ns, f"fleet-{n:02d}"))
        with stack.operator(**env) as operator:
            pid = operator.process.pid
            time.sleep(IDLE_SECONDS)
            cpu_started, harness_started = cpu_seconds_of(pid), time.process_time()
            started, created_at = time.perf_counter(), datetime.now(UTC)
            for (ns, name), integration in zip(names, plan["integrations"], strict=True):
                spec = bench_spec(
                    integration["org"], plan["rps"], plan["mode"], syncInterval="1h"
                )  # one pass: the first
                stack.kube.create_integration(ns, name, spec)
                uids.append(str(stack.kube.get_integration(ns, name)["metadata"]["uid"]))
            # A pass's end is read from the operator's log ("<ns>/<name>: sync run <id>: COMPLETE (...)"), which costs
            # the Kubernetes API nothing: polling 20 statuses a few times a second slowed the operator's own calls.
            ended: dict[tuple[str, str], float] = {}

            def all_done() -> bool:
                log = operator.output()
                for key in names:
                    if key not in ended and re.search(rf"^{key[0]}/{key[1]}: sync run \S+: [A-Z]+ ", log, re.MULTILINE):
                        ended[key] = time.perf_counter() - started
                if not operator.running:
                    raise RuntimeError(f"the operator stopped:\n{log[-4000:]}")
                return len(ended) == len(names)

            wait_for(all_done, timeout=PASS_TIMEOUT_SECONDS, interval=POLL_SECONDS, what="every integration's pass")
            if os.environ.get("BENCH_OPERATOR_LOG"):
                Path(os.environ["BENCH_OPERATOR_LOG"]).write_text(operator.output(), encoding="utf-8")
            cpu = cpu_seconds_of(pid) - cpu_started
            # This process during the passes: mostly the Kubernetes API emulator (LocalStack's loop) serving the
            # operator's watches, status patches and events.
            harness_cpu = time.process_time() - harness_started
            wall = time.perf_counter() - started
            peak_rss = peak_rss_bytes(pid)
            done = {
                key: (ended[key], (stack.kube.get_integration(*key).get("status") or {}).get("lastSync") or {})
                for key in names
            }
            concurrency = plan["concurrency"] or OperatorConfig().sync.concurrency_for(plan["rps"])
    return {
        "concurrency": concurrency,
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "peak_rss_bytes": peak_rss,
        "kube_cpu_seconds": harness_cpu,
        # Not seen from outside the process: the gateway's figures.
        "loop_lag_p50": 0.0,
        "loop_lag_p99": 0.0,
        "round_trip_p50": 0.0,
        "round_trip_p99": 0.0,
        "integrations": [
            {
                "id": uid,
                "status": last.get("status", ""),
                "sent": int(last.get("billsSent") or 0) + int(last.get("billsUnchanged") or 0),
                "failed": int(last.get("billsFailed") or 0),
                "skipped": int(last.get("billsSkipped") or 0),
                "seconds": seconds,
                "requests": 0,  # counted by the Stripe emulator instead
                # From the run's record (whole seconds): how long after its creation the pass started, and ran.
                "started_after": (_time(last, "startTime") - created_at).total_seconds(),
                "run_seconds": (_time(last, "completionTime") - _time(last, "startTime")).total_seconds(),
            }
            for key, uid in zip(names, uids, strict=True)
            for seconds, last in [done[key]]
        ],
    }
