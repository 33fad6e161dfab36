"""The emulator process-side object: state plus an HTTP server on 127.0.0.1."""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Self

from aiohttp import web

from .admin import add_admin_routes
from .app import build_app
from .state import M3terState

# The published figures (the operator's adapter cites the same page).
ORGANIZATION_REQUESTS_PER_SECOND = 50
SOURCE_IP_REQUESTS_PER_WINDOW = 20_000
SOURCE_IP_WINDOW_SECONDS = 300.0


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    status: int | None = None  # set once the answer is known (429 for a throttled request)


@dataclass(frozen=True)
class Fault:
    status: int
    retry_after: float | None
    token_endpoint: bool


class M3terEmulator(M3terState):
    """An m3ter API stand-in reachable by the official SDK (``AsyncM3ter(base_url=emulator.url)``).

    Use as ``async with M3terEmulator() as m3ter: ...`` or ``await start()`` / ``await stop()``.
    Seed it with ``add_client``, ``add_account``, ``add_bill`` and ``add_external_mapping``.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        latency_seconds: float = 0.0,
        clock: Callable[[], datetime] | None = None,
        admin_api: bool = True,
        request_log_size: int = 10_000,
        organization_requests_per_second: int | None = ORGANIZATION_REQUESTS_PER_SECOND,
        ip_requests_per_window: int | None = SOURCE_IP_REQUESTS_PER_WINDOW,
        ip_window_seconds: float = SOURCE_IP_WINDOW_SECONDS,
        rate_clock: Callable[[], float] = time.time,
        search_seed: int | None = 0,
        search_next_token: bool = True,
        unique_timestamps: bool = True,
    ) -> None:
        """The rate limits default to m3ter's Config API limits; None turns one off.

        ``search_seed`` seeds the order of Search Bills ties (None: unseeded); ``search_next_token=False``
        answers Search Bills without ``nextToken``; ``unique_timestamps=False`` lets Bills changed at the
        same clock reading share a ``dtLastModified`` (m3ter's are milliseconds, and nothing makes them unique).
        """
        super().__init__(clock=clock, unique_timestamps=unique_timestamps)
        self.search_random = random.Random(search_seed)
        self.search_next_token = search_next_token
        # List Bills by ``ids``: at most this many a page (None: pageSize), and whether a nextToken follows.
        self.ids_page_cap: int | None = None
        self.ids_next_token = True
        # Bills Search Bills does not find (hide_from_search): m3ter does not say how soon a change reaches
        # its search index, so a test can make the index miss a Bill for as long as it likes.
        self.search_hidden: set[str] = set()
        self.host = host
        self.port = port
        self.latency_seconds = latency_seconds
        self.admin_api = admin_api
        self.requests: deque[RecordedRequest] = deque(maxlen=request_log_size)
        self.faults_served = 0
        # m3ter's Config API limits (https://www.m3ter.com/docs/guides/m3ter-apis/config-api-limits): per
        # Organization 50 requests a second, 429 "for the remainder of the second in which throttling has
        # occurred" (a fixed window per wall-clock second); per source IP 20,000 over a rolling 5 minutes,
        # 429 "until the total number of requests in the rolling 5-minute period drops below 20,000". m3ter
        # does not say whether throttled requests or token requests count: both do here (the stricter reading).
        self.organization_requests_per_second = organization_requests_per_second
        self.ip_requests_per_window = ip_requests_per_window
        self.ip_window_seconds = ip_window_seconds
        self.rate_clock = rate_clock
        self.throttled = 0
        self._org_second: dict[str, tuple[int, int]] = {}  # org -> (second, requests in it)
        self._ip_times: dict[str, deque[float]] = {}
        self._faults: deque[Fault] = deque()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """Base URL to hand to the SDK as ``base_url``."""
        if self._runner is None:
            raise RuntimeError("the emulator is not running; call start() first")
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        app = build_app(self)
        if self.admin_api:
            add_admin_routes(app)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        address: Any = runner.addresses[0]
        self.port = int(address[1])
        self._runner = runner

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # -- observation and fault injection --------------------------------------------------

    def record_request(self, method: str, path: str, query: dict[str, str]) -> None:
        self.requests.append(RecordedRequest(method, path, query))

    def admit(self, organization_id: str | None, ip: str) -> bool:
        """Count one request against its Organization and source IP; False if either limit throttles it."""
        now = self.rate_clock()
        allowed = True
        ip_limit = self.ip_requests_per_window
        if ip_limit is not None:
            times = self._ip_times.setdefault(ip, deque())
            while times and times[0] <= now - self.ip_window_seconds:
                times.popleft()
            allowed = len(times) < ip_limit
            times.append(now)
        org_limit = self.organization_requests_per_second
        if organization_id is not None and org_limit is not None:
            second = int(now // 1)
            current, count = self._org_second.get(organization_id, (second, 0))
            if current != second:
                count = 0
            count += 1
            self._org_second[organization_id] = (second, count)
            allowed = allowed and count <= org_limit
        if not allowed:
            self.throttled += 1
        return allowed

    def organization_of_client(self, client_id: str) -> str | None:
        client = self._clients.get(client_id)
        return None if client is None else client.organization_id

    def throttled_requests(self) -> list[RecordedRequest]:
        """Requests answered 429 because of a rate limit or an injected 429, in the log."""
        return [r for r in self.requests if r.status == 429]

    def requests_to(self, path_suffix: str, method: str = "GET") -> list[RecordedRequest]:
        """Recorded requests whose path ends with ``path_suffix``."""
        return [r for r in self.requests if r.method == method and r.path.endswith(path_suffix)]

    def inject_server_errors(
        self,
        count: int,
        *,
        status: int = 500,
        retry_after: float | None = None,
        token_endpoint: bool = False,
    ) -> None:
        """Answer the next ``count`` API requests with ``status`` (e.g. 500, 503, 429).

        ``retry_after`` adds a Retry-After header (seconds, fractions allowed, as the SDK honours).
        Token requests are spared unless ``token_endpoint`` is true.
        """
        self._faults.extend(Fault(status, retry_after, token_endpoint) for _ in range(count))

    def take_fault(self, *, token_endpoint: bool) -> Fault | None:
        if not self._faults:
            return None
        fault = self._faults[0]
        if token_endpoint and not fault.token_endpoint:
            return None
        self._faults.popleft()
        self.faults_served += 1
        return fault

    def clear_faults(self) -> None:
        self._faults.clear()

    def hide_from_search(self, bill_id: str) -> None:
        """Search Bills leaves this Bill out (a lagging index); List Bills and Get Bill still show it."""
        self.search_hidden.add(bill_id)

    def show_in_search(self, bill_id: str) -> None:
        self.search_hidden.discard(bill_id)
