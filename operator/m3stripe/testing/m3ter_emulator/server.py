"""The emulator process-side object: state plus an HTTP server on 127.0.0.1."""

from __future__ import annotations

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


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]


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
    ) -> None:
        super().__init__(clock=clock)
        self.host = host
        self.port = port
        self.latency_seconds = latency_seconds
        self.admin_api = admin_api
        self.requests: deque[RecordedRequest] = deque(maxlen=request_log_size)
        self.faults_served = 0
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
