"""Resources of swap pods on the full cluster: one reservation per pod (the serving slot
requests the business's cpu and memory, the other slot the least, and a swap moves them);
in-place vertical scaling (a release of the business container's cpu and memory reaches the
pods through ``pods/resize``, batch by batch, with no container restarted; a resize the node
can never fit fails its batch and is resized back).

The operator runs as a local process (``kopf run``) against the testbed, watching the test's
namespace only.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from podkit_operator.api import keys
from podkit_operator.inplace.specdiff import quantity
from testbed.components import NODE_NAME
from testbed.fixtures import Images
from testbed.kube import Kube
from testbed.stsp import NAME, batch_status, demo_manifest, events, pods, set_image, status

BEFORE = {"requests": {"cpu": "50m", "memory": "64Mi"},
          "limits": {"cpu": "100m", "memory": "128Mi"}}
AFTER = {"requests": {"cpu": "80m", "memory": "96Mi"},
         "limits": {"cpu": "150m", "memory": "160Mi"}}
SLOTS = (f"{NAME}-a", f"{NAME}-b")
IDLE_REQUESTS = {"cpu": "1m", "memory": "1Mi"}  # docs/operator.md, "The pod"


def deploy(kube: Kube, namespace: str, images: Images, replicas: int,
           pods_num: tuple[int | str, ...] = (1, "100%"), **batch: Any) -> None:
    """The demo's StatefulSetPlus with BEFORE's resources, every pod ready, released in
    batches of ``pods_num`` (``podsNumToUpdate``) waiting for a confirmation after each."""
    obj = demo_manifest(namespace, images, images.demo_v1, len(pods_num), batchAuto=False,
                        podsNumToUpdate=list(pods_num), **batch)
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
        out[pod["metadata"]["name"]] = {
            "uid": pod["metadata"]["uid"],
            "active": f"{NAME}-{pod['metadata']['annotations'].get(keys.ANN_ACTIVE_SLOT)}", **{
            c["name"]: {"spec": c.get("resources"),
                        "running": reported.get(c["name"], {}).get("resources"),
                        "id": reported.get(c["name"], {}).get("containerID"),
                        "restarts": reported.get(c["name"], {}).get("restartCount")}
            for c in pod["spec"]["containers"] if c["name"] in SLOTS}}
    return out


def runs_with(found: dict[str, Any], resources: dict[str, Any]) -> bool:
    """The pod's serving slot has ``resources`` in its spec and runs with them, the other
    slot the same limits and IDLE_REQUESTS."""
    idle = {"requests": IDLE_REQUESTS, "limits": resources["limits"]}
    return all(found[s]["spec"] == want and found[s]["running"] == want
               for s, want in ((s, resources if s == found["active"] else idle)
                               for s in SLOTS))


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


def test_a_swap_moves_the_requests_to_the_new_slot_and_the_pod_reserves_them_once(
        operator, kube: Kube, namespace: str, podkit_images: Images) -> None:
    """Through an image release the pod requests the business's cpu once (plus 1m) at every
    moment seen, and the slot that took over ends with the requests."""
    deploy(kube, namespace, podkit_images, 1, pods_num=("100%",))
    assert slots(kube, namespace)["web-0"]["active"] == f"{NAME}-a"
    set_image(kube, namespace, podkit_images.demo_v2)
    seen = []

    def swapped() -> bool:
        found = slots(kube, namespace)["web-0"]
        seen.append(sum(cpu(found[s]["spec"]["requests"]["cpu"]) for s in SLOTS))
        return (batch_status(kube, namespace).get("generalStatus") == "Completed"
                and status(kube, namespace).get("updatedReplicas") == 1
                and found["active"] == f"{NAME}-b" and runs_with(found, BEFORE))
    kube.wait_for("web-0 swapped to v2 in slot b, with the requests", swapped, timeout=120,
                  interval=0.2, explain=lambda: f"{slots(kube, namespace)}")
    assert set(seen) == {cpu("51m")}, seen
    pod = next(p for p in pods(kube, namespace))
    total = sum(cpu(c["resources"]["requests"]["cpu"]) for c in pod["spec"]["containers"])
    assert total == cpu("71m")  # 50m + 1m + the sidecar's 20m: what the scheduler counts


def cpu(value: str) -> Fraction:
    """A cpu quantity in cores."""
    found = quantity(value)
    assert isinstance(found, Fraction), value
    return found


def test_a_resize_the_node_has_no_room_for_yet_waits_named_in_the_status_then_runs(
        operator, kube: Kube, namespace: str, podkit_images: Images) -> None:
    """A filler pod takes 600m of the node's 2 cores; a release asking 1.6 cores of web-0's
    serving slot is Deferred by the kubelet (it would fit an empty node), named in the
    Progressing condition; once the filler goes, the resize runs and the release completes."""
    allocatable = cpu(kube.get("node", NODE_NAME)["status"]["allocatable"]["cpu"])
    assert allocatable == 2, f"the test is sized for a 2-core node, not {allocatable}"
    deploy(kube, namespace, podkit_images, 1, pods_num=("100%",))
    kube.apply({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "filler", "namespace": namespace},
                "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
                    "name": "pause", "image": podkit_images.pause, "imagePullPolicy": "Never",
                    "resources": {"requests": {"cpu": "600m"}}}]}})
    kube.wait_for("the filler pod running", lambda: kube.get("pod", "filler", namespace).get(
        "status", {}).get("phase") == "Running", timeout=60)
    big = {"requests": {"cpu": "1600m", "memory": "64Mi"},
           "limits": {"cpu": "1600m", "memory": "128Mi"}}
    set_resources(kube, namespace, big)

    def progressing() -> str:
        found = {c["type"]: c for c in status(kube, namespace).get("conditions") or []}
        return str(found.get("Progressing", {}).get("message", ""))
    kube.wait_for("the Progressing condition to name web-0's deferred resize", lambda:
                  "held by the kubelet: web-0 (resize Deferred: " in progressing(), timeout=90,
                  explain=lambda: f"{progressing()}\n{slots(kube, namespace)}")
    web_0 = slots(kube, namespace)["web-0"]
    assert web_0[web_0["active"]]["running"] == BEFORE, web_0  # the spec asks, the kubelet waits

    kube.run("delete", "pod", "filler", "-n", namespace, "--wait")
    kube.wait_for("the resize to run and the release to complete", lambda: batch_status(
        kube, namespace).get("generalStatus") == "Completed" and runs_with(
        slots(kube, namespace)["web-0"], big), timeout=120,
        explain=lambda: f"{progressing()}\n{slots(kube, namespace)}")
