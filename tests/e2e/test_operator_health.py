"""Health over time on the real kubelet: a version that crashes 8 s after taking over is caught
by the soak in batch 1 and swapped back, and a business that is alive but hung is caught by its
own readiness probe (run by the sidecar against the active slot) and leaves its Service.

The demo service's failure switches (docs/architecture.md, "Demo service") are in the template's
env from the start: v2 crashes 8 s after it took over, and a ``HANG`` request stops its serving
loop. The operator runs as a local process, watching the test's namespace only.
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any

from test_operator_release import completed_at

from podkit_operator.api import keys
from testbed.fixtures import Images
from testbed.kube import Kube
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


def business(obj: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = obj["spec"]["template"]["spec"]["containers"][0]
    return container


def test_a_version_that_crashes_after_taking_over_fails_batch_1_and_goes_no_further(
        operator, kube: Kube, namespace: str, podkit_images: Images) -> None:
    obj = demo_manifest(namespace, podkit_images, podkit_images.demo_v1, 3, batchAuto=True,
                        batchIntervalSeconds=20, maxFailedPercent=0)
    obj["spec"]["minReadySeconds"] = 10  # the default soak, longer than the 8 s to the crash
    business(obj)["env"] = [{"name": "PODKIT_DEMO_CRASH_AFTER_S", "value": "8"},
                            {"name": "PODKIT_DEMO_CRASH_VERSION", "value": "v2"}]
    kube.apply(obj)
    kube.wait_for("3 pods of web at v1", completed_at(kube, namespace, podkit_images.demo_v1),
                  timeout=180)
    set_image(kube, namespace, podkit_images.demo_v2)
    ran_v2: set[str] = set()

    def watch() -> bool:
        """Every pod whose spec ever named v2, looked at throughout the release."""
        for pod in pods(kube, namespace):
            if any(c["image"] == podkit_images.demo_v2 for c in pod["spec"]["containers"]):
                ran_v2.add(pod["metadata"]["name"])
        return (batch_status(kube, namespace).get("generalStatus") == "Failed"
                and all(serving_image(p) == podkit_images.demo_v1
                        for p in pods(kube, namespace)))

    kube.wait_for("the release to fail and web-2 to serve v1 again", watch, timeout=240,
                  interval=0.2)
    assert ran_v2 == {"web-2"}, ran_v2  # batch 1 only
    found = status(kube, namespace)
    assert found["batchDeployStatus"]["batchOrder"] == 1 and found["updatedReplicas"] == 0
    failed = [c for c in found["conditions"] if c["type"] == "ReleaseFailed"]
    assert failed and failed[0]["status"] == "True", found["conditions"]
    assert set(pods_named(events(kube, namespace, "UpdateFailed"))) == {"web-2"}
    assert not events(kube, namespace, "BatchCompleted")  # batch 1 never converged at v2
    for pod in pods(kube, namespace):
        with socket.create_connection((pod["status"]["podIP"], DEMO_PORT), timeout=5) as conn:
            conn.sendall(b"GET 1\n")
            assert conn.recv(256).split()[0] == b"v1"


def endpoint_ready(kube: Kube, namespace: str, pod_name: str) -> bool | None:
    """The ``ready`` condition of the pod's endpoint in the Service's podkit slices."""
    slices = json.loads(kube.run("get", "endpointslices", "-n", namespace, "-l",
                                 "kubernetes.io/service-name=web", "-o", "json"))["items"]
    for item in slices:
        for endpoint in item.get("endpoints") or []:
            if (endpoint.get("targetRef") or {}).get("name") == pod_name:
                return bool(endpoint["conditions"].get("ready"))
    return None


def test_a_hung_business_is_caught_by_its_own_readiness_probe(
        operator, kube: Kube, namespace: str, podkit_images: Images) -> None:
    obj = demo_manifest(namespace, podkit_images, podkit_images.demo_v1, 1)
    obj["spec"]["replicas"] = 1
    business(obj)["env"] = [{"name": "PODKIT_DEMO_HANG_COMMAND", "value": "1"}]
    business(obj)["readinessProbe"] = {"httpGet": {"path": "/healthz", "port": DEMO_PORT},
                                       "periodSeconds": 1, "failureThreshold": 2}
    business(obj)["ports"] = [{"name": "tcp", "containerPort": DEMO_PORT}]
    kube.apply(obj)
    kube.apply({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "web", "namespace": namespace,
                             "annotations": {keys.ANN_ENDPOINTS_OF: "web"}},
                "spec": {"ports": [{"name": "tcp", "port": DEMO_PORT,
                                    "targetPort": DEMO_PORT}]}})
    kube.wait_for("web-0 ready in its Service", lambda: endpoint_ready(kube, namespace, "web-0"),
                  timeout=180)
    pod = pods(kube, namespace)[0]
    with socket.create_connection((pod["status"]["podIP"], DEMO_PORT), timeout=5) as conn:
        conn.sendall(b"HANG\n")
        time.sleep(0.5)

    def unready() -> bool:
        found = pods(kube, namespace)[0]
        slot = f"web-{found['metadata']['annotations'][keys.ANN_ACTIVE_SLOT]}"
        statuses = {s["name"]: s for s in found["status"]["containerStatuses"]}
        return (not statuses[slot]["ready"] and statuses[slot]["restartCount"] == 0
                and endpoint_ready(kube, namespace, "web-0") is False)

    kube.wait_for("the hung slot unready and out of its Service", unready, timeout=60)
    kube.wait_for("the status to say so", lambda: status(kube, namespace).get(
        "unhealthyPods") == ["web-0"], timeout=60)
    assert events(kube, namespace, "ServingFailed")
