"""The day-2 commands' tables, tokens and kubeconfig handling, without a cluster."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from m3stripe.api.gestures import parse_targets, resolve_events
from m3stripe.ctl import gestures, views
from m3stripe.ctl.cluster import Cluster, CtlError
from m3stripe.ctl.commands import plugin_main, plugin_parser
from m3stripe.ctl.render import age, table

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def stamp(ago: timedelta) -> str:
    return (NOW - ago).strftime("%Y-%m-%dT%H:%M:%SZ")


def obj(name: str, status: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "billing"}, "spec": spec, "status": status}


def test_the_integrations_table_shows_readiness_the_last_run_open_events_and_the_error_budget() -> None:
    ready = {"type": "Ready", "status": "True", "reason": "Ready", "message": "connected"}
    items = [
        obj(
            "uk",
            {
                "conditions": [ready],
                "lastSync": {
                    "runId": "run-1",
                    "status": "COMPLETE",
                    "completionTime": stamp(timedelta(minutes=5)),
                    "billsSent": 3,
                    "billsFailed": 0,
                },
                "openEvents": [{"id": "evt-1"}, {"id": "evt-2"}],
                "consecutiveErrors": 2,
            },
            autoDisableThreshold=5,
        ),
        obj("new", {}),
        obj("off", {"disabled": True, "conditions": [{**ready, "status": "False", "reason": "AutoDisabled"}]}),
    ]
    header, uk, new, off = views.integrations_table(items, wide=False, namespaces=True, now=NOW).splitlines()
    assert header.split()[:3] == ["NAMESPACE", "NAME", "READY"]
    assert uk.split() == ["billing", "uk", "True", "Ready", "COMPLETE", "5m", "3", "0", "2", "-", "2/5"]
    assert new.split() == ["billing", "new", "Unknown", "-", "never", "-", "-", "-", "0", "-", "0/10"]
    assert off.split()[3] == "Disabled"


def test_the_integrations_table_names_the_integrations_overlapping_and_who_sends_the_shared_bills() -> None:
    records = [
        {"integration": "billing/uk", "uid": "u1", "sends": True, "bills": 7, "selections": "x", "lastSeen": "t"},
        {"integration": "team-b/uk-copy", "uid": "u2", "sends": False, "bills": 2, "selections": "y", "lastSeen": "t"},
    ]
    unknown = {"type": "Overlapping", "status": "Unknown", "reason": "PeersUnreadable", "message": "m"}
    items = [obj("both", {"overlaps": records}), obj("blind", {"conditions": [unknown]}), obj("alone", {})]
    _, both, blind, alone = views.integrations_table(items, wide=False, namespaces=False, now=NOW).splitlines()
    assert "left to billing/uk; shared with team-b/uk-copy" in both
    assert blind.split()[-2] == "unknown" and alone.split()[-2] == "-"


def test_tables_align_columns_like_kubectl() -> None:
    assert table(["A", "LONGER"], [["xyz", "1"], ["x", "22"]]).splitlines() == [
        "A     LONGER",
        "xyz   1",
        "x     22",
    ]


@pytest.mark.parametrize(
    ("ago", "text"),
    [
        (timedelta(seconds=5), "5s"),
        (timedelta(seconds=150), "2m30s"),
        (timedelta(hours=2), "120m"),
        (timedelta(hours=5), "5h"),
        (timedelta(days=3), "3d"),
    ],
)
def test_ages_read_as_kubectl_prints_them(ago: timedelta, text: str) -> None:
    assert age(stamp(ago), NOW) == text


def test_event_messages_are_shortened_in_the_table_and_whole_in_wide_output() -> None:
    event = {"id": "evt-1", "kind": "integration.validation.error", "billId": "b-1", "message": "x" * 200}
    short = views.events_table([event], wide=False, now=NOW)
    assert "validation" in short and "x" * 200 not in short and "…" in short
    assert "x" * 200 in views.events_table([event], wide=True, now=NOW)


def test_the_token_after_the_hash_does_not_change_what_the_operator_reads() -> None:
    value = gestures.with_token(["evt-1", "evt-2"], gestures.new_token())
    assert parse_targets(value) == ["evt-1", "evt-2"]
    assert resolve_events([{"id": "evt-1"}, {"id": "evt-3"}], value) == [{"id": "evt-3"}]
    assert gestures.new_token() != gestures.new_token()


def test_bills_and_runs_the_status_knows_are_those_of_recent_runs_and_open_events() -> None:
    status = {
        "recentRuns": [{"runId": "run-1", "stripeObjects": [{"billId": "b-1", "billVersion": 1, "stripeId": "in_1"}]}],
        "openEvents": [{"id": "evt-1", "runId": "run-0", "billId": "b-2"}],
    }
    assert views.known_bills(status) == {"b-1", "b-2"}
    assert views.known_runs(status) == ["run-1", "run-0"]


def kubeconfig(path: Path, current: str = "a") -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": "http://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [
            {"name": "a", "context": {"cluster": "c", "user": "u", "namespace": "billing"}},
            {"name": "b", "context": {"cluster": "c", "user": "u"}},
        ],
        "current-context": current,
    }
    path.write_text(yaml.safe_dump(config))
    return path


def test_the_namespace_comes_from_the_flag_else_the_context_else_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = kubeconfig(tmp_path / "config")
    assert Cluster.connect(kubeconfig=str(path), context=None, namespace=None).namespace == "billing"
    assert Cluster.connect(kubeconfig=str(path), context=None, namespace="other").namespace == "other"
    assert Cluster.connect(kubeconfig=str(path), context="b", namespace=None).namespace == "default"
    # KUBECONFIG is read when the command runs, as kubectl does.
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path / "other", current="b")))
    cluster = Cluster.connect(kubeconfig=None, context=None, namespace=None)
    assert (cluster.context, cluster.namespace) == ("b", "default")


def test_an_unknown_context_or_a_missing_kubeconfig_is_bad_input(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path / "config")
    with pytest.raises(CtlError, match=r"context 'x' is not in the kubeconfig .*it has: a, b") as err:
        Cluster.connect(kubeconfig=str(path), context="x", namespace=None)
    assert err.value.code == 2
    with pytest.raises(CtlError, match="cannot use the kubeconfig") as err:
        Cluster.connect(kubeconfig=str(tmp_path / "absent"), context=None, namespace=None)
    assert err.value.code == 2


@pytest.mark.parametrize(
    "argv",
    [
        ["-n", "foo", "--context", "b", "--kubeconfig", "k", "get"],
        ["get", "-n", "foo", "--context", "b", "--kubeconfig", "k"],
        ["-n", "bar", "get", "-n", "foo", "--context", "b", "--kubeconfig", "k"],
    ],
)
def test_cluster_flags_work_before_and_after_the_subcommand(argv: list[str]) -> None:
    args = plugin_parser().parse_args(argv)
    assert (args.namespace, args.context, args.kubeconfig) == ("foo", "b", "k")


def test_without_cluster_flags_the_kubeconfig_decides() -> None:
    args = plugin_parser().parse_args(["get"])
    assert (args.namespace, args.context, args.kubeconfig) == (None, None, None)


@pytest.mark.parametrize("bad", ["b-1#x", "b-2 b-3", "a,b", "../x", ""])
def test_replay_refuses_any_argument_that_is_not_one_bill_id(
    bad: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = kubeconfig(tmp_path / "config")
    code = plugin_main(["replay", "nl", "good-1", bad, "--kubeconfig", str(path), "--force"])
    err = capsys.readouterr().err
    assert code == 2 and repr(bad) in err and "not an m3ter Bill id" in err


def test_the_runs_command_names_the_tax_settings_when_any_is_set() -> None:
    assert views.tax_line({"automaticTax": "Enabled", "taxBehavior": "Exclusive"}) == (
        "tax: automaticTax Enabled, taxBehavior Exclusive"
    )
    assert views.tax_line({"destination": "Stripe"}) is None
