"""The operator against a real apiserver with kwok's fake nodes: releases of hundreds of pods,
failure and batch rollback, scaling during a release.

kwok plays the kubelet (tools/testbed/kwok/pod-stages.yaml): a pod's container statuses follow its
spec, and an image whose reference contains "broken" never becomes ready (CrashLoopBackOff). The
operator runs as a local ``kopf run`` process; the swap itself is exercised on real containers by
tests/e2e/test_operator_release.py.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from podkit_operator.api import keys
from testbed.fixtures import operator_on_api_cluster
from testbed.kube import Kube
from testbed.operator_proc import OperatorProcess
from testbed.stsp import (
    batch_status,
    events,
    pods,
    pods_named,
    serving_image,
    set_image,
    status,
)
from testbed.stsp import manifest as stsp

pytestmark = pytest.mark.integration

V1, V2 = "podkit.local/podkit-demo:v1", "podkit.local/podkit-demo:v2"
BROKEN = "podkit.local/podkit-demo:broken"


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[Kube, OperatorProcess]]:
    """An API-only cluster with the CRD, and the operator running against it."""
    with operator_on_api_cluster(f"op-{os.getpid()}", nodes=4) as running:
        yield running


@pytest.fixture
def kube(cluster: tuple[Kube, OperatorProcess]) -> Kube:
    return cluster[0]


@pytest.fixture
def namespace(kube: Kube) -> str:
    return kube.create_namespace(f"op-{os.urandom(4).hex()}")


def at(kube: Kube, namespace: str, image: str, count: int) -> bool:
    listed = pods(kube, namespace)
    return len(listed) == count and all(serving_image(p) == image for p in listed)


def swaps(pod: dict[str, Any]) -> float:
    """How many A/B swaps changed this pod's spec since it was created: a pod's generation
    counts its spec changes, and a swap makes two (the idle slot gets the business image, then
    the active slot the pause image). Unlike events, which an operator killed with SIGKILL may
    never post, this cannot be lost."""
    return (pod["metadata"]["generation"] - 1) / 2


def stalled(kube: Kube, namespace: str, log: Path) -> Callable[[], str]:
    """What a release that stopped short shows: its batch status, why pods failed (their
    UpdateFailed events), the pods not serving the target with their podkit annotations, the
    operator's last lines (issue 24: this test timed out once under load, and passed on every
    rerun; again in session 11's precheck CI, the release Failed in batch 4)."""
    def explain() -> str:
        behind = [f"{p['metadata']['name']}: {keys_of(p)} {containers_of(p)}"
                  for p in sorted(pods(kube, namespace), key=ordinal, reverse=True)
                  if serving_image(p) != V2][:10]  # the highest first: the batch under way
        lines = [line for line in log.read_text(errors="replace").splitlines()
                 if "urllib3" not in line][-30:]
        failures = [f"UpdateFailed: {m}" for m in events(kube, namespace, "UpdateFailed")][:10]
        return "\n".join([f"batch status: {batch_status(kube, namespace)}", *failures, *behind,
                          *lines])
    return explain


def ordinal(pod: dict[str, Any]) -> int:
    return int(pod["metadata"]["name"].rsplit("-", 1)[1])


def containers_of(pod: dict[str, Any]) -> list[str]:
    """Each container's image, readiness and start as the fake node reports them."""
    return [f"{c['name']}={c.get('image')} ready={c.get('ready')} "
            f"started={(c.get('state') or {}).get('running', {}).get('startedAt')}"
            for c in (pod.get("status") or {}).get("containerStatuses") or []]


def keys_of(pod: dict[str, Any]) -> dict[str, str]:
    return {k: v for k, v in (pod["metadata"].get("annotations") or {}).items()
            if k.startswith("podkit.io/")}


