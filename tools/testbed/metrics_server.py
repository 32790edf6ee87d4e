"""metrics-server as a process of the full testbed: the resource-metrics API
(``v1beta1.metrics.k8s.io``) that ``kubectl top`` and HorizontalPodAutoscalers read.

It comes from ``tools/testbed/metrics_server/build.sh`` (v0.8.0 from the Go module proxy), which
also caches upstream's ``rbac.yaml`` and ``apiservice.yaml``; :func:`api_objects` adapts them to
a process on the host instead of a Deployment:

- its identity is a client certificate of the testbed's PKI (user :data:`USER`), so upstream's
  bindings name that user instead of the ServiceAccount ``kube-system/metrics-server``; the roles
  are upstream's (``system:metrics-server``: nodes/metrics, pods and nodes; the
  ``auth-delegator`` and ``extension-apiserver-authentication-reader`` bindings;
  ``system:aggregated-metrics-reader`` aggregated to view/edit/admin);
- the Service ``kube-system/metrics-server`` has no selector: an EndpointSlice points it at the
  node's address, where the process listens; the apiserver routes to that endpoint directly
  (``--enable-aggregator-routing``) and authenticates as the front proxy (its
  ``--proxy-client-*`` certificate);
- the APIService checks the serving certificate against the testbed's CA (upstream skips
  the check: its certificate is self-signed), issued for ``metrics-server.kube-system.svc``,
  the name the aggregator verifies;
- the kubelet's serving certificate is checked against the same CA
  (``--kubelet-certificate-authority``, no ``--kubelet-insecure-tls``).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import yaml

from testbed.errors import TestbedError
from testbed.kube import Kube
from testbed.kubebin import run_build_script
from testbed.repo import REPO

BUILD_SH = REPO / "tools" / "testbed" / "metrics_server" / "build.sh"
NAME = "metrics-server"  # the process, and upstream's Service name in kube-system
NAMESPACE = "kube-system"
USER = "podkit-metrics-server"  # the CN of its client certificate
SERVING_NAME = f"{NAME}.{NAMESPACE}.svc"  # what the aggregator checks the serving cert for
API_SERVICE = "v1beta1.metrics.k8s.io"
# The shortest resolution metrics-server accepts (10s); a scrape must then take less than
# 9/10 of it, so the kubelet request timeout comes down from its 10s default.
METRIC_RESOLUTION = "10s"
KUBELET_REQUEST_TIMEOUT = "5s"


def entry_dir() -> Path:
    """Run build.sh (a no-op when cached) and return its cache entry (bin/, manifests/)."""
    entry = run_build_script(BUILD_SH, "metrics-server build").parent
    if not (entry / "bin" / NAME).exists():
        raise TestbedError(f"metrics-server build: {entry}/bin lacks {NAME}")
    return entry


def _documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _as_user(binding: dict[str, Any]) -> dict[str, Any]:
    """Upstream's binding with its ServiceAccount subject replaced by :data:`USER`."""
    subjects = binding.get("subjects") or []
    if [(s.get("kind"), s.get("name")) for s in subjects] != [("ServiceAccount", NAME)]:
        raise TestbedError(f"metrics-server manifests: binding {binding['metadata']['name']} "
                           f"has subjects {subjects}, not upstream's ServiceAccount {NAME}")
    return {**binding, "subjects": [{"kind": "User", "name": USER,
                                     "apiGroup": "rbac.authorization.k8s.io"}]}


def rbac(entry: Path) -> list[dict[str, Any]]:
    """Upstream's roles and bindings, bound to :data:`USER`; without the ServiceAccount."""
    out = []
    for doc in _documents(entry / "manifests" / "rbac.yaml"):
        if doc["kind"] == "ServiceAccount":
            continue
        out.append(_as_user(doc) if doc["kind"].endswith("Binding") else doc)
    return out


def routing(node_ip: str, port: int) -> list[dict[str, Any]]:
    """The Service upstream's APIService names, without a selector, and an EndpointSlice
    that sends it to the process on the node."""
    service = {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": NAME, "namespace": NAMESPACE},
        "spec": {"ports": [{"name": "https", "port": 443, "protocol": "TCP",
                            "targetPort": port, "appProtocol": "https"}]},
    }
    endpoints = {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": f"{NAME}-host", "namespace": NAMESPACE,
                     "labels": {"kubernetes.io/service-name": NAME,
                                "endpointslice.kubernetes.io/managed-by": "podkit-testbed"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [node_ip], "conditions": {"ready": True}}],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    }
    return [service, endpoints]


def api_service(entry: Path, ca: Path) -> dict[str, Any]:
    """Upstream's APIService, verifying the serving certificate against ``ca``."""
    (doc,) = _documents(entry / "manifests" / "apiservice.yaml")
    spec = {k: v for k, v in doc["spec"].items() if k != "insecureSkipTLSVerify"}
    spec["caBundle"] = base64.b64encode(ca.read_bytes()).decode()
    if doc["metadata"]["name"] != API_SERVICE or spec["service"] != {"name": NAME,
                                                                     "namespace": NAMESPACE}:
        raise TestbedError(f"metrics-server manifests: unexpected APIService {doc}")
    return {**doc, "spec": spec}


def as_list(objs: list[dict[str, Any]]) -> dict[str, Any]:
    """Objects as one ``List``: one ``kubectl apply`` for them all."""
    return {"apiVersion": "v1", "kind": "List", "items": objs}


def api_available(kube: Kube) -> bool:
    """The aggregator reached the process: the APIService's Available condition is True."""
    conds = kube.get("apiservice", API_SERVICE).get("status", {}).get("conditions") or []
    return any(c["type"] == "Available" and c["status"] == "True" for c in conds)


def node_metrics(kube: Kube, node: str) -> dict[str, Any]:
    """The node's entry of the metrics API (raises KubectlError while there is none)."""
    result: dict[str, Any] = json.loads(
        kube.run("get", "--raw", f"/apis/metrics.k8s.io/v1beta1/nodes/{node}"))
    return result
