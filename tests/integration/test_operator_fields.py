"""Every field of a revision reaches the pods, against a real (patched) apiserver with kwok's
fake nodes: env changed in place through the slots, a port change recreating the pods with the
reason in an event, and status fields the planner drops removed from the stored object.

kwok plays the kubelet (its container statuses follow the spec); that the new env reaches the
new *process* is tests/e2e/test_operator_fields.py, on a real kubelet.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from podkit_operator.api import keys
from testbed.fixtures import running_api_cluster
from testbed.kube import Kube
from testbed.operator_proc import OperatorProcess
from testbed.stsp import batch_status, events, install_crd, pods, status

pytestmark = pytest.mark.integration

V1 = "podkit.local/podkit-demo:v1"


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    with running_api_cluster(f"fld-{os.getpid()}", nodes=2) as api:
        install_crd(api.kube())
        yield api


@pytest.fixture
def kube(cluster: Any) -> Kube:
    return cluster.kube()


@pytest.fixture
def namespace(kube: Kube) -> str:
    return kube.create_namespace(f"fld-{os.urandom(4).hex()}")


@pytest.fixture
def operator(cluster: Any, namespace: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """An operator for the test's namespace (patched mode); stopped after the test."""
    monkeypatch.setenv("PODKIT_PATCHED", "true")
    with ExitStack() as stack:
        yield stack.enter_context(OperatorProcess(
            cluster.kube().kubeconfig, cluster.layout.state / f"operator-{namespace}.log",
            namespace))


def stsp(namespace: str, env: list[dict[str, str]], replicas: int = 4,
         port: int = 8080) -> dict[str, Any]:
    return {
        "apiVersion": f"{keys.GROUP}/{keys.VERSION}", "kind": keys.KIND,
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{
                                  "name": "web", "image": V1, "env": env,
                                  "ports": [{"name": "http", "containerPort": port}]}]}},
                 "updateStrategy": {"type": "ABSwap",
                                    "batchDeployConfig": {"batchNum": 2}}},
    }


def env_of(pod: dict[str, Any], container: str) -> dict[str, str]:
    c = next(c for c in pod["spec"]["containers"] if c["name"] == container)
    return {e["name"]: e.get("value", "") for e in c.get("env") or []}


def completed(kube: Kube, namespace: str) -> bool:
    st = status(kube, namespace)
    return (st.get("currentRevision") == st.get("updateRevision")
            and (st.get("batchDeployStatus") or {}).get("generalStatus") == "Completed"
            and st.get("updatedReplicas") == len(pods(kube, namespace)) > 0)


def test_an_env_release_reaches_both_slots_in_place(operator, kube: Kube,
                                                    namespace: str) -> None:
    kube.apply(stsp(namespace, [{"name": "MODE", "value": "one"}, {"name": "OLD", "value": "x"}]))
    kube.wait_for("4 pods released", lambda: completed(kube, namespace), timeout=90)
    uids = {p["metadata"]["uid"] for p in pods(kube, namespace)}
    first = status(kube, namespace)["currentRevision"]

    kube.apply(stsp(namespace, [{"name": "MODE", "value": "two"}]))
    kube.wait_for("the env release completed", lambda: completed(kube, namespace)
                  and status(kube, namespace)["currentRevision"] != first, timeout=120)
    listed = pods(kube, namespace)
    assert {p["metadata"]["uid"] for p in listed} == uids  # in place: no pod recreated
    for pod in listed:
        for slot in ("web-a", "web-b"):
            env = env_of(pod, slot)
            assert env["MODE"] == "two" and "OLD" not in env, (pod["metadata"]["name"], env)
        assert pod["metadata"]["annotations"][keys.ANN_REVISION] == \
            status(kube, namespace)["currentRevision"]


def test_a_port_change_recreates_the_pods_batch_by_batch_with_the_reason(
        operator, kube: Kube, namespace: str) -> None:
    kube.apply(stsp(namespace, [], port=8080))
    kube.wait_for("4 pods released", lambda: completed(kube, namespace), timeout=90)
    uids = {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods(kube, namespace)}
    first = status(kube, namespace)["currentRevision"]

    kube.apply(stsp(namespace, [], port=9090))
    kube.wait_for("the port release completed", lambda: completed(kube, namespace)
                  and status(kube, namespace)["currentRevision"] != first, timeout=120)
    for pod in pods(kube, namespace):
        assert pod["metadata"]["uid"] != uids[pod["metadata"]["name"]]
        slot_a = next(c for c in pod["spec"]["containers"] if c["name"] == "web-a")
        assert [p["containerPort"] for p in slot_a["ports"]] == [9090]
    started = events(kube, namespace, "UpdateStarted")
    recreated = [m for m in started if "cannot change in place: container web-a ports" in m]
    assert len(recreated) == 4, started
    assert len(events(kube, namespace, "BatchCompleted")) >= 2  # in two batches


def test_a_field_the_new_status_lacks_is_removed_from_the_object(operator, kube: Kube,
                                                                 namespace: str) -> None:
    kube.apply(stsp(namespace, [{"name": "MODE", "value": "one"}], replicas=2))
    kube.wait_for("2 pods released", lambda: completed(kube, namespace), timeout=90)
    assert "batchDeadlineTime" in batch_status(kube, namespace)
    kube.patch(keys.PLURAL, "web", [{"op": "add", "path": "/metadata/annotations",
                                     "value": {keys.ANN_ROLLBACK: "true"}}], namespace)
    kube.wait_for("the rollback's status", lambda: batch_status(kube, namespace).get(
        "currentRollbackProgress", "").startswith("2/"), timeout=60)
    assert "batchDeadlineTime" not in batch_status(kube, namespace)  # no stale deadline
