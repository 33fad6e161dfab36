"""Command line: `m3stripe run` (the operator), `demo`, `crds`, and the day-2 commands (m3stripe.ctl)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

_LEASE_FLAGS = {
    "lease_name": "M3STRIPE_LEASE_NAME",
    "lease_namespace": "M3STRIPE_LEASE_NAMESPACE",
    "lease_duration": "M3STRIPE_LEASE_DURATION",
    "lease_renew_deadline": "M3STRIPE_LEASE_RENEW_DEADLINE",
    "lease_retry_period": "M3STRIPE_LEASE_RETRY_PERIOD",
}


def _run(args: argparse.Namespace) -> int:
    import os

    import kopf

    import m3stripe.kube.handlers  # noqa: F401  (registers the handlers)

    # Flags win over the environment; the operator reads its settings from the environment only.
    for attr, env in _LEASE_FLAGS.items():
        if getattr(args, attr) is not None:
            os.environ[env] = str(getattr(args, attr))
    if args.standalone:
        os.environ["M3STRIPE_LEASE_NAME"] = ""
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
        memo=kopf.Memo(namespaced=bool(args.namespace)),
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
    return demo_main(duration=args.duration, prometheus=args.prometheus)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="m3stripe", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the operator against the cluster KUBECONFIG (or in-cluster config) points at")
    run.add_argument("-n", "--namespace", action="append", help="watch only this namespace (repeatable); default: all")
    run.add_argument("--standalone", action="store_true", help="no leader election: only when no other replica can run")
    lease = run.add_argument_group("leader election (one writer per shard, on a coordination.k8s.io/v1 Lease)")
    lease.add_argument("--lease-name", help="the shard's Lease (env M3STRIPE_LEASE_NAME; default m3stripe)")
    lease.add_argument("--lease-namespace", help="its namespace (env M3STRIPE_LEASE_NAMESPACE; default: POD_NAMESPACE)")
    lease.add_argument("--lease-duration", help="how long a silent holder keeps it (default 15s)")
    lease.add_argument("--lease-renew-deadline", help="the holder stops writing this long after a renew (10s)")
    lease.add_argument("--lease-retry-period", help="how often it is renewed or tried (default 2s)")
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
    demo.add_argument(
        "--duration", type=float, help="seconds to let the operator work (default 20; 600 with --prometheus)"
    )
    demo.add_argument(
        "--prometheus",
        action="store_true",
        help="also run Prometheus (Debian's prometheus package) on 127.0.0.1, scraping the operator with the "
        "shipped alerts, and print where to look",
    )
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
