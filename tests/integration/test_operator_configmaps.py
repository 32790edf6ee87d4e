"""Config grayscale against a real apiserver with kwok's fake nodes: versioned copies named by
content hash (never two of the same content), GC rules, and a stock cluster's refusal; and the
other fields of a revision: env changed in place through the slots, a port change recreating
the pods with the reason in an event, status fields the planner drops removed from the object
(that the new env reaches the new *process* is tests/e2e/test_operator_fields.py).

kwok pods run no sidecar, so no pod ever reports a config applied here: a release started by
an edit stays in its first batch, which is what these tests need (a pod keeps mounting a copy
while newer ones are made). The release through real pods is tests/e2e/test_operator_configmaps.py.
Each test runs its own operator process for its namespace (one of them a stock-cluster
operator).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from podkit_operator.api import keys
from podkit_operator.api.configcopy import copy_name
from podkit_operator.configreleases.copies import data_hash
from testbed.fixtures import running_api_cluster
from testbed.kube import Kube
from testbed.operator_proc import OperatorProcess
from testbed.stsp import (
    QUICK_SOAK_S,
    batch_status,
    config_copies,
    events,
    install_crd,
    mounted_configs,
    pods,
    set_config,
    status,
)

pytestmark = pytest.mark.integration

CONFIG, VOLUME = "cfg", "config"


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    with running_api_cluster(f"cfg-{os.getpid()}", nodes=1) as api:
        install_crd(api.kube())
        yield api


@pytest.fixture
def kube(cluster: Any) -> Kube:
    return cluster.kube()


@pytest.fixture
def namespace(kube: Kube) -> str:
    return kube.create_namespace(f"cfg-{os.urandom(4).hex()}")


@pytest.fixture
def operator(cluster: Any, namespace: str,
             monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """``operator(patched)``: an operator for the test's namespace; stopped after the test."""
    with ExitStack() as stack:
        def start(patched: bool = True) -> OperatorProcess:
            monkeypatch.setenv("PODKIT_PATCHED", "true" if patched else "false")
            return stack.enter_context(OperatorProcess(
                cluster.kube().kubeconfig, cluster.layout.state / f"operator-{namespace}.log",
                namespace))

        yield start


def stsp(namespace: str, replicas: int = 2, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{keys.GROUP}/{keys.VERSION}", "kind": keys.KIND,
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {"replicas": replicas, "podManagementPolicy": "Parallel",
                 "selector": {"matchLabels": {"app": "web"}},
                 "minReadySeconds": QUICK_SOAK_S, "configMaps": [CONFIG],
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web",
                                                       "image": "podkit.local/podkit-demo:v1"}],
                                       "volumes": [{"name": VOLUME,
                                                    "configMap": {"name": CONFIG}}]}},
                 "updateStrategy": {"type": "ABSwap", "batchDeployConfig": {"batchNum": 1}},
                 **spec},
    }


def name_of(data: dict[str, str]) -> str:
    return copy_name(CONFIG, data_hash({"data": data}))


def revisions(kube: Kube, namespace: str) -> list[str]:
    listed = json.loads(kube.run("get", "controllerrevisions", "-n", namespace, "-o",
                                 "json"))["items"]
    return sorted(r["metadata"]["name"] for r in listed)


