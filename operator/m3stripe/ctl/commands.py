"""The day-2 subcommands, registered on `m3stripe` and served alone by `kubectl-m3stripe` (a kubectl plugin).

Exit codes: 0 done; 1 it did not happen (the run failed, the operator did not answer in time, the API
failed); 2 bad input (unknown integration, event, Bill or run; bad flags or kubeconfig).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from m3stripe.api import names
from m3stripe.api.conditions import find
from m3stripe.api.durations import format_duration, parse_duration
from m3stripe.api.gestures import BILL_ID, MAX_GESTURE_IDS, MAX_GESTURE_LENGTH, replay_bills, replay_request
from m3stripe.api.status import ConditionType
from m3stripe.ctl import gestures, views
from m3stripe.ctl import plan as plans
from m3stripe.ctl.cluster import Cluster, CtlError
from m3stripe.ctl.render import NONE, dump, parse_time

EPILOG = (
    "Namespace and cluster come from the kubeconfig as kubectl reads them (KUBECONFIG, current context); "
    "-n, --context and --kubeconfig override. Exit codes: 0 done, 1 it did not happen, 2 bad input."
)
Handler = Callable[[argparse.Namespace, Cluster], int]


def register(sub: Any) -> None:
    """Add the day-2 subcommands to an argparse subparsers object."""
    kube = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: a flag not given after the subcommand keeps what was given before it (`kubectl m3stripe -n x get`).
    cluster_flags(kube, default=argparse.SUPPRESS)
    read = argparse.ArgumentParser(add_help=False)
    read.add_argument("-o", "--output", choices=("table", "wide", "json", "yaml"), default="table")
    act = argparse.ArgumentParser(add_help=False)
    act.add_argument("-o", "--output", choices=("text", "json", "yaml"), default="text")
    act.add_argument("--timeout", default="60s", type=_timeout, help="how long to wait for the operator (default 60s)")

    def add(name: str, handler: Handler, help_: str, parents: list[argparse.ArgumentParser]) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = sub.add_parser(
            name, help=help_, description=help_ + ".", epilog=EPILOG, parents=[kube, *parents]
        )
        parser.set_defaults(func=lambda args: _main(args, handler))
        return parser

    get = add("get", _get, "list StripeIntegrations with their last run, open events and error count", [read])
    get.add_argument("name", nargs="?", help="one integration (default: all in the namespace)")
    get.add_argument("-A", "--all-namespaces", action="store_true", help="in every namespace")

    runs = add("runs", _runs, "the recent sync runs of an integration, newest first", [read])
    runs.add_argument("name")

    events = add("events", _events, "the open error events of an integration (to resolve)", [read])
    events.add_argument("name")
    events.add_argument(
        "--all", action="store_true", help="also the Kubernetes Events recorded for it (resolved ones included)"
    )

    plan = add("plan", _plan, "the last dry run (spec.mode: Plan): what a Send pass would do per Bill", [read])
    plan.add_argument("name")

    sync = add("sync", _sync, "run a sync pass now and print its result", [act])
    sync.add_argument("name")

    resolve = add("resolve", _resolve, "mark open error events as actioned", [act])
    resolve.add_argument("name")
    resolve.add_argument("ids", nargs="*", metavar="ID", help="event ids (see `events NAME`)")
    resolve.add_argument("--all", action="store_true", help="every open event")

    replay = add("replay", _replay, "send Bills again (still exactly once) and print what happened", [act])
    replay.add_argument("name")
    replay.add_argument("bills", nargs="*", metavar="BILL", help="m3ter Bill ids")
    replay.add_argument("--run", help="every Bill of this run (see `runs NAME`)")
    replay.add_argument(
        "--force", action="store_true", help="send Bill ids the status does not mention (older than the run history)"
    )

    reenable = add("reenable", _reenable, "re-enable an integration that disabled itself after errors", [act])
    reenable.add_argument("name")


def cluster_flags(parser: argparse.ArgumentParser, *, default: Any = None) -> None:
    """-n, --context and --kubeconfig, as kubectl takes them."""
    group = parser.add_argument_group("cluster (as kubectl)")
    group.add_argument("-n", "--namespace", default=default, help="namespace (default: the context's, else 'default')")
    group.add_argument("--context", default=default, help="kubeconfig context (default: the current one)")
    group.add_argument(
        "--kubeconfig", default=default, help="kubeconfig file (default: KUBECONFIG, else ~/.kube/config)"
    )


def plugin_main(argv: list[str] | None = None) -> int:
    """`kubectl-m3stripe`: kubectl runs it for `kubectl m3stripe ...`, forwarding the arguments after the name
    (https://kubernetes.io/docs/tasks/extend-kubectl/kubectl-plugins/)."""
    args = plugin_parser().parse_args(argv)
    return int(args.func(args))


def plugin_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubectl m3stripe", description="Day-2 commands for StripeIntegrations.", epilog=EPILOG
    )
    cluster_flags(parser)  # kubectl users put them before the subcommand as often as after it
    register(parser.add_subparsers(dest="command", required=True))
    return parser


