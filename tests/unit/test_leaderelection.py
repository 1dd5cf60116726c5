"""Leader election over a Lease (kplane.controlplane.leaderelection) against an in-memory
leases registry with resourceVersion preconditions, as the real Registry has."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

from kplane.apimachinery import errors
from kplane.controlplane.leaderelection import AlwaysLeader, LeaderElector


class FakeLeases:
    def __init__(self) -> None:
        self.objs: dict[tuple[str, str], dict] = {}
        self.rv = 0
        self.fail = False
        self.writes = 0

    def _check(self) -> None:
        if self.fail:
            raise errors.StatusError(503, "ServiceUnavailable", "storage down")

    async def get(self, namespace: str, name: str) -> dict:
        self._check()
        obj = self.objs.get((namespace, name))
        if obj is None:
            raise errors.not_found("leases", name, "coordination.k8s.io")
        return copy.deepcopy(obj)

    async def create(self, namespace: str, obj: dict, opts: Any) -> dict:
        self._check()
        key = (namespace, obj["metadata"]["name"])
        if key in self.objs:
            raise errors.already_exists("leases", key[1], "coordination.k8s.io")
        return self._store(key, obj)

    async def update(self, namespace: str, name: str, obj: dict, opts: Any) -> tuple[dict, bool]:
        self._check()
        current = self.objs.get((namespace, name))
        if current is None:
            raise errors.not_found("leases", name, "coordination.k8s.io")
        if obj["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
            raise errors.conflict("leases", name, "coordination.k8s.io")
        return self._store((namespace, name), obj), False

    def _store(self, key: tuple[str, str], obj: dict) -> dict:
        self.rv += 1
        self.writes += 1
        obj = copy.deepcopy(obj)
        obj["metadata"]["resourceVersion"] = str(self.rv)
        self.objs[key] = obj
        return copy.deepcopy(obj)

    def spec(self) -> dict:
        return self.objs[("kube-system", "kplane-controllers")]["spec"]


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Recorder:
    def __init__(self) -> None:
        self.events: list[str] = []

    def hooks(self, name: str) -> tuple[Any, Any]:
        async def start() -> None:
            self.events.append(f"start {name}")

        def stop() -> None:
            self.events.append(f"stop {name}")

        return start, stop


def _elector(leases: FakeLeases, identity: str, clock: Clock | None = None, **kw: Any) -> LeaderElector:
    if clock is not None:
        kw["clock"] = clock
    return LeaderElector(leases, identity=identity, **kw)


async def test_first_candidate_acquires_at_once_and_second_waits() -> None:
    leases, clock, rec = FakeLeases(), Clock(), Recorder()
    a = _elector(leases, "a", clock)
    a.add("ns", *rec.hooks("a"))
    await a.start()
    try:
        assert a.is_leader() and rec.events == ["start a"]
        spec = leases.spec()
        assert spec["holderIdentity"] == "a" and spec["leaseDurationSeconds"] == 15
        assert spec["leaseTransitions"] == 0 and spec["acquireTime"] == spec["renewTime"]
        assert spec["renewTime"].endswith("Z") and "." in spec["renewTime"]  # MicroTime
        b = _elector(leases, "b", clock)
        assert await b._try_acquire_or_renew() is False
        clock.t += 10  # within the lease duration of b's first observation
        assert await b._try_acquire_or_renew() is False
        # a renews: the record changes, so b's observation restarts
        assert await a._try_acquire_or_renew() is True
        assert await b._try_acquire_or_renew() is False  # b observes the renewal at t+10
        clock.t += 14.5
        assert await b._try_acquire_or_renew() is False
        clock.t += 1  # 15.5 s since b observed the last renewal: expired
        assert await b._try_acquire_or_renew() is True
        spec = leases.spec()
        assert spec["holderIdentity"] == "b" and spec["leaseTransitions"] == 1
        # a's next renewal fails (conflict on its fast path, then held by b)
        assert await a._try_acquire_or_renew() is False and a._held_by_other()
    finally:
        a._leading = False
        await a.stop()


async def test_renewal_keeps_acquire_time_and_transitions() -> None:
    leases, clock = FakeLeases(), Clock()
    a = _elector(leases, "a", clock)
    assert await a._try_acquire_or_renew()
    a._leading = True
    first = dict(leases.spec())
    clock.t += 2
    await asyncio.sleep(0.001)
    assert await a._try_acquire_or_renew()
    spec = leases.spec()
    assert spec["acquireTime"] == first["acquireTime"] and spec["leaseTransitions"] == 0
    assert spec["renewTime"] >= first["renewTime"]


async def test_stop_releases_and_the_next_candidate_takes_over_at_once() -> None:
    leases, clock, rec = FakeLeases(), Clock(), Recorder()
    a = _elector(leases, "a", clock)
    a.add("ns", *rec.hooks("a"))
    await a.start()
    b = _elector(leases, "b", clock)
    assert await b._try_acquire_or_renew() is False
    await a.stop()
    assert rec.events == ["start a", "stop a"] and not a.is_leader()
    spec = leases.spec()
    assert spec.get("holderIdentity", "") == "" and spec["leaseDurationSeconds"] == 1
    assert await b._try_acquire_or_renew() is True  # no wait for the lease duration
    assert leases.spec()["holderIdentity"] == "b" and leases.spec()["leaseTransitions"] == 1


async def test_leader_that_cannot_renew_stops_its_controllers_and_later_recovers() -> None:
    leases, rec = FakeLeases(), Recorder()
    a = LeaderElector(leases, identity="a", lease_duration=0.6, renew_deadline=0.4, retry_period=0.1)
    a.add("ns", *rec.hooks("a"))
    await a.start()
    try:
        assert a.is_leader()
        await asyncio.sleep(0.35)
        renewals = leases.writes
        assert renewals >= 3  # renewing every retry period
        leases.fail = True  # storage down: renewals fail until the renew deadline
        await asyncio.sleep(0.8)
        assert not a.is_leader() and rec.events == ["start a", "stop a"]
        leases.fail = False  # back: a's own record, so it re-acquires without waiting
        for _ in range(50):
            if a.is_leader():
                break
            await asyncio.sleep(0.05)
        assert a.is_leader() and rec.events == ["start a", "stop a", "start a"]
        assert leases.spec()["leaseTransitions"] == 0
    finally:
        await a.stop()


async def test_leader_stops_at_once_when_another_holds_the_lease() -> None:
    leases, rec = FakeLeases(), Recorder()
    a = LeaderElector(leases, identity="a", lease_duration=6, renew_deadline=4, retry_period=0.1)
    a.add("ns", *rec.hooks("a"))
    await a.start()
    try:
        obj = leases.objs[("kube-system", "kplane-controllers")]
        obj["spec"]["holderIdentity"] = "intruder"
        obj["metadata"]["resourceVersion"] = "999"
        await asyncio.sleep(0.5)  # far below the 4 s renew deadline
        assert not a.is_leader() and rec.events == ["start a", "stop a"]
    finally:
        await a.stop()


async def test_always_leader_and_late_registration() -> None:
    rec = Recorder()
    gate = AlwaysLeader()
    gate.add("one", *rec.hooks("one"))
    await gate.start()
    gate.add("two", *rec.hooks("two"))
    await asyncio.sleep(0)
    assert gate.is_leader() and rec.events == ["start one", "start two"]
    await gate.stop()
    assert rec.events[2:] == ["stop two", "stop one"]


def test_client_go_timing_checks() -> None:
    with pytest.raises(ValueError, match="leaseDuration"):
        LeaderElector(FakeLeases(), lease_duration=10, renew_deadline=10)
    with pytest.raises(ValueError, match="renewDeadline"):
        LeaderElector(FakeLeases(), lease_duration=15, renew_deadline=2, retry_period=2)