def test_two_hundred_pods_released_batch_by_batch(cluster: tuple[Kube, OperatorProcess],
                                                  namespace: str) -> None:
    kube, operator = cluster
    kube.apply(stsp(namespace, 200, V1, batchNum=4, podsNumToUpdate=[10, "25%", "60%", "100%"]))
    kube.wait_for("200 pods at v1", lambda: at(kube, namespace, V1, 200), timeout=180)
    first_release = status(kube, namespace)["updateRevision"]
    set_image(kube, namespace, V2)
    targets = {1: 10, 2: 50, 3: 120, 4: 200}
    seen_orders = set()

    def watch_batches() -> bool:
        """Batches take the highest ordinals first, and batch k+1 starts only once batch k
        converged: whenever a pod beyond batch k is touched, every pod of batches 1..k is at
        v2. The status is written after the pods in each pass, so it can lag them: a batch
        it names (of this release) is checked the other way round, read before the pods."""
        found = status(kube, namespace)
        order = (found.get("batchDeployStatus", {}).get("batchOrder", 0)
                 if found.get("updateRevision") != first_release else 0)
        image = {ordinal(p): serving_image(p) for p in pods(kube, namespace)}
        for k, target in targets.items():
            first = 200 - target  # batches 1..k hold the ordinals first..199
            if k < order or any(image[o] != V1 for o in range(first)):
                behind = [o for o in range(first, 200) if image[o] != V2]
                assert not behind, (k, order, behind[:5])
        seen_orders.add(order)
        return all(i == V2 for i in image.values()) and len(image) == 200

    kube.wait_for("the release of 200 pods", watch_batches, timeout=300, interval=0.2,
                  explain=stalled(kube, namespace, operator.log))
    # Completed is written by the pass that reads every pod finished, a pass after the last.
    kube.wait_for("the release to be recorded completed", lambda: batch_status(
        kube, namespace).get("generalStatus") == "Completed", timeout=60,
        explain=stalled(kube, namespace, operator.log))
    assert batch_status(kube, namespace)["batchOrder"] == 4
    assert seen_orders >= {2, 3, 4}
    assert sorted(swaps(p) for p in pods(kube, namespace)) == [1] * 200  # each exactly once


def test_a_batch_that_cannot_start_fails_and_swaps_back(kube: Kube, namespace: str) -> None:
    kube.apply(stsp(namespace, 6, V1, batchNum=3, batchDeadlineSeconds=30,
                    maxFailedPercent=0))
    kube.wait_for("6 pods at v1", lambda: at(kube, namespace, V1, 6), timeout=120)
    set_image(kube, namespace, BROKEN)
    kube.wait_for("the release to fail", lambda: batch_status(kube, namespace).get(
        "generalStatus") == "Failed", timeout=120)
    kube.wait_for("every pod serving v1 again", lambda: at(kube, namespace, V1, 6),
                  timeout=120)
    status = kube.get(keys.PLURAL, "web", namespace)["status"]
    failed = [c for c in status["conditions"] if c["type"] == "ReleaseFailed"]
    assert failed and failed[0]["status"] == "True", status["conditions"]
    assert status["batchDeployStatus"]["batchOrder"] == 1  # later batches never started
    updated = set(pods_named(events(kube, namespace, "UpdateStarted")))
    assert updated <= {"web-4", "web-5"}, updated  # only batch 1's pods were touched
    assert events(kube, namespace, "BatchFailed")