def test_copies_are_named_by_content_and_the_same_content_makes_no_second_copy(
        operator, kube: Kube, namespace: str) -> None:
    one, two = {"greeting": "hello one"}, {"greeting": "hello two"}
    set_config(kube, namespace, CONFIG, one)
    operator()
    kube.apply(stsp(namespace))
    kube.wait_for("2 pods mounting the first copy", lambda: mounted_configs(
        kube, namespace, VOLUME) == {"web-0": name_of(one), "web-1": name_of(one)}, timeout=60)
    first = config_copies(kube, namespace, CONFIG)
    assert list(first) == [1]
    body = first[1]
    assert body["metadata"]["name"] == name_of(one) and body["immutable"] is True
    assert body["data"] == one
    assert body["metadata"]["annotations"]["podkit.io/config-hash"] == data_hash({"data": one})
    owner = body["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"]) == ("StatefulSetPlus", "web")  # never the source
    sidecar = next(c for c in pods(kube, namespace)[0]["spec"]["containers"]
                   if c["name"] == "podkit-sidecar")
    assert {"name": "PODKIT_CONFIG_DIRS", "value": f"/podkit-config/{VOLUME}"} in sidecar["env"]
    first_revision = status(kube, namespace)["updateRevision"]
    uids = {p["metadata"]["uid"] for p in pods(kube, namespace)}

    set_config(kube, namespace, CONFIG, two)
    kube.wait_for("the second copy", lambda: sorted(config_copies(kube, namespace, CONFIG))
                  == [1, 2], timeout=60)
    assert config_copies(kube, namespace, CONFIG)[2]["metadata"]["name"] == name_of(two)
    kube.wait_for("a release of the new copy", lambda: status(kube, namespace)[
        "updateRevision"] != first_revision, timeout=60)
    # batch 1 is both pods: their volume switched in place, no report comes (kwok)
    kube.wait_for("both pods switched to the new copy", lambda: mounted_configs(
        kube, namespace, VOLUME) == {"web-0": name_of(two), "web-1": name_of(two)}, timeout=60)
    assert {p["metadata"]["uid"] for p in pods(kube, namespace)} == uids  # in place

    set_config(kube, namespace, CONFIG, dict(one))  # back to the first content
    kube.wait_for("the release of the first revision again", lambda: status(
        kube, namespace)["updateRevision"] == first_revision, timeout=60)
    assert sorted(config_copies(kube, namespace, CONFIG)) == [1, 2]  # no third copy
    assert len(revisions(kube, namespace)) == 2  # nor a third revision
    found = status(kube, namespace)["configMaps"][0]
    assert (found["updateCopy"], found["updateVersion"]) == (name_of(one), 1)


def test_gc_keeps_the_newest_and_every_copy_in_use(operator, kube: Kube,
                                                    namespace: str) -> None:
    set_config(kube, namespace, CONFIG, {"v": "1"})
    operator()
    kube.apply(stsp(namespace, replicas=1, configHistoryLimit=3))
    kube.wait_for("web-0 at version 1", lambda: status(kube, namespace).get(
        "updatedReplicas") == 1, timeout=60)
    # another pod of the namespace (no StatefulSetPlus's) mounts version 2
    set_config(kube, namespace, CONFIG, {"v": "2"})
    kube.wait_for("version 2", lambda: 2 in config_copies(kube, namespace, CONFIG), timeout=60)
    kube.apply({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "reader", "namespace": namespace},
                "spec": {"containers": [{"name": "c", "image": "podkit.local/podkit-demo:v1"}],
                         "volumes": [{"name": "v", "configMap": {"name": name_of({"v": "2"})}}]}})
    for n in range(3, 8):
        set_config(kube, namespace, CONFIG, {"v": str(n)})
        kube.wait_for(f"version {n}", lambda: n in config_copies(kube, namespace, CONFIG),
                      timeout=60)
    # kept: the 3 newest; version 1, which the current revision names (the release of the
    # edits never completes on kwok); version 2, which the other pod mounts
    kube.wait_for("GC to keep versions 1, 2, 5, 6, 7", lambda: sorted(
        config_copies(kube, namespace, CONFIG)) == [1, 2, 5, 6, 7], timeout=60)
    assert mounted_configs(kube, namespace, VOLUME) == {"web-0": name_of({"v": "7"})}
    current = status(kube, namespace)["configMaps"][0]
    assert (current["currentVersion"], current["updateVersion"]) == (1, 7)
    assert current["batchVersions"] == ["7"]

    kube.run("delete", "pod", "reader", "-n", namespace, "--grace-period=0", "--force")
    set_config(kube, namespace, CONFIG, {"v": "8"})  # an edit makes the operator look again
    kube.wait_for("version 2 collected once no pod mounts it", lambda: sorted(
        config_copies(kube, namespace, CONFIG)) == [1, 6, 7, 8], timeout=60)


