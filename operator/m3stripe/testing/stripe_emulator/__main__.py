"""Serve the emulator from its own process: ``python -m m3stripe.testing.stripe_emulator --port 12111``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

from .app import StripeEmulator


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
    parser.add_argument("--rate-limit", type=float, default=None, help="requests per second per account")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every request")
    parser.add_argument("--seed", type=int, default=None, help="seed for reproducible ids")
    return parser


async def _serve(args: argparse.Namespace) -> None:
    emulator = StripeEmulator(rate_limit_per_second=args.rate_limit, latency_seconds=args.latency, seed=args.seed)
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
