"""The day-2 commands against the Kubernetes emulator with the operator running, invoked as a person would.

The operator polls its Secrets every 30 s here (the production default, not the 1 s of the other e2e
modules) and every integration syncs every hour: a gesture handled within seconds can only have been
woken by the watch event of its annotation.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kmock
import pytest
import yaml

from m3stripe.cli import main
from m3stripe.testing.kubeconfig import write_kubeconfig
from m3stripe.testing.stack import LocalStack, OperatorProcess, wait_for
from tests.support import stack_world
from tests.support.ports import free_port
from tests.support.stack_world import connect, integration_spec

KEY = "sk_test_51ctlAAAA"
ORG = "org-ctl"
NS = "ctl"
READER_TOKEN = "read-only-token"
# A functional bound of the feature ("takes effect within 2 s"), with a generous margin for a loaded 2-core
# machine: without the watch wake-up the echo waits for the 30 s poll, so this still tells the two apart.
GESTURE_BOUND_SECONDS = 10.0


class Cli:
    """`m3stripe ...` in-process with `main(argv)`, as the console script calls it."""

    def __init__(self, kubeconfig: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.kubeconfig = kubeconfig
        self.capsys = capsys

    def __call__(self, *argv: str, namespace: str | None = NS, kubeconfig: Path | None = None) -> tuple[int, str, str]:
        args = [*argv, "--kubeconfig", str(kubeconfig or self.kubeconfig)]
        if namespace is not None:
            args += ["-n", namespace]
        self.capsys.readouterr()
        code = main(args)
        out, err = self.capsys.readouterr()
        return code, out, err


@pytest.fixture(scope="module")
def operators() -> Iterator[list[OperatorProcess]]:
    """The running operator, last; a test may replace it (restart) and the module's teardown stops the last one."""
    running: list[OperatorProcess] = []
    yield running
    if running:
        running[-1].stop()


@pytest.fixture(scope="module")
def world(stack: LocalStack, operators: list[OperatorProcess]) -> dict[str, str]:
    stack.call(lambda: stack.stripe.add_api_key(KEY))
    connect(stack, NS, ORG, KEY, "ctl")
    sdk = stack.stripe_client(KEY)
    ids: dict[str, str] = {}
    for country in ("NL", "DE"):
        account = stack.call(
            lambda c=country: stack.m3ter.add_account(
                ORG, name=c, code=c.lower(), currency="USD", address={"country": c}
            )
        )
        sdk.v1.customers.create(params={"metadata": {"m3ter_account_id": account}})
        ids[country] = str(account)
    ids["good"] = str(
        stack.call(
            lambda: stack.m3ter.add_bill(
                ORG, account_id=ids["NL"], lines=[{"line_item_type": "USAGE", "subtotal": "10"}]
            )
        )
    )
    # Lines that do not add up to the total: a validation event every time the Bill is handled.
    ids["broken"] = str(
        stack.call(
            lambda: stack.m3ter.add_bill(
                ORG, account_id=ids["DE"], bill_total="99.00", lines=[{"line_item_type": "USAGE", "subtotal": "10"}]
            )
        )
    )
    operators.append(start_operator(stack, "operator"))
    integration(stack, "nl", accountFilter='address.country == "NL"')
    integration(stack, "de", accountFilter='address.country == "DE"', autoDisableThreshold=1)
    for name in ("nl", "de"):
        wait_for(lambda n=name: status(stack, n).get("lastSync"), timeout=90, what=f"the first run of {name}")
    return ids


def start_operator(stack: LocalStack, name: str) -> OperatorProcess:
    # As the Deployment runs it: leader election on a Lease (no --standalone), Secrets polled every 30 s, and
    # the pod's name from the Downward API (a restarted container keeps it).
    return stack.start_operator(
        "--liveness=", name=name, POD_NAME="m3stripe-operator-0", M3STRIPE_SECRET_POLL_INTERVAL="30s"
    )


