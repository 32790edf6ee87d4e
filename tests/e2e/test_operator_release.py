"""The StatefulSetPlus operator on the full cluster: batch releases of the demo service, each
pod upgraded by an A/B swap through the real kubelet, and a one-key rollback.

The operator runs as a local process (``kopf run``) against the testbed, watching the test's
namespace only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from podkit_demo.client import tcp_get, tcp_state
from podkit_operator.api import keys
from testbed.fixtures import Images
from testbed.kube import Kube
from testbed.operator_proc import OperatorProcess
from testbed.stsp import (
    DEMO_PORT,
    batch_status,
    demo_manifest,
    events,
    pods,
    pods_named,
    serving_image,
    set_image,
    status,
)


def completed_at(kube: Kube, namespace: str, revision_image: str) -> Callable[[], bool]:
    def check() -> bool:
        found = status(kube, namespace)
        return (found.get("batchDeployStatus", {}).get("generalStatus") == "Completed"
                and found.get("updatedReplicas") == 3 and found.get("readyReplicas") == 3
                and all(serving_image(p) == revision_image for p in pods(kube, namespace)))
    return check


def snapshot(kube: Kube, namespace: str) -> dict[str, dict[str, Any]]:
    """Per pod: UID, IP, and what the demo says of its version and shared-memory state."""
    seen = {}
    for pod in pods(kube, namespace):
        ip = pod["status"]["podIP"]
        version = tcp_get((ip, DEMO_PORT), 1).split()[0].decode()
        seen[pod["metadata"]["name"]] = {"uid": pod["metadata"]["uid"], "ip": ip,
                                         "version": version,
                                         "state": tcp_state((ip, DEMO_PORT))}
    return seen


def assert_swapped_in_place(before: dict, after: dict, version: str) -> None:
    assert sorted(after) == sorted(before) == ["web-0", "web-1", "web-2"]
    for name, pod in after.items():
        old = before[name]
        assert (pod["uid"], pod["ip"]) == (old["uid"], old["ip"]), f"{name} was recreated"
        assert pod["version"] == version
        state = pod["state"]
        assert state["intact"], f"{name}: the shared-memory blob changed"
        assert state["blob_crc"] == old["state"]["blob_crc_at_create"]
        assert state["generation"] > old["state"]["generation"]  # a clean hand-over sealed it
        assert state["served"] > old["state"]["served"]  # the counter went on counting


def test_release_in_three_batches_then_one_key_rollback(operator, kube: Kube, namespace: str,
                                                        podkit_images: Images) -> None:
    kube.apply(demo_manifest(namespace, podkit_images, podkit_images.demo_v1, 3, batchAuto=True))
    kube.wait_for("3 pods of web at v1", completed_at(kube, namespace, podkit_images.demo_v1),
                  timeout=180)
    v1 = snapshot(kube, namespace)
    assert {p["version"] for p in v1.values()} == {"v1"}

    set_image(kube, namespace, podkit_images.demo_v2)
    kube.wait_for("the release to v2", completed_at(kube, namespace, podkit_images.demo_v2),
                  timeout=300)
    v2 = snapshot(kube, namespace)
    assert_swapped_in_place(v1, v2, "v2")
    # three batches of one pod each, highest ordinal first
    assert [m.split(" (pods")[0] for m in events(kube, namespace, "BatchStarted")] == [
        "batch 2 of 3", "batch 3 of 3"]  # batch 1 starts with the release
    assert events(kube, namespace, "ReleaseStarted")[0].endswith("in 3 batches [1, 2, 3]")
    assert len(events(kube, namespace, "BatchCompleted")) == 3
    assert pods_named(events(kube, namespace, "UpdateStarted"))[:3] == [
        "web-2", "web-1", "web-0"]

    kube.run("annotate", keys.PLURAL, "web", "-n", namespace, "podkit.io/rollback=true")
    kube.wait_for("the rollback to v1", completed_at(kube, namespace, podkit_images.demo_v1),
                  timeout=300)
    back = snapshot(kube, namespace)
    assert_swapped_in_place(v2, back, "v1")


def updated_pods(kube: Kube, namespace: str, image: str) -> int:
    return sum(1 for pod in pods(kube, namespace) if serving_image(pod) == image)


def test_manual_batches_wait_for_confirmation_and_pause_holds(
        operator, kube: Kube, namespace: str, podkit_images: Images) -> None:
    kube.apply(demo_manifest(namespace, podkit_images, podkit_images.demo_v1, 2, batchAuto=False,
                             podsNumToUpdate=[1, "100%"]))
    kube.wait_for("3 pods of web at v1", completed_at(kube, namespace, podkit_images.demo_v1),
                  timeout=180)
    set_image(kube, namespace, podkit_images.demo_v2)
    kube.wait_for("batch 1 to wait for a confirmation", lambda: batch_status(
        kube, namespace).get("action") == "WaitToConfirm", timeout=180)
    assert updated_pods(kube, namespace, podkit_images.demo_v2) == 1
    assert batch_status(kube, namespace)["batchOrder"] == 1

    # paused, a confirmation starts nothing
    kube.run("annotate", keys.PLURAL, "web", "-n", namespace,
             "podkit.io/pause-batch-deploy=true")
    kube.run("annotate", keys.PLURAL, "web", "-n", namespace, "podkit.io/confirm-batch=2")
    kube.wait_for("the release to say it is paused", lambda: batch_status(
        kube, namespace).get("generalStatus") == "Paused", timeout=60)
    assert updated_pods(kube, namespace, podkit_images.demo_v2) == 1
    assert all(serving_image(p) == podkit_images.demo_v1
               for p in pods(kube, namespace) if p["metadata"]["name"] != "web-2")

    kube.run("annotate", keys.PLURAL, "web", "-n", namespace,
             "podkit.io/pause-batch-deploy-")
    kube.wait_for("the confirmed batch 2 to finish the release",
                  completed_at(kube, namespace, podkit_images.demo_v2), timeout=300)
    assert {p["version"] for p in snapshot(kube, namespace).values()} == {"v2"}


def test_operator_killed_mid_release_continues_without_repeating_a_swap(
        operator: OperatorProcess, kube: Kube, namespace: str,
        podkit_images: Images) -> None:
    kube.apply(demo_manifest(namespace, podkit_images, podkit_images.demo_v1, 3, batchAuto=True))
    kube.wait_for("3 pods of web at v1", completed_at(kube, namespace, podkit_images.demo_v1),
                  timeout=180)
    before = snapshot(kube, namespace)
    set_image(kube, namespace, podkit_images.demo_v2)
    kube.wait_for("batch 2 under way", lambda: batch_status(kube, namespace).get(
        "batchOrder") == 2, timeout=180, interval=0.1)
    operator.kill()
    operator.start()
    kube.wait_for("the release to finish after the restart",
                  completed_at(kube, namespace, podkit_images.demo_v2), timeout=300)
    assert_swapped_in_place(before, snapshot(kube, namespace), "v2")
    # a pod's generation counts its spec changes: two per swap, so 3 after exactly one
    assert {p["metadata"]["generation"] for p in pods(kube, namespace)} == {3}


def test_an_image_that_cannot_start_fails_its_batch_and_swaps_back(
        operator, kube: Kube, namespace: str, podkit_images: Images) -> None:
    kube.apply(demo_manifest(namespace, podkit_images, podkit_images.demo_v1, 3, batchAuto=True,
                             maxFailedPercent=0))
    kube.wait_for("3 pods of web at v1", completed_at(kube, namespace, podkit_images.demo_v1),
                  timeout=180)
    before = snapshot(kube, namespace)
    missing = podkit_images.demo_v1.rsplit(":", 1)[0] + ":missing"  # never built, never pulled
    set_image(kube, namespace, missing)
    kube.wait_for("the release to fail", lambda: batch_status(kube, namespace).get(
        "generalStatus") == "Failed", timeout=180)
    kube.wait_for("web at v1 again", lambda: all(
        serving_image(p) == podkit_images.demo_v1 for p in pods(kube, namespace)),
        timeout=180)
    after = snapshot(kube, namespace)
    for name, pod in after.items():  # nobody lost its state or its address
        assert (pod["uid"], pod["ip"], pod["version"]) == (
            before[name]["uid"], before[name]["ip"], "v1")
        assert pod["state"]["intact"]
        assert pod["state"]["blob_crc"] == before[name]["state"]["blob_crc_at_create"]
    # only batch 1 (web-2) was touched: swapped towards the missing image, then back
    assert set(pods_named(events(kube, namespace, "UpdateStarted"))) == {"web-2"}
    assert events(kube, namespace, "BatchFailed")
