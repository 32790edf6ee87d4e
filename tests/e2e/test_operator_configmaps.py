"""Config grayscale release on the full cluster: an edit of a ConfigMap reaches the demo
service batch by batch, through the real kubelet's projection of a volume switched in place,
the sidecar's hook and its report; a config whose hook fails is rolled back; GC keeps the
newest versions.

The demo answers ``GET`` with its greeting, read from the released ConfigMap mounted at
``/etc/podkit-demo``. The operator runs as a local process for the test's namespace. Figures
(edit or confirmation to the new greeting served, the hook's own time) are printed as JSON.
"""

from __future__ import annotations

import json
import time
from typing import Any

from podkit_demo.client import tcp_get
from podkit_operator.api import keys
from podkit_operator.api.configcopy import copy_name
from podkit_operator.configreleases.copies import data_hash
from podkit_operator.inplace.pods import sidecar_token
from podkit_operator.inplace.sidecar import read_state
from testbed.fixtures import Images
from testbed.kube import Kube
from testbed.stsp import (
    QUICK_SOAK_S,
    batch_status,
    config_copies,
    events,
    mounted_configs,
    pods,
    set_config,
    status,
)

DEMO_PORT = 7000
CONFIG, VOLUME = "demo-config", "greeting"
PODS = ["web-0", "web-1", "web-2"]


def config_stsp(namespace: str, images: Images, hook: str, batches: int,
                **batch: Any) -> dict[str, Any]:
    container = {"name": "web", "image": images.demo_v1, "imagePullPolicy": "Never",
                 "volumeMounts": [{"name": VOLUME, "mountPath": "/etc/podkit-demo"}]}
    return {
        "apiVersion": f"{keys.GROUP}/{keys.VERSION}", "kind": keys.KIND,
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {
            "replicas": 3, "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": {"app": "web"}}, "serviceName": "web",
            "minReadySeconds": QUICK_SOAK_S, "configMaps": [CONFIG],
            "template": {"metadata": {"labels": {"app": "web"}},
                         "spec": {"terminationGracePeriodSeconds": 5,
                                  "containers": [container],
                                  "volumes": [{"name": VOLUME,
                                               "configMap": {"name": CONFIG}}]}},
            "podkit": {"pauseImage": images.pause, "sidecarImage": images.sidecar,
                       "configHook": hook},
            "updateStrategy": {"type": "ABSwap",
                               "batchDeployConfig": {"batchNum": batches, **batch}},
        },
    }


def greetings(kube: Kube, namespace: str) -> dict[str, str]:
    """What each pod's demo answers (``<version> <slot> <seq> <served> <greeting>``)."""
    out = {}
    for pod in pods(kube, namespace):
        words = tcp_get((pod["status"]["podIP"], DEMO_PORT), 1).split()
        out[pod["metadata"]["name"]] = b" ".join(words[4:]).decode()
    return out


def restarts(kube: Kube, namespace: str) -> dict[tuple[str, str], tuple[str, int]]:
    """(pod, container) -> (pod UID, restart count): a container or pod restarted shows."""
    return {(p["metadata"]["name"], c["name"]): (p["metadata"]["uid"], c["restartCount"])
            for p in pods(kube, namespace) for c in p["status"]["containerStatuses"]}


def sidecar_config(kube: Kube, namespace: str, pod: str) -> dict[str, Any]:
    """The ``config`` section of the sidecar's ``/state``, asked as the operator asks (with the
    pod's token: from outside the pod, nobody else is answered)."""
    found = next(p for p in pods(kube, namespace) if p["metadata"]["name"] == pod)
    state = read_state(found["status"]["podIP"], sidecar_token(found), timeout=5)
    assert state is not None, f"the sidecar of {pod} did not answer /state"
    return state["config"]


def completed(kube: Kube, namespace: str) -> bool:
    found = status(kube, namespace)
    return (found.get("batchDeployStatus", {}).get("generalStatus") == "Completed"
            and found.get("updatedReplicas") == 3 and found.get("readyReplicas") == 3)


