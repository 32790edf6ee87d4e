"""The promises a release keeps under any faults, checked on what the observer saw.

Each check returns the violations it found, as readable lines; an empty list is a pass.
Pure: the observations and the scenario in, findings out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from .observe import PodSeen, Seen
from .scenario import V1, Scenario


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


def ending(final: Seen) -> tuple[str | None, dict[str, str]]:
    """The release's ``generalStatus`` and its conditions' statuses, by type."""
    general = (final.status.get("batchDeployStatus") or {}).get("generalStatus")
    conditions = {c.get("type"): c.get("status") for c in final.status.get("conditions") or []}
    return general, conditions


def failed(final: Seen) -> bool:
    """The release ended Failed with condition ReleaseFailed True."""
    general, conditions = ending(final)
    return general == "Failed" and conditions.get("ReleaseFailed") == "True"


def converged(scenario: Scenario, seen: Sequence[Seen], final: Seen) -> list[str]:
    """At the end every pod exists once, ready, and serves what the end calls for: the final
    image with the release's env; after a bad version, v1. A good release that failed (a
    lost node may fail a batch: its pods can change no more, and ``maxFailedPercent`` is 0)
    leaves the batches before the failed one at the release and the rest at v1: the pods at
    the release are the highest ordinals."""
    live = sorted((p for p in final.pods if not p.terminating), key=lambda p: p.ordinal)
    out = []
    ordinals = [p.ordinal for p in live]
    if ordinals != list(range(scenario.final_replicas)):
        out.append(f"pods {ordinals}, expected 0..{scenario.final_replicas - 1}")
    out += [f"{p.name} is not ready" for p in live if not p.ready]
    if scenario.may_fail and failed(final):
        at_v1 = [p.ordinal for p in live if p.serving == V1 and not any(
            p.env.get(k) == v for k, v in scenario.release_env.items())]
        others = [p for p in live if p.ordinal not in at_v1 and not _serves_release(p, scenario)]
        out += [f"{p.name} serves {p.serving} with env {p.env}, neither v1 nor the release"
                for p in others]
        if at_v1 and at_v1 != list(range(len(at_v1))):
            out.append(f"after the failed release v1 is at ordinals {at_v1}, not the lowest")
        return out
    for pod in live:
        if pod.serving != scenario.final_image:
            out.append(f"{pod.name} serves {pod.serving}, expected {scenario.final_image}")
        missing = {k: v for k, v in scenario.release_env.items() if pod.env.get(k) != v}
        if missing:
            out.append(f"{pod.name} lacks env {missing}")
    return out


def ended_with_a_reason(scenario: Scenario, seen: Sequence[Seen], final: Seen) -> list[str]:
    """A good release ends Completed, a bad one Failed with ReleaseFailed True; a good one
    may end Failed too when a node was lost (see :func:`converged`)."""
    general, conditions = ending(final)
    if scenario.bad:
        return [] if failed(final) else [f"a bad version ended {general}, conditions "
                                         f"{conditions}"]
    if general == "Completed" or (scenario.may_fail and failed(final)):
        return []
    return [f"the release ended {general}, conditions {conditions}"]


def counted_only_what_runs(scenario: Scenario, seen: Sequence[Seen], final: Seen) -> list[str]:
    """``updatedReplicas`` never counts a pod that has not served the release (its image and
    its env, ready, as the node reports): at each look it is at most the pods seen serving it
    at this look or an earlier one that were there at this look or the one before (the
    status is read before the pods, and pods the operator moves back after writing the
    status, or deletes, were counted rightly). A pod counted updated has served for
    ``minReadySeconds``, so looks 0.3 s apart see it. The first look is taken before the
    release starts: looks whose status still names its update revision describe the release
    before. Not checked for a rollback or a scale, whose target moves."""
    if scenario.kind in ("rollback", "scale") or not seen:
        return []
    before = seen[0].status.get("updateRevision")
    served: set[str] = set()
    previous: set[str] = set()
    for look in seen:
        present = {p.uid for p in look.pods}
        served |= {p.uid for p in look.pods if at_release(p, scenario)}
        there, previous = present | previous, present
        if look.status.get("updateRevision") == before:
            continue
        updated = look.status.get("updatedReplicas") or 0
        serving = len(served & there)
        if updated > serving:
            return [f"at {look.at_s:.1f} s updatedReplicas {updated} but {serving} pod(s) "
                    f"served the release"]  # one line per run is enough to find it again
    return []


def _serves_release(pod: PodSeen, scenario: Scenario) -> bool:
    return pod.serving == scenario.target_image and all(
        pod.env.get(k) == v for k, v in scenario.release_env.items())


def at_release(pod: PodSeen, scenario: Scenario) -> bool:
    """The pod serves the release, ready: its image and its env, as the node reports."""
    return pod.ready and _serves_release(pod, scenario)


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
