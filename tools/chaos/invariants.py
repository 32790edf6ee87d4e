"""The promises a release keeps under any faults, checked on what the observer saw.

Each check returns the violations it found, as readable lines; an empty list is a pass.
Pure: the observations and the scenario in, findings out.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import TypeVar

from .observe import PodSeen, Seen
from .records import Answer, Hit, Probed, StateRead
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
                      if carries_release(p, scenario) and p.ordinal not in allowed})
    return [f"the bad version reached ordinal(s) {reached} beyond batch 1 {sorted(allowed)}"
            ] if reached else []


def carries_release(pod: PodSeen, scenario: Scenario) -> bool:
    """A slot of the pod has the release in its spec: its image, or (a release of env only)
    its env."""
    if scenario.target_image != V1:
        return scenario.target_image in pod.images.values()
    return any(all(env.get(k) == v for k, v in scenario.release_env.items())
               for env in pod.envs.values())


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
    leaves the batches before the failed one at the release and the rest at v1: of the pods
    there since before the release, those at v1 are the lowest ordinals. A pod created
    during the release (its node lost) comes at the last good revision, v1, and is swapped
    only while the release goes on: one created after it failed stays at v1 at any ordinal
    (kwok seeds 14 and 15)."""
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
        before = {p.uid for p in seen[0].pods} if seen else {p.uid for p in live}
        kept = sorted(p.ordinal for p in live if p.uid in before)
        kept_v1 = [o for o in at_v1 if o in kept]
        if kept_v1 != kept[:len(kept_v1)]:
            out.append(f"after the failed release v1 is at ordinals {kept_v1} of the pods "
                       f"there before it {kept}, not the lowest")
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


STATUS_LAG_S = 2.0  # how long after a pod is gone a status counting it may still be read


def counted_only_what_runs(scenario: Scenario, seen: Sequence[Seen], final: Seen) -> list[str]:
    """``updatedReplicas`` never counts a pod that has not served the release (its image and
    its env, ready, as the node reports): at each look it is at most the pods seen serving it
    at this look or an earlier one that were there at some look of the last
    ``STATUS_LAG_S`` (a status is written after its pass read the pods, and is read before
    the pods at each look: one written while a pod existed may be read a pass after it went,
    kwok seed 54; pods the operator moves back after writing the status were counted
    rightly). A pod counted updated has served for ``minReadySeconds``, so looks 0.3 s apart
    see it. The first look is taken before the release starts, and the release is the one
    change of the spec: a status whose ``observedGeneration`` is below the first look's
    generation + 1 describes the spec before it, and counts the pods at v1 (kwok seed 16: a
    status written late for the settled v1, read after the release's patch). Not checked for
    a rollback or a scale, whose target moves."""
    if scenario.kind in ("rollback", "scale") or not seen:
        return []
    release = seen[0].generation + 1
    served: set[str] = set()
    last_seen: dict[str, float] = {}  # pod UID -> the last look it was there at
    for look in seen:
        last_seen |= {p.uid: look.at_s for p in look.pods}
        served |= {p.uid for p in look.pods if at_release(p, scenario)}
        if (look.status.get("observedGeneration") or 0) < release:
            continue
        there = {uid for uid, at_s in last_seen.items() if at_s >= look.at_s - STATUS_LAG_S}
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


def one_serving_process(scenario: Scenario, seen: Sequence[Seen], probed: Probed) -> list[str]:
    """Never two business processes active in a pod: the probe asks one request at a time,
    each on a new connection, so once another process has answered, a process that answered
    before never answers again (it stopped accepting before it released the lock, and its
    successor accepts only once it holds it)."""
    out = []
    for uid, answers in _by_pod(probed.answers).items():
        done: set[str] = set()
        current: str | None = None
        for answer in answers:
            if answer.process is None or answer.process == current:
                continue
            if answer.process in done:
                out.append(f"pod {uid}: process {answer.process} (slot {answer.slot}) answered "
                           f"again at {answer.at_s:.2f} s after process {current} had")
                break
            if current is not None:
                done.add(current)
            current = answer.process
    return out


