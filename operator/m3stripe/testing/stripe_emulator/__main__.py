"""Serve the emulator from its own process: ``python -m m3stripe.testing.stripe_emulator --port 12111``.

The first line it prints is its URL (with ``--port 0``, the port it picked). Keys, rate limits, the latency
profile, state and counters are also reachable at run time through its ``/_emulator/`` control endpoints.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

from .latency import LatencyProfile, parse
from .locks import READINGS
from .ratelimit import STRIPE_ENDPOINT_PER_SECOND
from .server import StripeEmulator


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m m3stripe.testing.stripe_emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=12111, help="0 picks a free port (default: %(default)s)")
    parser.add_argument(
        "--api-key",
        action="append",
        default=[],
        help="a key to accept (repeatable); sk_test_/sk_live_ prefixes",
    )
    parser.add_argument("--account", help="the account id the keys share (default: one new account)")
    parser.add_argument(
        "--rate-limit", type=float, default=None, help="requests per second per account; 0: none (the default)"
    )
    parser.add_argument(
        "--endpoint-rate-limit",
        type=float,
        default=STRIPE_ENDPOINT_PER_SECOND,
        help="requests per second per account and endpoint while --rate-limit is on; 0: none (default: %(default)s)",
    )
    latency = parser.add_mutually_exclusive_group()
    latency.add_argument("--latency", type=float, default=0.0, help="seconds added to every request")
    latency.add_argument(
        "--latency-profile",
        type=_profile,
        help="a latency drawn per request: SECONDS, fixed:SECONDS, or lognormal[:median=0.25,p99=1.2,seed=0,cap=10]",
    )
    parser.add_argument("--seed", type=int, default=None, help="seed for reproducible ids")
    parser.add_argument(
        "--contract-mode",
        action="store_true",
        help="check every request against the stripe SDK's types (violations: GET /_emulator/contract)",
    )
    parser.add_argument(
        "--locks",
        choices=READINGS,
        default="strict",
        help="which objects a write locks (lock_timeout): strict also locks the customer an invoice or a pending item "
        "is created for; addressed only the objects a write names (default: %(default)s)",
    )
    parser.add_argument(
        "--lock-timeouts",
        choices=("saved", "unsaved"),
        default="saved",
        help="whether a write refused with lock_timeout saves that 429 under its idempotency key, so that a retry "
        "with the key gets it again (default: %(default)s)",
    )
    return parser


def _profile(text: str) -> LatencyProfile:
    try:
        return parse(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


async def _serve(args: argparse.Namespace) -> None:
    emulator = StripeEmulator(
        rate_limit_per_second=args.rate_limit or None,
        latency_seconds=args.latency,
        latency=args.latency_profile,
        seed=args.seed,
        contract_mode=args.contract_mode,
        endpoint_rate_limit_per_second=args.endpoint_rate_limit or None,
        locks=args.locks,
        lock_timeouts_saved=args.lock_timeouts == "saved",
    )
    account = args.account
    for key in args.api_key:
        account = emulator.add_api_key(key, account)
    url = await emulator.start(args.host, args.port)
    print(url, flush=True)
    if account is not None:
        print(f"account {account}", file=sys.stderr, flush=True)
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stopped.set)
    try:
        await stopped.wait()
    finally:
        await emulator.stop()


def main(argv: list[str] | None = None) -> None:
    asyncio.run(_serve(_parser().parse_args(argv)))


if __name__ == "__main__":
    main()
