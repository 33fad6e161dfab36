"""Run the m3ter emulator as a process: ``python -m m3stripe.testing.m3ter_emulator --port 8080``."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
from pathlib import Path

from .admin import load_fixtures
from .server import M3terEmulator

log = logging.getLogger("m3stripe.testing.m3ter_emulator")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m m3stripe.testing.m3ter_emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    parser.add_argument("--client-id", help="register one OAuth client (with --client-secret and --org-id)")
    parser.add_argument("--client-secret")
    parser.add_argument("--org-id")
    parser.add_argument("--token-ttl", type=int, default=18000, help="token lifetime in seconds")
    parser.add_argument("--fixtures", type=Path, help="JSON file of clients/accounts/bills/mappings")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every response")
    parser.add_argument("--no-admin-api", action="store_true", help="disable the /_emulator seeding API")
    parser.add_argument(
        "--org-rate-limit", type=int, default=50, help="requests per second per organization (m3ter: 50); 0: off"
    )
    parser.add_argument(
        "--ip-rate-limit", type=int, default=20_000, help="requests per 5 minutes per source IP (m3ter: 20,000); 0: off"
    )
    parser.add_argument("--search-seed", type=int, default=0, help="seed of the order of Search Bills ties")
    parser.add_argument(
        "--search-without-next-token", action="store_true", help="Search Bills answers never carry nextToken"
    )
    return parser


async def _serve(args: argparse.Namespace) -> None:
    emulator = M3terEmulator(
        host=args.host,
        port=args.port,
        latency_seconds=args.latency,
        admin_api=not args.no_admin_api,
        organization_requests_per_second=args.org_rate_limit or None,
        ip_requests_per_window=args.ip_rate_limit or None,
        search_seed=args.search_seed,
        search_next_token=not args.search_without_next_token,
    )
    if args.client_id:
        if not (args.client_secret and args.org_id):
            raise SystemExit("--client-id needs --client-secret and --org-id")
        emulator.add_client(args.client_id, args.client_secret, args.org_id, token_ttl_seconds=args.token_ttl)
    if args.fixtures:
        load_fixtures(emulator, json.loads(args.fixtures.read_text()))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with emulator:
        log.info("m3ter emulator listening on %s", emulator.url)
        print(emulator.url, flush=True)  # lets a parent process discover the port when --port 0
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    asyncio.run(_serve(_parser().parse_args(argv)))


if __name__ == "__main__":
    main()