def _timeout(text: str) -> float:
    try:
        return parse_duration(text, maximum=timedelta(hours=1)).total_seconds()
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _main(args: argparse.Namespace, handler: Handler) -> int:
    try:
        cluster = Cluster.connect(
            kubeconfig=getattr(args, "kubeconfig", None),
            context=getattr(args, "context", None),
            namespace=getattr(args, "namespace", None),
        )
        try:
            return handler(args, cluster)
        finally:
            cluster.close()
    except CtlError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.code
    except KeyboardInterrupt:
        print("interrupted; an annotation already written stays and is handled by the operator", file=sys.stderr)
        return 130


def _print(text: str) -> None:
    print(text, flush=True)


def _say(args: argparse.Namespace) -> Callable[[str], None]:
    return lambda line: print(line, file=sys.stderr, flush=True)


# Reads


def _get(args: argparse.Namespace, cluster: Cluster) -> int:
    items = [cluster.get(args.name)] if args.name else cluster.list_all(all_namespaces=args.all_namespaces)
    if args.output in ("json", "yaml"):
        data: Any = items[0] if args.name else {"apiVersion": "v1", "kind": "List", "items": items}
        _print(dump(data, args.output))
        return 0
    if not items:
        where = "any namespace" if args.all_namespaces else f"namespace {cluster.namespace}"
        print(f"No {names.KIND}s found in {where}.", file=sys.stderr)
        return 0
    now = datetime.now(UTC)
    _print(views.integrations_table(items, wide=args.output == "wide", namespaces=args.all_namespaces, now=now))
    return 0


def _runs(args: argparse.Namespace, cluster: Cluster) -> int:
    obj = cluster.get(args.name)
    status = views.status_of(obj)
    runs = list(status.get("recentRuns") or ())
    if args.output in ("json", "yaml"):
        _print(dump(runs, args.output))
        return 0
    if not runs:
        print(f"{cluster.namespace}/{args.name} has not run yet.", file=sys.stderr)
        return 0
    tax = views.tax_line(dict(obj.get("spec") or {}))
    if tax:
        print(f"{cluster.namespace}/{args.name}: {tax}")
    _print(views.runs_table(runs, wide=args.output == "wide", now=datetime.now(UTC)))
    return 0


def _events(args: argparse.Namespace, cluster: Cluster) -> int:
    obj = cluster.get(args.name)
    events = list(views.status_of(obj).get("openEvents") or ())
    history = cluster.events(obj) if args.all else []
    if args.output in ("json", "yaml"):
        data: dict[str, Any] = {"openEvents": events}
        if args.all:
            data["kubernetesEvents"] = history
        _print(dump(data, args.output))
        return 0
    now, wide = datetime.now(UTC), args.output == "wide"
    if events:
        _print(views.events_table(events, wide=wide, now=now))
    else:
        print(f"{cluster.namespace}/{args.name} has no open error events.", file=sys.stderr)
    if args.all:
        _print("")
        _print(f"Kubernetes Events of {cluster.namespace}/{args.name} (oldest first):")
        _print(views.kube_events_table(history, wide=wide, now=now) if history else "none")
    return 0


