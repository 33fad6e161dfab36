"""Command line: `m3stripe run` (the operator), `demo`, `crds`, and the day-2 commands (m3stripe.ctl)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from m3stripe.kube.config import OperatorConfig

# `m3stripe run`'s lease flags: each replaces one field of OperatorConfig.lease, parsed as its variable is.
LEASE_FLAGS = {
    "--lease-name": "name",
    "--lease-namespace": "namespace",
    "--lease-duration": "duration_seconds",
    "--lease-renew-deadline": "renew_deadline_seconds",
    "--lease-retry-period": "retry_period_seconds",
}


def run_config(args: argparse.Namespace, environ: Mapping[str, str]) -> OperatorConfig:
    """The operator's settings: the environment's, then `m3stripe run`'s flags over them (flags win)."""
    from m3stripe.kube.config import OperatorConfig

    config = OperatorConfig.from_env(environ)
    for flag, name in LEASE_FLAGS.items():
        raw = getattr(args, flag.removeprefix("--").replace("-", "_"))
        if raw is not None:
            config = config.with_text("lease", name, raw, source=flag)
    if args.standalone:
        config = config.with_text("lease", "name", "", source="--standalone")
    return config


def _run(args: argparse.Namespace) -> int:
    import os

    from m3stripe.kube.config import unknown_variables

    # Settings first: a bad value stops here, naming its variable or flag, before kopf starts.
    config = run_config(args, os.environ)

    import kopf

    import m3stripe.kube.handlers  # noqa: F401  (registers the handlers)
    from m3stripe.kube.runtime import OperatorMemo

    unknown = unknown_variables(os.environ)
    if unknown:
        print(f"m3stripe: ignoring unknown settings {', '.join(unknown)}", file=sys.stderr)
    if args.peering is not None or args.priority is not None:
        print("m3stripe: --peering and --priority are ignored: a Lease elects the writer", file=sys.stderr)
    kopf.configure(verbose=args.verbose, log_format=kopf.LogFormat.JSON if args.log_json else kopf.LogFormat.PLAIN)
    # Kopf itself always runs standalone: its peering pauses a restarted process while its dead predecessor's
    # record lives (60 s) and is only advisory. The Lease (m3stripe.kube.leadership) decides who writes.
    kopf.run(
        standalone=True,
        clusterwide=not args.namespace,
        namespaces=args.namespace or (),
        liveness_endpoint=args.liveness or None,
        memo=OperatorMemo(config=config, namespaced=bool(args.namespace)),
    )
    return 0


def _crds(args: argparse.Namespace) -> int:
    from m3stripe.api.crd import write_crds

    path = write_crds(Path(args.output))
    print(f"wrote {path}")
    return 0


# The emulators' dependencies, the `testing` extra: the operator image has neither kmock nor aiosmtpd.
_TESTING_EXTRA = frozenset({"kmock", "jsonpatch", "aiosmtpd"})


def _demo(args: argparse.Namespace) -> int:
    try:
        from m3stripe.demo import main as demo_main
    except ModuleNotFoundError as error:
        if (error.name or "").partition(".")[0] not in _TESTING_EXTRA:
            raise
        print(
            "m3stripe: the demo needs the emulators' dependencies: pip install 'm3ter-stripe-operator[testing]'",
            file=sys.stderr,
        )
        return 2
    return demo_main(duration=args.duration)


def _flag_help(group: str, name: str) -> str:
    from m3stripe.kube.config import all_settings

    found = next(s for s in all_settings() if (s.group, s.name) == (group, name))
    first = found.doc.split(". ")[0].split(":")[0].split(";")[0].rstrip(".")
    return f"{first} (env {found.variable.name}; default {found.default_text})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="m3stripe", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the operator against the cluster KUBECONFIG (or in-cluster config) points at")
    run.add_argument("-n", "--namespace", action="append", help="watch only this namespace (repeatable); default: all")
    run.add_argument("--standalone", action="store_true", help="no leader election: only when no other replica can run")
    lease = run.add_argument_group("leader election (one writer per shard, on a coordination.k8s.io/v1 Lease)")
    for flag, name in LEASE_FLAGS.items():
        lease.add_argument(flag, help=_flag_help("lease", name))
    # Kopf peering is gone; the flags stay accepted so that old manifests still start.
    run.add_argument("--peering", help=argparse.SUPPRESS)
    run.add_argument("--priority", type=int, help=argparse.SUPPRESS)
    run.add_argument("--liveness", default="http://0.0.0.0:8080/healthz", help="liveness endpoint ('' to disable)")
    run.add_argument("--verbose", action="store_true")
    run.add_argument("--log-json", action="store_true", help="log as JSON lines")
    run.set_defaults(func=_run)

    crds = sub.add_parser("crds", help="write the CRD generated from the pydantic models")
    crds.add_argument("-o", "--output", default="crds")
    crds.set_defaults(func=_crds)

    demo = sub.add_parser("demo", help="run the operator on the built-in emulators and show what it does")
    demo.add_argument("--duration", type=float, default=20.0, help="seconds to let the operator work")
    demo.set_defaults(func=_demo)

    # Day 2 from the terminal (also installed as the kubectl plugin `kubectl-m3stripe`).
    from m3stripe.ctl.commands import register as register_day2

    register_day2(sub)

    args = parser.parse_args(argv)
    if args.command != "run":  # kopf configures logging for the operator itself
        logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