def wait_greetings(kube: Kube, namespace: str, want: dict[str, str], since: float,
                   what: str) -> float:
    """Poll the pods until they answer ``want``; seconds from ``since`` until they did."""
    kube.wait_for(what, lambda: greetings(kube, namespace) == want, timeout=120,
                  interval=0.05)
    return time.monotonic() - since


def start_web(kube: Kube, namespace: str, obj: dict[str, Any]) -> None:
    """ConfigMap greeting "hello one", then ``obj``; wait until its 3 pods answer with it."""
    set_config(kube, namespace, CONFIG, {"greeting": "hello one"})
    kube.apply(obj)
    kube.wait_for("3 pods answering hello one", lambda: completed(kube, namespace) and
                  greetings(kube, namespace) == dict.fromkeys(PODS, "hello one"), timeout=180)


def test_a_config_release_in_three_batches_changes_only_the_expected_pods(
        operator, kube: Kube, namespace: str, podkit_images: Images) -> None:
    start_web(kube, namespace, config_stsp(namespace, podkit_images, "signal:HUP", 3,
                                           batchAuto=False))
    before = restarts(kube, namespace)
    first = status(kube, namespace)["updateRevision"]

    edited = time.monotonic()
    set_config(kube, namespace, CONFIG, {"greeting": "hello two"})
    figures = {"batch1_edit_to_served_s": wait_greetings(
        kube, namespace, {"web-0": "hello one", "web-1": "hello one", "web-2": "hello two"},
        edited, "batch 1 (web-2) to serve the new greeting")}
    kube.wait_for("batch 1 to wait for a confirmation", lambda: batch_status(
        kube, namespace).get("action") == "WaitToConfirm", timeout=120)
    assert greetings(kube, namespace) == {"web-0": "hello one", "web-1": "hello one",
                                          "web-2": "hello two"}
    assert status(kube, namespace)["configMaps"][0]["batchVersions"] == ["2", "1", "1"]

    for k, new_pods in ((2, {"web-1", "web-2"}), (3, set(PODS))):
        confirmed = time.monotonic()
        kube.run("annotate", keys.PLURAL, "web", "-n", namespace,
                 f"podkit.io/confirm-batch={k}", "--overwrite")
        want = {p: "hello two" if p in new_pods else "hello one" for p in PODS}
        figures[f"batch{k}_confirm_to_served_s"] = wait_greetings(
            kube, namespace, want, confirmed, f"batch {k} to serve the new greeting")
        if k < 3:
            kube.wait_for(f"batch {k} to wait for a confirmation", lambda: batch_status(
                kube, namespace).get("action") == "WaitToConfirm"
                and batch_status(kube, namespace).get("batchOrder") == k, timeout=120)
            assert greetings(kube, namespace) == want  # nobody else moved meanwhile
    kube.wait_for("the config release to complete", lambda: completed(kube, namespace),
                  timeout=120)

    assert restarts(kube, namespace) == before  # same pods, no container restarted
    copies = config_copies(kube, namespace, CONFIG)
    assert sorted(copies) == [1, 2]
    new_copy = copy_name(CONFIG, data_hash({"data": {"greeting": "hello two"}}))
    assert copies[2]["metadata"]["name"] == new_copy and copies[2]["immutable"] is True
    assert set(mounted_configs(kube, namespace, VOLUME).values()) == {new_copy}
    found = status(kube, namespace)
    assert found["updateRevision"] != first
    assert found["configMaps"][0] == {"name": CONFIG, "currentCopy": new_copy,
                                      "currentVersion": 2, "updateCopy": new_copy,
                                      "updateVersion": 2, "batchVersions": ["2", "2", "2"]}
    hooks = [sidecar_config(kube, namespace, p)["last_reload"] for p in PODS]
    assert all(h["ok"] and h["hook"] == "signal:HUP" for h in hooks)
    figures["hook_s_max"] = max((h["finished_ns"] - h["detected_ns"]) / 1e9 for h in hooks)
    print(json.dumps({"config_release_3_batches": figures}))


