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
``<service>-podkit-<n>``, labelled as kube-proxy expects, and owned by the Service. Membership
is stable (:func:`place`): a pod keeps the slice that holds it, so one pod's change rewrites one
slice, never a re-sort of them all.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..api.keys import ENDPOINTS_MANAGER
from ..api.statefulsetplus import DEFAULT_PAUSE_IMAGE
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
    named = {p["name"]: p["containerPort"]
             for c in (template.get("spec") or {}).get("containers") or []
             for p in c.get("ports") or [] if p.get("name") and "containerPort" in p}
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


@dataclass(frozen=True)
class PodsOf:
    """What the slices read from the StatefulSetPlus's spec: the template (for named target
    ports), the business container (its slots) and the pause image."""

    template: dict[str, Any]
    business: str
    pause_image: str

    @classmethod
    def read(cls, spec: Mapping[str, Any] | None) -> PodsOf:
        """Read leniently, never failing: a spec the release loop rejects (it says why in an
        event) must not freeze the endpoints of the pods that run. A missing part reads as
        nothing: no named ports, no slots (the pods then serve while Ready)."""
        spec = spec or {}
        found = spec.get("template")
        template: dict[str, Any] = found if isinstance(found, dict) else {}
        containers = (template.get("spec") or {}).get("containers") or [{}]
        business = containers[0].get("name") if isinstance(containers[0], dict) else None
        pause = (spec.get("podkit") or {}).get("pauseImage") or DEFAULT_PAUSE_IMAGE
        return cls(template=template, business=business or "", pause_image=pause)


def _natural(name: str) -> tuple[int, str]:
    """Pod names of one StatefulSetPlus in ordinal order (``web-9`` before ``web-10``)."""
    return len(name), name


def place(current: Mapping[str, Sequence[str]], wanted: Iterable[str], prefix: str,
          limit: int = MAX_PER_SLICE) -> dict[str, list[str]]:
    """Slice name -> its pods (in ordinal order), given the slices as they are.

    A wanted pod stays in the slice that holds it; pods no longer wanted leave theirs. New
    pods go first into slices that change anyway, then into the fullest with room, then into
    new slices (``<prefix><n>``, the lowest free n). Slices left empty go, except one: a
    Service always has a slice, maybe empty. Nothing is rebalanced, so no pod moves because
    another changed (upstream's EndpointSlice controller does the same).
    """
    wanted = set(wanted)
    kept: dict[str, list[str]] = {}
    seen: set[str] = set()
    for name in sorted(current, key=_natural):
        mine = [p for p in current[name] if p in wanted and p not in seen][:limit]
        seen.update(mine)
        kept[name] = mine
    new = sorted(wanted - seen, key=_natural)
    changed = {n for n in kept if kept[n] != list(current[n])}
    for name in sorted(kept, key=lambda n: (n not in changed, -len(kept[n]), _natural(n))):
        room = limit - len(kept[name])
        kept[name] += new[:room]
        new = new[room:]
    n = 0
    while new:
        while f"{prefix}{n}" in kept:
            n += 1
        kept[f"{prefix}{n}"], new = new[:limit], new[limit:]
    placed = {name: sorted(pods, key=_natural) for name, pods in kept.items() if pods}
    if not placed:
        placed = {min(kept, key=_natural) if kept else f"{prefix}0": []}
    return placed


def members(body: Mapping[str, Any]) -> list[str]:
    """The pods a slice holds (by ``targetRef``)."""
    return [e["targetRef"]["name"] for e in body.get("endpoints") or []
            if (e.get("targetRef") or {}).get("name")]


def as_written(listed: Mapping[str, Any]) -> dict[str, Any]:
    """A slice read from the API reduced to the fields podkit writes, so it compares equal to
    the body podkit would write for the same endpoints (and a restart rewrites nothing)."""
    meta = listed["metadata"]
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {k: meta[k] for k in ("name", "namespace", "labels", "ownerReferences")
                         if k in meta},
            "addressType": listed.get("addressType"),
            "ports": listed.get("ports") or [],
            "endpoints": listed.get("endpoints") or []}


def slices(service: dict[str, Any], spec: PodsOf, pods: list[dict[str, Any]],
           current: Mapping[str, Sequence[str]] | None = None) -> dict[str, dict[str, Any]]:
    """The EndpointSlices the Service should have, by name (at least one, maybe empty), with
    the membership of ``current`` (slice name -> pods) kept as :func:`place` says."""
    meta = service["metadata"]
    found = {pod["metadata"]["name"]: e for pod in pods
             if (e := endpoint(pod, spec.business, spec.pause_image)) is not None}
    placed = place(current or {}, found, f"{meta['name']}-podkit-")
    owner = {"apiVersion": "v1", "kind": "Service", "name": meta["name"], "uid": meta["uid"],
             "controller": True}
    ports = slice_ports(service, spec.template)
    return {name: {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": meta["namespace"],
                     "labels": {LABEL_SERVICE: meta["name"], LABEL_MANAGED_BY: ENDPOINTS_MANAGER},
                     "ownerReferences": [owner]},
        "addressType": "IPv4",
        "ports": ports,
        "endpoints": [found[p] for p in chunk],
    } for name, chunk in placed.items()}
