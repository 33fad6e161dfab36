"""One writer per shard: leader election on a `coordination.k8s.io/v1` Lease, and the fence the writer checks.

The election follows client-go's `tools/leaderelection` (leaderelection.go, resourcelock/leaselock.go):

- every `retry_period` each candidate reads the Lease; it may take it when nobody holds it (never created,
  or released: empty `holderIdentity`), or when the record has not changed for `lease_duration` *as the
  candidate itself observed it* (its own monotonic clock, never the holder's `renewTime`, so clock skew
  between nodes does not matter);
- the holder renews every `retry_period` (write `renewTime`), with `resourceVersion` as a precondition, so
  of two candidates writing the same version one gets 409 Conflict;
- the holder releases on graceful shutdown (empty holder, duration 1 s, as client-go's `release()`), so a
  rolling restart hands over at the next retry of the standby instead of after a lease duration.

One addition to client-go: a restarted container takes its own dead predecessor's Lease at once, so a
crash-looping single replica resumes within seconds instead of waiting out its own dead Lease. A pod name
alone does not prove the holder dead: `kubectl exec <pod> -- m3stripe run` or a local run with the same
POD_NAME is a live namesake, and stealing from it would give two writers with valid fences, each taking
the Lease back every round. So the shortcut needs two proofs, both held by a lock file in a directory that
outlives a container but not its pod (an `emptyDir`, `M3STRIPE_LEASE_LOCK_FILE`):

- this process holds an exclusive `flock` on it (LOCK_EX|LOCK_NB). The kernel drops a flock when the
  process holding it dies (SIGKILL, OOM kill included), so a crashed predecessor never blocks, while a live
  namesake in the same pod still holds it and no shortcut is taken;
- the file names exactly the Lease's current `holderIdentity`. Each holder writes its identity there
  (while holding the flock) before it takes the Lease, so only a process sharing that very directory, the
  same pod, can match it; a namesake elsewhere has no such file content.

Whenever the lock file cannot be opened, locked or read, the candidate waits out the lease duration as
client-go does.

Fencing (why two writers are impossible): the holder notes `t_s`, its monotonic time *before* it sends the
read that precedes a successful renew. It may write (Stripe and status) only while `now < t_s +
renew_deadline`. The record it stored can only be observed by a candidate at some `t_o >= t_s`, and the
candidate may take the Lease only at `t_o + lease_duration` (on its own clock) if the record stays the same.
So the old writer's last permitted start of a write precedes the earliest take-over by at least
`lease_duration - renew_deadline` (5 s by default). Only the *rates* of the two monotonic clocks matter
(drift is parts per million, milliseconds over 15 s), not their offsets. A paused process (SIGSTOP, a GC
pause, a frozen VM) sees on waking that its fence is past: the monotonic clock keeps running while a
process is stopped. `renew_deadline < lease_duration` is enforced, with `CLOCK_SKEW_MARGIN` between them.

Requests in flight when the fence falls: every Stripe request of a fenced pass runs under
`asyncio.timeout(time_left())`, so the client abandons it by the fence's end (a FenceLost, not a Stripe
error), `lease_duration - renew_deadline` before another replica can take the Lease. That bounds the client
side only. A request Stripe already received is processed by Stripe on its own schedule, and nothing we do
can recall it; the margin (5 s by default) is what covers Stripe's processing of it. The new writer lists
what Stripe holds before writing, and idempotency keys are salted per run, so they do not deduplicate across
writers: a duplicate is possible only if Stripe takes longer than the margin to commit a request it received
before the fence fell.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from m3stripe.adapters.kube_api import KubeApiError, LeaseRecord
from m3stripe.adapters.stripe_rate_limit import StripeRateLimit
from m3stripe.domain.ports import FenceLost

log = logging.getLogger(__name__)

# The smallest gap allowed between the renew deadline and the lease duration: covers clock-rate drift, the
# scheduling delay of the renew loop, and the time between a fence check and the request it guards.
CLOCK_SKEW_MARGIN = 2.0
# client-go's JitterFactor: the renew deadline must leave room for at least one jittered retry.
JITTER_FACTOR = 1.2
# The longest a graceful release may take, retries included (deploy/base/deployment.yaml's shutdown budget).
RELEASE_SECONDS = 4.0
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def _clock() -> float:
    # CLOCK_BOOTTIME also counts time the machine was suspended; CLOCK_MONOTONIC would not, and a node
    # waking from suspend must not believe its fence is still fresh.
    if hasattr(time, "CLOCK_BOOTTIME"):
        return time.clock_gettime(time.CLOCK_BOOTTIME)
    return time.monotonic()


@dataclass(frozen=True)
class LeaseSettings:
    """The Lease this process competes for, and client-go's three durations (whole seconds)."""

    name: str = "m3stripe"
    namespace: str = "default"
    identity: str = ""
    pod_name: str | None = None
    lock_file: Path | None = None  # None: no same-pod shortcut, a dead holder is waited out
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def problems(self) -> list[str]:
        found = []
        if self.renew_deadline + CLOCK_SKEW_MARGIN > self.lease_duration:
            found.append(
                f"the Lease renew deadline ({self.renew_deadline:g}s) must be at least {CLOCK_SKEW_MARGIN:g}s "
                f"shorter than the lease duration ({self.lease_duration:g}s): the writer must stop before "
                "another replica can take the Lease"
            )
        if self.renew_deadline <= JITTER_FACTOR * self.retry_period:
            found.append(
                f"the Lease renew deadline ({self.renew_deadline:g}s) must exceed {JITTER_FACTOR:g} x the retry "
                f"period ({self.retry_period:g}s), or a single slow renew loses the Lease"
            )
        if self.lease_duration != int(self.lease_duration):
            # The Lease stores whole seconds (coordination.k8s.io/v1 LeaseSpec.leaseDurationSeconds is an
            # int32), and candidates wait what is stored: a fraction would be cut off the margin checked above.
            found.append(
                f"the lease duration ({self.lease_duration:g}s) must be a whole number of seconds: the Lease "
                "stores leaseDurationSeconds as an integer"
            )
        if self.lease_duration < 1 or self.retry_period <= 0:
            found.append("the lease duration must be at least 1s and the retry period positive")
        return found