def test_a_config_whose_hook_fails_stops_the_release_and_rolls_the_batch_back(
        operator, kube: Kube, namespace: str, podkit_images: Images) -> None:
    start_web(kube, namespace, config_stsp(namespace, podkit_images, "restart", 3,
                                           batchAuto=True))
    old_copy = mounted_configs(kube, namespace, VOLUME)["web-2"]
    uids = {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods(kube, namespace)}

    # the demo refuses a greeting over 200 characters: the restarted process exits at once,
    # the restart hook fails, and the running process keeps serving
    set_config(kube, namespace, CONFIG, {"greeting": "x" * 300})
    kube.wait_for("the release to fail", lambda: batch_status(kube, namespace).get(
        "generalStatus") == "Failed", timeout=180)
    kube.wait_for("web-2 back on the old copy", lambda: mounted_configs(
        kube, namespace, VOLUME)["web-2"] == old_copy
        and batch_status(kube, namespace).get("action") == "Completed", timeout=120)
    assert greetings(kube, namespace) == dict.fromkeys(PODS, "hello one")
    assert {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods(kube, namespace)} == uids
    assert set(mounted_configs(kube, namespace, VOLUME).values()) == {old_copy}
    failed = events(kube, namespace, "UpdateFailed")
    assert failed and all(m.startswith("web-2") for m in failed)
    assert "config hook restart failed" in failed[0]
    last = sidecar_config(kube, namespace, "web-2")["last_reload"]
    # the hook ran again for the old content, and succeeded
    assert last["ok"], (f"the hook's last run failed: {last.get('message')!r} (hook "
                        f"{last.get('hook')}, hashes {last.get('hashes')})")
    conditions = {c["type"]: c["status"] for c in status(kube, namespace)["conditions"]}
    assert conditions["ReleaseFailed"] == "True"


def test_gc_keeps_the_ten_newest_versions(operator, kube: Kube, namespace: str,
                                          podkit_images: Images) -> None:
    set_config(kube, namespace, CONFIG, {"greeting": "hello 1"})
    obj = config_stsp(namespace, podkit_images, "signal:HUP", 1)
    obj["spec"]["replicas"] = 1
    kube.apply(obj)
    # each edit comes once the version before is released, the first one too: an edit that
    # switches the volume of a pod that started seconds ago is not always projected by the
    # kubelet (a CI run: MountVolume.SetUp "not registered", then nothing for 120 s; open)
    def version_1_released() -> bool:
        found = status(kube, namespace)  # one read for the three fields
        return (sorted(config_copies(kube, namespace, CONFIG)) == [1]
                and found.get("updatedReplicas") == 1
                and found.get("configMaps", [{}])[0].get("currentVersion") == 1
                and found.get("batchDeployStatus", {}).get("generalStatus") == "Completed")

    kube.wait_for("web-0 at config version 1", version_1_released, timeout=180)
    for n in range(2, 13):
        set_config(kube, namespace, CONFIG, {"greeting": f"hello {n}"})
        kube.wait_for(f"config version {n} released", lambda: n in config_copies(
            kube, namespace, CONFIG) and status(kube, namespace).get(
            "configMaps", [{}])[0].get("currentVersion") == n, timeout=120)
    kube.wait_for("GC down to 10 versions", lambda: sorted(
        config_copies(kube, namespace, CONFIG)) == list(range(3, 13)), timeout=60)
    newest = config_copies(kube, namespace, CONFIG)[12]["metadata"]["name"]
    assert mounted_configs(kube, namespace, VOLUME) == {"web-0": newest}
    words = tcp_get((pods(kube, namespace)[0]["status"]["podIP"], DEMO_PORT), 1).split()
    assert b" ".join(words[4:]) == b"hello 12"