@pytest.fixture
def cli(stack: LocalStack, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(stack.kubeconfig, capsys)


def integration(stack: LocalStack, name: str, **spec: Any) -> None:
    stack.kube.create_integration(NS, name, integration_spec(ORG, **spec))


def status(stack: LocalStack, name: str) -> dict[str, Any]:
    return stack_world.status(stack, NS, name)


def annotations(stack: LocalStack, name: str) -> dict[str, str]:
    return dict(stack.kube.get_integration(NS, name)["metadata"].get("annotations") or {})


def test_get_runs_and_events_show_last_runs_open_events_and_errors_at_a_glance(
    stack: LocalStack, world: dict[str, str], cli: Cli
) -> None:
    code, out, _ = cli("get")
    assert code == 0
    header, *rows = out.splitlines()
    assert header.split()[:4] == ["NAME", "READY", "REASON", "LAST"]
    by_name = {r.split()[0]: r.split() for r in rows}
    assert by_name["nl"][1:4] == ["True", "Ready", "COMPLETE"]
    # The integration that disabled itself after its first error: the reason says so, and 1 of 1 errors.
    assert by_name["de"][2] == "Disabled" and by_name["de"][-1] == "1/1"

    code, out, _ = cli("get", "-A", namespace=None)
    assert code == 0 and out.splitlines()[0].startswith("NAMESPACE") and f"{NS} " in out

    code, out, _ = cli("get", "-o", "json")
    listed = json.loads(out)
    assert code == 0 and listed["kind"] == "List" and {i["metadata"]["name"] for i in listed["items"]} >= {"nl", "de"}

    code, out, _ = cli("runs", "nl")
    run_id = status(stack, "nl")["recentRuns"][0]["runId"]
    assert code == 0 and run_id in out and "COMPLETE" in out

    code, out, _ = cli("runs", "nl", "-o", "yaml")
    runs = yaml.safe_load(out)
    assert code == 0 and runs[0]["stripeObjects"][0]["billId"] == world["good"]

    code, out, _ = cli("events", "de")
    [event] = status(stack, "de")["openEvents"][:1]
    assert code == 0 and event["id"] in out and "validation" in out and world["broken"] in out


def test_a_gesture_takes_effect_within_two_seconds_whatever_the_sync_interval(
    stack: LocalStack, world: dict[str, str]
) -> None:
    """Written with a plain annotation (as `kubectl annotate` does), timed until the echo shows in status.

    The house rule is no speed assertions; this is the feature's functional bound instead, asserted with the
    margin of GESTURE_BOUND_SECONDS and printed, so a regression to the 30 s poll (or the 1 h interval) fails.
    """
    figures: list[tuple[str, float]] = []
    for i, (annotation, echo) in enumerate(
        [
            ("m3stripe.dev/requested-at", "lastHandledRequestedAt"),
            ("m3stripe.dev/resolve", "lastHandledResolve"),
            ("m3stripe.dev/requested-at", "lastHandledRequestedAt"),
            ("m3stripe.dev/resolve", "lastHandledResolve"),
        ]
    ):
        time.sleep(1.5)  # let the worker go back to sleep: the annotation must wake it
        value = f"latency-{i} #{time.time_ns()}"
        started = time.monotonic()
        stack.annotate(NS, "nl", annotation, value)
        wait_for(
            lambda e=echo, v=value: status(stack, "nl").get(e) == v,  # type: ignore[misc]
            timeout=60,
            interval=0.05,
            what=f"the echo of {annotation}",
        )
        figures.append((annotation, time.monotonic() - started))
    print("annotation -> echo in status (syncInterval 1h, secret poll 30s):", [(a, round(s, 2)) for a, s in figures])
    assert max(s for _, s in figures) < GESTURE_BOUND_SECONDS


def test_a_gesture_right_after_the_operator_restarts_waits_only_for_its_start(
    stack: LocalStack, world: dict[str, str], operators: list[OperatorProcess]
) -> None:
    """The reported 55 s: kopf's peering paused a restarted operator until its dead predecessor's record expired
    (60 s). Now the restarted container takes the Lease at once; the gesture waits for the process to start.

    The bound is the start of a Python process and its first pass on a loaded machine, well under the 60 s
    the old pause took; the measured figure is printed.
    """
    operators[-1].kill()  # SIGKILL, as an OOM kill: nothing is released
    operators.append(start_operator(stack, "operator-restarted"))
    value = f"after-restart #{time.time_ns()}"
    started = time.monotonic()
    stack.annotate(NS, "nl", "m3stripe.dev/requested-at", value)
    wait_for(
        lambda: status(stack, "nl").get("lastHandledRequestedAt") == value,
        timeout=120,
        interval=0.1,
        what="the echo after the restart",
    )
    took = time.monotonic() - started
    print(f"restart (SIGKILL) + gesture -> echo in status: {took:.1f}s")
    assert took < 30


def test_sync_waits_for_the_run_it_triggered_and_prints_it(stack: LocalStack, world: dict[str, str], cli: Cli) -> None:
    before = status(stack, "nl")["lastSync"]["runId"]
    code, out, err = cli("sync", "nl")
    after = status(stack, "nl")
    assert code == 0, err
    assert after["lastSync"]["runId"] != before and after["lastSync"]["runId"] in out and "COMPLETE" in out
    token = annotations(stack, "nl")["m3stripe.dev/requested-at"]
    assert after["lastHandledRequestedAt"] == token and token in err

    code, out, _ = cli("sync", "nl", "-o", "json")
    result = json.loads(out)
    assert code == 0 and result["ok"] is True and result["run"]["status"] == "COMPLETE"


def test_replay_sends_a_deleted_invoice_again_and_refuses_unknown_bills_and_runs(
    stack: LocalStack, world: dict[str, str], cli: Cli
) -> None:
    sdk = stack.stripe_client(KEY)
    [sent] = [o for r in status(stack, "nl")["recentRuns"] for o in r["stripeObjects"] if o["billId"] == world["good"]]
    sdk.v1.invoices.delete(sent["stripeId"])
    before = annotations(stack, "nl").get("m3stripe.dev/replay")

    code, _, err = cli("replay", "nl", "bill-that-does-not-exist")
    assert code == 2 and "bill-that-does-not-exist" in err and "--force" in err
    code, _, err = cli("replay", "nl", "--run", "run-nope")
    assert code == 2 and "run-nope" in err and status(stack, "nl")["recentRuns"][0]["runId"] in err
    # More ids than the operator takes in one request: it would refuse the value and never echo it.
    code, _, err = cli("replay", "nl", *[f"bill-{i}" for i in range(101)], "--force")
    assert code == 2 and "split them" in err
    assert annotations(stack, "nl").get("m3stripe.dev/replay") == before  # nothing was written

    code, out, err = cli("replay", "nl", world["good"])
    assert code == 0, err
    [again] = [o for o in status(stack, "nl")["recentRuns"][0]["stripeObjects"] if o["billId"] == world["good"]]
    assert again["stripeId"] != sent["stripeId"] and f"{world['good']}: sent, now {again['stripeId']}" in out


def test_a_failing_run_exits_non_zero_and_reenable_and_resolve_do_what_they_say(
    stack: LocalStack, world: dict[str, str], cli: Cli
) -> None:
    # "de" disabled itself on its first error event (autoDisableThreshold 1): a pass cannot run.
    code, _, err = cli("sync", "de")
    assert code == 1 and "disabled itself" in err and "reenable de" in err

    code, out, err = cli("reenable", "de")
    assert code == 0, err
    assert "re-enabled" in out and status(stack, "de")["disabled"] is False

    # The broken Bill fails again: the run it triggered is reported, and the exit code says it failed.
    code, out, err = cli("replay", "de", world["broken"])
    assert code == 1
    assert f"{world['broken']}: failed:" in out and "lines add up to" in out

    [event] = [e for e in status(stack, "de")["openEvents"] if e.get("billId") == world["broken"]]
    code, _, err = cli("resolve", "de", "evt-unknown")
    assert code == 2 and "evt-unknown" in err and event["id"] in err
    code, out, err = cli("resolve", "de", event["id"])
    assert code == 0, err
    assert "resolved 1 event(s)" in out
    assert event["id"] not in [e["id"] for e in status(stack, "de")["openEvents"]]
    code, out, _ = cli("events", "de")
    assert event["id"] not in out
    # The resolved event stays visible in the integration's Kubernetes Events.
    code, out, _ = cli("events", "de", "--all", "-o", "wide")
    assert code == 0 and f"[{event['id']}]" in out and "EventsResolved" in out


def test_errors_name_what_failed_and_what_to_do(
    stack: LocalStack, world: dict[str, str], cli: Cli, tmp_path: Path
) -> None:
    code, _, err = cli("runs", "nope")
    assert code == 2 and "StripeIntegration ctl/nope not found" in err

    # A read-only user: the API server answers 403 to the patch (as RBAC does); nothing is written.
    reader = write_kubeconfig(tmp_path / "reader.yaml", stack.kube_url, namespace=NS)
    reader.write_text(reader.read_text().replace("emulator-token", READER_TOKEN))
    forbidden = {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "reason": "Forbidden",
        "code": 403,
        "message": 'stripeintegrations.m3stripe.dev "nl" is forbidden: User "reader" cannot patch resource '
        '"stripeintegrations" in API group "m3stripe.dev" in the namespace "ctl"',
    }
    stack.call(
        lambda: stack.k8s["patch", kmock.headers({"Authorization": f"Bearer {READER_TOKEN}"})] << 403 << forbidden
    )
    code, _, err = cli("sync", "nl", kubeconfig=reader)
    assert code == 1 and "forbidden: you may not patch" in err and 'User "reader" cannot patch' in err

    port = free_port()
    down = write_kubeconfig(tmp_path / "down.yaml", f"http://127.0.0.1:{port}")
    code, _, err = cli("get", kubeconfig=down)
    assert code == 1 and f"cannot reach the Kubernetes API at 127.0.0.1:{port}" in err

    code, _, err = cli("get", "--context", "nope", namespace=None)
    assert code == 2 and "context 'nope' is not in the kubeconfig" in err

    # No Stripe key: the operator cannot run a pass, so the CLI gives up after --timeout and says why.
    integration(stack, "nokey", credentialRef={"name": "missing"})
    wait_for(lambda: status(stack, "nokey").get("conditions"), timeout=60, what="the status of nokey")
    code, _, err = cli("sync", "nokey", "--timeout", "3s")
    assert code == 1 and "did not handle m3stripe.dev/requested-at" in err and "not Ready" in err


def test_kubectl_runs_the_plugin_with_the_kubeconfig_and_namespace_of_the_current_context(
    stack: LocalStack, world: dict[str, str], tmp_path: Path
) -> None:
    kubeconfig = write_kubeconfig(tmp_path / "config", stack.kube_url, namespace=NS)
    plugin = Path(sys.executable).parent / "kubectl-m3stripe"
    assert plugin.exists(), "the kubectl-m3stripe console script is not installed (pip install -e .)"
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    done = subprocess.run([str(plugin), "get", "nl", "-o", "json"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["metadata"]["name"] == "nl"
    # Through kubectl itself where it is installed: it finds `kubectl-m3stripe` on the PATH.
    kubectl = shutil.which("kubectl")
    command = [kubectl, "m3stripe"] if kubectl else [str(plugin)]
    env["PATH"] = f"{plugin.parent}{os.pathsep}{env.get('PATH', '')}"
    done = subprocess.run([*command, "sync", "nl"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "COMPLETE" in done.stdout


def test_in_plan_mode_sync_fails_when_no_new_plan_came_and_replay_is_refused(
    stack: LocalStack, world: dict[str, str], cli: Cli
) -> None:
    body = {
        "apiVersion": "m3stripe.dev/v1alpha1",
        "kind": "StripeIntegration",
        "metadata": {"name": "planning", "namespace": NS},
        "spec": {
            "destination": "StripeTestMode",
            "mode": "Plan",
            "credentialRef": {"name": "stripe"},
            "m3ter": {"organizationId": ORG, "credentialsRef": {"name": "m3ter"}},
            "syncInterval": "1h",
        },
        # Restored with a watermark that is not a time: every plan pass fails unexpectedly.
        "status": {"sync": {"watermark": "yesterday"}},
    }
    stack.kube.custom.create_namespaced_custom_object("m3stripe.dev", "v1alpha1", NS, "stripeintegrations", body)
    wait_for(
        lambda: any(
            c.get("type") == "Planned" and c.get("reason") == "InternalError"
            for c in status(stack, "planning").get("conditions") or ()
        ),
        timeout=90,
        what="the first (failing) plan pass",
    )
    code, out, err = cli("sync", "planning")
    assert code == 1, (out, err)
    assert "the plan pass did not finish" in out and "in the plan pass" in out

    before = annotations(stack, "planning").get("m3stripe.dev/replay")
    code, _, err = cli("replay", "planning", world["good"], "--force")
    assert code == 2 and "Plan mode" in err and "Switch spec.mode to Send first" in err
    assert annotations(stack, "planning").get("m3stripe.dev/replay") == before  # nothing was written
