"""Leader election on a coordination.k8s.io/v1 Lease, against the Kubernetes emulator over real HTTP.

The electors get a hand-driven clock, so each test states in seconds of that clock when a Lease may move.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from kubernetes import config

from m3stripe.adapters.kube_api import KubeApi, KubeApiError, LeaseRecord
from m3stripe.adapters.stripe_client import open_client
from m3stripe.adapters.stripe_gateway import StripeGateway
from m3stripe.adapters.stripe_rate_limit import StripeRateLimit
from m3stripe.domain.ports import FenceLost
from m3stripe.kube.leadership import FencedRateLimit, LeaderElector, LeaseSettings
from m3stripe.metrics import Metrics
from m3stripe.testing.stripe_emulator import StripeEmulator
from tests.support.clock import Clock
from tests.support.kube_world import kube_api_server

NS = "m3stripe-system"


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[KubeApi]:
    kubeconfig = tmp_path / "kubeconfig.yaml"
    async with kube_api_server(kubeconfig):
        kube = KubeApi(config.new_client_from_config(str(kubeconfig)))  # type: ignore[no-untyped-call]
        try:
            yield kube
        finally:
            kube.close()


def _settings(identity: str, pod: str | None = None, lock_file: Path | None = None) -> LeaseSettings:
    return LeaseSettings(
        name="shard-a",
        namespace=NS,
        identity=identity,
        pod_name=pod,
        lock_file=lock_file,
        lease_duration=15,
        renew_deadline=10,
        retry_period=2,
    )


def _elector(
    api: KubeApi, identity: str, clock: Clock, pod: str | None = None, lock_file: Path | None = None, **kw: Metrics
) -> LeaderElector:
    return LeaderElector(api, _settings(identity, pod, lock_file), clock=clock, **kw)


async def test_the_first_candidate_creates_the_lease_and_holds_it(api: KubeApi) -> None:
    clock = Clock()
    metrics = Metrics()
    a = _elector(api, "pod-a_1", clock, observer=metrics)
    assert not a.is_leader()
    with pytest.raises(FenceLost):
        a.fence()
    assert await a.round()
    a.fence()
    lease = await api.read_lease(NS, "shard-a", timeout=5)
    assert lease is not None and lease.holder == "pod-a_1" and lease.lease_duration_seconds == 15
    assert lease.transitions == 0 and lease.acquire_time is not None and lease.renew_time is not None
    assert metrics.leader.labels("shard-a", "pod-a_1")._value.get() == 1
    assert metrics.lease_acquisitions.labels("shard-a")._value.get() == 1


async def test_a_standby_takes_over_only_after_the_holder_falls_silent_for_a_lease_duration(api: KubeApi) -> None:
    clock = Clock()
    a, b = _elector(api, "pod-a_1", clock), _elector(api, "pod-b_1", clock)
    assert await a.round()
    assert not await b.round()  # held
    for _ in range(5):  # the holder renews every retry period: the standby keeps waiting
        clock.advance(2)
        assert await a.round()
        assert not await b.round()
    # The holder stops renewing (paused, partitioned): its fence falls at its renew deadline...
    clock.advance(9.9)
    a.fence()
    clock.advance(0.2)
    with pytest.raises(FenceLost):
        a.fence()
    assert not await b.round()  # ...while the standby must still wait out the lease duration it observed
    clock.advance(4.8)
    assert not await b.round()
    clock.advance(0.2)
    assert await b.round()
    assert not a.is_leader()
    lease = await api.read_lease(NS, "shard-a", timeout=5)
    assert lease is not None and lease.holder == "pod-b_1" and lease.transitions == 1
    # The old holder, back, finds the Lease taken and stays fenced out.
    assert not await a.round()
    with pytest.raises(FenceLost):
        a.fence()


async def test_the_fence_falls_before_any_other_replica_can_take_the_lease(api: KubeApi) -> None:
    """Whatever the moment the standby first sees the holder's last renew, the holder stopped earlier."""
    s = _settings("x")
    assert s.lease_duration - s.renew_deadline >= 2
    clock = Clock()
    a, b = _elector(api, "pod-a_1", clock), _elector(api, "pod-b_1", clock)
    assert await a.round()
    renewed = clock()
    clock.advance(1)
    assert not await b.round()
    while not await b.round():
        clock.advance(0.5)
        if clock() >= renewed + s.renew_deadline:
            assert not a.is_leader()
    assert clock() >= renewed + s.lease_duration
    assert not a.is_leader()


async def test_a_released_lease_is_taken_at_once(api: KubeApi) -> None:
    clock = Clock()
    a, b = _elector(api, "pod-a_1", clock), _elector(api, "pod-b_1", clock)
    assert await a.round()
    assert not await b.round()
    await a.release()
    assert not a.is_leader()
    lease = await api.read_lease(NS, "shard-a", timeout=5)
    assert lease is not None and lease.holder is None and lease.lease_duration_seconds == 1
    assert await b.round()  # no waiting: nobody holds it


