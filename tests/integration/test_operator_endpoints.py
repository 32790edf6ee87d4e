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
from testbed.stsp import QUICK_SOAK_S, install_crd, pods

pytestmark = pytest.mark.integration

V1 = "podkit.local/podkit-demo:v1"


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[Kube, OperatorProcess]]:
    with running_api_cluster(f"ep-{os.getpid()}", nodes=1) as api:
        kube = api.kube()
        install_crd(kube)
        with OperatorProcess(kube.kubeconfig, api.layout.state / "operator.log") as operator:
            yield kube, operator


@pytest.fixture
def kube(cluster: tuple[Kube, OperatorProcess]) -> Kube:
    return cluster[0]


def stsp(replicas: int, namespace: str = "default") -> dict[str, Any]:
    return {"apiVersion": f"{keys.GROUP}/{keys.VERSION}", "kind": keys.KIND,
            "metadata": {"name": "web", "namespace": namespace},
            "spec": {"replicas": replicas, "podManagementPolicy": "Parallel",
                     "selector": {"matchLabels": {"app": "web"}},
                     "minReadySeconds": QUICK_SOAK_S,
                     "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                         "containers": [{"name": "web", "image": V1, "ports": [
                             {"name": "tcp", "containerPort": 7000}]}]}}}}


def service(name: str, selector: dict[str, str] | None = None,
            namespace: str = "default") -> dict[str, Any]:
    spec: dict[str, Any] = {"ports": [{"name": "tcp", "port": 80, "targetPort": "tcp"}]}
    if selector:
        spec["selector"] = selector
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": namespace,
                         "annotations": {ANN_ENDPOINTS_OF: "web"}},
            "spec": spec}


def podkit_slices(kube: Kube, service_name: str,
                  namespace: str = "default") -> list[dict[str, Any]]:
    listed = json.loads(kube.run("get", "endpointslices", "-n", namespace, "-l",
                                 f"{LABEL_SERVICE}={service_name}", "-o", "json"))["items"]
    return [s for s in listed if s["metadata"]["name"].startswith(f"{service_name}-podkit-")]


def ready_ips(kube: Kube, service_name: str, namespace: str = "default") -> set[str]:
    return {e["addresses"][0] for s in podkit_slices(kube, service_name, namespace)
            for e in s.get("endpoints") or [] if e["conditions"].get("ready")}


def ready_pods(kube: Kube, service_name: str, namespace: str) -> dict[str, str]:
    """Pod name -> uid of the ready endpoints of the Service's podkit slices."""
    return {e["targetRef"]["name"]: e["targetRef"]["uid"]
            for s in podkit_slices(kube, service_name, namespace)
            for e in s.get("endpoints") or [] if e["conditions"].get("ready")}


def versions(kube: Kube, service_name: str, namespace: str) -> dict[str, str]:
    """Slice name -> resourceVersion: a slice podkit rewrote has a new one."""
    return {s["metadata"]["name"]: s["metadata"]["resourceVersion"]
            for s in podkit_slices(kube, service_name, namespace)}


def holder(kube: Kube, service_name: str, namespace: str, pod: str) -> str:
    return next(s["metadata"]["name"] for s in podkit_slices(kube, service_name, namespace)
                if pod in {e["targetRef"]["name"] for e in s.get("endpoints") or []})


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