def test_a_stock_cluster_refuses_config_grayscale_in_a_condition(
        operator, kube: Kube, namespace: str) -> None:
    set_config(kube, namespace, CONFIG, {"greeting": "hello"})
    operator(patched=False)
    kube.apply(stsp(namespace))

    def refused() -> dict[str, Any] | None:
        conditions = {c["type"]: c for c in status(kube, namespace).get("conditions", [])}
        return conditions.get("ConfigGrayscale")

    condition = kube.wait_for("the ConfigGrayscale condition", refused, timeout=60)
    assert (condition["status"], condition["reason"]) == ("False", "StockCluster")
    assert "refused" in condition["message"]
    kube.wait_for("2 pods", lambda: len(pods(kube, namespace)) == 2, timeout=60)
    assert mounted_configs(kube, namespace, VOLUME) == {"web-0": CONFIG, "web-1": CONFIG}
    assert config_copies(kube, namespace, CONFIG) == {}  # no copy made
    assert "configMaps" not in status(kube, namespace)
    kube.wait_for("a warning event", lambda: events(kube, namespace,
                                                    "ConfigGrayscaleRefused"), timeout=30)


def test_copies_outlive_their_deleted_source_which_is_a_condition_not_a_halt(
        operator, kube: Kube, namespace: str) -> None:
    data = {"greeting": "hello"}
    set_config(kube, namespace, CONFIG, data)
    operator()
    kube.apply(stsp(namespace))
    kube.wait_for("2 pods mounting the copy", lambda: mounted_configs(
        kube, namespace, VOLUME) == {"web-0": name_of(data), "web-1": name_of(data)},
        timeout=60)
    source = kube.get("configmap", CONFIG, namespace)
    # a canary owned by the source: once it is gone, the garbage collector has acted on the
    # source's deletion, and would have taken any copy it owned
    kube.apply({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "canary", "namespace": namespace, "ownerReferences": [
                    {"apiVersion": "v1", "kind": "ConfigMap", "name": CONFIG,
                     "uid": source["metadata"]["uid"]}]}})
    kube.delete("configmap", CONFIG, namespace)

    def condition() -> dict[str, Any] | None:
        return next((c for c in status(kube, namespace).get("conditions") or []
                     if c["type"] == "ConfigSourcesPresent" and c["status"] == "False"), None)

    found = kube.wait_for("the ConfigSourcesPresent condition", condition, timeout=60)
    assert found["reason"] == "ConfigSourceMissing" and CONFIG in found["message"]
    kube.wait_for("the garbage collector acting on the source's deletion", lambda: not any(
        c["metadata"]["name"] == "canary" for c in json.loads(kube.run(
            "get", "configmaps", "-n", namespace, "-o", "json"))["items"]), timeout=60)
    assert list(config_copies(kube, namespace, CONFIG)) == [1]  # the copy pods mount stays
    # the object's other work goes on: a scale-up is served from the last copy
    kube.patch(keys.PLURAL, "web", [{"op": "replace", "path": "/spec/replicas", "value": 3}],
               namespace)
    kube.wait_for("a third pod mounting the last copy", lambda: mounted_configs(
        kube, namespace, VOLUME).get("web-2") == name_of(data), timeout=60)
    set_config(kube, namespace, CONFIG, data)  # the source back: the condition clears
    kube.wait_for("ConfigSourcesPresent True again", lambda: any(
        c["type"] == "ConfigSourcesPresent" and c["status"] == "True"
        for c in status(kube, namespace).get("conditions") or []), timeout=60)


# --- every field of a revision reaches the pods ------------------------------------------------

V1 = "podkit.local/podkit-demo:v1"