async def test_a_restarted_container_takes_its_dead_predecessors_lease_at_once(api: KubeApi, tmp_path: Path) -> None:
    clock = Clock()
    lock = tmp_path / "lease.lock"
    pod = "m3stripe-operator-7d9f-abcde"
    before = _elector(api, f"{pod}_1111", clock, pod=pod, lock_file=lock)
    assert await before.round()
    assert lock.read_text() == f"{pod}_1111"
    # SIGKILL: no release; the kernel drops the dead process's flock. The kubelet restarts the container in
    # the same pod (same POD_NAME, same emptyDir).
    before._lock.close()
    after = _elector(api, f"{pod}_2222", clock, pod=pod, lock_file=lock)
    assert await after.round()
    assert lock.read_text() == f"{pod}_2222"
    # A process of another pod has no such shortcut.
    other = _elector(api, "m3stripe-operator-7d9f-fghij_3333", clock, pod="m3stripe-operator-7d9f-fghij")
    assert not await other.round()


async def test_a_live_namesake_in_the_same_pod_waits_out_the_lease_instead_of_stealing_it(
    api: KubeApi, tmp_path: Path
) -> None:
    """`kubectl exec pod-x -- m3stripe run` while pod-x's operator runs: one POD_NAME, one emptyDir."""
    clock = Clock()
    lock = tmp_path / "lease.lock"
    a = _elector(api, "pod-x_aaaa", clock, pod="pod-x", lock_file=lock)
    b = _elector(api, "pod-x_bbbb", clock, pod="pod-x", lock_file=lock)
    assert await a.round()
    for _ in range(5):
        clock.advance(2)
        assert not await b.round()  # a holds the flock: no shortcut
        assert await a.round()
        assert not b.is_leader()
    lease = await api.read_lease(NS, "shard-a", timeout=5)
    assert lease is not None and lease.holder == "pod-x_aaaa"


async def test_a_namesake_in_another_pod_or_without_a_lock_file_waits_out_the_lease(
    api: KubeApi, tmp_path: Path
) -> None:
    clock = Clock()
    a = _elector(api, "pod-x_aaaa", clock, pod="pod-x", lock_file=tmp_path / "a" / "lease.lock")
    (tmp_path / "a").mkdir()
    assert await a.round()
    elsewhere = _elector(api, "pod-x_bbbb", clock, pod="pod-x", lock_file=tmp_path / "lease.lock")
    (tmp_path / "lease.lock").write_text("pod-x_cccc")  # its own file names somebody else
    unlocked = _elector(api, "pod-x_dddd", clock, pod="pod-x", lock_file=tmp_path / "missing" / "lease.lock")
    bare = _elector(api, "pod-x_eeee", clock, pod="pod-x")
    for candidate in (elsewhere, unlocked, bare):
        assert not await candidate.round()
    clock.advance(15.01)
    assert await elsewhere.round()  # normal expiry still works


async def test_a_killed_namesake_process_releases_the_lock_and_its_successor_resumes_at_once(
    api: KubeApi, tmp_path: Path
) -> None:
    """Two processes: the lock holder is a live process until SIGKILL; then the kernel frees the flock."""
    lock = tmp_path / "lease.lock"
    holder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import fcntl, os, sys, time\n"
        "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
        "os.write(fd, b'pod-x_aaaa')\n"
        "print('locked', flush=True)\n"
        "time.sleep(600)\n",
        str(lock),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and (await holder.stdout.readline()).strip() == b"locked"
        now = datetime.now(UTC)
        await api.create_lease(NS, "shard-a", LeaseRecord("pod-x_aaaa", 15, now, now, 0), timeout=5)
        clock = Clock()
        successor = _elector(api, "pod-x_bbbb", clock, pod="pod-x", lock_file=lock)
        assert not await successor.round()  # the namesake lives
        holder.send_signal(signal.SIGKILL)
        await asyncio.wait_for(holder.wait(), timeout=10)
        clock.advance(2)
        assert await successor.round()  # dead: taken at once, not after 15 s
    finally:
        if holder.returncode is None:
            holder.kill()
            await holder.wait()


async def test_of_two_candidates_writing_the_same_version_one_gets_a_conflict(api: KubeApi) -> None:
    now = datetime.now(UTC)
    created = await api.create_lease(NS, "race", LeaseRecord("a", 15, now, now, 0), timeout=5)
    first = LeaseRecord("b", 15, now, now, 1, created.resource_version)
    second = LeaseRecord("c", 15, now, now, 1, created.resource_version)
    await api.update_lease(NS, "race", first, timeout=5)
    with pytest.raises(KubeApiError) as err:
        await api.update_lease(NS, "race", second, timeout=5)
    assert err.value.status == 409
    with pytest.raises(KubeApiError) as again:
        await api.create_lease(NS, "race", second, timeout=5)
    assert again.value.status == 409
    lease = await api.read_lease(NS, "race", timeout=5)
    assert lease is not None and lease.holder == "b"


