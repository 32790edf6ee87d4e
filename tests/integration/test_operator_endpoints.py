"""Services whose endpoints the operator keeps (podkit_operator.endpoints) against a real
apiserver with kwok's fake nodes: the slice follows the pods that serve, with the Service's
ports resolved, and disappears with its Service.

Whether a Service path keeps its traffic through a real swap is measured by ``make demo`` and
asserted by tests/e2e/test_demo.py.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest

from podkit_operator.api import keys
from podkit_operator.api.keys import ANN_ENDPOINTS_OF
from podkit_operator.endpoints.slices import LABEL_SERVICE
from testbed.fixtures import running_api_cluster
from testbed.kube import Kube
from testbed.operator_proc import OperatorProcess
from testbed.stsp import install_crd, pods

pytestmark = pytest.mark.integration

V1 = "podkit.local/podkit-demo:v1"


@pytest.fixture(scope="module")
def kube() -> Iterator[Kube]:
    with running_api_cluster(f"ep-{os.getpid()}", nodes=1) as api:
        kube = api.kube()
        install_crd(kube)
        with OperatorProcess(kube.kubeconfig, api.layout.state / "operator.log"):
            yield kube


def stsp(replicas: int) -> dict[str, Any]:
    return {"apiVersion": f"{keys.GROUP}/{keys.VERSION}", "kind": keys.KIND,
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                         "containers": [{"name": "web", "image": V1, "ports": [
                             {"name": "tcp", "containerPort": 7000}]}]}}}}


def service(name: str, selector: dict[str, str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"ports": [{"name": "tcp", "port": 80, "targetPort": "tcp"}]}
    if selector:
        spec["selector"] = selector
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "default",
                         "annotations": {ANN_ENDPOINTS_OF: "web"}},
            "spec": spec}


def podkit_slices(kube: Kube, service_name: str) -> list[dict[str, Any]]:
    listed = json.loads(kube.run("get", "endpointslices", "-n", "default", "-l",
                                 f"{LABEL_SERVICE}={service_name}", "-o", "json"))["items"]
    return [s for s in listed if s["metadata"]["name"].startswith(f"{service_name}-podkit-")]


def ready_ips(kube: Kube, service_name: str) -> set[str]:
    return {e["addresses"][0] for s in podkit_slices(kube, service_name)
            for e in s.get("endpoints") or [] if e["conditions"].get("ready")}


def pod_ips(kube: Kube) -> set[str]:
    return {p["status"].get("podIP") for p in pods(kube, "default")}


def test_the_slice_follows_the_serving_pods_and_goes_with_its_service(kube: Kube) -> None:
    kube.apply(stsp(3))
    kube.apply(service("web-lb"))
    kube.wait_for("3 ready endpoints, one per pod", lambda: (
        len(ips := ready_ips(kube, "web-lb")) == 3 and ips == pod_ips(kube)), timeout=120)
    (slice_,) = podkit_slices(kube, "web-lb")
    assert slice_["ports"] == [{"name": "tcp", "port": 7000, "protocol": "TCP"}]
    assert slice_["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] == (
        "operator.podkit.io")
    assert {e["targetRef"]["name"] for e in slice_["endpoints"]} == {"web-0", "web-1", "web-2"}

    kube.patch(keys.PLURAL, "web", [{"op": "replace", "path": "/spec/replicas",
                                          "value": 1}], "default")
    kube.wait_for("the slice to shrink to web-0", lambda: {
        e["targetRef"]["name"] for s in podkit_slices(kube, "web-lb")
        for e in s.get("endpoints") or []} == {"web-0"}, timeout=120)

    kube.run("delete", "service", "web-lb", "-n", "default")
    kube.wait_for("the garbage collector to remove the Service's slice",
                  lambda: not podkit_slices(kube, "web-lb"), timeout=120)


def test_a_service_with_a_selector_is_left_to_kubernetes(kube: Kube) -> None:
    kube.apply(stsp(1))
    kube.apply(service("web-selected", selector={"app": "web"}))
    kube.apply(service("web-free"))
    # the free Service gets its podkit slice; the selected one only the upstream controller's
    kube.wait_for("the free Service's slice", lambda: ready_ips(kube, "web-free"), timeout=120)
    assert podkit_slices(kube, "web-selected") == []
