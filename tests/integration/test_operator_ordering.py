"""podManagementPolicy, ordinals.start, RollingUpdate with a partition and a batch's
maxInFlight/maxUnavailable against a real apiserver (kwok's fake kubelet), mirroring what the
Kubernetes StatefulSet e2e suite checks (test/e2e/apps/statefulset.go): ordered creation and
deletion, burst scaling, scale-down order, a rolling update with a partition, a pod deleted and
created again with the same identity.

Order is read from a watch of the pods (every ADDED, MODIFIED, DELETED the apiserver sent, in
its order), never from timing. kwok (tools/testbed/kwok/pod-stages.yaml) makes a pod Running
and Ready at once, except one whose image names "broken" (never Ready).
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from podkit_operator.api import keys
from testbed.fixtures import operator_on_api_cluster
from testbed.kube import Kube, KubectlError
from testbed.stsp import batch_status, pods, set_image, status

pytestmark = pytest.mark.integration

V1, V2 = "podkit.local/podkit-demo:v1", "podkit.local/podkit-demo:v2"
BROKEN = "podkit.local/podkit-demo:broken"


@pytest.fixture(scope="module")
def kube() -> Iterator[Kube]:
    """An API-only cluster with the CRD, and the operator running against it."""
    with operator_on_api_cluster(f"ord-{os.getpid()}", nodes=2) as (kube, _):
        yield kube


@pytest.fixture
def namespace(kube: Kube) -> str:
    return kube.create_namespace(f"ord-{os.urandom(4).hex()}")


def stsp(namespace: str, replicas: int, policy: str, image: str = V1,
         strategy: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{keys.GROUP}/{keys.VERSION}", "kind": keys.KIND,
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {"replicas": replicas, "podManagementPolicy": policy, "minReadySeconds": 1,
                 "serviceName": "web", "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": image}]}},
                 "updateStrategy": strategy or {"type": "ABSwap"}, **spec},
    }


class PodWatch:
    """``kubectl get pods --watch``: every event of the namespace's pods, in the API's order."""

    def __init__(self, kube: Kube, namespace: str) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self._proc = subprocess.Popen(
            [str(kube.kubectl_path), f"--kubeconfig={kube.kubeconfig}", "get", "pods", "-n",
             namespace, "--watch", "--output-watch-events", "-o", "json"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        decoder, buffer = json.JSONDecoder(), ""
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            buffer += line
            while buffer.strip():
                try:
                    event, end = decoder.raw_decode(buffer.lstrip())
                except json.JSONDecodeError:
                    break
                buffer = buffer.lstrip()[end:]
                self.events.append((event["type"], event["object"]))

    def stop(self) -> None:
        self._proc.terminate()
        self._proc.wait(timeout=10)

    def states(self, after: int = 0) -> Iterator[tuple[str, str, dict[str, dict[str, Any]]]]:
        """After each event from the ``after``-th on: (type, pod name, every pod as last
        seen)."""
        seen: dict[str, dict[str, Any]] = {}
        for index, (kind, pod) in enumerate(list(self.events)):
            name = pod["metadata"]["name"]
            if kind == "DELETED":
                seen.pop(name, None)
            else:
                seen[name] = pod
            if index >= after:
                yield kind, name, dict(seen)


@pytest.fixture
def watch(kube: Kube, namespace: str) -> Iterator[PodWatch]:
    watcher = PodWatch(kube, namespace)
    yield watcher
    watcher.stop()


def ready(pod: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def deleting(pod: dict[str, Any]) -> bool:
    return bool(pod["metadata"].get("deletionTimestamp"))


def unavailable(seen: dict[str, dict[str, Any]], names: list[str]) -> list[str]:
    """Of ``names``: missing, being deleted, not Ready, or being updated."""
    return [n for n in names if (pod := seen.get(n)) is None or deleting(pod) or not ready(pod)
            or keys.ANN_TARGET in pod["metadata"].get("annotations", {})]


def live_names(kube: Kube, namespace: str) -> list[str]:
    return sorted(p["metadata"]["name"] for p in pods(kube, namespace) if not deleting(p))


def scale(kube: Kube, namespace: str, replicas: int) -> None:
    kube.run("scale", f"{keys.PLURAL}/web", "-n", namespace, f"--replicas={replicas}")


def test_ordered_ready_creates_in_order_and_scales_down_from_the_highest(
        kube: Kube, namespace: str, watch: PodWatch) -> None:
    kube.apply(stsp(namespace, 3, "OrderedReady", ordinals={"start": 2}))
    names = ["web-2", "web-3", "web-4"]
    kube.wait_for("3 ready pods", lambda: live_names(kube, namespace) == names
                  and status(kube, namespace).get("availableReplicas") == 3, timeout=90)
    added = []
    for kind, name, seen in watch.states():
        if kind == "ADDED":  # every pod before it exists and is Ready when it is created
            added.append(name)
            before = names[:names.index(name)]
            assert all(n in seen and ready(seen[n]) for n in before), (name, sorted(seen))
    assert added == names

    start = len(watch.events)
    scale(kube, namespace, 1)
    kube.wait_for("one pod left", lambda: live_names(kube, namespace) == ["web-2"]
                  and len(pods(kube, namespace)) == 1, timeout=90)
    deletions = []
    for kind, name, seen in watch.states(after=start):
        started = [n for n, p in seen.items() if deleting(p)]
        assert len(started) <= 1, started  # one at a time: each waits for the last to be gone
        if kind == "DELETED":
            deletions.append(name)
    assert deletions == ["web-4", "web-3"]
    final = status(kube, namespace)
    assert (final["replicas"], final["readyReplicas"], final["availableReplicas"]) == (1, 1, 1)


def test_ordered_ready_halts_at_an_unready_pod_and_parallel_bursts(
        kube: Kube, namespace: str) -> None:
    # upstream's "Burst scaling should run to completion even with unhealthy pods", both ways
    kube.apply(stsp(namespace, 3, "OrderedReady", image=BROKEN))
    kube.wait_for("web-0 created", lambda: live_names(kube, namespace) == ["web-0"], timeout=60)
    other = kube.create_namespace(f"ord-{os.urandom(4).hex()}")
    kube.apply(stsp(other, 3, "Parallel", image=BROKEN))
    kube.wait_for("3 unready pods at once", lambda: live_names(kube, other)
                  == ["web-0", "web-1", "web-2"], timeout=60)
    assert not any(ready(p) for p in pods(kube, other))
    # the ordered set is still at one pod: web-0 never became Ready
    assert live_names(kube, namespace) == ["web-0"]
    assert status(kube, namespace).get("readyReplicas") == 0
    scale(kube, other, 0)
    kube.wait_for("the burst scale-down of unready pods", lambda: not pods(kube, other),
                  timeout=60)


def test_a_deleted_pod_comes_back_with_the_same_identity(kube: Kube, namespace: str) -> None:
    kube.apply(stsp(namespace, 2, "OrderedReady"))
    kube.wait_for("2 pods", lambda: status(kube, namespace).get("availableReplicas") == 2,
                  timeout=60)
    before = kube.get("pod", "web-1", namespace)
    kube.delete("pod", "web-1", namespace)
    kube.wait_for("web-1 created again", lambda: kube.get("pod", "web-1", namespace)[
        "metadata"]["uid"] != before["metadata"]["uid"], timeout=60)
    after = kube.get("pod", "web-1", namespace)
    for field in ("hostname", "subdomain"):
        assert after["spec"][field] == before["spec"][field]
    assert after["metadata"]["labels"] == before["metadata"]["labels"]


def test_rolling_update_goes_down_to_the_partition_one_pod_at_a_time(
        kube: Kube, namespace: str, watch: PodWatch) -> None:
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"partition": 1}}
    kube.apply(stsp(namespace, 3, "Parallel", strategy=strategy))
    kube.wait_for("3 pods", lambda: status(kube, namespace).get("availableReplicas") == 3,
                  timeout=60)
    uids = {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods(kube, namespace)}
    old = status(kube, namespace)["currentRevision"]
    start = len(watch.events)
    set_image(kube, namespace, V2)
    kube.wait_for("the partition reached", lambda: batch_status(kube, namespace).get(
        "generalStatus") == "Partitioned", timeout=90)
    images = {p["metadata"]["name"]: p["spec"]["containers"][0]["image"]
              for p in pods(kube, namespace)}
    assert images == {"web-0": V1, "web-1": V2, "web-2": V2}, images
    assert kube.get("pod", "web-0", namespace)["metadata"]["uid"] == uids["web-0"]
    found = status(kube, namespace)
    assert found["currentRevision"] == old != found["updateRevision"]
    assert (found["updatedReplicas"], found["currentReplicas"]) == (2, 1)

    kube.patch(keys.PLURAL, "web", [{"op": "replace",
                                     "path": "/spec/updateStrategy/rollingUpdate/partition",
                                     "value": 0}], namespace)
    kube.wait_for("the release completed", lambda: batch_status(kube, namespace).get(
        "generalStatus") == "Completed" and status(kube, namespace).get(
        "updatedReplicas") == 3, timeout=90)
    replaced, most = [], 0
    names = ["web-0", "web-1", "web-2"]
    for kind, name, seen in watch.states(after=start):
        most = max(most, len(unavailable(seen, names)))
        if kind == "DELETED":
            replaced.append(name)
    assert replaced == ["web-2", "web-1", "web-0"]  # from the highest ordinal down
    assert most == 1  # maxUnavailable 1: one pod at a time
    assert status(kube, namespace)["currentRevision"] == status(kube, namespace)[
        "updateRevision"]


def _release(kube: Kube, namespace: str, watch: PodWatch, replicas: int,
             **batch: Any) -> tuple[int, int]:
    """A release of one batch; the most pods updating at once, and the most unavailable."""
    kube.apply(stsp(namespace, replicas, "Parallel",
                    strategy={"type": "ABSwap", "batchDeployConfig": batch}))
    kube.wait_for("the pods", lambda: status(kube, namespace).get(
        "availableReplicas") == replicas, timeout=60)
    start = len(watch.events)
    before = status(kube, namespace)["updateRevision"]
    set_image(kube, namespace, V2)
    # the status of the creation says Completed with every pod updated too: until the
    # operator's first pass of the release, it named the revision before
    kube.wait_for("the release", lambda: (found := status(kube, namespace)).get(
        "updateRevision") != before and found["batchDeployStatus"].get(
        "generalStatus") == "Completed" and found.get("updatedReplicas") == replicas,
        timeout=120)
    names = [f"web-{o}" for o in range(replicas)]
    updating = unready = 0
    for _, _, seen in watch.states(after=start):
        updating = max(updating, sum(keys.ANN_TARGET in p["metadata"].get("annotations", {})
                                     for p in seen.values()))
        unready = max(unready, len(unavailable(seen, names)))
    return updating, unready


def test_a_serial_batch_updates_one_pod_at_a_time(kube: Kube, namespace: str,
                                                  watch: PodWatch) -> None:
    updating, unready = _release(kube, namespace, watch, 4, maxInFlight=1)
    assert updating == 1 and unready == 1


def test_a_concurrent_batch_stays_within_max_unavailable(kube: Kube, namespace: str,
                                                         watch: PodWatch) -> None:
    updating, unready = _release(kube, namespace, watch, 5, maxUnavailable="40%")
    assert updating == 2 and unready == 2  # 40% of 5, rounded up; never more


def test_the_crd_refuses_bad_ordering_fields(kube: Kube, namespace: str) -> None:
    kube.apply(stsp(namespace, 1, "OrderedReady"))
    bad = [
        ({"podManagementPolicy": "Sometimes"}, "podManagementPolicy"),
        ({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": -1}}},
         "partition"),
        ({"updateStrategy": {"type": "RollingUpdate",
                             "rollingUpdate": {"maxUnavailable": "0%"}}}, "maxUnavailable"),
        ({"updateStrategy": {"type": "RollingUpdate",
                             "batchDeployConfig": {"batchNum": 2}}, "replicas": 2},
         "RollingUpdate releases in one batch"),
        ({"updateStrategy": {"type": "ABSwap", "rollingUpdate": {"partition": 1}}},
         "rollingUpdate is for updateStrategy.type RollingUpdate only"),
        ({"updateStrategy": {"type": "ABSwap", "batchDeployConfig": {"maxInFlight": 0}}},
         "maxInFlight"),
    ]
    for fields, message in bad:
        obj = stsp(namespace, 1, "OrderedReady")
        obj["metadata"]["name"] = "bad"
        obj["spec"].update(fields)
        with pytest.raises(KubectlError) as refused:
            kube.apply(obj)
        assert message in refused.value.stderr, refused.value.stderr
    with pytest.raises(KubectlError) as immutable:
        kube.patch(keys.PLURAL, "web", [{"op": "replace", "path": "/spec/podManagementPolicy",
                                         "value": "Parallel"}], namespace)
    assert "podManagementPolicy is immutable" in immutable.value.stderr
