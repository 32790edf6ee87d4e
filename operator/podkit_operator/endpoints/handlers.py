"""kopf wiring of :mod:`.slices`: Services whose endpoints podkit keeps.

Three in-memory indexes (kopf keeps them current from its watches) hold what a slice needs:
the annotated Services, the pods and the specs of each StatefulSetPlus. Any event of one of
them re-derives that StatefulSetPlus's slices and writes those that changed, one writer per
StatefulSetPlus at a time, so a slower write never overtakes a newer one.
"""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import kopf

from ..api.keys import ANN_ENDPOINTS_OF, GROUP, LABEL_STSP, PLURAL, VERSION
from ..api.statefulsetplus import SpecError, parse_spec
from ..context import Key, context_of, namespace_of
from .slices import LABEL_SERVICE, slices


def _trimmed_pod(body: kopf.Body) -> dict[str, Any]:
    """The fields a slice reads, copied: the index outlives the event's body."""
    meta, spec, status = body["metadata"], body.get("spec") or {}, body.get("status") or {}
    return {
        "metadata": {k: meta.get(k) for k in ("name", "namespace", "uid", "deletionTimestamp")},
        "spec": {"nodeName": spec.get("nodeName"),
                 "containers": [{"name": c["name"], "image": c.get("image")}
                                for c in spec.get("containers") or []]},
        "status": {"podIP": status.get("podIP"),
                   "conditions": copy.deepcopy(status.get("conditions") or []),
                   "containerStatuses": [{"name": s["name"], "ready": s.get("ready")}
                                         for s in status.get("containerStatuses") or []]},
    }


@kopf.index("", "v1", "services", annotations={ANN_ENDPOINTS_OF: kopf.PRESENT})
def podkit_services(namespace: str | None, annotations: kopf.Annotations, body: kopf.Body,
                    **_: Any) -> dict[Key, dict[str, Any]]:
    return {(namespace_of(namespace), annotations[ANN_ENDPOINTS_OF]): {
        "metadata": {k: body["metadata"].get(k) for k in ("name", "namespace", "uid")},
        "spec": {"ports": copy.deepcopy(body["spec"].get("ports") or []),
                 "selector": body["spec"].get("selector")}}}


@kopf.index("", "v1", "pods", labels={LABEL_STSP: kopf.PRESENT})
def stsp_pods(namespace: str | None, labels: kopf.Labels, body: kopf.Body,
              **_: Any) -> dict[Key, dict[str, Any]]:
    return {(namespace_of(namespace), labels[LABEL_STSP]): _trimmed_pod(body)}


@kopf.index(GROUP, VERSION, PLURAL)
def stsp_specs(namespace: str | None, name: str, spec: kopf.Spec,
               **_: Any) -> dict[Key, dict[str, Any]]:
    try:
        parsed = parse_spec(copy.deepcopy(dict(spec)))
    except SpecError:
        return {}  # the release loop reports it; no slices for a spec it cannot act on
    return {(namespace_of(namespace), name): {"template": parsed.template,
                                              "business": parsed.business,
                                              "pause_image": parsed.pause_image}}


async def _sync(memo: kopf.Memo, key: Key, podkit_services: kopf.Index,
                stsp_pods: kopf.Index, stsp_specs: kopf.Index,
                logger: kopf.Logger) -> None:
    services = list(podkit_services.get(key, []))
    specs = list(stsp_specs.get(key, []))
    if not services or not specs:
        return
    context = context_of(memo)
    async with context.endpoint_locks.setdefault(key, asyncio.Lock()):
        written, io = context.slices_written, context.io
        pods, spec = list(stsp_pods.get(key, [])), specs[0]
        for service in services:
            if service["spec"].get("selector"):
                logger.warning("Service %s/%s has a selector, so Kubernetes keeps its "
                               "endpoints; remove the selector or the %s annotation",
                               key[0], service["metadata"]["name"], ANN_ENDPOINTS_OF)
                continue
            wanted = slices(service, spec["template"], spec["business"], spec["pause_image"],
                            pods)
            for body in wanted:
                slice_key = (key[0], body["metadata"]["name"])
                if written.get(slice_key) != body:
                    await asyncio.to_thread(io.put_endpoint_slice, body)
                    written[slice_key] = body
            names = {b["metadata"]["name"] for b in wanted}
            svc = service["metadata"]["name"]
            stale = [(key[0], n) for (ns, n), b in written.items()
                     if ns == key[0] and b["metadata"]["labels"][LABEL_SERVICE] == svc
                     and n not in names]
            for ns, name in stale:
                await asyncio.to_thread(io.delete_endpoint_slice, ns, name)
                written.pop((ns, name), None)


@kopf.on.event("", "v1", "services", annotations={ANN_ENDPOINTS_OF: kopf.PRESENT})
async def podkit_service_changed(namespace: str | None, annotations: kopf.Annotations,
                                 memo: kopf.Memo, logger: kopf.Logger,
                                 **indexes: Any) -> None:
    await _sync(memo, (namespace_of(namespace), annotations[ANN_ENDPOINTS_OF]),
                indexes["podkit_services"], indexes["stsp_pods"], indexes["stsp_specs"], logger)


@kopf.on.event("", "v1", "pods", labels={LABEL_STSP: kopf.PRESENT})
async def stsp_pod_serving_changed(namespace: str | None, labels: kopf.Labels,
                                   memo: kopf.Memo, logger: kopf.Logger,
                                   **indexes: Any) -> None:
    await _sync(memo, (namespace_of(namespace), labels[LABEL_STSP]), indexes["podkit_services"],
                indexes["stsp_pods"], indexes["stsp_specs"], logger)


@kopf.on.event(GROUP, VERSION, PLURAL)
async def stsp_spec_changed(namespace: str | None, name: str, memo: kopf.Memo,
                            logger: kopf.Logger, **indexes: Any) -> None:
    await _sync(memo, (namespace_of(namespace), name), indexes["podkit_services"],
                indexes["stsp_pods"], indexes["stsp_specs"], logger)
