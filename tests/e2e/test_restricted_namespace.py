"""A StatefulSetPlus in a namespace that enforces Pod Security ``restricted``, on the full
cluster: its pods are admitted, every container runs as the images' unprivileged uid, a config
edit reaches the demo through the sidecar's hook (the 0600 control socket, the operator reading
``/state`` with the pod's token) and a release swaps each pod once, in place.

Without the optional CPU-priority feature (CAP_SYS_NICE, which ``restricted`` refuses:
docs/operator.md, "Pod security"). The operator runs as a local process for the namespace.
"""

from __future__ import annotations

from typing import Any

from test_operator_configmaps import CONFIG, config_stsp

from podkit_demo.client import tcp_get
from testbed.fixtures import Images
from testbed.kube import Kube
from testbed.stsp import pods, serving_image, set_config, set_image, status

DEMO_PORT = 7000
UID = "65532"


def restricted_stsp(namespace: str, images: Images) -> dict[str, Any]:
    """The config release's StatefulSetPlus (signal:HUP), with one pod."""
    obj = config_stsp(namespace, images, "signal:HUP", 1)
    obj["spec"]["replicas"] = 1
    return obj


def answer(kube: Kube, namespace: str) -> list[str]:
    """What the one pod's demo answers: ``<version> <slot> <seq> <served> <greeting>``."""
    [pod] = pods(kube, namespace)
    return tcp_get((pod["status"]["podIP"], DEMO_PORT), 1).decode().split()


def completed(kube: Kube, namespace: str, image: str) -> bool:
    found = status(kube, namespace)
    return (found.get("batchDeployStatus", {}).get("generalStatus") == "Completed"
            and found.get("readyReplicas") == 1
            and all(serving_image(p) == image for p in pods(kube, namespace)))


def uid_of_pid_1(kube: Kube, namespace: str, container: str) -> str:
    status_lines = kube.exec("web-0", container, "cat", "/proc/1/status",
                             namespace=namespace).splitlines()
    return next(line.split()[1] for line in status_lines if line.startswith("Uid:"))


def test_a_release_in_a_restricted_namespace(operator, kube: Kube, namespace: str,
                                             podkit_images: Images) -> None:
    kube.run("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    set_config(kube, namespace, CONFIG, {"greeting": "hello one"})
    kube.apply(restricted_stsp(namespace, podkit_images))
    kube.wait_for("web-0 at v1", lambda: completed(kube, namespace, podkit_images.demo_v1),
                  timeout=180)
    assert answer(kube, namespace)[0] == "v1" and answer(kube, namespace)[4:] == ["hello",
                                                                                 "one"]
    [before] = pods(kube, namespace)
    for container in ("web-a", "web-b", "podkit-sidecar"):
        assert uid_of_pid_1(kube, namespace, container) == UID, container

    set_config(kube, namespace, CONFIG, {"greeting": "hello two"})
    kube.wait_for("the new greeting served", lambda: answer(kube, namespace)[4:] == [
        "hello", "two"], timeout=120)
    kube.wait_for("the config release to complete", lambda: completed(
        kube, namespace, podkit_images.demo_v1), timeout=120)

    set_image(kube, namespace, podkit_images.demo_v2)
    kube.wait_for("web-0 at v2", lambda: completed(kube, namespace, podkit_images.demo_v2),
                  timeout=180)
    [after] = pods(kube, namespace)
    assert after["metadata"]["uid"] == before["metadata"]["uid"], "the pod was recreated"
    assert after["status"]["podIP"] == before["status"]["podIP"]
    words = answer(kube, namespace)
    assert words[0] == "v2" and words[1] == "b" and words[4:] == ["hello", "two"]
    assert kube.get("namespace", namespace, namespace)["metadata"]["labels"][
        "pod-security.kubernetes.io/enforce"] == "restricted"
