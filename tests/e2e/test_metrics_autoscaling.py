"""The resource-metrics pipeline of the full cluster: metrics-server (a testbed process) serves
``metrics.k8s.io`` for the node and for pods, and an autoscaling/v2 HPA on CPU utilisation
scales a StatefulSetPlus through its scale subresource, up under load and back down after it.

The load is the demo's own work: the test process floods the serving slot of ``web-0`` with
pipelined ``GET`` requests over a few connections, so the CPU the HPA sees is the serving
slot's. The demo has no switch that burns CPU by itself, and none is needed.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from podkit_demo.protocol import get_request
from podkit_operator.api import keys
from testbed.components import NODE_NAME
from testbed.fixtures import Images
from testbed.kube import Kube
from testbed.metrics_server import node_metrics
from testbed.stsp import (
    DEMO_PORT,
    NAME,
    batch_status,
    demo_manifest,
    events,
    pods,
    pods_named,
    serving_image,
    set_image,
    status,
)

# The business container's request: each swap pod reserves it once (the serving slot; the other
# requests 1m) plus the sidecar's 20m, 71m in all, against which the HPA reads utilisation; a
# flood of requests takes far more, an idle demo far less.
BUSINESS_CPU = "50m"
TARGET_UTILIZATION = 50
MAX_REPLICAS = 3
PIPELINE = 64  # requests in flight per connection
CONNECTIONS = 4


def pod_metrics(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(kube.run(
        "get", "--raw", f"/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods/{name}"))
    return result


def test_metrics_api_serves_the_node_and_a_new_pod(cluster, kube: Kube, namespace: str,
                                                    podkit_images: Images) -> None:
    node = node_metrics(kube, NODE_NAME)
    assert {"cpu", "memory"} <= set(node["usage"]), f"node metrics without usage: {node}"
    assert NODE_NAME in kube.run("top", "node", "--no-headers")

    kube.apply({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "idle", "namespace": namespace},
                "spec": {"containers": [{"name": "c", "image": podkit_images.base,
                                         "imagePullPolicy": "Never",
                                         "command": ["sleep", "infinity"]}],
                         "terminationGracePeriodSeconds": 0,
                         "automountServiceAccountToken": False}})
    kube.wait_for("pod idle to run", lambda: kube.get("pod", "idle", namespace)["status"]
                  .get("phase") == "Running", timeout=60,
                  explain=lambda: kube.why_pods_wait(namespace))
    running = time.monotonic()
    found = kube.wait_for("the metrics API to list pod idle",
                          lambda: pod_metrics(kube, namespace, "idle"), timeout=120)
    print(f"pod idle in the metrics API {time.monotonic() - running:.1f}s after it ran")
    assert [c["name"] for c in found["containers"]] == ["c"], found
    assert "idle" in kube.run("top", "pod", "-n", namespace, "--no-headers")


def hpa(namespace: str, min_replicas: int = 1) -> dict[str, Any]:
    """CPU utilisation of the StatefulSetPlus's pods, ``min_replicas`` to MAX_REPLICAS;
    scale-down without its 5-minute stabilization window, so the test sees it within a minute
    or two."""
    return {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": NAME, "namespace": namespace},
        "spec": {
            "scaleTargetRef": {"apiVersion": f"{keys.GROUP}/{keys.VERSION}",
                               "kind": keys.KIND, "name": NAME},
            "minReplicas": min_replicas, "maxReplicas": MAX_REPLICAS,
            "metrics": [{"type": "Resource", "resource": {
                "name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": TARGET_UTILIZATION}}}],
            "behavior": {
                "scaleUp": {"stabilizationWindowSeconds": 0,
                            "policies": [{"type": "Pods", "value": MAX_REPLICAS,
                                          "periodSeconds": 15}]},
                "scaleDown": {"stabilizationWindowSeconds": 15,
                              "policies": [{"type": "Pods", "value": MAX_REPLICAS,
                                            "periodSeconds": 15}]}},
        },
    }


def hpa_state(kube: Kube, namespace: str) -> str:
    """What the HPA last saw and decided, and each pod's metrics, for a failure message."""
    found = kube.get("hpa", NAME, namespace).get("status") or {}
    lines = [f"hpa: current {found.get('currentReplicas')}, desired "
             f"{found.get('desiredReplicas')}, metrics {found.get('currentMetrics')}"]
    lines += [f"hpa {c['type']}={c['status']}: {c.get('reason')}: {c.get('message')}"
              for c in found.get("conditions") or []]
    lines.append(kube.run("top", "pod", "-n", namespace, "--containers"))
    return "\n".join(lines) + "\n" + kube.why_pods_wait(namespace)


@contextmanager
def flood(ip: str) -> Iterator[list[int]]:
    """Pipelined GETs to the demo at ``ip`` on CONNECTIONS connections until the block ends;
    yields the replies counted per connection (a connection that failed stops counting)."""
    stop = threading.Event()
    replies = [0] * CONNECTIONS

    def run(index: int) -> None:
        batch = b"".join(get_request(seq) for seq in range(PIPELINE))
        with socket.create_connection((ip, DEMO_PORT), timeout=10) as conn:
            reader = conn.makefile("rb")
            while not stop.is_set():
                conn.sendall(batch)
                for _ in range(PIPELINE):
                    if not reader.readline():
                        return
                replies[index] += PIPELINE

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(CONNECTIONS)]
    for thread in threads:
        thread.start()
    try:
        yield replies
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=15)


