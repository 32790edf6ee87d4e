"""Reading and steering a StatefulSetPlus named ``web`` from tests, as kubectl would."""

from __future__ import annotations

import json
from typing import Any

from podkit_operator import manifests
from podkit_operator.api import keys
from testbed.images import Tags
from testbed.kube import Kube

NAME = "web"
DEMO_PORT = 7000  # the demo service's TCP port (podkit_demo.service.DEFAULT_LISTEN)
# minReadySeconds of the tests that do not test the soak itself: a short soak keeps every
# release step (a pod counts updated only after serving this long) while the suites stay quick
QUICK_SOAK_S = 1


def manifest(namespace: str, replicas: int, image: str, min_ready: int = QUICK_SOAK_S,
             **batch: Any) -> dict[str, Any]:
    """A StatefulSetPlus ``web`` of ``replicas`` ABSwap pods (Parallel) of one container
    ``web`` running ``image``; ``batch``: its ``batchDeployConfig``."""
    return {
        "apiVersion": f"{keys.GROUP}/{keys.VERSION}", "kind": keys.KIND,
        "metadata": {"name": NAME, "namespace": namespace},
        "spec": {"replicas": replicas, "podManagementPolicy": "Parallel",
                 "selector": {"matchLabels": {"app": NAME}},
                 "minReadySeconds": min_ready,
                 "template": {"metadata": {"labels": {"app": NAME}},
                              "spec": {"containers": [{"name": NAME, "image": image}]}},
                 "updateStrategy": {"type": "ABSwap", "batchDeployConfig": batch}},
    }


def demo_manifest(namespace: str, images: Tags, image: str, batches: int,
                  **batch: Any) -> dict[str, Any]:
    """A StatefulSetPlus ``web`` of 3 ABSwap pods (Parallel) of the demo service ``image``
    with podkit's pause and sidecar images, in ``batches`` batches (``batch``: the rest of
    its ``batchDeployConfig``), as the e2e tests of the operator release it."""
    obj = manifest(namespace, 3, image, batchNum=batches, **batch)
    obj["spec"]["serviceName"] = NAME
    obj["spec"]["podkit"] = {"pauseImage": images.pause, "sidecarImage": images.sidecar}
    pod = obj["spec"]["template"]["spec"]
    pod["terminationGracePeriodSeconds"] = 5
    pod["containers"][0]["imagePullPolicy"] = "Never"
    return obj


def install_crd(kube: Kube) -> None:
    """Apply the StatefulSetPlus CRD and wait until the apiserver serves it."""
    kube.apply(manifests.crd())
    wait_crd_established(kube)


def wait_crd_established(kube: Kube) -> None:
    # Polled rather than `kubectl wait`, which fails outright while the new CRD has no
    # status conditions yet.
    kube.wait_for("the StatefulSetPlus CRD to be established", lambda: any(
        c["type"] == "Established" and c["status"] == "True"
        for c in (kube.get("crd", keys.CRD_NAME).get("status") or {}).get("conditions") or []))


def status(kube: Kube, namespace: str) -> dict[str, Any]:
    return kube.get(keys.PLURAL, NAME, namespace).get("status") or {}


def batch_status(kube: Kube, namespace: str) -> dict[str, Any]:
    return status(kube, namespace).get("batchDeployStatus") or {}


def pods(kube: Kube, namespace: str) -> list[dict[str, Any]]:
    return json.loads(kube.run("get", "pods", "-n", namespace, "-l",
                               f"{keys.LABEL_STSP}={NAME}", "-o", "json"))["items"]


def serving_image(pod: dict[str, Any], business: str = NAME) -> str | None:
    """The image of the pod's active slot (of business container ``business``), once no update
    is under way on the pod."""
    annotations = pod["metadata"].get("annotations", {})
    if keys.ANN_TARGET in annotations:
        return None
    slot = annotations.get(keys.ANN_ACTIVE_SLOT)
    return next((c["image"] for c in pod["spec"]["containers"]
                 if c["name"] == f"{business}-{slot}"), None)


def set_image(kube: Kube, namespace: str, image: str) -> None:
    """Start a release: a new image for the template's business container."""
    kube.patch(keys.PLURAL, NAME, [{"op": "replace",
                                         "path": "/spec/template/spec/containers/0/image",
                                         "value": image}], namespace)


def events(kube: Kube, namespace: str, reason: str) -> list[str]:
    """The messages of the operator's events of ``reason``, oldest first."""
    listed = json.loads(kube.run("get", "events", "-n", namespace, "-o", "json"))["items"]
    listed.sort(key=lambda e: e["metadata"]["creationTimestamp"])
    return [e["message"] for e in listed if e["reason"] == reason
            and e["involvedObject"]["kind"] == keys.KIND]


def pods_named(messages: list[str]) -> list[str]:
    """The pod each event message is about (messages begin with the pod's name)."""
    return [m.split()[0].rstrip(":") for m in messages]


# --- config grayscale (spec.configMaps) ---------------------------------------------------------

def set_config(kube: Kube, namespace: str, name: str, data: dict[str, str]) -> None:
    """Create or replace ConfigMap ``name`` with ``data`` (a user's edit)."""
    kube.apply({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": name, "namespace": namespace}, "data": data})


def config_copies(kube: Kube, namespace: str, source: str) -> dict[int, dict[str, Any]]:
    """The versioned copies of ConfigMap ``source``, by version."""
    listed = json.loads(kube.run("get", "configmaps", "-n", namespace, "-l",
                                 f"{keys.LABEL_CONFIG_SOURCE}={source}", "-o",
                                 "json"))["items"]
    return {int(c["metadata"]["labels"][keys.LABEL_CONFIG_VERSION]): c for c in listed}


def mounted_configs(kube: Kube, namespace: str, volume: str) -> dict[str, str]:
    """Per pod name, the ConfigMap its volume ``volume`` mounts."""
    return {p["metadata"]["name"]: next(v["configMap"]["name"] for v in p["spec"]["volumes"]
                                        if v["name"] == volume)
            for p in pods(kube, namespace)}
