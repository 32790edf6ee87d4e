"""In-place vertical scaling on the full cluster: a release of the business container's cpu
and memory reaches the pods through ``pods/resize``, batch by batch, with no container
restarted; a resize the node can never fit fails its batch and is resized back.

The operator runs as a local process (``kopf run``) against the testbed, watching the test's
namespace only.
"""

from __future__ import annotations

from typing import Any

from podkit_operator.api import keys
from testbed.fixtures import Images
from testbed.kube import Kube
from testbed.stsp import NAME, batch_status, demo_manifest, events, pods, status

BEFORE = {"requests": {"cpu": "50m", "memory": "64Mi"},
          "limits": {"cpu": "100m", "memory": "128Mi"}}
AFTER = {"requests": {"cpu": "80m", "memory": "96Mi"},
         "limits": {"cpu": "150m", "memory": "160Mi"}}
SLOTS = (f"{NAME}-a", f"{NAME}-b")


def deploy(kube: Kube, namespace: str, images: Images, replicas: int, **batch: Any) -> None:
    """The demo's StatefulSetPlus with BEFORE's resources, every pod ready, in 2 batches
    (batch 1 one pod) waiting for a confirmation after each."""
    obj = demo_manifest(namespace, images, images.demo_v1, 2, batchAuto=False,
                        podsNumToUpdate=[1, "100%"], **batch)
    obj["spec"]["replicas"] = replicas
    obj["spec"]["template"]["spec"]["containers"][0]["resources"] = BEFORE
    kube.apply(obj)
    kube.wait_for(f"{replicas} pods ready", lambda: status(kube, namespace).get(
        "readyReplicas") == replicas and batch_status(kube, namespace).get(
        "generalStatus") == "Completed", timeout=180, explain=lambda: kube.why_pods_wait(namespace))


def set_resources(kube: Kube, namespace: str, resources: dict[str, Any]) -> None:
    kube.patch(keys.PLURAL, NAME, [{"op": "replace",
                                    "path": "/spec/template/spec/containers/0/resources",
                                    "value": resources}], namespace)


def slots(kube: Kube, namespace: str) -> dict[str, dict[str, Any]]:
    """Per pod: its UID, and per slot container the resources of its spec, those the kubelet
    reports it runs with, its container ID and restart count."""
    out = {}
    for pod in pods(kube, namespace):
        reported = {c["name"]: c for c in pod["status"].get("containerStatuses") or []}
        out[pod["metadata"]["name"]] = {"uid": pod["metadata"]["uid"], **{
            c["name"]: {"spec": c.get("resources"),
                        "running": reported.get(c["name"], {}).get("resources"),
                        "id": reported.get(c["name"], {}).get("containerID"),
                        "restarts": reported.get(c["name"], {}).get("restartCount")}
            for c in pod["spec"]["containers"] if c["name"] in SLOTS}}
    return out


def runs_with(found: dict[str, Any], resources: dict[str, Any]) -> bool:
    """Both slots of a pod have ``resources`` in their spec and run with them."""
    return all(found[s]["spec"] == resources and found[s]["running"] == resources
               for s in SLOTS)


def same_processes(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """What changed of a pod's identity and its slots' containers (empty: nothing)."""
    changed = [] if before["uid"] == after["uid"] else ["the pod was recreated"]
    return changed + [f"{s} was restarted" for s in SLOTS
                      if (before[s]["id"], before[s]["restarts"])
                      != (after[s]["id"], after[s]["restarts"])]


def test_a_release_of_cpu_and_memory_resizes_the_pods_in_place_batch_by_batch(
        operator, kube: Kube, namespace: str, podkit_images: Images) -> None:
    deploy(kube, namespace, podkit_images, 2)
    before = slots(kube, namespace)
    assert all(runs_with(p, BEFORE) for p in before.values()), before

    set_resources(kube, namespace, AFTER)
    kube.wait_for("batch 1 (web-1) resized, waiting to be confirmed", lambda: batch_status(
        kube, namespace).get("action") == "WaitToConfirm" and runs_with(
        slots(kube, namespace)["web-1"], AFTER), timeout=120,
        explain=lambda: f"{batch_status(kube, namespace)}\n{slots(kube, namespace)}")
    assert runs_with(slots(kube, namespace)["web-0"], BEFORE)

    kube.run("annotate", keys.PLURAL, NAME, "-n", namespace, "podkit.io/confirm-batch=2")
    kube.wait_for("batch 2 (web-0) resized, the release complete", lambda: batch_status(
        kube, namespace).get("generalStatus") == "Completed" and status(kube, namespace).get(
        "updatedReplicas") == 2 and all(runs_with(p, AFTER)
                                        for p in slots(kube, namespace).values()),
        timeout=120, explain=lambda: f"{batch_status(kube, namespace)}\n"
        f"{slots(kube, namespace)}")
    after = slots(kube, namespace)
    assert {name: same_processes(before[name], after[name]) for name in before} == {
        "web-0": [], "web-1": []}, (before, after)
    assert status(kube, namespace)["readyReplicas"] == 2


def test_a_resize_the_node_can_never_fit_fails_its_batch_and_is_resized_back(
        operator, kube: Kube, namespace: str, podkit_images: Images) -> None:
    deploy(kube, namespace, podkit_images, 2, maxFailedPercent=0)
    before = slots(kube, namespace)
    too_big = {"requests": {"cpu": "500", "memory": "64Mi"},
               "limits": {"cpu": "500", "memory": "128Mi"}}
    set_resources(kube, namespace, too_big)
    kube.wait_for("the release to fail and web-1 to be resized back", lambda: batch_status(
        kube, namespace).get("generalStatus") == "Failed" and runs_with(
        slots(kube, namespace)["web-1"], BEFORE), timeout=120,
        explain=lambda: f"{batch_status(kube, namespace)}\n{slots(kube, namespace)}")
    failed = [m for m in events(kube, namespace, "UpdateFailed") if m.startswith("web-1")]
    assert failed and "resize Infeasible: Node didn't have enough capacity: cpu" in failed[0], \
        failed
    conditions = {c["type"]: c for c in status(kube, namespace)["conditions"]}
    assert conditions["ReleaseFailed"]["status"] == "True", conditions
    after = slots(kube, namespace)
    assert runs_with(after["web-0"], BEFORE) and runs_with(after["web-1"], BEFORE), after
    assert {name: same_processes(before[name], after[name]) for name in before} == {
        "web-0": [], "web-1": []}, (before, after)