def test_scaling_up_during_a_release_adds_pods_at_the_last_good_version(
        kube: Kube, namespace: str) -> None:
    kube.apply(stsp(namespace, 4, V1, batchNum=2, batchAuto=False))
    kube.wait_for("4 pods at v1", lambda: at(kube, namespace, V1, 4), timeout=120)
    set_image(kube, namespace, V2)
    kube.wait_for("batch 1 to wait for a confirmation", lambda: batch_status(kube, namespace).get(
        "action") == "WaitToConfirm", timeout=120)
    kube.run("scale", f"{keys.PLURAL}/web", "-n", namespace, "--replicas=6")
    # A batch counts pods: batch 1 (an even split) covered 2 of 4 and covers 3 of 6, the pods
    # already released first (web-3, web-2), then the highest not yet: the new web-5. web-4
    # and web-5 are created at the last good version (v1), never born half-rolled; web-5 is
    # then swapped with batch 1, web-4 waits for batch 2.
    kube.wait_for("6 pods", lambda: len(pods(kube, namespace)) == 6 and all(
        serving_image(p) for p in pods(kube, namespace)), timeout=120)
    kube.wait_for("web-5 swapped", lambda: "web-5" in pods_named(
        events(kube, namespace, "UpdateCompleted")), timeout=60)
    images = {p["metadata"]["name"]: serving_image(p) for p in pods(kube, namespace)}
    assert images == {"web-0": V1, "web-1": V1, "web-2": V2, "web-3": V2, "web-4": V1,
                      "web-5": V2}, images
    assert batch_status(kube, namespace)["action"] == "WaitToConfirm"

    kube.run("annotate", keys.PLURAL, "web", "-n", namespace, "podkit.io/confirm-batch=2")
    kube.wait_for("all 6 pods at v2", lambda: at(kube, namespace, V2, 6), timeout=120)
    kube.run("scale", f"{keys.PLURAL}/web", "-n", namespace, "--replicas=3")
    kube.wait_for("3 pods, the highest ordinals gone", lambda: sorted(
        p["metadata"]["name"] for p in pods(kube, namespace)
        if not p["metadata"].get("deletionTimestamp")) == ["web-0", "web-1", "web-2"],
        timeout=120)


def test_a_scale_above_the_last_count_is_accepted_and_released(kube: Kube,
                                                              namespace: str) -> None:
    # podsNumToUpdate written for 3 pods: the last batch takes whatever is there, so the
    # scale subresource (kubectl scale, an HPA) may go above the last count
    kube.apply(stsp(namespace, 3, V1, batchNum=3, podsNumToUpdate=[1, 2, 3]))
    kube.wait_for("3 pods at v1", lambda: at(kube, namespace, V1, 3), timeout=120)
    kube.run("scale", f"{keys.PLURAL}/web", "-n", namespace, "--replicas=5")
    assert kube.get(keys.PLURAL, "web", namespace)["spec"]["replicas"] == 5
    kube.wait_for("5 pods at v1", lambda: at(kube, namespace, V1, 5), timeout=120)
    set_image(kube, namespace, V2)
    kube.wait_for("the release of all 5 pods", lambda: at(kube, namespace, V2, 5) and (
        batch_status(kube, namespace).get("generalStatus") == "Completed"), timeout=180)
    final = status(kube, namespace)
    assert final["batchDeployStatus"]["batchOrder"] == 3
    assert final["updatedReplicas"] == 5
    # batch 3 (the rest) took web-2, web-1 and web-0: batches 1 and 2 were one pod each
    assert final["batchDeployStatus"]["batchReplicas"] == 3


def test_operator_killed_at_random_points_swaps_every_pod_once(
        cluster: tuple[Kube, OperatorProcess], namespace: str) -> None:
    kube, operator = cluster
    kube.apply(stsp(namespace, 60, V1, batchNum=3))
    kube.wait_for("60 pods at v1", lambda: at(kube, namespace, V1, 60), timeout=120)
    set_image(kube, namespace, V2)
    chance = random.Random(os.getpid())
    for _ in range(4):
        time.sleep(chance.uniform(0.1, 1.5))  # somewhere in the release
        operator.kill()
        operator.start()
    kube.wait_for("the release after the restarts", lambda: at(kube, namespace, V2, 60),
                  timeout=180)
    assert batch_status(kube, namespace)["generalStatus"] == "Completed"
    counted = {p["metadata"]["name"]: swaps(p) for p in pods(kube, namespace)}
    assert set(counted.values()) == {1}, counted  # no pod swapped twice, none skipped


