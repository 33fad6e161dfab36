"""Command line: `m3stripe run` (the operator), `m3stripe demo`, `m3stripe crds`."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def _run(args: argparse.Namespace) -> int:
    import kopf

    import m3stripe.kube.handlers  # noqa: F401  (registers the handlers)

    kopf.configure(verbose=args.verbose, log_format=kopf.LogFormat.JSON if args.log_json else kopf.LogFormat.PLAIN)
    kopf.run(
        standalone=args.standalone,
        priority=args.priority,
        peering_name=None if args.standalone else args.peering,
        clusterwide=not args.namespace,
        namespaces=args.namespace or (),
        liveness_endpoint=args.liveness or None,
    )
    return 0


def _crds(args: argparse.Namespace) -> int:
    from m3stripe.api.crd import write_crds

    path = write_crds(Path(args.output))
    print(f"wrote {path}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from m3stripe.demo import main as demo_main

    return demo_main(duration=args.duration)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="m3stripe", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the operator against the cluster KUBECONFIG (or in-cluster config) points at")
    run.add_argument("-n", "--namespace", action="append", help="watch only this namespace (repeatable); default: all")
    run.add_argument("--standalone", action="store_true", help="no peering: only for a single replica")
    run.add_argument("--peering", default="m3stripe", help="kopf peering object name (default: m3stripe)")
    run.add_argument("--priority", type=int, default=0, help="peering priority; the highest active replica works")
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

    args = parser.parse_args(argv)
    if args.command != "run":  # kopf configures logging for the operator itself
        logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