def test_a_renew_deadline_too_close_to_the_lease_duration_is_refused() -> None:
    bad = LeaseSettings(lease_duration=10, renew_deadline=9.5, retry_period=2)
    assert any("must be at least" in p and "shorter than the lease duration" in p for p in bad.problems())
    assert LeaseSettings(lease_duration=10, renew_deadline=2, retry_period=2).problems()
    assert LeaseSettings().problems() == []
    with pytest.raises(ValueError, match="renew deadline"):
        LeaderElector(None, bad)  # type: ignore[arg-type]


def test_a_lease_duration_that_is_not_whole_seconds_is_refused() -> None:
    """The Lease stores whole seconds; 12.9 would be written as 12 and shrink the validated 2.9 s margin."""
    bad = LeaseSettings(lease_duration=12.9, renew_deadline=10.9, retry_period=2)
    assert any("whole number of seconds" in p for p in bad.problems())
    assert LeaseSettings(lease_duration=13, renew_deadline=10.9, retry_period=2).problems() == []


async def test_a_lease_still_ours_is_released_even_after_the_fence_lapsed(api: KubeApi) -> None:
    clock = Clock()
    a, b = _elector(api, "pod-a_1", clock), _elector(api, "pod-b_1", clock)
    assert await a.round()
    clock.advance(11)  # past the renew deadline, before anyone took it
    assert not a.is_leader()
    await a.release()
    lease = await api.read_lease(NS, "shard-a", timeout=5)
    assert lease is not None and lease.holder is None
    assert await b.round()


class _RenewsDuringRelease:
    """The Lease API, with another write to the Lease landing between release's read and its update."""

    def __init__(self, api: KubeApi, writes: int) -> None:
        self.api, self.writes = api, writes

    async def read_lease(self, namespace: str, name: str, *, timeout: float) -> LeaseRecord | None:
        return await self.api.read_lease(namespace, name, timeout=timeout)

    async def create_lease(self, namespace: str, name: str, record: LeaseRecord, *, timeout: float) -> LeaseRecord:
        return await self.api.create_lease(namespace, name, record, timeout=timeout)

    async def update_lease(self, namespace: str, name: str, record: LeaseRecord, *, timeout: float) -> LeaseRecord:
        if record.holder is None and self.writes:
            self.writes -= 1
            current = await self.api.read_lease(namespace, name, timeout=timeout)
            assert current is not None
            await self.api.update_lease(
                namespace, name, replace(current, transitions=current.transitions), timeout=timeout
            )
        return await self.api.update_lease(namespace, name, record, timeout=timeout)


async def test_release_retries_after_a_conflict_and_gives_up_after_a_few(api: KubeApi) -> None:
    clock = Clock()
    racing = _RenewsDuringRelease(api, writes=2)
    a = LeaderElector(racing, _settings("pod-a_1"), clock=clock)
    assert await a.round()
    await a.release()
    lease = await api.read_lease(NS, "shard-a", timeout=5)
    assert lease is not None and lease.holder is None  # released on the third try
    b = LeaderElector(_RenewsDuringRelease(api, writes=10), _settings("pod-b_1"), clock=clock)
    assert await b.round()
    await b.release()  # bounded: it stops trying, and the Lease expires as usual
    lease = await api.read_lease(NS, "shard-a", timeout=5)
    assert lease is not None and lease.holder == "pod-b_1"


async def test_every_stripe_request_of_a_pass_checks_the_fence() -> None:
    held = [True]

    def fence() -> None:
        if not held[0]:
            raise FenceLost("lost")

    limit = FencedRateLimit(StripeRateLimit(1000), fence)
    await limit.acquire("invoices.create")
    held[0] = False
    with pytest.raises(FenceLost):
        await limit.acquire("invoices.create")


@pytest.mark.looptime
async def test_a_stripe_request_in_flight_when_the_fence_falls_is_abandoned_as_a_lost_fence() -> None:
    """The fence still stands when the request starts; Stripe answers only after it fell."""
    key = "sk_test_fencedRequest0001"
    async with StripeEmulator(latency_seconds=3) as emulator:
        emulator.add_api_key(key)
        limit = FencedRateLimit(StripeRateLimit(1000), lambda: None, lambda: 0.2)
        async with open_client(key, api_base=emulator.url, timeout=30) as client:
            gateway = StripeGateway(client, limiter=limit)
            with pytest.raises(FenceLost, match="abandoned"):
                await gateway.call("customers.list", lambda: client.v1.customers.list_async(params={"limit": 1}))
            assert gateway.requests == 1  # not retried as a network error


async def test_an_elector_bounds_a_request_by_what_is_left_of_its_fence(api: KubeApi) -> None:
    clock = Clock()
    a = _elector(api, "pod-a_1", clock)
    assert a.time_left() == 0
    assert await a.round()
    clock.advance(4)
    assert a.time_left() == pytest.approx(6)
    clock.advance(7)
    assert a.time_left() == 0
