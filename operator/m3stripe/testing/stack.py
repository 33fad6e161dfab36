"""The local stack: every outside system the operator talks to, emulated on 127.0.0.1.

Used by the tests and by `m3stripe demo`::

    with LocalStack(tmp_path) as stack:
        stack.kube.create_secret("default", "stripe", {"apiKey": "sk_test_123"})
        with stack.operator() as op:
            ...

Each emulator runs in one background event loop, so synchronous code can drive it; the operator runs
as a real subprocess (`python -m m3stripe run`) that finds the emulators through KUBECONFIG,
STRIPE_API_BASE and M3TER_BASE_URL, exactly as it finds real systems in production.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import kmock

from m3stripe.testing.background import BackgroundLoop
from m3stripe.testing.kube_client import KubeClient
from m3stripe.testing.kube_emulator import KubeEmulator
from m3stripe.testing.kubeconfig import write_kubeconfig
from m3stripe.testing.m3ter_emulator import M3terEmulator
from m3stripe.testing.smtp import SmtpServer
from m3stripe.testing.stripe_emulator import StripeEmulator

T = TypeVar("T")


class OperatorProcess:
    """`python -m m3stripe run` as a subprocess, its output in a log file."""

    def __init__(self, env: Mapping[str, str], log_path: Path, args: list[str]) -> None:
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "m3stripe", "run", *args],
            env=dict(env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 20) -> int:
        """Graceful stop (SIGTERM), as Kubernetes does on pod termination."""
        if self.running:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return int(self.process.returncode)

    def pause(self) -> None:
        """SIGSTOP: the process freezes where it is (a GC pause, a frozen VM, a partitioned node), holding on
        to whatever it was doing."""
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after `pause`."""
        self.process.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        """Abrupt death (SIGKILL): nothing gets to clean up, as on a node failure or OOM kill."""
        if self.running:
            self.process.kill()
            self.process.wait()
        self._log.close()

    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


class LocalStack:
    """Kubernetes (kmock), Stripe, m3ter and SMTP emulators, started together on loopback."""

    def __init__(self, workdir: Path, *, stripe_rate_limit: float | None = None, stripe_latency: float = 0.0) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._stripe_rate_limit = stripe_rate_limit
        self._stripe_latency = stripe_latency
        self._loop: BackgroundLoop | None = None
        self._exit = contextlib.AsyncExitStack()
        self._operators: list[OperatorProcess] = []
        self.k8s: KubeEmulator
        self.stripe: StripeEmulator
        self.m3ter: M3terEmulator
        self.smtp: SmtpServer
        self.kube_url = ""
        self.kubeconfig: Path
        self.kube: KubeClient

    def __enter__(self) -> LocalStack:
        self._loop = BackgroundLoop()
        self._loop.call(self._start())
        self.kubeconfig = write_kubeconfig(self.workdir / "kubeconfig.yaml", self.kube_url)
        self.kube = KubeClient(self.kubeconfig)
        self.ensure_namespace("default")
        return self

    def ensure_namespace(self, name: str) -> None:
        self.call(lambda: self.k8s.add_namespace(name))

    async def _start(self) -> None:
        self.k8s = await self._exit.enter_async_context(KubeEmulator())
        server = await self._exit.enter_async_context(kmock.Server(self.k8s))
        self.kube_url = str(server.url).rstrip("/")
        self.stripe = await self._exit.enter_async_context(
            # Contract mode: every request is checked against the SDK's types and API version on receipt
            # (tests fail at teardown on any violation: tests/conftest.py).
            StripeEmulator(
                rate_limit_per_second=self._stripe_rate_limit,
                latency_seconds=self._stripe_latency,
                contract_mode=True,
            )
        )
        self.m3ter = await self._exit.enter_async_context(M3terEmulator())
        self.smtp = await self._exit.enter_async_context(SmtpServer())

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for op in self._operators:
            op.kill()
        if self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.call(self._exit.aclose(), timeout=30)
            self._loop.stop()

    def call(self, fn: Callable[[], T]) -> T:
        """Run a synchronous function on the emulators' loop (their state is not thread-safe)."""

        async def run() -> T:
            return fn()

        assert self._loop is not None
        return self._loop.call(run())

    def run(self, coro: Any, timeout: float | None = 60) -> Any:
        assert self._loop is not None
        return self._loop.call(coro, timeout)

    def stripe_contract_violations(self) -> str:
        """The Stripe emulator's contract violations so far, one a line ('' when none)."""
        return self.call(self.stripe.contract_report)

    def stripe_client(self, api_key: str) -> Any:
        """The official Stripe SDK (synchronous), pointed at the emulator: for seeding and inspecting."""
        import stripe

        return stripe.StripeClient(
            api_key,
            base_addresses={"api": self.stripe.url},
            http_client=stripe.HTTPXClient(allow_sync_methods=True),
            max_network_retries=2,
        )

    def annotate(self, namespace: str, name: str, key: str, value: str) -> None:
        self.kube.patch_integration(namespace, name, {"metadata": {"annotations": {key: value}}})

    def operator_env(self, **overrides: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            KUBECONFIG=str(self.kubeconfig),
            STRIPE_API_BASE=self.stripe.url,
            M3TER_BASE_URL=self.m3ter.url,
            M3STRIPE_METRICS_PORT="0",
            M3STRIPE_SECRET_POLL_INTERVAL="1s",
            M3STRIPE_CREDENTIAL_RETRY_INTERVAL="1s",
            M3STRIPE_SMTP_HOST=self.smtp.host,
            M3STRIPE_SMTP_PORT=str(self.smtp.port),
            PYTHONUNBUFFERED="1",
        )
        env.pop("KUBERNETES_SERVICE_HOST", None)
        env.update(overrides)
        return env

    @contextlib.contextmanager
    def operator(self, *args: str, name: str = "operator", **env: str) -> Iterator[OperatorProcess]:
        op = self.start_operator(*args, name=name, **env)
        try:
            yield op
        finally:
            op.stop()

    def start_operator(self, *args: str, name: str = "operator", **env: str) -> OperatorProcess:
        cli = list(args) or ["--standalone", "--liveness="]
        op = OperatorProcess(self.operator_env(**env), self.workdir / f"{name}.log", cli)
        self._operators.append(op)
        return op


def wait_for(predicate: Callable[[], T], *, timeout: float = 30, interval: float = 0.2, what: str = "condition") -> T:
    """Poll until `predicate()` is truthy; fail with `what` after `timeout` seconds (no wall-clock asserts)."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")
