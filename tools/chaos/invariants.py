"""The promises a release keeps under any faults, checked on what the observer saw.

Each check returns the violations it found, as readable lines; an empty list is a pass.
Pure: the observations and the scenario in, findings out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from .observe import PodSeen, Seen
from .scenario import Scenario


def first_batch(scenario: Scenario) -> set[int]:
    """The ordinals batch 1 may touch: the highest ones, an even split's first share."""
    size = math.ceil(scenario.replicas / scenario.batches)
    return set(range(scenario.replicas - size, scenario.replicas))


def bad_version_contained(scenario: Scenario, seen: Sequence[Seen], final: Seen) -> list[str]:
    """A bad version never reaches a pod beyond batch 1."""
    if not scenario.bad:
        return []
    allowed = first_batch(scenario)
    reached = sorted({p.ordinal for s in seen for p in s.pods
                      if scenario.target_image in p.images.values()
                      and p.ordinal not in allowed})
    return [f"the bad version reached ordinal(s) {reached} beyond batch 1 {sorted(allowed)}"
            ] if reached else []


def converged(scenario: Scenario, seen: Sequence[Seen], final: Seen) -> list[str]:
    """At the end every pod exists once, serves the final image, with the final env."""
    live = [p for p in final.pods if not p.terminating]
    out = []
    ordinals = sorted(p.ordinal for p in live)
    if ordinals != list(range(scenario.final_replicas)):
        out.append(f"pods {ordinals}, expected 0..{scenario.final_replicas - 1}")
    for pod in live:
        if pod.serving != scenario.final_image:
            out.append(f"{pod.name} serves {pod.serving}, expected {scenario.final_image}")
        missing = {k: v for k, v in scenario.release_env.items() if pod.env.get(k) != v}
        if missing:
            out.append(f"{pod.name} lacks env {missing}")
        if not pod.ready:
            out.append(f"{pod.name} is not ready")
    return out


def ended_with_a_reason(scenario: Scenario, seen: Sequence[Seen], final: Seen) -> list[str]:
    """The release ends Completed (a good one) or Failed with ReleaseFailed True (a bad one);
    a bad release that completes, or a good one that fails, is a violation too."""
    batch = final.status.get("batchDeployStatus") or {}
    general = batch.get("generalStatus")
    conditions = {c.get("type"): c.get("status") for c in final.status.get("conditions") or []}
    if scenario.bad:
        if general != "Failed" or conditions.get("ReleaseFailed") != "True":
            return [f"a bad version ended {general} with ReleaseFailed "
                    f"{conditions.get('ReleaseFailed')}"]
        return []
    if general != "Completed":
        return [f"the release ended {general}, conditions {conditions}"]
    return []


def counted_only_what_runs(scenario: Scenario, seen: Sequence[Seen], final: Seen) -> list[str]:
    """``updatedReplicas`` never exceeds the pods the node reports serving the release (its
    image, and its env): the status is read before the pods, so it cannot be ahead of them,
    unless pods went in between (a look with fewer pods than the status counts, or other pods
    than the look before, is skipped: the status may count the pods that went).
    The first look is taken before the release starts: looks whose status still names its
    update revision describe the release before. Not checked for a rollback or a scale,
    whose target moves."""
    if scenario.kind in ("rollback", "scale") or not seen:
        return []
    before = seen[0].status.get("updateRevision")
    uids: set[str] = set()
    for look in seen:
        live = [p for p in look.pods if not p.terminating]
        replaced, uids = bool(uids) and uids != {p.uid for p in live}, {p.uid for p in live}
        if look.status.get("updateRevision") == before:
            continue
        if replaced or len(live) < (look.status.get("replicas") or 0):
            continue
        updated = look.status.get("updatedReplicas") or 0
        serving = sum(1 for p in live if at_release(p, scenario))
        if updated > serving:
            return [f"at {look.at_s:.1f} s updatedReplicas {updated} but {serving} pod(s) "
                    f"serve the release"]  # one line per run is enough to find it again
    return []


def at_release(pod: PodSeen, scenario: Scenario) -> bool:
    """The pod serves the release, ready: its image and its env, as the node reports."""
    return (pod.serving == scenario.target_image and pod.ready
            and all(pod.env.get(k) == v for k, v in scenario.release_env.items()))


Check = Callable[[Scenario, Sequence[Seen], Seen], list[str]]
CHECKS: dict[str, Check] = {
    "bad-version-contained": bad_version_contained,
    "converged": converged,
    "ended-with-a-reason": ended_with_a_reason,
    "counted-only-what-runs": counted_only_what_runs,
}


def check(scenario: Scenario, seen: Sequence[Seen], final: Seen) -> dict[str, list[str]]:
    """Every invariant's violations (empty lists left out)."""
    found = {name: fn(scenario, seen, final) for name, fn in CHECKS.items()}
    return {name: lines for name, lines in found.items() if lines}
