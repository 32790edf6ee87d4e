"""A swap pod's disk on the full cluster: its claim (of the testbed's StorageClass
``podkit-local``) is mounted by the real kubelet, written by the serving slot before an A/B swap,
read by the other slot after it, and read again by the pod created anew at the same ordinal
(the StatefulSet e2e suite's "recreate with the same identity and claim").
"""

from __future__ import annotations

from typing import Any

from podkit_operator.api import keys
from testbed.fixtures import Images
from testbed.kube import Kube
from testbed.provisioner import CLASS_NAME
from testbed.stsp import pods, serving_image, set_image

MARKER = "/data/marker"


def stsp(namespace: str, images: Images) -> dict[str, Any]:
    container = {"name": "web", "image": images.demo_v1, "imagePullPolicy": "Never",
                 "volumeMounts": [{"name": "data", "mountPath": "/data"}]}
    return {
        "apiVersion": f"{keys.GROUP}/{keys.VERSION}", "kind": keys.KIND,
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {
            "replicas": 1, "selector": {"matchLabels": {"app": "web"}}, "minReadySeconds": 1,
            "template": {"metadata": {"labels": {"app": "web"}},
                         "spec": {"terminationGracePeriodSeconds": 5,
                                  "containers": [container]}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"},
                                      "spec": {"accessModes": ["ReadWriteOnce"],
                                               "resources": {"requests": {"storage": "64Mi"}}}}],
            "podkit": {"pauseImage": images.pause, "sidecarImage": images.sidecar},
            "updateStrategy": {"type": "ABSwap", "batchDeployConfig": {"batchNum": 1}},
        },
    }


def serving(kube: Kube, namespace: str, image: str, not_uid: str | None = None
            ) -> dict[str, Any] | None:
    """web-0 once it serves ``image``, Ready (and is not the pod ``not_uid``)."""
    found = [p for p in pods(kube, namespace) if not p["metadata"].get("deletionTimestamp")]
    if len(found) != 1 or serving_image(found[0]) != image:
        return None
    pod = found[0]
    ready = any(c["type"] == "Ready" and c["status"] == "True"
                for c in pod["status"].get("conditions") or [])
    return pod if ready and pod["metadata"]["uid"] != not_uid else None


def slot_of(pod: dict[str, Any]) -> str:
    return f"web-{pod['metadata']['annotations'][keys.ANN_ACTIVE_SLOT]}"


def test_a_swap_pod_keeps_its_disk_across_a_swap_and_a_recreation(
        operator, kube: Kube, namespace: str, podkit_images: Images) -> None:
    kube.apply(stsp(namespace, podkit_images))
    first = kube.wait_for("web-0 serving v1", lambda: serving(kube, namespace,
                                                              podkit_images.demo_v1),
                          timeout=120, explain=lambda: kube.why_pods_wait(namespace))
    claim = kube.get("pvc", "data-web-0", namespace)
    assert claim["status"]["phase"] == "Bound" and claim["spec"]["storageClassName"] == CLASS_NAME
    before = slot_of(first)
    kube.exec("web-0", before, "sh", "-c", f"echo written-at-v1 > {MARKER}", namespace=namespace)
    set_image(kube, namespace, podkit_images.demo_v2)
    swapped = kube.wait_for("web-0 swapped to v2", lambda: serving(kube, namespace,
                                                                   podkit_images.demo_v2),
                            timeout=120, explain=lambda: kube.why_pods_wait(namespace))
    assert swapped["metadata"]["uid"] == first["metadata"]["uid"]  # the same pod
    after = slot_of(swapped)
    assert after != before  # the other slot serves now, and reads what the first one wrote
    assert kube.exec("web-0", after, "cat", MARKER, namespace=namespace) == "written-at-v1\n"
    kube.exec("web-0", after, "sh", "-c", f"echo written-at-v2 >> {MARKER}", namespace=namespace)
    kube.delete("pod", "web-0", namespace)
    again = kube.wait_for("web-0 created again", lambda: serving(
        kube, namespace, podkit_images.demo_v2, not_uid=first["metadata"]["uid"]),
        timeout=120, explain=lambda: kube.why_pods_wait(namespace))
    assert kube.exec("web-0", slot_of(again), "cat", MARKER, namespace=namespace) == \
        "written-at-v1\nwritten-at-v2\n"
    assert kube.get("pvc", "data-web-0", namespace)["metadata"]["uid"] == \
        claim["metadata"]["uid"]
