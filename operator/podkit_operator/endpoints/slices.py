"""EndpointSlices of a Service from the pods that *serve*, not from the pods that are Ready.

The kubelet reports a pod Ready only while every container is ready, so each A/B swap (two
slot containers restart) takes a pod out of its Services although one slot serves throughout:
measured on the testbed, a Service in front of one pod refused new connections for about 4 s
of a 5 s swap. A Service without a selector, annotated ``podkit.io/endpoints-of: <stsp>``,
gets its EndpointSlices from the operator instead, with this rule for a swap pod: it serves
while one of its slot containers runs a business image (not the pause image) and is ready
(its process is up and has initialised). During step 1 the old slot serves; during step 2 the
standby, which takes over within a millisecond of the old slot's exit, already counts. A pod of
the InPlace or Recreate strategy serves while it is Ready, as the upstream controller has it.

Slices hold at most ``MAX_PER_SLICE`` endpoints (the upstream controller's default), named
``<service>-podkit-<n>``, labelled as kube-proxy expects, and owned by the Service.
"""

from __future__ import annotations

from typing import Any

from ..api.keys import ENDPOINTS_MANAGER
from ..images import same_image
from ..inplace.pods import slot_names
from ..kube.objects import pod_ready, terminating

LABEL_SERVICE = "kubernetes.io/service-name"
LABEL_MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
MAX_PER_SLICE = 100


def _ready_statuses(pod: dict[str, Any]) -> dict[str, bool]:
    return {s["name"]: bool(s.get("ready"))
            for s in (pod.get("status") or {}).get("containerStatuses") or []}


def serves(pod: dict[str, Any], business: str, pause_image: str) -> bool:
    """The rule of the module docstring."""
    containers = {c["name"]: c for c in pod["spec"]["containers"]}
    slots = [s for s in slot_names(business) if s in containers]
    if len(slots) != 2:
        return pod_ready(pod)
    ready = _ready_statuses(pod)
    return any(ready.get(s) and not same_image(containers[s]["image"], pause_image)
               for s in slots)


def endpoint(pod: dict[str, Any], business: str, pause_image: str) -> dict[str, Any] | None:
    """The pod as an EndpointSlice endpoint, or None while it has no IP."""
    ip = (pod.get("status") or {}).get("podIP")
    if not ip:
        return None
    meta = pod["metadata"]
    going = terminating(pod)
    serving = serves(pod, business, pause_image)
    found: dict[str, Any] = {
        "addresses": [ip],
        "conditions": {"ready": serving and not going, "serving": serving,
                       "terminating": going},
        "targetRef": {"kind": "Pod", "namespace": meta.get("namespace"), "name": meta["name"],
                      "uid": meta.get("uid")},
    }
    if node := pod["spec"].get("nodeName"):
        found["nodeName"] = node
    return found


def slice_ports(service: dict[str, Any], template: dict[str, Any]) -> list[dict[str, Any]]:
    """The Service's ports with their target port resolved against the template's container
    ports (a named target port is looked up by name; none means the Service port)."""
    named = {p["name"]: p["containerPort"] for c in template["spec"]["containers"]
             for p in c.get("ports") or [] if p.get("name")}
    ports = []
    for port in service["spec"].get("ports") or []:
        target = port.get("targetPort", port["port"])
        if isinstance(target, str):
            if target not in named:
                continue  # as upstream: a port that names no container port gets no endpoint
            target = named[target]
        entry = {"port": target, "protocol": port.get("protocol", "TCP")}
        if port.get("name"):
            entry["name"] = port["name"]
        ports.append(entry)
    return ports


def slices(service: dict[str, Any], template: dict[str, Any], business: str, pause_image: str,
           pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The EndpointSlices the Service should have (at least one, maybe empty)."""
    meta = service["metadata"]
    found = [e for pod in sorted(pods, key=lambda p: p["metadata"]["name"])
             if (e := endpoint(pod, business, pause_image)) is not None]
    chunks = [found[i:i + MAX_PER_SLICE] for i in range(0, len(found), MAX_PER_SLICE)] or [[]]
    owner = {"apiVersion": "v1", "kind": "Service", "name": meta["name"], "uid": meta["uid"],
             "controller": True}
    ports = slice_ports(service, template)
    return [{
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": f"{meta['name']}-podkit-{n}", "namespace": meta["namespace"],
                     "labels": {LABEL_SERVICE: meta["name"], LABEL_MANAGED_BY: ENDPOINTS_MANAGER},
                     "ownerReferences": [owner]},
        "addressType": "IPv4",
        "ports": ports,
        "endpoints": chunk,
    } for n, chunk in enumerate(chunks)]
