"""podManagementPolicy, ordinals.start, RollingUpdate (partition, maxUnavailable) and a batch's
maxInFlight/maxUnavailable: the planner through the fake kubelet, and the ordering rules alone."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from op_sim import T0, V1, V2, Sim, make_stsp
from podkit_operator.api.keys import ANN_TARGET
from podkit_operator.api.statefulsetplus import (
    PodManagement,
    SpecError,
    parse_spec,
    scaled_count,
)
from podkit_operator.kube.objects import rfc3339
from podkit_operator.releases.ordering import order_pods


def stsp(replicas: int, policy: str = "OrderedReady", strategy: str = "ABSwap",
         batch_num: int = 1, min_ready: int = 1, **spec: Any) -> dict[str, Any]:
    obj = make_stsp(replicas=replicas, batch_num=batch_num, strategy=strategy,
                    pod_management=policy)
    obj["spec"]["minReadySeconds"] = min_ready
    cfg = obj["spec"]["updateStrategy"]["batchDeployConfig"]
    for key, value in spec.items():
        if key in ("maxInFlight", "maxUnavailable"):
            cfg[key] = value
        elif key == "rollingUpdate":
            obj["spec"]["updateStrategy"]["rollingUpdate"] = value
        else:
            obj["spec"][key] = value
    return obj


def ordinal(name: str) -> int:
    return int(name.rpartition("-")[2])


def in_flight(sim: Sim) -> list[int]:
    """Ordinals being updated: marked with a target, or missing (deleted to be recreated)."""
    spec = parse_spec(sim.stsp["spec"])
    return [o for o in spec.ordinals if (pod := sim.pods.get(f"web-{o}")) is None
            or ANN_TARGET in pod["metadata"].get("annotations", {})]


def settle(sim: Sim) -> None:
    sim.run(lambda s: s.bds.get("generalStatus") == "Completed"
            and s.stsp["status"]["availableReplicas"] == s.stsp["spec"]["replicas"], ticks=200)


# --- creation and scale-down order -------------------------------------------------------

def test_ordered_ready_creates_one_pod_at_a_time_each_once_the_one_before_is_available() -> None:
    sim = Sim(stsp(4, min_ready=3))
    created: list[tuple[int, Any]] = []
    for _ in range(60):
        plan = sim.tick()
        assert len(plan.create) <= 1
        for c in plan.create:
            below = [sim.pods[f"web-{o}"] for o in range(c.ordinal)]
            created.append((c.ordinal, sim.now))
            for pod in below:  # every lower pod Running, Ready for minReadySeconds
                ready = next(x for x in pod["status"]["conditions"] if x["type"] == "Ready")
                assert ready["status"] == "True"
                assert rfc3339(sim.now - timedelta(seconds=3)) >= ready["lastTransitionTime"]
    assert [o for o, _ in created] == [0, 1, 2, 3]
    assert sim.stsp["status"]["availableReplicas"] == 4


def test_parallel_creates_every_pod_at_once() -> None:
    sim = Sim(stsp(4, policy="Parallel"))
    plan = sim.tick()
    assert sorted(c.ordinal for c in plan.create) == [0, 1, 2, 3]


def _pod(o: int, ready: bool = True, deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": f"web-{o}"}
    if deleting:
        meta["deletionTimestamp"] = rfc3339(T0)
    return {"metadata": meta, "status": {"phase": "Running", "conditions": [
        {"type": "Ready", "status": "True" if ready else "False",
         "lastTransitionTime": rfc3339(T0 - timedelta(minutes=1))}]}}


def test_ordered_ready_scales_down_from_the_highest_one_at_a_time() -> None:
    now, keep = T0, range(0, 2)
    pods = {o: _pod(o) for o in range(5)}
    assert order_pods(PodManagement.ORDERED_READY, keep, pods, (), now, 1).delete == [4]
    pods[4] = _pod(4, deleting=True)  # waits for that termination
    assert order_pods(PodManagement.ORDERED_READY, keep, pods, (), now, 1).delete == []
    del pods[4]
    assert order_pods(PodManagement.ORDERED_READY, keep, pods, (), now, 1).delete == [3]
    pods[3] = _pod(3, ready=False)  # the highest may itself be unhealthy
    assert order_pods(PodManagement.ORDERED_READY, keep, pods, (), now, 1).delete == [3]
    pods[3], pods[2] = _pod(3), _pod(2, ready=False)  # a lower unhealthy one holds it
    assert order_pods(PodManagement.ORDERED_READY, keep, pods, (), now, 1).delete == []
    pods[2], pods[0] = _pod(2), _pod(0, ready=False)  # so does an unready pod in range
    assert order_pods(PodManagement.ORDERED_READY, keep, pods, (), now, 1).delete == []
    assert order_pods(PodManagement.PARALLEL, keep, pods, (), now, 1).delete == [3, 2]


def test_ordered_ready_creation_waits_for_an_unready_lower_pod() -> None:
    pods = {0: _pod(0), 1: _pod(1, ready=False)}
    out = order_pods(PodManagement.ORDERED_READY, range(4), pods, {2, 3}, T0, 0)
    assert out.create == []
    pods[1] = _pod(1)
    assert order_pods(PodManagement.ORDERED_READY, range(4), pods, {2, 3}, T0, 0).create == [2]
    assert order_pods(PodManagement.PARALLEL, range(4), pods, {2, 3}, T0, 0).create == [2, 3]


def test_scale_down_through_the_planner_goes_highest_first() -> None:
    sim = Sim(stsp(5, policy="OrderedReady"))
    settle(sim)
    sim.stsp["spec"]["replicas"] = 2
    deleted = []
    for _ in range(20):
        plan = sim.tick()
        assert len(plan.delete) <= 1
        deleted += [d.ordinal for d in plan.delete]
    assert deleted == [4, 3, 2]


# --- ordinals.start ------------------------------------------------------------------------

def test_ordinals_start_names_pods_from_start_and_updates_them_highest_first() -> None:
    sim = Sim(stsp(3, policy="Parallel", ordinals={"start": 5}))
    settle(sim)
    assert sorted(sim.pods) == ["web-5", "web-6", "web-7"]
    assert sim.bds["batchOrdinal"] == 5
    sim.set_image(V2)
    order = []
    for _ in range(100):
        sim.tick()
        order += [ordinal(n) for n, t in sim.started_to if ordinal(n) not in order]
        if sim.bds.get("generalStatus") == "Completed" and \
                sim.stsp["status"]["updatedReplicas"] == 3:
            break
    assert order == [7, 6, 5]
    sim.stsp["spec"]["ordinals"] = {"start": 6}  # the pod below the new start is surplus
    sim.run(lambda s: sorted(s.pods) == ["web-6", "web-7", "web-8"], ticks=60)


# --- RollingUpdate -------------------------------------------------------------------------

def _release_watching(sim: Sim, until: Any, ticks: int = 200) -> tuple[list[int], int]:
    """Run a release; the ordinals in the order their update started, the most in flight."""
    order: list[int] = []
    most = 0
    for _ in range(ticks):
        plan = sim.tick()
        for o in [d.ordinal for d in plan.delete] + [ordinal(n) for n, _ in sim.started_to]:
            if o not in order:
                order.append(o)
        most = max(most, len(in_flight(sim)))
        if until(sim):
            return order, most
    raise AssertionError(f"not reached: {sim.bds}")


def test_rolling_update_one_pod_at_a_time_down_to_the_partition() -> None:
    sim = Sim(stsp(5, strategy="RollingUpdate", rollingUpdate={"partition": 2}))
    settle(sim)
    old = sim.stsp["status"]["currentRevision"]
    sim.set_image(V2)
    order, most = _release_watching(sim, lambda s: s.bds.get("generalStatus") == "Partitioned")
    assert order == [4, 3, 2] and most == 1
    status = sim.stsp["status"]
    assert status["updatedReplicas"] == 3 and status["currentReplicas"] == 2
    assert status["currentRevision"] == old != status["updateRevision"]
    assert [sim.images(o) for o in range(5)] == [[V1], [V1], [V2], [V2], [V2]]
    for _ in range(5):  # it stays there
        assert not sim.tick().delete
    sim.stsp["spec"]["updateStrategy"]["rollingUpdate"]["partition"] = 0
    order, most = _release_watching(sim, lambda s: s.bds.get("generalStatus") == "Completed")
    assert order[-2:] == [1, 0] and most == 1
    assert sim.stsp["status"]["currentRevision"] == sim.stsp["status"]["updateRevision"]


def test_rolling_update_max_unavailable_percent_updates_that_many_at_once() -> None:
    sim = Sim(stsp(5, strategy="RollingUpdate", rollingUpdate={"maxUnavailable": "40%"}))
    settle(sim)
    sim.set_image(V2)
    order, most = _release_watching(sim, lambda s: s.bds.get("generalStatus") == "Completed")
    assert sorted(order) == [0, 1, 2, 3, 4] and most == 2  # 40% of 5, rounded up


def test_rolling_update_waits_while_a_pod_is_unavailable() -> None:
    sim = Sim(stsp(4, strategy="RollingUpdate"))
    settle(sim)
    sim.stuck.add(V1)  # every pod of v1 turns unready (its kubelet says so)
    sim.tick()
    sim.set_image(V2)
    for _ in range(5):
        plan = sim.tick()
        assert not plan.delete and not in_flight(sim)


# --- a batch serial or concurrent --------------------------------------------------------

def test_a_serial_batch_updates_one_pod_at_a_time() -> None:
    sim = Sim(stsp(4, policy="Parallel", maxInFlight=1))
    settle(sim)
    sim.set_image(V2)
    order, most = _release_watching(sim, lambda s: s.bds.get("generalStatus") == "Completed"
                                    and s.stsp["status"]["updatedReplicas"] == 4)
    assert order == [3, 2, 1, 0] and most == 1


def test_a_serial_batch_may_outlast_the_batch_deadline_each_pod_keeps_its_own() -> None:
    obj = stsp(4, policy="Parallel", maxInFlight=1)
    obj["spec"]["updateStrategy"]["batchDeployConfig"]["batchDeadlineSeconds"] = 8
    sim = Sim(obj)
    settle(sim)
    sim.set_image(V2)
    started = sim.now
    sim.run(lambda s: s.bds.get("generalStatus") == "Completed"
            and s.stsp["status"]["updatedReplicas"] == 4, ticks=100)
    assert sim.now - started > timedelta(seconds=8)  # longer than the batch's deadline
    assert not any("podkit.io/swap-failed" in p["metadata"]["annotations"]
                   for p in sim.pods.values())


def test_a_concurrent_batch_starts_every_pod_at_once() -> None:
    sim = Sim(stsp(4, policy="Parallel"))
    settle(sim)
    sim.set_image(V2)
    sim.tick()
    assert sorted(in_flight(sim)) == [0, 1, 2, 3]


def test_a_batch_never_exceeds_max_unavailable() -> None:
    sim = Sim(stsp(6, policy="Parallel", maxUnavailable=2, maxInFlight=6))
    settle(sim)
    sim.set_image(V2)
    order, most = _release_watching(sim, lambda s: s.bds.get("generalStatus") == "Completed"
                                    and s.stsp["status"]["updatedReplicas"] == 6)
    assert sorted(order) == list(range(6)) and most == 2


# --- the spec ------------------------------------------------------------------------------

def test_spec_defaults_and_refusals() -> None:
    spec = parse_spec(stsp(3)["spec"])
    assert spec.pod_management is PodManagement.ORDERED_READY and spec.ordinals == range(3)
    assert spec.max_in_flight is None and spec.max_unavailable is None
    rolling = parse_spec(stsp(3, strategy="RollingUpdate")["spec"])
    assert (rolling.partition, rolling.max_unavailable) == (0, 1)
    assert scaled_count("25%", 5) == 2 and scaled_count("1%", 3) == 1 and scaled_count(2, 9) == 2
    for bad in (stsp(3, strategy="RollingUpdate", batch_num=2),
                stsp(3, policy="Sometimes"),
                stsp(3, maxUnavailable="0%"),
                stsp(3, maxInFlight=0),
                stsp(3, strategy="RollingUpdate", rollingUpdate={"partition": -1})):
        with pytest.raises(SpecError):
            parse_spec(bad["spec"])
