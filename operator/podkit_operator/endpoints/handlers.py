"""kopf wiring of :mod:`.slices`: Services whose endpoints podkit keeps.

In-memory indexes (kopf keeps them current from its watches) hold what a slice needs: the
annotated Services (by name, and by the StatefulSetPlus they front), the pods and the specs of
each StatefulSetPlus. An event of any of them wakes the writer of each Service concerned: one
task per Service (a :class:`~podkit_operator.context.SliceWriter`, in the shared context),
which derives the slices from the newest state and writes only those that changed. Events
that arrive while it writes coalesce into one more pass, so writes of one Service never
overlap and never land out of order. At its start a writer lists the Service's podkit slices,
so an operator restart adopts them (no rewrite) and deletes those no pod needs any more (a
shrink while no operator ran); a Service deleted, unannotated or given a selector loses them.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from typing import Any

import kopf

from ..api.keys import ANN_ENDPOINTS_OF, GROUP, LABEL_STSP, PLURAL, VERSION
from ..context import Key, OperatorContext, SliceWriter, context_of, namespace_of
from ..kube.client import API_ERRORS, describe
from .slices import PodsOf, as_written, members, slices

RETRY_S = 2.0  # after a write the apiserver refused or that timed out
log = logging.getLogger(__name__)


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
def podkit_services(namespace: str | None, name: str, annotations: kopf.Annotations,
                    body: kopf.Body, **_: Any) -> dict[Key, dict[str, Any]]:
    return {(namespace_of(namespace), name): {
        "metadata": {k: body["metadata"].get(k) for k in ("name", "namespace", "uid")},
        "spec": {"ports": copy.deepcopy(body["spec"].get("ports") or []),
                 "selector": body["spec"].get("selector")},
        "stsp": annotations[ANN_ENDPOINTS_OF]}}


@kopf.index("", "v1", "services", annotations={ANN_ENDPOINTS_OF: kopf.PRESENT})
def services_of_stsp(namespace: str | None, name: str, annotations: kopf.Annotations,
                     **_: Any) -> dict[Key, str]:
    return {(namespace_of(namespace), annotations[ANN_ENDPOINTS_OF]): name}


@kopf.index("", "v1", "pods", labels={LABEL_STSP: kopf.PRESENT})
def stsp_pods(namespace: str | None, labels: kopf.Labels, body: kopf.Body,
              **_: Any) -> dict[Key, dict[str, Any]]:
    return {(namespace_of(namespace), labels[LABEL_STSP]): _trimmed_pod(body)}


@kopf.index(GROUP, VERSION, PLURAL)
def stsp_specs(namespace: str | None, name: str, spec: kopf.Spec,
               **_: Any) -> dict[Key, PodsOf]:
    return {(namespace_of(namespace), name): PodsOf.read(copy.deepcopy(dict(spec)))}


def _first(index: kopf.Index[Key, Any], key: Key) -> Any:
    return next(iter(index.get(key, [])), None)


async def _sync(context: OperatorContext, key: Key, writer: SliceWriter,
                indexes: dict[str, Any]) -> bool:
    """One pass for Service ``key``; True once the Service is no longer podkit's."""
    io, (namespace, name) = context.io, key
    service = _first(indexes["podkit_services"], key)
    selected = service is not None and bool(service["spec"].get("selector"))
    if writer.slices is None:
        if selected:
            log.warning("Service %s/%s has a selector, so Kubernetes keeps its endpoints; "
                        "remove the selector or the %s annotation", namespace, name,
                        ANN_ENDPOINTS_OF)
        listed = await asyncio.to_thread(io.list_endpoint_slices, namespace, name)
        writer.slices = {b["metadata"]["name"]: as_written(b) for b in listed}
    if service is None or selected:
        wanted: dict[str, dict[str, Any]] = {}
    else:
        stsp = (namespace, service["stsp"])
        pods = list(indexes["stsp_pods"].get(stsp, []))
        spec = _first(indexes["stsp_specs"], stsp) or PodsOf.read(None)
        wanted = slices(service, spec, pods,
                        {n: members(b) for n, b in writer.slices.items()})
    for slice_name, body in wanted.items():
        if writer.slices.get(slice_name) != body:
            await asyncio.to_thread(io.put_endpoint_slice, body)
            writer.slices[slice_name] = body
    for slice_name in [n for n in writer.slices if n not in wanted]:
        await asyncio.to_thread(io.delete_endpoint_slice, namespace, slice_name)
        del writer.slices[slice_name]
    return service is None


async def _write_loop(context: OperatorContext, key: Key, writer: SliceWriter,
                      indexes: dict[str, Any]) -> None:
    while True:
        await writer.wake.wait()
        writer.wake.clear()
        try:
            if await _sync(context, key, writer, indexes):
                break
        except API_ERRORS as exc:
            log.warning("EndpointSlices of Service %s/%s: %s; retrying", *key, describe(exc))
            writer.slices = None  # list again: a failed write leaves the state unknown
            await asyncio.sleep(RETRY_S)
            writer.wake.set()
    context.slice_writers.pop(key, None)


def _wake(memo: kopf.Memo, key: Key, indexes: dict[str, Any]) -> None:
    """Wake the writer of Service ``key``, starting it if none runs."""
    context = context_of(memo)
    writer = context.slice_writers.get(key)
    if writer is None or writer.task is None or writer.task.done():
        writer = context.slice_writers[key] = SliceWriter()
        writer.task = asyncio.create_task(_write_loop(context, key, writer, indexes),
                                          name=f"endpointslices {key[0]}/{key[1]}")
    writer.wake.set()


@kopf.on.event("", "v1", "services")
async def service_changed(namespace: str | None, name: str, annotations: kopf.Annotations,
                          memo: kopf.Memo, **indexes: Any) -> None:
    """Any Service: an annotated one is synced; one whose writer runs but that lost the
    annotation (or was deleted) has its slices removed by that writer."""
    key = (namespace_of(namespace), name)
    if ANN_ENDPOINTS_OF in annotations or key in context_of(memo).slice_writers:
        _wake(memo, key, indexes)


def _wake_services_of(memo: kopf.Memo, key: Key, indexes: dict[str, Any]) -> None:
    for service in indexes["services_of_stsp"].get(key, []):
        _wake(memo, (key[0], service), indexes)


@kopf.on.event("", "v1", "pods", labels={LABEL_STSP: kopf.PRESENT})
async def stsp_pod_serving_changed(namespace: str | None, labels: kopf.Labels,
                                   memo: kopf.Memo, **indexes: Any) -> None:
    _wake_services_of(memo, (namespace_of(namespace), labels[LABEL_STSP]), indexes)


@kopf.on.event(GROUP, VERSION, PLURAL)
async def stsp_spec_changed(namespace: str | None, name: str, memo: kopf.Memo,
                            **indexes: Any) -> None:
    _wake_services_of(memo, (namespace_of(namespace), name), indexes)
