"""A release that changes only env, on the full cluster (real kubelet and containerd, the
patched apiserver): the new env reaches the running business process, through the idle slot,
without recreating a pod.

The demo answers ``GET`` with ``<version> <slot> ...``, its version read from its own
``PODKIT_VERSION`` env; the slot's PID 1 (``podkit run``) shows the container's env in
``/proc/1/environ``. The operator runs as a local process for the test's namespace.
"""

from __future__ import annotations

from typing import Any

from podkit_demo.client import tcp_get
from podkit_operator.api import keys
from testbed.fixtures import Images
from testbed.kube import Kube
from testbed.stsp import DEMO_PORT, demo_manifest, pods, status


def web(namespace: str, images: Images, env: list[dict[str, str]]) -> dict[str, Any]:
    """Two pods of the demo at v1 with ``env``, released in two batches."""
    obj = demo_manifest(namespace, images, images.demo_v1, 2)
    obj["spec"]["replicas"] = 2
    obj["spec"]["template"]["spec"]["containers"][0]["env"] = env
    return obj


def completed(kube: Kube, namespace: str, revision_not: str | None = None) -> bool:
    found = status(kube, namespace)
    return (found.get("batchDeployStatus", {}).get("generalStatus") == "Completed"
            and found.get("currentRevision") == found.get("updateRevision") != revision_not
            and found.get("updatedReplicas") == 2 and found.get("readyReplicas") == 2)


def versions(kube: Kube, namespace: str) -> dict[str, str]:
    """The version each pod's serving process answers with (its PODKIT_VERSION env)."""
    return {p["metadata"]["name"]: tcp_get((p["status"]["podIP"], DEMO_PORT), 1).split()[0]
            .decode() for p in pods(kube, namespace)}


def process_env(kube: Kube, namespace: str, pod: dict[str, Any]) -> dict[str, str]:
    slot = pod["metadata"]["annotations"][keys.ANN_ACTIVE_SLOT]
    raw = kube.exec(pod["metadata"]["name"], f"web-{slot}", "cat", "/proc/1/environ",
                    namespace=namespace)
    return dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)


def test_an_env_only_release_reaches_the_running_process(
        operator, kube: Kube, namespace: str, podkit_images: Images) -> None:
    kube.apply(web(namespace, podkit_images, [{"name": "PODKIT_VERSION", "value": "v1"},
                                              {"name": "MODE", "value": "one"}]))
    kube.wait_for("2 pods serving v1", lambda: completed(kube, namespace)
                  and versions(kube, namespace) == {"web-0": "v1", "web-1": "v1"}, timeout=180)
    first = status(kube, namespace)["currentRevision"]
    uids = {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods(kube, namespace)}

    # the same image; only env changes
    kube.apply(web(namespace, podkit_images, [{"name": "PODKIT_VERSION", "value": "v1-env"},
                                              {"name": "MODE", "value": "two"}]))
    kube.wait_for("the env release to complete", lambda: completed(kube, namespace, first),
                  timeout=240)
    assert versions(kube, namespace) == {"web-0": "v1-env", "web-1": "v1-env"}
    for pod in pods(kube, namespace):
        assert pod["metadata"]["uid"] == uids[pod["metadata"]["name"]]  # in place
        env = process_env(kube, namespace, pod)
        assert (env["MODE"], env["PODKIT_VERSION"]) == ("two", "v1-env"), env
        assert pod["metadata"]["annotations"][keys.ANN_ACTIVE_SLOT] == "b"  # it swapped