@pytest.mark.parametrize("strategy", ["InPlace", "Recreate"])
def test_inplace_and_recreate_strategies(kube: Kube, namespace: str, strategy: str) -> None:
    obj = stsp(namespace, 4, V1, batchNum=2)
    obj["spec"]["updateStrategy"]["type"] = strategy
    kube.apply(obj)
    kube.wait_for("4 running pods", lambda: len(pods(kube, namespace)) == 4 and all(
        p["status"].get("phase") == "Running" for p in pods(kube, namespace)), timeout=120)
    before = {p["metadata"]["name"]: p for p in pods(kube, namespace)}
    assert all([c["name"] for c in p["spec"]["containers"]] == ["web"]
               for p in before.values())  # no slots, no sidecar: the template as it is
    set_image(kube, namespace, V2)

    def released() -> bool:
        listed = [p for p in pods(kube, namespace) if not p["metadata"].get("deletionTimestamp")]
        return (len(listed) == 4
                and batch_status(kube, namespace).get("generalStatus") == "Completed"
                and all(p["spec"]["containers"][0]["image"] == V2 for p in listed))

    kube.wait_for(f"the {strategy} release", released, timeout=180)
    after = {p["metadata"]["name"]: p for p in pods(kube, namespace)}
    kept = {n for n in after if after[n]["metadata"]["uid"] == before[n]["metadata"]["uid"]}
    # InPlace patches the running pods; Recreate deletes each and creates it again
    assert kept == (set(after) if strategy == "InPlace" else set())


CRASHING = "podkit.local/podkit-demo:v2-crash-after-8s"  # kwok crashes it 8 s after its start
PINNED = "podkit.local/podkit-demo@sha256:" + "ab" * 32  # kwok reports it under another tag


def test_a_version_that_crashes_after_taking_over_fails_batch_1_only(kube: Kube,
                                                                     namespace: str) -> None:
    """The soak (minReadySeconds 10 s, the default) catches a crash 8 s after the start, so the
    release never reaches the second batch, though batch 1 looked ready at first."""
    kube.apply(stsp(namespace, 3, V1, min_ready=10, batchNum=3, batchIntervalSeconds=0))
    kube.wait_for("3 pods at v1", lambda: at(kube, namespace, V1, 3), timeout=120)
    set_image(kube, namespace, CRASHING)
    seen: set[str] = set()

    def failed() -> bool:
        for pod in pods(kube, namespace):
            if any(c["image"] == CRASHING for c in pod["spec"]["containers"]):
                seen.add(pod["metadata"]["name"])
        return batch_status(kube, namespace).get("generalStatus") == "Failed"

    kube.wait_for("the release to fail", failed, timeout=120, interval=0.2)
    kube.wait_for("every pod serving v1 again", lambda: at(kube, namespace, V1, 3), timeout=120)
    assert seen == {"web-2"}, seen  # only batch 1 ever ran it
    assert batch_status(kube, namespace)["batchOrder"] == 1
    assert not events(kube, namespace, "BatchCompleted")


def test_a_digest_pinned_image_reported_under_another_tag_is_released(kube: Kube,
                                                                      namespace: str) -> None:
    kube.apply(stsp(namespace, 2, V1, batchNum=1))
    kube.wait_for("2 pods at v1", lambda: at(kube, namespace, V1, 2), timeout=120)
    set_image(kube, namespace, PINNED)
    kube.wait_for("the pinned release to complete", lambda: at(kube, namespace, PINNED, 2)
                  and batch_status(kube, namespace).get("generalStatus") == "Completed"
                  and status(kube, namespace).get("updatedReplicas") == 2, timeout=120)
    reported = {c["image"] for p in pods(kube, namespace)
                for c in p["status"]["containerStatuses"]}
    assert PINNED not in reported, [p["status"]["containerStatuses"] for p in pods(kube, namespace)]
