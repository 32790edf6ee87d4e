"""One A/B swap of one pod, step by step, from the pod as a watch saw it (``make bench-swap``).

A swap is a chain of milestones, each the first moment after the one before at which the pod
(spec and status, as the apiserver returned it to a watch) shows it; the time between two is
who worked then: the operator (a patch after what it waited for), the kubelet (a container
stopped and started, a readiness probe's next tick, the status written back), the service (its
boot, its hand-over). Pure: it reads the recorded events, and calls nothing.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from podkit_operator.api.keys import ANN_ACTIVE_SLOT, ANN_TARGET
from podkit_operator.images import same_image
from podkit_operator.inplace.pods import slot_names
from podkit_operator.inplace.steps import running_ready, runs_spec
from podkit_operator.kube.objects import annotations_of, container_spec, container_status, pod_ready

Seen = tuple[float, dict[str, Any]]  # (monotonic seconds, the pod)


@dataclass(frozen=True)
class Slots:
    """The slots of one swap: ``new`` (idle before it, gets the target) and ``old`` (serving
    before it, gets the pause image)."""

    new: str
    old: str


@dataclass(frozen=True)
class Milestone:
    name: str
    who: str  # who worked between the milestone before and this one
    what: str  # what the pod shows at this milestone
    reached: Callable[[dict[str, Any], Slots, str, str], bool]  # (pod, slots, target, pause)


def _running(pod: dict[str, Any], slot: str, image: str) -> bool:
    status = container_status(pod, slot)
    return (same_image(container_spec(pod, slot).get("image"), image)
            and runs_spec(pod, slot) and "running" in (status.get("state") or {}))


MILESTONES = (
    Milestone("new_slot_patched", "operator", "the idle slot's spec names the target image",
              lambda pod, s, target, _: same_image(container_spec(pod, s.new).get("image"),
                                                   target)),
    Milestone("new_slot_running", "kubelet", "the idle slot runs the target (pause stopped, the "
              "new container started)", lambda pod, s, target, _: _running(pod, s.new, target)),
    Milestone("new_slot_ready", "service+kubelet", "the new slot ready: it stands by (its boot, "
              "the probe's next tick)",
              lambda pod, s, target, _: _running(pod, s.new, target)
              and running_ready(pod, s.new)),
    Milestone("old_slot_patched", "operator", "the serving slot's spec names the pause image",
              lambda pod, s, _, pause: same_image(container_spec(pod, s.old).get("image"),
                                                  pause)),
    Milestone("old_slot_paused", "service+kubelet", "the old slot runs pause (the old version "
              "handed over and exited, pause started)",
              lambda pod, s, _, pause: _running(pod, s.old, pause)),
    Milestone("pod_ready", "kubelet", "both slots ready and the pod Ready (the pause slot's "
              "probe)", lambda pod, s, _, pause: _running(pod, s.old, pause)
              and running_ready(pod, s.old) and pod_ready(pod)),
    Milestone("recorded", "soak+operator", "the pod recorded at the target: the soak "
              "(minReadySeconds, 10 s by default), then the operator's patch",
              lambda pod, *_: ANN_TARGET not in annotations_of(pod)),
)


def slots_before(pod: dict[str, Any], business: str) -> Slots:
    """Which slot serves the pod before a swap (the active-slot annotation, else ``a``)."""
    a, b = slot_names(business)
    active = annotations_of(pod).get(ANN_ACTIVE_SLOT) or "a"
    return Slots(new=a, old=b) if active == "b" else Slots(new=b, old=a)


def milestones(seen: Sequence[Seen], started: float, business: str, target: str,
               pause: str) -> dict[str, float | None]:
    """Seconds from ``started`` (the template edit) to each milestone of the swap to
    ``target``; None for one not reached (nor any after it). ``seen``: the pod's watch
    events in order; the last one before ``started`` tells the slots."""
    before = [pod for at, pod in seen if at < started]
    if not before:
        raise ValueError("no event of the pod before the swap started: the slots are unknown")
    slots = slots_before(before[-1], business)
    after = [(at, pod) for at, pod in seen if at >= started]
    out: dict[str, float | None] = {}
    i = 0
    for m in MILESTONES:
        while i < len(after) and not m.reached(after[i][1], slots, target, pause):
            i += 1
        if i == len(after):
            out.update({later.name: None for later in MILESTONES if later.name not in out})
            break
        out[m.name] = round(after[i][0] - started, 3)
    return out


def step_figures(runs: Sequence[dict[str, float | None]]) -> list[dict[str, Any]]:
    """Per milestone, the time since the milestone before (from the edit, for the first):
    median and max over the swaps that reached it, and who worked then."""
    rows = []
    previous: str | None = None
    for m in MILESTONES:
        spans = []
        for run in runs:
            end, begin = run.get(m.name), run.get(previous) if previous else 0.0
            if end is not None and begin is not None:
                spans.append(end - begin)
        rows.append({"step": m.name, "who": m.who, "what": m.what, "swaps": len(spans),
                     "median_s": round(statistics.median(spans), 3) if spans else None,
                     "max_s": round(max(spans), 3) if spans else None})
        previous = m.name
    return rows