def _plan(args: argparse.Namespace, cluster: Cluster) -> int:
    obj = cluster.get(args.name)
    plan = plans.plan_of(obj)
    if not plan:
        mode = (obj.get("spec") or {}).get("mode") or "Send"
        hint = "the first plan pass has not finished yet" if mode == "Plan" else "set spec.mode: Plan (in git) first"
        print(f"{cluster.namespace}/{args.name} has no plan: {hint}.", file=sys.stderr)
        return 1
    if args.output in ("json", "yaml"):
        _print(dump(plan, args.output))
        return 0
    for line in plans.plan_header(obj, plan, now=datetime.now(UTC)):
        _print(line)
    _print("")
    _print(plans.plan_table(list(plan.get("items") or ()), wide=args.output == "wide"))
    note = plans.truncation_note(plan)
    if note:
        _print(note)
    return 0


# Gestures


def _sync(args: argparse.Namespace, cluster: Cluster) -> int:
    obj = cluster.get(args.name)
    _must_be_able_to_run(obj, cluster.namespace, args.name)
    before = plans.plan_of(obj).get("runId")
    handled = gestures.request(
        cluster, args.name, gestures.SYNC, gestures.new_token(), timeout=args.timeout, say=_say(args)
    )
    if (handled.obj.get("spec") or {}).get("mode") == "Plan":
        # A plan pass is no run: it answers with a new status.plan (`m3stripe plan NAME` prints it whole).
        # The request is echoed even when the plan pass failed: only a plan with a new run id is this pass's.
        plan = plans.plan_of(handled.obj)
        data = {"integration": f"{cluster.namespace}/{args.name}", "plan": plan}
        if not plan or plan.get("runId") == before:
            planned = find(handled.status.get("conditions"), ConditionType.PLANNED) or {}
            why = str(planned.get("message") or "") or "no new plan was recorded"
            return _done(args, f"{cluster.namespace}/{args.name}: the plan pass did not finish: {why}", data, code=1)
        text = f"{cluster.namespace}/{args.name}: {plan.get('message') or 'no plan was recorded'}"
        return _done(args, text, data, code=0)
    return _report_run(args, cluster, handled)


def _replay(args: argparse.Namespace, cluster: Cluster) -> int:
    if bool(args.bills) == bool(args.run):
        raise CtlError("name Bill ids or --run RUN (one of them): replay NAME BILL... | replay NAME --run RUN", code=2)
    bad = [b for b in args.bills if not BILL_ID.fullmatch(b)]
    if bad:
        # Each argument is one id: the operator would read 'b-1#x' as b-1 and 'b-2 b-3' as two ids.
        raise CtlError(
            f"{', '.join(repr(b[:140]) for b in bad)}: not an m3ter Bill id (letters, digits, '-', '_', '.', ':'; "
            "at most 128; one id per argument)",
            code=2,
        )
    obj = cluster.get(args.name)
    if (obj.get("spec") or {}).get("mode") == "Plan":
        raise CtlError(
            f"{cluster.namespace}/{args.name} is in Plan mode (spec.mode: Plan): nothing is sent to Stripe, and the "
            "operator refuses a replay there. Switch spec.mode to Send first, then replay",
            code=2,
        )
    status = views.status_of(obj)
    if args.run:
        runs = views.known_runs(status)
        if args.run not in runs:
            raise CtlError(
                f"run {args.run} is not in the status of {cluster.namespace}/{args.name}; its recent runs: "
                f"{', '.join(runs[:10]) or 'none'} (m3stripe runs {args.name})",
                code=2,
            )
        targets = [f"run:{args.run}"]
        if not replay_bills(status, targets[0]):
            raise CtlError(f"run {args.run} sent no Bill and has no open event naming one: nothing to replay", code=2)
    else:
        unknown = sorted(set(args.bills) - views.known_bills(status))
        if unknown and not args.force:
            raise CtlError(
                f"Bill(s) {', '.join(unknown)} are not in the status of {cluster.namespace}/{args.name} "
                "(neither sent in a recent run nor named by an open event). Check the ids with "
                f"`m3stripe runs {args.name} -o yaml` and `m3stripe events {args.name}`; to send a Bill older than "
                "the run history, add --force",
                code=2,
            )
        targets = list(dict.fromkeys(args.bills))
    _must_be_able_to_run(obj, cluster.namespace, args.name)
    value = gestures.with_token(targets, gestures.new_token())
    # The operator's own rules for a replay value (id syntax, known runs): refused there, it would not be echoed.
    problems = replay_request(status, value).problems
    if problems:
        raise CtlError("; ".join(problems), code=2)
    _within_gesture_bounds(targets, value)
    handled = gestures.request(cluster, args.name, gestures.REPLAY, value, timeout=args.timeout, say=_say(args))
    return _report_run(args, cluster, handled, replayed=sorted(replay_bills(status, value)))


