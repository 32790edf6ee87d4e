"""The demo service deployed three ways, each upgraded v1 -> v2 the way that way upgrades.

- ``abswap``: a StatefulSetPlus with the ABSwap strategy; the operator swaps the pod's slots.
- ``inplace``: one plain pod whose container image is patched; the kubelet restarts it.
- ``rolling``: a StatefulSet with a RollingUpdate; the pod is deleted and created again.

Each runs one pod of the same image with the same state size, behind its own ClusterIP Service
(TCP 7000, UDP 7001; the A/B swap behind two, see :attr:`Method.service_paths`), so the probes
compare the upgrade methods and nothing else. The two methods without podkit's sidecar get the
readiness probe a user would give them (the TCP port) and, like podkit's pods, a memory-backed
emptyDir at /dev/shm (the runtime's own /dev/shm holds only 64 MiB); it lives as long as the
pod, so it outlives a container restart.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from podkit_operator.api import keys
from podkit_operator.api.keys import ANN_ENDPOINTS_OF
from podkit_operator.images import same_image
from podkit_operator.kube.objects import pod_ready
from testbed.images import Tags
from testbed.kube import Kube
from testbed.stsp import serving_image

TCP_PORT = 7000
UDP_PORT = 7001
STATE_MB = 64
GRACE_S = 5
# A latency-critical service requests real CPU: the kubelet turns the request into the pod's
# CPU weight, and at 50m the serving process stalls for 100 ms whenever the node's daemons run.
CPU_REQUEST = "300m"
BUSINESS = "demo"  # the demo's container; podkit's slots are demo-a and demo-b


def _labels(app: str) -> dict[str, Any]:
    return {"labels": {"app": app}}


def _demo_container(name: str, image: str, own_dir: bool) -> dict[str, Any]:
    """The demo container. ``own_dir``: it runs alone (no podkit slots), so it gets the
    slot environment and the shared directory podkit would give it."""
    container: dict[str, Any] = {
        "name": name, "image": image, "imagePullPolicy": "Never",
        "env": [{"name": "PODKIT_DEMO_STATE_MB", "value": str(STATE_MB)}],
        "ports": [{"name": "tcp", "containerPort": TCP_PORT},
                  {"name": "udp", "containerPort": UDP_PORT, "protocol": "UDP"}],
        "resources": {"requests": {"cpu": CPU_REQUEST, "memory": "128Mi"}},
    }
    if not own_dir:
        # podkit starts a standby at idle CPU priority only where it may raise it again
        # (podkit.cpu): CAP_SYS_NICE, outside the baseline Pod Security Standard, so opt-in.
        # As root: the images run as uid 65532, and a capability added to a non-root
        # container never reaches its processes' effective set (no ambient capabilities).
        container["securityContext"] = {"runAsUser": 0, "capabilities": {"add": ["SYS_NICE"]}}
    if own_dir:
        container["env"] += [{"name": "PODKIT_SLOT", "value": "a"},
                             {"name": "PODKIT_DIR", "value": "/podkit"}]
        container["volumeMounts"] = [{"name": "podkit", "mountPath": "/podkit"},
                                     {"name": "shm", "mountPath": "/dev/shm"}]
        container["readinessProbe"] = {"tcpSocket": {"port": TCP_PORT}, "periodSeconds": 1,
                                       "failureThreshold": 1}
    return container


def _own_dir_spec(image: str) -> dict[str, Any]:
    return {"terminationGracePeriodSeconds": GRACE_S,
            "containers": [_demo_container(BUSINESS, image, own_dir=True)],
            "volumes": [{"name": "podkit", "emptyDir": {}},
                        {"name": "shm", "emptyDir": {"medium": "Memory"}}]}


def service(name: str, namespace: str, app: str, podkit_endpoints: bool) -> dict[str, Any]:
    """A ClusterIP Service of the demo's ports. ``podkit_endpoints``: no selector, and the
    operator keeps its endpoints from the pods that serve (podkit_operator.endpoints);
    otherwise Kubernetes keeps them from the pods that are Ready."""
    spec: dict[str, Any] = {
        "ports": [{"name": "tcp", "port": TCP_PORT, "targetPort": TCP_PORT},
                  {"name": "udp", "port": UDP_PORT, "targetPort": UDP_PORT, "protocol": "UDP"}]}
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if podkit_endpoints:
        meta["annotations"] = {ANN_ENDPOINTS_OF: app}
    else:
        spec["selector"] = {"app": app}
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": spec}


@dataclass(frozen=True)
class Method:
    """One way of upgrading; ``app`` names its workload, pod label and Service."""

    name: str
    label: str
    app: str

    @property
    def service_paths(self) -> dict[str, str]:
        """Probe path -> the Service behind it. The A/B swap is probed through both kinds of
        Service: the one podkit recommends and the usual one, to show the difference."""
        if self.name == "abswap":
            return {"service": self.app, "service-pod-ready": f"{self.app}-pod-ready"}
        return {"service": self.app}

    def services(self, namespace: str) -> list[dict[str, Any]]:
        return [service(name, namespace, self.app,
                        podkit_endpoints=(self.name == "abswap" and path == "service"))
                for path, name in self.service_paths.items()]

    @property
    def pod(self) -> str:
        return f"{self.app}-0" if self.name != "inplace" else self.app

    def workload(self, namespace: str, images: Tags) -> dict[str, Any]:
        meta = {"name": self.app, "namespace": namespace}
        if self.name == "abswap":
            return {"apiVersion": f"{keys.GROUP}/{keys.VERSION}",
                    "kind": keys.KIND, "metadata": meta,
                    "spec": {"replicas": 1, "selector": {"matchLabels": {"app": self.app}},
                             "template": {"metadata": _labels(self.app), "spec": {
                                 "terminationGracePeriodSeconds": GRACE_S,
                                 "containers": [_demo_container(BUSINESS, images.demo_v1, False)]}},
                             "podkit": {"pauseImage": images.pause,
                                        "sidecarImage": images.sidecar},
                             "updateStrategy": {"type": "ABSwap"}}}
        if self.name == "inplace":
            return {"apiVersion": "v1", "kind": "Pod",
                    "metadata": {**meta, **_labels(self.app)},
                    "spec": _own_dir_spec(images.demo_v1)}
        return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": meta,
                "spec": {"replicas": 1, "serviceName": self.app,
                         "selector": {"matchLabels": {"app": self.app}},
                         "updateStrategy": {"type": "RollingUpdate"},
                         "template": {"metadata": _labels(self.app),
                                      "spec": _own_dir_spec(images.demo_v1)}}}

    def upgrade(self, kube: Kube, namespace: str, image: str) -> None:
        """Start the upgrade to ``image``, as a user would."""
        if self.name == "abswap":
            kind, path = keys.PLURAL, "/spec/template/spec/containers/0/image"
        elif self.name == "inplace":
            kind, path = "pod", "/spec/containers/0/image"
        else:
            kind, path = "statefulset", "/spec/template/spec/containers/0/image"
        kube.patch(kind, self.app, [{"op": "replace", "path": path, "value": image}],
                   namespace)

    def settled_at(self, kube: Kube, namespace: str, image: str) -> bool:
        """True once the workload reports the upgrade to ``image`` done and its pod Ready."""
        pod = _ready_pod(kube, namespace, self.pod)
        if pod is None:
            return False
        if self.name == "abswap":
            status = kube.get(keys.PLURAL, self.app, namespace).get("status") or {}
            return (serving_image(pod, BUSINESS) == image
                    and (status.get("batchDeployStatus") or {}).get("generalStatus")
                    == "Completed")
        running = [s for s in pod["status"].get("containerStatuses") or []
                   if s["name"] == BUSINESS and "running" in s.get("state", {})]
        return bool(running) and same_image(running[0]["image"], image)


METHODS = (
    Method("abswap", "StatefulSetPlus, A/B swap (podkit)", "ab"),
    Method("inplace", "Pod, in-place image update (kubelet restart)", "inplace"),
    Method("rolling", "StatefulSet, RollingUpdate (pod recreated)", "rolling"),
)


def method_named(name: str) -> Method:
    for method in METHODS:
        if method.name == name:
            return method
    raise ValueError(f"unknown method {name!r}: use one of "
                     f"{', '.join(m.name for m in METHODS)}")


def _ready_pod(kube: Kube, namespace: str, name: str) -> dict[str, Any] | None:
    """Pod ``name`` while it is Ready and not being deleted, else None."""
    found = json.loads(kube.run("get", "pods", "-n", namespace, "--field-selector",
                                f"metadata.name={name}", "-o", "json"))["items"]
    if not found or not pod_ready(found[0]) or found[0]["metadata"].get("deletionTimestamp"):
        return None
    return found[0]


def pod_ip(kube: Kube, namespace: str, method: Method) -> str | None:
    """The IP of the method's pod while it is Ready and not being deleted."""
    pod = _ready_pod(kube, namespace, method.pod)
    return pod["status"].get("podIP") if pod is not None else None


def cluster_ip(kube: Kube, namespace: str, service_name: str) -> str:
    return kube.get("service", service_name, namespace)["spec"]["clusterIP"]