def fields_stsp(namespace: str, env: list[dict[str, str]], replicas: int = 4,
         port: int = 8080) -> dict[str, Any]:
    return {
        "apiVersion": f"{keys.GROUP}/{keys.VERSION}", "kind": keys.KIND,
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {"replicas": replicas, "podManagementPolicy": "Parallel",
                 "selector": {"matchLabels": {"app": "web"}},
                 "minReadySeconds": QUICK_SOAK_S,
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


def released(kube: Kube, namespace: str) -> bool:
    st = status(kube, namespace)
    return (st.get("currentRevision") == st.get("updateRevision")
            and (st.get("batchDeployStatus") or {}).get("generalStatus") == "Completed"
            and st.get("updatedReplicas") == len(pods(kube, namespace)) > 0)


def test_an_env_release_reaches_both_slots_in_place(operator, kube: Kube,
                                                    namespace: str) -> None:
    operator()  # patched mode
    kube.apply(fields_stsp(namespace, [{"name": "MODE", "value": "one"},
                                       {"name": "OLD", "value": "x"}]))
    kube.wait_for("4 pods released", lambda: released(kube, namespace), timeout=90)
    uids = {p["metadata"]["uid"] for p in pods(kube, namespace)}
    first = status(kube, namespace)["currentRevision"]

    kube.apply(fields_stsp(namespace, [{"name": "MODE", "value": "two"}]))
    kube.wait_for("the env release completed", lambda: released(kube, namespace)
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
    operator()  # patched mode
    kube.apply(fields_stsp(namespace, [], port=8080))
    kube.wait_for("4 pods released", lambda: released(kube, namespace), timeout=90)
    uids = {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods(kube, namespace)}
    first = status(kube, namespace)["currentRevision"]

    kube.apply(fields_stsp(namespace, [], port=9090))
    kube.wait_for("the port release completed", lambda: released(kube, namespace)
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
    operator()  # patched mode
    kube.apply(fields_stsp(namespace, [{"name": "MODE", "value": "one"}], replicas=2))
    kube.wait_for("2 pods released", lambda: released(kube, namespace), timeout=90)
    assert "batchDeadlineTime" in batch_status(kube, namespace)
    kube.patch(keys.PLURAL, "web", [{"op": "add", "path": "/metadata/annotations",
                                     "value": {keys.ANN_ROLLBACK: "true"}}], namespace)
    kube.wait_for("the rollback's status", lambda: batch_status(kube, namespace).get(
        "currentRollbackProgress", "").startswith("2/"), timeout=60)
    assert "batchDeadlineTime" not in batch_status(kube, namespace)  # no stale deadline


def test_a_spec_error_still_lets_a_rollback_run(operator, kube: Kube, namespace: str) -> None:
    operator()
    obj = fields_stsp(namespace, [], replicas=2)
    obj["spec"]["updateStrategy"]["batchDeployConfig"] = {"batchNum": 2, "batchAuto": False}
    kube.apply(obj)
    kube.wait_for("2 pods released", lambda: released(kube, namespace), timeout=90)
    first = status(kube, namespace)["currentRevision"]
    obj["spec"]["template"]["spec"]["containers"][0]["image"] = "podkit.local/podkit-demo:v2"
    kube.apply(obj)
    kube.wait_for("batch 1 of the release waiting for a confirmation", lambda: batch_status(
        kube, namespace).get("action") == "WaitToConfirm", timeout=90)
    # a spec the CRD accepts but the operator cannot act on: a released ConfigMap that
    # does not exist
    obj["spec"]["configMaps"] = ["never-made"]
    obj["spec"]["template"]["spec"]["volumes"] = [{"name": "cfg",
                                                   "configMap": {"name": "never-made"}}]
    kube.apply(obj)
    kube.wait_for("an InvalidSpec event", lambda: any(
        "never-made" in m for m in events(kube, namespace, "InvalidSpec")), timeout=60)
    kube.patch(keys.PLURAL, "web", [{"op": "add", "path": "/metadata/annotations",
                                     "value": {keys.ANN_ROLLBACK: "true"}}], namespace)
    # the rollback runs on the last usable spec: every pod back at the first revision
    kube.wait_for("the rollback to the first revision", lambda: all(
        p["metadata"]["annotations"].get(keys.ANN_REVISION) == first
        and keys.ANN_TARGET not in p["metadata"]["annotations"]
        for p in pods(kube, namespace)) and status(kube, namespace).get(
        "currentRevision") == first, timeout=90)