class _LeaseLockFile:
    """The pod-local proof that the Lease's holder was an earlier, now dead, run of this container."""

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._fd: int | None = None

    def _held(self) -> int | None:
        if self._fd is None and self._path is not None:
            try:
                fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError as err:
                log.debug("lease lock file %s unusable (%s): a dead holder is waited out", self._path, err)
                return None
            try:
                # Non-blocking: a live namesake holds it, and we must not wait for it, only not steal.
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                return None
            self._fd = fd
        return self._fd

    def names(self, holder: str) -> bool:
        """True only while this process holds the flock and the file records exactly `holder`."""
        fd = self._held()
        if fd is None:
            return False
        try:
            recorded = os.pread(fd, 4096, 0).decode("utf-8", "replace")
        except OSError:
            return False
        return recorded == holder

    def record(self, identity: str) -> None:
        fd = self._held()
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, identity.encode("utf-8"), 0)
            os.fsync(fd)
        except OSError as err:
            log.warning("could not write lease lock file %s: a restart waits out the Lease (%s)", self._path, err)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def default_identity(pod_name: str | None) -> str:
    """`<pod name>_<random>` (client-go's convention is hostname + UUID): unique per process, and the pod part
    tells a restarted container its own predecessor's Lease."""
    return f"{pod_name or socket.gethostname()}_{secrets.token_hex(4)}"


def default_namespace(pod_namespace: str | None) -> str:
    """Where the Lease lives: the operator's own namespace (the Downward API's POD_NAMESPACE, else the
    in-cluster service account's namespace), `default` outside a cluster."""
    if pod_namespace:
        return pod_namespace
    with contextlib.suppress(OSError):
        return SERVICE_ACCOUNT_NAMESPACE.read_text(encoding="utf-8").strip() or "default"
    return "default"


class LeaseApi(Protocol):
    async def read_lease(self, namespace: str, name: str, *, timeout: float) -> LeaseRecord | None: ...
    async def create_lease(self, namespace: str, name: str, record: LeaseRecord, *, timeout: float) -> LeaseRecord: ...
    async def update_lease(self, namespace: str, name: str, record: LeaseRecord, *, timeout: float) -> LeaseRecord: ...


class LeadershipObserver(Protocol):
    def leading(self, lease: str, identity: str, is_leader: bool) -> None: ...
    def acquired(self, lease: str, writerless_seconds: float | None) -> None: ...


class _NullObserver:
    def leading(self, lease: str, identity: str, is_leader: bool) -> None:
        return None

    def acquired(self, lease: str, writerless_seconds: float | None) -> None:
        return None


class Leadership(Protocol):
    """What the workers need: whether they may write now, and a wait for that."""

    def is_leader(self) -> bool: ...
    def fence(self) -> None: ...
    def time_left(self) -> float | None: ...
    async def wait_leading(self, stopped: Any) -> bool: ...


class AlwaysLeader:
    """`--standalone`: no election; the person running it promises there is no other writer."""

    identity = "standalone"

    def is_leader(self) -> bool:
        return True

    def fence(self) -> None:
        return None

    def time_left(self) -> float | None:
        return None

    async def wait_leading(self, stopped: Any) -> bool:
        return not stopped