def _resolve(args: argparse.Namespace, cluster: Cluster) -> int:
    if bool(args.ids) == bool(args.all):
        raise CtlError("name event ids or --all (one of them): resolve NAME ID... | resolve NAME --all", code=2)
    obj = cluster.get(args.name)
    open_ids = [str(e.get("id")) for e in views.status_of(obj).get("openEvents") or ()]
    if args.all:
        if not open_ids:
            return _done(args, f"{cluster.namespace}/{args.name} has no open error events; nothing to resolve", {})
        targets, wanted = ["all"], set(open_ids)
    else:
        unknown = [i for i in dict.fromkeys(args.ids) if i not in open_ids]
        if unknown:
            raise CtlError(
                f"no open event {', '.join(unknown)} on {cluster.namespace}/{args.name}; open ones: "
                f"{', '.join(open_ids[:10]) or 'none'} (m3stripe events {args.name})",
                code=2,
            )
        targets = list(dict.fromkeys(args.ids))
        wanted = set(targets)
    value = gestures.with_token(targets, gestures.new_token())
    _within_gesture_bounds(targets, value)
    handled = gestures.request(cluster, args.name, gestures.RESOLVE, value, timeout=args.timeout, say=_say(args))
    still_open = [str(e.get("id")) for e in handled.status.get("openEvents") or ()]
    resolved = sorted(wanted - set(still_open))
    result = {"integration": f"{cluster.namespace}/{args.name}", "resolved": resolved, "stillOpen": still_open}
    text = f"resolved {len(resolved)} event(s) of {cluster.namespace}/{args.name}; {len(still_open)} still open"
    reopened = sorted(wanted & set(still_open))
    if reopened:
        # A pass that ran right after the resolve found the same problem again.
        text += f"; open again (the problem persists): {', '.join(reopened)}"
    return _done(args, text, result, code=1 if reopened else 0)


def _reenable(args: argparse.Namespace, cluster: Cluster) -> int:
    obj = cluster.get(args.name)
    if not views.status_of(obj).get("disabled"):
        return _done(args, f"{cluster.namespace}/{args.name} is not disabled; nothing to re-enable", {})
    handled = gestures.request(
        cluster, args.name, gestures.REENABLE, gestures.new_token(), timeout=args.timeout, say=_say(args)
    )
    status = handled.status
    if status.get("disabled"):
        raise CtlError(f"the operator handled the request but {cluster.namespace}/{args.name} is still disabled")
    due = _next_pass(handled.obj)
    text = (
        f"re-enabled {cluster.namespace}/{args.name} (error count reset to {status.get('consecutiveErrors', 0)}); "
        f"next scheduled pass {due}; `m3stripe sync {args.name}` runs one now"
    )
    return _done(args, text, {"integration": f"{cluster.namespace}/{args.name}", "disabled": False})