def lost_requests(scenario: Scenario, seen: Sequence[Seen], probed: Probed
                  ) -> tuple[list[Answer], list[Answer]]:
    """The probes' failures (after one retry), split into (lost, excused). Excused: on a pod
    after it was deleted; after a kill, until the next answer, when that answer came from
    another process than the last one before the kill (the server was killed: a kill of a
    mere standby must cost nothing); on a pod that carried a version that crashes after it
    took over (kubelet mode's "crash"), from when it carried it. Everything else is lost:
    swaps, restarts of the kubelet, containerd and the control plane, and a release that
    crashes at start must cost no request."""
    crashed_from: dict[str, float] = {}
    if scenario.kind == "crash":
        for look in seen:
            for pod in look.pods:
                if carries_release(pod, scenario):
                    crashed_from.setdefault(pod.uid, look.at_s)
    lost: list[Answer] = []
    excused: list[Answer] = []
    for uid, answers in _by_pod(probed.answers).items():
        windows = _excused_windows(uid, answers, probed.hits)
        if uid in crashed_from:
            windows.append((crashed_from[uid], math.inf))
        for answer in answers:
            if answer.ok:
                continue
            inside = any(start <= answer.at_s <= end for start, end in windows)
            (excused if inside else lost).append(answer)
    return lost, excused


def _excused_windows(uid: str, answers: Sequence[Answer], hits: Sequence[Hit]
                     ) -> list[tuple[float, float]]:
    windows = []
    for hit in (h for h in hits if h.uid == uid):
        if hit.kind == "pod-delete":
            windows.append((hit.at_s, math.inf))
        elif hit.pids:
            before = [a for a in answers if a.ok and a.at_s < hit.at_s]
            after = next((a for a in answers if a.ok and a.at_s > hit.at_s), None)
            end = after.at_s if after is not None else math.inf
            if not before or after is None or after.process != before[-1].process:
                windows.append((hit.at_s, end))
    return windows


def no_lost_request(scenario: Scenario, seen: Sequence[Seen], probed: Probed) -> list[str]:
    """Every probe answered (see :func:`lost_requests` for the failures a fault excuses);
    and the probes answered at all (a probe that saw nothing proves nothing)."""
    if not any(a.ok for a in probed.answers):
        return [f"no probe was answered ({len(probed.answers)} sent)"]
    lost, _ = lost_requests(scenario, seen, probed)
    if not lost:
        return []
    first = lost[0]
    return [f"{len(lost)} request(s) lost, the first to pod {first.uid} at {first.at_s:.2f} s "
            f"({first.error})"]


def state_intact(scenario: Scenario, seen: Sequence[Seen], probed: Probed) -> list[str]:
    """Every pod's shared-memory blob is byte for byte what it was at the pod's start (its
    checksum now equals the one written at creation, which never changes), and its served
    counter never goes back: the state outlives every process of the pod."""
    if not probed.reads:
        return ["no state was read"]
    out = []
    for uid, reads in _by_pod(probed.reads).items():
        created, served = reads[0].blob_crc_at_create, reads[0].served
        for read in reads:
            if read.blob_crc_at_create != created:
                out.append(f"pod {uid}: the segment was created again by {read.at_s:.1f} s")
            elif not read.intact or read.blob_crc != created:
                out.append(f"pod {uid}: blob checksum {read.blob_crc} at {read.at_s:.1f} s, "
                           f"created as {created}")
            elif read.served < served:
                out.append(f"pod {uid}: served went back to {read.served} at "
                           f"{read.at_s:.1f} s from {served}")
            else:
                served = read.served
                continue
            break  # one line per pod
    return out


Record = TypeVar("Record", Answer, StateRead)


def _by_pod(records: Sequence[Record]) -> dict[str, list[Record]]:
    """The records of each pod, by UID, in time order."""
    grouped: defaultdict[str, list[Record]] = defaultdict(list)
    for record in sorted(records, key=lambda r: r.at_s):
        grouped[record.uid].append(record)
    return dict(grouped)


Check = Callable[[Scenario, Sequence[Seen], Seen], list[str]]
CHECKS: dict[str, Check] = {
    "bad-version-contained": bad_version_contained,
    "converged": converged,
    "ended-with-a-reason": ended_with_a_reason,
    "counted-only-what-runs": counted_only_what_runs,
}
ProbeCheck = Callable[[Scenario, Sequence[Seen], Probed], list[str]]
PROBE_CHECKS: dict[str, ProbeCheck] = {  # kubelet mode: on what the probes saw
    "one-serving-process": one_serving_process,
    "no-lost-request": no_lost_request,
    "state-intact": state_intact,
}


def check(scenario: Scenario, seen: Sequence[Seen], final: Seen,
          probed: Probed | None = None) -> dict[str, list[str]]:
    """Every invariant's violations (empty lists left out); the probes' too when given."""
    found = {name: fn(scenario, seen, final) for name, fn in CHECKS.items()}
    if probed is not None:
        found |= {name: fn(scenario, seen, probed) for name, fn in PROBE_CHECKS.items()}
    return {name: lines for name, lines in found.items() if lines}