class LeaderElector:
    """Acquires and renews the Lease in `run()`; `fence()` raises FenceLost whenever writing is not safe."""

    def __init__(
        self,
        api: LeaseApi,
        settings: LeaseSettings,
        *,
        observer: LeadershipObserver | None = None,
        clock: Callable[[], float] = _clock,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        problems = settings.problems()
        if problems:
            raise ValueError("; ".join(problems))
        self.api = api
        self.settings = settings
        self.identity = settings.identity or default_identity(settings.pod_name)
        self._observer: LeadershipObserver = observer or _NullObserver()
        self._clock = clock
        self._wall = wall
        self._valid_until = 0.0  # clock value until which writes are fenced in
        self._observed: LeaseRecord | None = None
        self._observed_at = 0.0
        self._changed = asyncio.Event()
        self._stopping = False
        self._was_leader = False
        self._lock = _LeaseLockFile(settings.lock_file)
        self._observer.leading(settings.name, self.identity, False)

    # ------------------------------------------------------------------ what the writers call

    def is_leader(self) -> bool:
        return not self._stopping and self._clock() < self._valid_until

    def fence(self) -> None:
        """Raise FenceLost unless the last successful renew began less than the renew deadline ago."""
        if not self.is_leader():
            raise FenceLost(f"this replica ({self.identity}) no longer holds Lease {self._where}")

    def time_left(self) -> float:
        """Seconds until the fence falls (0 when it has): how long a write started now may run."""
        return 0.0 if self._stopping else max(0.0, self._valid_until - self._clock())

    async def wait_leading(self, stopped: Any) -> bool:
        """Wait until this process leads (True) or `stopped` is set (False)."""
        while not stopped:
            if self.is_leader():
                return True
            self._changed.clear()
            waiter = asyncio.ensure_future(self._changed.wait())
            stop = asyncio.ensure_future(stopped.wait())
            try:
                await asyncio.wait(
                    {waiter, stop}, timeout=self.settings.retry_period, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                waiter.cancel()
                stop.cancel()
        return False

    # ------------------------------------------------------------------ the election loop

    @property
    def _where(self) -> str:
        return f"{self.settings.namespace}/{self.settings.name}"

    async def run(self) -> None:
        """Campaign and renew until cancelled (client-go's acquire and renew loops, merged into one)."""
        s = self.settings
        while not self._stopping:
            await self.round()
            # Leaders renew every retry period; candidates retry with jitter (client-go: JitterUntil, 1.2).
            if self.is_leader():
                # Never sleep past the moment the fence would fall without a renew attempt in between.
                pause = min(s.retry_period, self._valid_until - self._clock() - s.retry_period / 2)
            else:
                pause = s.retry_period * (1 + 0.2 * secrets.randbelow(1000) / 1000)
            await asyncio.sleep(max(0.05, pause))

    async def round(self) -> bool:
        """One attempt to acquire or renew; True when this process holds the Lease afterwards."""
        started = self._clock()
        try:
            ok = await asyncio.wait_for(self._try_acquire_or_renew(), timeout=self.settings.renew_deadline)
        except (KubeApiError, TimeoutError) as err:
            ok = False
            if self._was_leader:
                log.warning("renewing Lease %s failed: %s", self._where, err)
            else:
                log.debug("acquiring Lease %s failed: %s", self._where, err)
        except asyncio.CancelledError:
            raise
        except Exception:
            ok = False
            log.exception("leader election round on Lease %s failed", self._where)
        if ok and not self._stopping:
            self._valid_until = started + self.settings.renew_deadline
        self._update_state()
        return self.is_leader()

    def _update_state(self) -> None:
        leader = self.is_leader()
        if leader != self._was_leader:
            self._was_leader = leader
            if leader:
                log.info("this replica (%s) now holds Lease %s and writes", self.identity, self._where)
            else:
                log.warning("this replica (%s) lost Lease %s: it stops writing", self.identity, self._where)
            self._observer.leading(self.settings.name, self.identity, leader)
            self._changed.set()

    async def _try_acquire_or_renew(self) -> bool:
        s = self.settings
        now = self._wall()
        timeout = max(1.0, s.renew_deadline / 2)
        current = await self.api.read_lease(s.namespace, s.name, timeout=timeout)
        if current is None:
            mine = LeaseRecord(self.identity, int(s.lease_duration), now, now, 0)
            self._lock.record(self.identity)  # before the write: a crash right after it still resumes at once
            try:
                await self.api.create_lease(s.namespace, s.name, mine, timeout=timeout)
            except KubeApiError as err:
                if err.status == 409:
                    return False  # another candidate created it first
                raise
            self._note_acquired(None, now)
            return True
        if not _same_record(current, self._observed):
            self._observed, self._observed_at = current, self._clock()
        holder = current.holder
        if holder and holder != self.identity and not self._predecessor(holder):
            duration = current.lease_duration_seconds or s.lease_duration
            if self._observed_at + duration > self._clock():
                return False  # held, and renewed within a lease duration of what we have seen
        renewing = holder == self.identity
        mine = LeaseRecord(
            holder=self.identity,
            lease_duration_seconds=int(s.lease_duration),
            acquire_time=current.acquire_time if renewing else now,
            renew_time=now,
            transitions=current.transitions if renewing else current.transitions + 1,
            resource_version=current.resource_version,
        )
        if not renewing:
            self._lock.record(self.identity)
        try:
            stored = await self.api.update_lease(s.namespace, s.name, mine, timeout=timeout)
        except KubeApiError as err:
            if err.status == 409:
                return False  # someone wrote it since we read it: not ours this round
            raise
        self._observed, self._observed_at = stored, self._clock()
        if not renewing:
            self._note_acquired(current, now)
        return True

    def _predecessor(self, holder: str) -> bool:
        """An earlier, exited run of this container: our pod name, and the pod's lock file (flock held by us,
        so its writer is dead) names exactly this holder. See the module docstring."""
        pod = self.settings.pod_name
        return bool(pod) and holder.rsplit("_", 1)[0] == pod and self._lock.names(holder)

    def _note_acquired(self, previous: LeaseRecord | None, now: datetime) -> None:
        writerless: float | None = None
        if previous is not None and previous.renew_time is not None:
            # Time since the previous holder last renewed (or released): as near as one can tell, the time the
            # shard had no writer. Wall clocks of two nodes; good enough for a histogram, never for safety.
            last = previous.renew_time if previous.renew_time.tzinfo else previous.renew_time.replace(tzinfo=UTC)
            writerless = max(0.0, (now - last).total_seconds())
        log.info(
            "acquired Lease %s (previous holder: %s)", self._where, (previous.holder if previous else None) or "none"
        )
        self._observer.acquired(self.settings.name, writerless)

    async def release(self, attempts: int = 3) -> None:
        """Stop writing, then hand the Lease over at once (client-go's ReleaseOnCancel and tryRelease).

        Released whenever the record still names us, even if the fence has lapsed: a record that is ours
        is one nobody else took, and clearing it spares the standby a lease duration. A 409 (a renew or a
        competitor's write in between) re-reads and tries again, a bounded number of times, all within
        RELEASE_SECONDS (the shutdown budget of deploy/base/deployment.yaml counts on it).
        """
        self._stopping = True
        self._valid_until = 0.0
        self._update_state()
        try:
            async with asyncio.timeout(RELEASE_SECONDS):
                await self._release(attempts)
        except (KubeApiError, TimeoutError) as err:
            log.warning("could not release Lease %s (the standby takes it after it expires): %s", self._where, err)
        finally:
            # Only now: while the flock is held no namesake in this pod can take the Lease by the shortcut.
            self._lock.close()

    async def _release(self, attempts: int) -> None:
        s = self.settings
        for _ in range(attempts):
            current = await self.api.read_lease(s.namespace, s.name, timeout=2.0)
            if current is None or current.holder != self.identity:
                return
            now = self._wall()
            released = replace(current, holder=None, lease_duration_seconds=1, acquire_time=now, renew_time=now)
            try:
                await self.api.update_lease(s.namespace, s.name, released, timeout=2.0)
            except KubeApiError as err:
                if err.status == 409:
                    continue
                raise
            log.info("released Lease %s", self._where)
            return
        log.warning("could not release Lease %s: it kept changing (the standby takes it after it expires)", self._where)


def _same_record(a: LeaseRecord, b: LeaseRecord | None) -> bool:
    """client-go compares the whole record: any write (a renew, a release) restarts the observation."""
    return b is not None and replace(a, resource_version="") == replace(b, resource_version="")


class FencedRateLimit(StripeRateLimit):
    """The Stripe rate limit of one pass, checking the fence before every Stripe request.

    Every request of the Stripe gateway waits for its rate limit first, so this is the last point before a
    request is sent at which a replica that lost its Lease can still be stopped. The budget is the shared
    account-wide one it wraps.
    """

    def __init__(
        self,
        inner: StripeRateLimit,
        fence: Callable[[], None],
        time_left: Callable[[], float | None] | None = None,
    ) -> None:
        super().__init__(inner.per_second, inner.endpoint_per_second)
        self._inner = inner
        self._fence = fence
        self._time_left = time_left or (lambda: None)

    def time_left(self) -> float | None:
        return self._time_left()

    def cut_off(self, endpoint: str) -> None:
        raise FenceLost(f"a Stripe request ({endpoint}) was abandoned when this replica's Lease fence fell")

    async def acquire(self, endpoint: str, *, urgent: bool = False) -> None:
        self._fence()
        await self._inner.acquire(endpoint, urgent=urgent)
        self._fence()  # the wait may have been long
