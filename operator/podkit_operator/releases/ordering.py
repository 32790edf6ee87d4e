"""Which missing pods to create and which surplus pods to delete now: ``podManagementPolicy``.

The same meaning as a StatefulSet's (pkg/controller/statefulset in Kubernetes):

- ``Parallel``: every missing pod is created and every surplus pod deleted at once;
- ``OrderedReady``: a pod is created only once every pod of a lower ordinal exists and is
  available (Running, Ready, and Ready for ``minReadySeconds``), so pods appear one at a time in
  ordinal order; a surplus pod (an ordinal outside ``ordinals.start .. start + replicas - 1``)
  is deleted only when no surplus pod is terminating and every other pod is healthy (those in
  range available), the highest ordinal first, so scale-down goes one pod at a time and waits
  for each termination. The highest surplus pod may itself be unhealthy (upstream deletes its
  first unhealthy pod too).

Pure: pods as the API returned them, by ordinal.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..api.statefulsetplus import PodManagement
from ..kube.objects import available_at, pod_ready, terminating


@dataclass
class Ordered:
    """What may happen now: ordinals to create (ascending) and to delete (descending). A pod
    waited for that becomes available later wakes the loop by the status's requeue
    (:func:`.status.requeue_after`)."""

    create: list[int] = field(default_factory=list)
    delete: list[int] = field(default_factory=list)


def order_pods(policy: PodManagement, ordinals: range, pods: Mapping[int, dict[str, Any]],
               missing: Collection[int], now: datetime, min_ready_s: int) -> Ordered:
    """``missing``: the ordinals in range the round would create (absent pods);
    ``pods``: every pod of the object, terminating ones too."""
    surplus = sorted((o for o in pods if o not in ordinals), reverse=True)
    live_surplus = [o for o in surplus if not terminating(pods[o])]
    if policy is PodManagement.PARALLEL:
        return Ordered(sorted(missing), live_surplus)
    out = Ordered()
    blocked = False
    for ordinal in ordinals:  # the first pod that is missing or not available holds the rest
        pod = pods.get(ordinal)
        if pod is None:
            if ordinal in missing:
                out.create.append(ordinal)
            blocked = True
            break
        at = None if terminating(pod) else available_at(pod, min_ready_s)
        if at is None or at > now:
            blocked = True
            break
    if blocked or not live_surplus or len(live_surplus) < len(surplus):
        return out
    highest, others = live_surplus[0], live_surplus[1:]
    if all(pod_ready(pods[o]) for o in others):
        out.delete.append(highest)
    return out
