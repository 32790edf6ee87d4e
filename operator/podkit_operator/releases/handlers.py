"""Writing a release plan back to the API, and the metrics its events count."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import kopf

from ..api.keys import ANN_STARTED
from ..api.reasons import EventReason
from ..context import OperatorContext
from ..kube.objects import annotations_of, parse_time
from . import metrics
from .actions import Plan
from .status import status_patch


def apply_plan(context: OperatorContext, stsp: dict[str, Any], plan: Plan) -> None:
    """Write what the planner decided: annotations and status first, then the pods, then the
    events.

    The status describes the pods as this pass read them and the batch position it decided,
    nothing its own pod writes do, so it goes first: a pass that starts a batch of 2,000 pods
    held the status back for all their writes (the 10,000-pod bench: the status counted a
    finished batch 18-27 s late). Written before a pod write that then fails, it says no more
    than the pods as read; the next pass writes them again, as after any lost write."""
    io, writers = context.io, context.writers
    namespace, name = stsp["metadata"]["namespace"], stsp["metadata"]["name"]
    if plan.stsp_annotations:
        io.patch_stsp_annotations(namespace, name, plan.stsp_annotations)
    if plan.status != (stsp.get("status") or {}):  # fields it no longer has are removed
        io.patch_status(namespace, name, status_patch(stsp.get("status") or {}, plan.status))
    writes = [writers.submit(io.create_pod, namespace, c.body) for c in plan.create]
    writes += [writers.submit(io.delete_pod, namespace, d.name) for d in plan.delete]
    writes += [writers.submit(io.patch_pod, namespace, p.name, p.patch) for p in plan.patches]
    writes += [writers.submit(io.resize_pod, namespace, r.name, r.patch) for r in plan.resizes]
    for write in writes:
        write.result()  # an error fails this pass; the next one retries from the API
    for event in plan.events:
        about = f"{event.pod}: " if event.pod and not event.message.startswith(event.pod) else ""
        kopf.event(stsp,  # type: ignore[arg-type]  # kopf reads the raw object as its Body
                   type=event.type, reason=event.reason, message=about + event.message)


def count_events(plan: Plan, pods: list[dict[str, Any]]) -> None:
    """Metrics follow the planner's events, each of which names a finished step."""
    started = {p["metadata"]["name"]: parse_time(annotations_of(p).get(ANN_STARTED)) for p in pods}
    now = datetime.now(UTC)
    for event in plan.events:
        if event.reason == EventReason.UPDATE_COMPLETED:
            metrics.SWAPS.labels(result="done").inc()
            if (since := started.get(event.pod or "")) is not None:
                metrics.SWAP_SECONDS.observe((now - since).total_seconds())
        elif event.reason == EventReason.UPDATE_FAILED:
            metrics.SWAPS.labels(result="failed").inc()
        elif event.reason == EventReason.BATCH_COMPLETED:
            metrics.BATCHES.labels(result="done").inc()
        elif event.reason == EventReason.BATCH_FAILED:
            metrics.BATCHES.labels(result="failed").inc()