def _within_gesture_bounds(targets: list[str], value: str) -> None:
    """The operator refuses a whole value beyond its bounds (api/gestures.py) and would never echo it."""
    if len(targets) > MAX_GESTURE_IDS or len(value) > MAX_GESTURE_LENGTH:
        raise CtlError(
            f"{len(targets)} ids ({len(value)} characters) are more than the operator takes in one request "
            f"(at most {MAX_GESTURE_IDS} ids and {MAX_GESTURE_LENGTH} characters): split them into several calls",
            code=2,
        )


def _must_be_able_to_run(obj: dict[str, Any], namespace: str, name: str) -> None:
    """Fail before writing when the operator would certainly not run the pass."""
    status = views.status_of(obj)
    if (obj.get("spec") or {}).get("suspend"):
        raise CtlError(
            f"{namespace}/{name} is suspended (spec.suspend: true): the operator runs no pass. "
            "Set spec.suspend to false (in git, if it is managed there) first"
        )
    if status.get("disabled"):
        raise CtlError(
            f"{namespace}/{name} disabled itself after {status.get('consecutiveErrors', 'several')} successive "
            f"errors: the operator runs no pass. Fix the cause (m3stripe events {name}), then "
            f"`m3stripe reenable {name}`"
        )


def _report_run(
    args: argparse.Namespace, cluster: Cluster, handled: gestures.Handled, replayed: list[str] | None = None
) -> int:
    status = handled.status
    run = views.run_of(status, (status.get("lastSync") or {}).get("runId"))
    failed_events = views.events_of_run(status, run.get("runId"))
    ok = run.get("status") == "COMPLETE"
    outcome: dict[str, Any] = {
        "integration": f"{cluster.namespace}/{args.name}",
        "handledAfterSeconds": round(handled.seconds, 3),
        "run": run,
        "events": failed_events,
    }
    lines = [f"{cluster.namespace}/{args.name}: {views.run_line(run)}"]
    if replayed is not None:
        sent = {str(o["billId"]): str(o["stripeId"]) for o in run.get("stripeObjects") or ()}
        failed = {str(e["billId"]): str(e.get("message") or "") for e in failed_events if e.get("billId")}
        bills = []
        for bill in replayed:
            if bill in sent:
                bills.append({"billId": bill, "outcome": "sent", "stripeId": sent[bill]})
                lines.append(f"  {bill}: sent, now {sent[bill]}")
            elif bill in failed:
                bills.append({"billId": bill, "outcome": "failed", "message": failed[bill]})
                lines.append(f"  {bill}: failed: {failed[bill]}")
            else:
                bills.append({"billId": bill, "outcome": "not sent"})
                lines.append(
                    f"  {bill}: not sent (Stripe already holds this version, the integration does not select it, "
                    "or m3ter has no such Bill)"
                )
        outcome["bills"] = bills
        ok = ok and not any(b["outcome"] == "failed" for b in bills)
    elif failed_events:
        for event in failed_events[:5]:
            lines.append(f"  [{event.get('id')}] {event.get('message')}")
        if len(failed_events) > 5:
            lines.append(f"  ... {len(failed_events) - 5} more: m3stripe events {args.name}")
    return _done(args, "\n".join(lines), outcome, code=0 if ok else 1)


def _done(args: argparse.Namespace, text: str, data: dict[str, Any], code: int = 0) -> int:
    if args.output in ("json", "yaml"):
        _print(dump({**data, "ok": code == 0, "message": text}, args.output))
    else:
        _print(text)
    return code


def _next_pass(obj: dict[str, Any]) -> str:
    last = parse_time(((obj.get("status") or {}).get("lastSync") or {}).get("completionTime"))
    try:
        interval = parse_duration(str((obj.get("spec") or {}).get("syncInterval") or "5m"))
    except ValueError:
        return NONE
    if last is None:
        return "now"
    left = last + interval - datetime.now(UTC)
    return "now" if left.total_seconds() <= 0 else f"in {format_duration(left)}"