def deploy(kube: Kube, namespace: str, images: Images, replicas: int, batches: int,
           **batch: Any) -> None:
    """The demo's StatefulSetPlus, its business container requesting BUSINESS_CPU, ready."""
    obj = demo_manifest(namespace, images, images.demo_v1, batches, **batch)
    obj["spec"]["replicas"] = replicas
    obj["spec"]["template"]["spec"]["containers"][0]["resources"] = {
        "requests": {"cpu": BUSINESS_CPU}}
    kube.apply(obj)
    kube.wait_for(f"{replicas} pods ready",
                  lambda: status(kube, namespace).get("readyReplicas") == replicas,
                  timeout=180, explain=lambda: kube.why_pods_wait(namespace))


def autoscale(kube: Kube, namespace: str, min_replicas: int = 1) -> None:
    """An HPA on web, once it reads the pods' CPU utilisation."""
    kube.apply(hpa(namespace, min_replicas))
    kube.wait_for("the HPA to read the pods' CPU utilisation", lambda: any(
        c["type"] == "ScalingActive" and c["status"] == "True"
        for c in (kube.get("hpa", NAME, namespace).get("status") or {}).get("conditions")
        or []), timeout=120, explain=lambda: hpa_state(kube, namespace))


def scale_up_under_load(kube: Kube, namespace: str, replicas: int) -> None:
    """Load web-0 until the HPA scales web above ``replicas`` and the new pods are ready."""
    web_0 = next(p for p in pods(kube, namespace) if p["metadata"]["name"] == "web-0")
    started = time.monotonic()
    with flood(web_0["status"]["podIP"]) as replies:
        kube.wait_for("the HPA to scale web up under load, and the new pods to be ready",
                      lambda: kube.get(keys.PLURAL, NAME, namespace)["spec"]["replicas"]
                      > replicas
                      and (status(kube, namespace).get("readyReplicas") or 0) > replicas,
                      timeout=240, interval=2,
                      explain=lambda: f"replies so far {replies}\n" + hpa_state(kube, namespace))
        print(f"scaled up to {kube.get(keys.PLURAL, NAME, namespace)['spec']['replicas']} "
              f"{time.monotonic() - started:.1f}s after the load started ({sum(replies)} "
              "replies)")
    assert all(replies), f"a load connection got no reply: replies per connection {replies}"


def test_hpa_scales_a_statefulsetplus_up_under_load_and_back_down(
        operator, kube: Kube, namespace: str, podkit_images: Images) -> None:
    deploy(kube, namespace, podkit_images, 1, 1)
    autoscale(kube, namespace)
    scale_up_under_load(kube, namespace, 1)

    stopped = time.monotonic()
    kube.wait_for("the HPA to scale web back down to 1 once the load stopped",
                  lambda: kube.get(keys.PLURAL, NAME, namespace)["spec"]["replicas"] == 1
                  and len(pods(kube, namespace)) == 1,
                  timeout=300, interval=2, explain=lambda: hpa_state(kube, namespace))
    print(f"back to 1 replica {time.monotonic() - stopped:.1f}s after the load stopped")


def test_an_hpa_scale_up_while_a_batch_waits_to_be_confirmed_gets_the_last_good_revision(
        operator, kube: Kube, namespace: str, podkit_images: Images) -> None:
    """Batch 1 (web-1) released and waiting to be confirmed; the HPA adds web-2, which stays
    at the last good revision until batch 2 is confirmed (it was swapped at once while
    batches were by ordinal: web-2 fell into batch 1)."""
    v1, v2 = podkit_images.demo_v1, podkit_images.demo_v2
    deploy(kube, namespace, podkit_images, 2, 2, batchAuto=False, podsNumToUpdate=[1, "100%"])
    set_image(kube, namespace, v2)
    kube.wait_for("batch 1 (web-1) at v2, waiting to be confirmed", lambda: batch_status(
        kube, namespace).get("action") == "WaitToConfirm" and serving(kube, namespace) == {
        "web-0": v1, "web-1": v2}, timeout=180, explain=lambda: kube.why_pods_wait(namespace))
    autoscale(kube, namespace, min_replicas=2)
    scale_up_under_load(kube, namespace, 2)
    assert serving(kube, namespace) == {"web-0": v1, "web-1": v2, "web-2": v1}
    found = batch_status(kube, namespace)
    assert (found.get("action"), found.get("batchOrder"), found.get("batchOrdinal")) == (
        "WaitToConfirm", 1, 1), found
    assert "web-2" not in pods_named(events(kube, namespace, "UpdateStarted"))

    kube.run("delete", "hpa", NAME, "-n", namespace)
    kube.run("annotate", keys.PLURAL, NAME, "-n", namespace, "podkit.io/confirm-batch=2")
    kube.wait_for("batch 2 to take every pod to v2", lambda: batch_status(kube, namespace).get(
        "generalStatus") == "Completed" and set(serving(kube, namespace).values()) == {v2},
        timeout=240, explain=lambda: f"{serving(kube, namespace)}\n"
        + kube.why_pods_wait(namespace))


def serving(kube: Kube, namespace: str) -> dict[str, str | None]:
    """What each pod serves (None while an update is under way), by name."""
    return {p["metadata"]["name"]: serving_image(p) for p in pods(kube, namespace)}