def test_300_pods_one_change_rewrites_one_slice_and_a_restart_adopts_the_rest(
        cluster: tuple[Kube, OperatorProcess]) -> None:
    kube, operator = cluster
    ns = kube.create_namespace(f"ep-{os.urandom(4).hex()}")
    kube.apply(stsp(300, ns))
    kube.apply(service("big", namespace=ns))
    everyone = {f"web-{i}" for i in range(300)}
    kube.wait_for("300 ready endpoints", lambda: set(ready_pods(kube, "big", ns)) == everyone,
                  timeout=300, interval=2)
    # settled: no slice rewritten between two looks
    settled: list[dict[str, str]] = []
    kube.wait_for("the slices to settle", lambda: settled.append(versions(kube, "big", ns))
                  or settled[-2:] == [settled[-1]] * 2, timeout=60, interval=3)
    before = settled[-1]
    sizes = sorted(len(s["endpoints"]) for s in podkit_slices(kube, "big", ns))
    assert sizes == [100, 100, 100], sizes  # filled in the order the pods got their IPs

    # one pod changes (deleted, then created again by the operator with a new uid and IP)
    home = holder(kube, "big", ns, "web-150")
    old_uid = ready_pods(kube, "big", ns)["web-150"]
    kube.run("delete", "pod", "web-150", "-n", ns, "--wait=false")
    kube.wait_for("web-150 back in the slices", lambda: ready_pods(kube, "big", ns).get(
        "web-150") not in (None, old_uid), timeout=120)
    after = versions(kube, "big", ns)
    assert set(after) == set(before)
    assert {n for n in before if after[n] != before[n]} == {home}
    assert holder(kube, "big", ns, "web-150") == home  # it kept its slice

    # an operator restart, and a slice an earlier operator left meanwhile
    operator.kill()
    svc = kube.get("service", "big", ns)
    kube.apply({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": "big-podkit-7", "namespace": ns, "labels": {
                    LABEL_SERVICE: "big",
                    "endpointslice.kubernetes.io/managed-by": keys.ENDPOINTS_MANAGER},
                    "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": "big",
                                         "uid": svc["metadata"]["uid"], "controller": True}]},
                "addressType": "IPv4", "ports": [],
                "endpoints": [{"addresses": ["10.9.9.9"], "conditions": {"ready": True},
                               "targetRef": {"kind": "Pod", "name": "web-999",
                                             "namespace": ns}}]})
    operator.start()
    kube.wait_for("the stale slice removed", lambda: set(versions(kube, "big", ns)) == set(
        after), timeout=120)
    # the restarted operator listed the slices and adopted them: none rewritten
    assert versions(kube, "big", ns) == after

    # a shrink while no operator runs: the slices it empties go after the restart
    operator.kill()
    kube.patch(keys.PLURAL, "web", [{"op": "replace", "path": "/spec/replicas",
                                     "value": 1}], ns)
    operator.start()
    kube.wait_for("one slice, of web-0", lambda: len(versions(kube, "big", ns)) == 1 and set(
        ready_pods(kube, "big", ns)) == {"web-0"} and len(
        podkit_slices(kube, "big", ns)[0]["endpoints"]) == 1, timeout=240, interval=2)
    assert set(versions(kube, "big", ns)) <= set(after)


def test_a_spec_the_release_loop_rejects_does_not_freeze_the_slices(kube: Kube) -> None:
    ns = kube.create_namespace(f"ep-{os.urandom(4).hex()}")
    kube.apply(stsp(3, ns))
    kube.apply(service("frozen", namespace=ns))
    three = {"web-0", "web-1", "web-2"}
    kube.wait_for("3 ready endpoints", lambda: set(ready_pods(kube, "frozen", ns)) == three,
                  timeout=120)
    # accepted by the CRD (the hook's pattern), refused by the operator's parser
    kube.patch(keys.PLURAL, "web", [
        {"op": "add", "path": "/spec/configMaps", "value": ["cfg"]},
        {"op": "add", "path": "/spec/podkit", "value": {"configHook": "command:/reload 'unclosed"}},
        {"op": "add", "path": "/spec/template/spec/volumes",
         "value": [{"name": "cfg", "configMap": {"name": "cfg"}}]}], ns)
    kube.wait_for("the operator to reject the spec", lambda: "cannot split" in kube.run(
        "get", "events", "-n", ns, "--field-selector", "reason=InvalidSpec"), timeout=60)
    old_uid = ready_pods(kube, "frozen", ns)["web-0"]
    kube.run("delete", "pod", "web-0", "-n", ns, "--wait=false")
    # the release loop goes on with the last spec that parsed and creates web-0 again; the
    # slice follows the pods: the old web-0 leaves it, the new one joins it
    kube.wait_for("the new web-0 in the slice", lambda: (
        (now := ready_pods(kube, "frozen", ns)).keys() == three and now["web-0"] != old_uid),
        timeout=120)


def test_a_service_that_loses_the_annotation_loses_its_podkit_slices(kube: Kube) -> None:
    ns = kube.create_namespace(f"ep-{os.urandom(4).hex()}")
    kube.apply(stsp(2, ns))
    kube.apply(service("dropped", namespace=ns))
    kube.wait_for("2 ready endpoints", lambda: len(ready_pods(kube, "dropped", ns)) == 2,
                  timeout=120)
    kube.run("annotate", "service", "dropped", "-n", ns, f"{ANN_ENDPOINTS_OF}-")
    kube.wait_for("its podkit slices removed", lambda: not podkit_slices(kube, "dropped", ns),
                  timeout=60)
