"""One pod's update as a pure step function of the pod object (docs/operator.md "One swap").

Each call reads the pod as the API returns it (container specs, container statuses, the Ready
condition, podkit's annotations) and returns the one next step. Nothing is remembered between
calls: a swap under way is visible in the pod's images and annotations, so the same pod gives
the same step, and once a patch is applied the next call gives the next step.

The state is read from the slots' *images*, not from a recorded phase, which makes the same
function drive a swap forward, a rollback (target = the previous revision) and a swap whose
target changed while it ran:

- exactly one slot runs pause: if the other slot runs the target image, wait until both report
  running and ready and the pod is Ready, then finish (annotations); else give the pause slot
  the target image (step 1);
- neither slot runs pause: if one runs the target image, once it is running and ready (standing
  by) give the other the pause image (step 2); if none does, the slot that is not active gets
  the target image (a standby of an abandoned target is replaced);
- both run pause (nothing serves): the active slot gets the target image.

Every field of the target reaches the pod (:mod:`.specdiff` sorts the differences): the
slots' env, envFrom and volumeMounts travel with the swap on a patched cluster (the idle slot
starts the target with them), cpu/memory go through ``pods/resize``, volumes and the other
containers are patched in place, and what cannot change in place (a port, a container added,
env on a stock cluster) deletes the pod, which the planner creates again at the target.

Released ConfigMaps come first (:func:`config_step`, patched clusters only): when the target
mounts other copies than the pod, the pod's volumes are switched in place and the step waits
until the sidecar reports that content applied; only then do the slots swap, so a new
business version starts with its new config.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ..api.keys import (
    ANN_ACTIVE_SLOT,
    ANN_CONFIG_APPLIED,
    ANN_REPLACED,
    ANN_REVISION,
    ANN_SERVING_RUN,
    ANN_SERVING_SINCE,
    ANN_STARTED,
    ANN_TARGET,
)
from ..api.statefulsetplus import StsPlusSpec
from ..images import runs_reference, same_image
from ..kube.objects import (
    all_containers_ready,
    annotations_of,
    container_id,
    container_spec,
    container_status,
    parse_time,
    pod_ready,
    rfc3339,
    running_fingerprint,
    terminating,
)
from ..revisions.revision import RevisionInfo
from .claims import with_claims
from .config import Applied, HookFailed, config_key, verdict, volume_sources
from .patches import container_patch, fields_patch, pod_patch
from .pods import SwapLayout, slot_names, swap_layout
from .specdiff import (
    IN_PLACE_CONTAINER_FIELDS,
    DiffMemo,
    SpecDiff,
    classify,
    compared,
    same_resources,
)

# Reasons a container waits and will not start by itself. While an image cannot be pulled, the
# kubelet still reports the previous image in the status: those reasons concern the spec's image.
PULL_FAILURES = ("ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName")
FAILING_REASONS = ("CrashLoopBackOff", "CreateContainerConfigError", *PULL_FAILURES)


@dataclass(frozen=True)
class PatchPod:
    """Apply ``patch`` (a strategic merge patch body of the pod), then look again."""

    patch: dict[str, Any]
    reason: str


@dataclass(frozen=True)
class ResizePod:
    """Send ``patch`` (the containers' new cpu/memory) to the pod's ``resize`` subresource."""

    patch: dict[str, Any]
    reason: str


@dataclass(frozen=True)
class Wait:
    """Nothing to do until the kubelet or the sidecar reports progress (or ``until``)."""

    reason: str
    until: datetime | None = None  # look again then even without an event (a soak's end)
    held: bool = False  # the kubelet holds it (a resize Deferred): the status names the pod


@dataclass(frozen=True)
class Done:
    """The pod is at the target; apply ``patch`` (the final annotations) when not None."""

    patch: dict[str, Any] | None = None


@dataclass(frozen=True)
class Failed:
    """The update of this pod failed (deadline or a container that cannot start)."""

    reason: str


@dataclass(frozen=True)
class DeletePod:
    """Delete the pod (Recreate strategy); the planner creates it again at the target."""

    reason: str


Step = PatchPod | ResizePod | Wait | Done | Failed | DeletePod


# --- reading a pod -------------------------------------------------------------------------

def _replaced(pod: dict[str, Any]) -> dict[str, str]:
    """``podkit.io/replaced-containers``: per container re-imaged by this update, the ID of the
    container that ran when its image was patched ("" when none ran)."""
    raw = annotations_of(pod).get(ANN_REPLACED) or ""
    return dict(item.split("=", 1) for item in raw.split(",") if "=" in item)


def replaced_annotation(pod: dict[str, Any], names: list[str]) -> dict[str, str]:
    """The annotation a patch that changes the images of ``names`` carries: which container
    each ran then, so that a container started since is known to run the new image."""
    record = _replaced(pod)
    for name in names:
        record[name] = container_id(container_status(pod, name))
    return {ANN_REPLACED: ",".join(f"{k}={v}" for k, v in sorted(record.items()))}


def runs_spec(pod: dict[str, Any], name: str) -> bool:
    """The container's status is of a container of the image its spec names now.

    By what runs, not by the reference string alone: containerd reports an image's *first*
    repo tag, so a retagged or digest-pinned image comes back under another name. The status
    counts when it names the spec's reference (or the digest the spec pins, in ``imageID``),
    or when its container is not the one that ran when podkit patched the image (the kubelet
    starts a container only from the spec as it is)."""
    status = container_status(pod, name)
    if not status:
        return False
    if runs_reference(status.get("image"), status.get("imageID"),
                      container_spec(pod, name).get("image")):
        return True
    before, now = _replaced(pod).get(name), container_id(status)
    return bool(before) and bool(now) and now != before


def running_ready(pod: dict[str, Any], name: str) -> bool:
    """The container runs its spec's image and is ready."""
    status = container_status(pod, name)
    return (runs_spec(pod, name) and "running" in (status.get("state") or {})
            and bool(status.get("ready")))


def failing_reason(pod: dict[str, Any], name: str) -> str | None:
    """Why the container cannot start (a waiting reason of FAILING_REASONS), if it is about the
    image its spec names now (a stale status of a previous image does not count)."""
    status = container_status(pod, name)
    waiting = (status.get("state") or {}).get("waiting") or {}
    reason = waiting.get("reason")
    if reason not in FAILING_REASONS:
        return None
    if reason not in PULL_FAILURES and status.get("image") and not runs_spec(pod, name):
        return None
    msg = waiting.get("message")
    return f"container {name}: {reason}" + (f": {msg}" if msg else "")


def serving_record(pod: dict[str, Any], spec: StsPlusSpec, now: datetime) -> dict[str, Any] | None:
    """The patch of the ``serving-since``/``serving-run`` annotations of a pod that has none
    yet (created at its revision, never updated), once its serving container runs ready in a
    Ready pod, so that its health is followed as an updated pod's is; None when there is
    nothing to record."""
    if annotations_of(pod).get(ANN_SERVING_RUN):
        return None
    name = spec.business
    if container_spec(pod, f"{name}-a"):  # a swap pod: the active slot serves
        name = f"{name}-{annotations_of(pod).get(ANN_ACTIVE_SLOT) or 'a'}"
    run = running_fingerprint(container_status(pod, name))
    if run is None or not running_ready(pod, name) or not pod_ready(pod):
        return None
    return pod_patch(ann={ANN_SERVING_SINCE: rfc3339(now), ANN_SERVING_RUN: run})


def serving_problem(pod: dict[str, Any]) -> str | None:
    """What is wrong with the container recorded serving (``podkit.io/serving-run``) since it
    took over: it restarted (another ID, restart count or start time), or it is not ready (it
    crashed, or the business's own probes fail); None when it serves on, or none is recorded."""
    ann = annotations_of(pod)
    recorded = ann.get(ANN_SERVING_RUN)
    if not recorded:
        return None
    name = recorded.split("|", 1)[0]
    status = container_status(pod, name)
    since = ann.get(ANN_SERVING_SINCE, "?")
    if running_fingerprint(status) != recorded:
        before = recorded.split("|")[2] if recorded.count("|") >= 3 else "?"
        waiting = ((status.get("state") or {}).get("waiting") or {}).get("reason")
        return (f"container {name} restarted since it took over at {since} (restarts "
                f"{before} -> {status.get('restartCount', '?')}"
                + (f", now {waiting}" if waiting else "") + ")")
    if not status.get("ready"):
        return f"container {name} (serving since {since}) is not ready"
    return None


def not_started(pod: dict[str, Any]) -> str | None:
    """Why the pod has not started yet (no node bound it, or none of its containers ever
    ran and none fails to start), or None. An update never starts on such a pod: its
    deadline would run while the pod waits for a node or its first images (make chaos
    seed 43)."""
    if terminating(pod):
        return None
    if not (pod.get("spec") or {}).get("nodeName"):
        conditions = (pod.get("status") or {}).get("conditions") or []
        scheduled: dict[str, Any] = next((c for c in conditions
                                          if c.get("type") == "PodScheduled"), {})
        why = ": ".join(str(scheduled[k]) for k in ("reason", "message") if scheduled.get(k))
        return f"not scheduled yet ({why})" if why else "not scheduled yet"
    status = pod.get("status") or {}
    # a container that will not start by itself (an image that cannot be pulled) counts as
    # started: waiting would keep from the pod the update that may fix it
    ran = any("running" in (c.get("state") or {}) or c.get("restartCount")
              or (c.get("lastState") or {}).get("terminated")
              or ((c.get("state") or {}).get("waiting") or {}).get("reason") in FAILING_REASONS
              for c in status.get("containerStatuses") or [])
    if status.get("phase") == "Pending" and not ran:
        return "its containers have not started yet"
    return None


# --- annotations ---------------------------------------------------------------------------

def _start_annotations(pod: dict[str, Any], target: RevisionInfo,
                       now: datetime) -> dict[str, str | None]:
    """The annotations a swap's first patch carries (none when this swap is already marked);
    the record of what served before is dropped (this update records its own)."""
    if annotations_of(pod).get(ANN_TARGET) == target.name:
        return {}
    return {ANN_TARGET: target.name, ANN_STARTED: rfc3339(now), ANN_SERVING_SINCE: None,
            ANN_SERVING_RUN: None}


def _finish_annotations(pod: dict[str, Any], target: RevisionInfo,
                        active: str | None) -> dict[str, str | None]:
    """The diff that records the pod at ``target`` and clears the swap markers."""
    ann = annotations_of(pod)
    want: dict[str, str | None] = {ANN_REVISION: target.name, ANN_TARGET: None, ANN_STARTED: None,
                                   ANN_REPLACED: None}
    if active:
        want[ANN_ACTIVE_SLOT] = active
    return {k: v for k, v in want.items() if ann.get(k) != v}


def _check_failure(pod: dict[str, Any], target: RevisionInfo, deadline_s: int, now: datetime,
                   containers: list[str]) -> Failed | None:
    """A swap to ``target`` under way fails past its deadline or on a container that cannot
    start.

    The deadline is for reaching the target, as a Deployment's progress deadline is: once the
    pod has been recorded serving it (``serving-since``), only its soak judges it. An
    operator away past the deadline (cut off, restarted, the apiserver down) would otherwise
    fail a pod that converged long before (make chaos, kwok seed 21)."""
    ann = annotations_of(pod)
    if ann.get(ANN_TARGET) != target.name:
        return None
    started = parse_time(ann.get(ANN_STARTED))
    converged = bool(ann.get(ANN_SERVING_SINCE))
    if started is not None and not converged and now > started + timedelta(seconds=deadline_s):
        return Failed(f"update to {target.name} started at {rfc3339(started)} did not finish "
                      f"within {deadline_s}s")
    for name in containers:
        if reason := failing_reason(pod, name):
            return Failed(reason)
    return None


def _at_target(pod: dict[str, Any], target: RevisionInfo) -> bool:
    """Recorded at the target with no update in flight: done, whatever its readiness now."""
    ann = annotations_of(pod)
    return ann.get(ANN_REVISION) == target.name and ANN_TARGET not in ann


def _soak(pod: dict[str, Any], name: str, target: RevisionInfo, soak_s: int, now: datetime,
          finish: dict[str, str | None]) -> Step:
    """The update converged with container ``name`` serving ``target``: it is done only once
    that same run of the container has served ``soak_s`` seconds (``minReadySeconds``).

    The first look records the run (``serving-since``, ``serving-run``); a later look that
    finds it restarted or not ready fails the update (the caller checks that first, with
    :func:`serving_problem`), one past the soak finishes it."""
    ann = annotations_of(pod)
    since = parse_time(ann.get(ANN_SERVING_SINCE))
    if since is None or not ann.get(ANN_SERVING_RUN):
        serving: dict[str, str | None] = {
            ANN_SERVING_SINCE: rfc3339(now),
            ANN_SERVING_RUN: running_fingerprint(container_status(pod, name))}
        if soak_s <= 0:
            return Done(pod_patch(ann={**finish, **serving}))
        if name.endswith(("-a", "-b")) and ANN_ACTIVE_SLOT in finish:
            serving[ANN_ACTIVE_SLOT] = finish[ANN_ACTIVE_SLOT]
        return PatchPod(pod_patch(ann=serving),
                        f"{name} serves {target.name}: watching it for {soak_s}s "
                        "(minReadySeconds)")
    end = since + timedelta(seconds=soak_s)
    if now < end:
        return Wait(f"{name} serves {target.name} since {rfc3339(since)}: soaking until "
                    f"{rfc3339(end)}", until=end)
    return Done(pod_patch(ann=finish) or None)


def _soak_failed(pod: dict[str, Any], target: RevisionInfo) -> Failed | None:
    """The run recorded serving ``target`` during its soak restarted or turned unready."""
    if problem := serving_problem(pod):
        return Failed(f"{target.name} failed while soaking: {problem}")
    return None


# --- the step functions --------------------------------------------------------------------

def swap_step(pod: dict[str, Any], target: RevisionInfo, spec: StsPlusSpec, patched: bool,
              now: datetime, previous: RevisionInfo | None = None,
              sidecar_state: dict[str, Any] | None = None, soak_s: int = 0,
              layout: SwapLayout | None = None, diffs: DiffMemo | None = None) -> Step:
    """The next step of an A/B swap of ``pod`` to ``target``.

    ``previous`` only helps to tell the active slot when the pod lacks the active-slot
    annotation; rolling back is a swap whose target is the previous revision.
    ``sidecar_state``: the pod's sidecar ``/state``, read when the pod awaits a config report.
    ``soak_s``: how long the slot that took over must serve, unrestarted and ready, before
    the pod is at the target (:func:`_soak`). ``layout``: the target's
    :func:`~.pods.swap_layout` when the caller built it already (once for all its pods);
    ``diffs``: the release loop's memo of comparisons (:class:`~.specdiff.DiffMemo`).

    Every field of the target is compared with what the pod has (:mod:`.specdiff`): a
    difference that cannot be made in place deletes the pod (the planner creates it at the
    target); cpu/memory go through ``pods/resize`` first; volumes and the other containers are
    patched next; the slots' env, envFrom and volumeMounts travel with their images through
    the swap (the idle slot gets the target's image *and* fields, so the new process starts
    with them), and a slot counts as running the target only when both match.
    """
    if _at_target(pod, target):
        return Done()
    a, b = slot_names(spec.business)
    if not (container_spec(pod, a) and container_spec(pod, b)):
        return Failed(f"the pod has no slot containers {a} and {b} (business container renamed "
                      "or strategy changed): it cannot swap; delete it to recreate it")
    layout = layout or swap_layout(spec, target.template, patched)
    want = {c["name"]: c for c in layout.containers}  # the slots' fields (not their resources)
    img = {s: container_spec(pod, s).get("image") for s in (a, b)}
    is_pause = {s: same_image(img[s], spec.pause_image) for s in (a, b)}
    fields_ok = {s: not patched or not compared(
        diffs, pod, ("fields", s, target.name),
        functools.partial(_fields_diff, container_spec(pod, s), want[s]))
                 for s in (a, b)}
    is_target = {s: same_image(img[s], target.image) and fields_ok[s] for s in (a, b)}
    watched = [s for s in (a, b) if is_pause[s] or is_target[s]]
    if failed := _check_failure(pod, target, spec.batch_deadline_s, now, watched):
        return failed
    start = _start_annotations(pod, target, now)
    if patched and spec.config_volumes:
        if (config := config_step(pod, target, spec, start, sidecar_state)) is not None:
            return config
    active = _active_slot(pod, spec, previous)
    other = {a: b, b: a}
    pauses = [s for s in (a, b) if is_pause[s]]
    serving = _serving_slot(active, other, pauses)
    want_containers, want_volumes = layout.of_pod(spec, pod["metadata"]["name"], serving)
    diff = compared(diffs, pod, ("swap", target.name, serving), lambda: classify(  # on a miss
        pod.get("spec") or {}, {**target.template["spec"], "containers": want_containers,
                                "volumes": want_volumes}, patched,
        ignore={s: (*IN_PLACE_CONTAINER_FIELDS, "image") if patched else ("image",)
                for s in (a, b)}))
    if diff.needs_recreate and not _built_at(pod, target):
        return DeletePod(f"recreated at {target.name}: {diff.recreate_reason()}")
    if (early := _resize_and_rest(pod, diff, want_containers, want_volumes, start,
                                  target, {a, b}, patched)) is not None:
        return early

    def slot_to(slot: str, image: str) -> dict[str, Any]:
        if patched:
            return fields_patch(container_spec(pod, slot), want[slot], image)
        return container_patch(slot, image, target.version, patched)

    def to_target(slot: str, why: str) -> PatchPod:
        return PatchPod(pod_patch([slot_to(slot, target.image)],
                                  {**start, **replaced_annotation(pod, [slot])}), why)

    if len(pauses) == 1:
        idle = pauses[0]
        serving = other[idle]
        if not is_target[serving]:
            return to_target(idle, f"step 1: idle slot {idle} gets {target.name}'s image")
        if not start and (failed := _soak_failed(pod, target)):
            return failed
        if not fields_ok[idle]:
            return PatchPod(pod_patch([slot_to(idle, spec.pause_image)], start),
                            f"idle slot {idle} gets {target.name}'s env and mounts")
        if _converged(pod, serving, idle):
            return _soak(pod, serving, target, soak_s, now,
                         _finish_annotations(pod, target, serving[-1]))
        if start:  # the pod already looks like the target but is not converged: mark it
            return PatchPod(pod_patch(ann=start), f"mark the update to {target.name}")
        return Wait(f"slot {serving} serving {target.name}: waiting for both slots ready and "
                    "the pod Ready")
    if not pauses:
        holders = [s for s in (a, b) if is_target[s]]
        if holders:
            standby = active if len(holders) == 2 else holders[0]
            if running_ready(pod, standby):
                return PatchPod(pod_patch([slot_to(other[standby], spec.pause_image)],
                                          {**start, **replaced_annotation(pod,
                                                                          [other[standby]])}),
                                f"step 2: slot {other[standby]} gets the pause image, "
                                f"{standby} takes over")
            if start:
                return PatchPod(pod_patch(ann=start), f"mark the update to {target.name}")
            return Wait(f"slot {standby} starting {target.name}: waiting until it stands by")
        return to_target(other[active], f"slot {other[active]} (a standby of another "
                                        f"revision) gets {target.name}'s image")
    return to_target(active, f"no slot serves: slot {active} gets {target.name}'s image")


def _built_at(pod: dict[str, Any], target: RevisionInfo) -> bool:
    """The pod was created at ``target`` (its revision annotation from creation): a difference
    that would need a recreate can only be the API's defaulting, so it is never recreated again
    for it (no delete loop)."""
    return annotations_of(pod).get(ANN_REVISION) == target.name


def _fields_diff(have: dict[str, Any], want: dict[str, Any]) -> tuple[str, ...]:
    """Which of ``want``'s env, envFrom and volumeMounts the container lacks (as the API
    returns them): none when it has them all."""
    return classify({"containers": [have]}, {"containers": [want]}, True,
                    ignore={want["name"]: ("image",)}).in_place


def _resize_and_rest(pod: dict[str, Any], diff: SpecDiff, want_containers: list[dict[str, Any]],
                     want_volumes: list[dict[str, Any]], start: dict[str, str | None],
                     target: RevisionInfo, driven: set[str], patched: bool) -> Step | None:
    """The parts of an update outside the slots' swap, in order: resize cpu/memory (the update
    marked first; ``pods/resize``, then wait until the kubelet runs it), switch the volumes and
    patch the other containers; None when nothing of that is left."""
    rest = [c for c in want_containers if c["name"] not in driven
            and any(p.startswith(f"container {c['name']} ") for p in diff.in_place)]
    volumes = any(p.startswith("volume ") for p in diff.in_place)
    if start and diff.needs_resize:  # the resize subresource carries no annotations
        return PatchPod(pod_patch(ann=start), f"mark the update to {target.name}")
    if diff.resize:
        return ResizePod({"spec": {"containers": [{"name": n, "resources": r} for n, r
                                                  in sorted(diff.resize.items())]}},
                         "resize " + ", ".join(f"{n} to {r}" for n, r
                                               in sorted(diff.resize.items())))
    if (resizing := resize_step(pod)) is not None:
        return resizing
    if rest or volumes:
        body = pod_patch([fields_patch(container_spec(pod, c["name"]), c, c["image"])
                          if patched else {"name": c["name"], "image": c["image"]}
                          for c in rest],
                         {**start, **replaced_annotation(pod, [c["name"] for c in rest])}
                         if rest else start)
        if volumes:
            body.setdefault("spec", {})["volumes"] = want_volumes
        return PatchPod(body, "in place: " + ", ".join(diff.in_place))
    return None


def resize_step(pod: dict[str, Any]) -> Wait | Failed | None:
    """A resize the API accepted that does not run yet, from the kubelet's conditions
    (``PodResizePending``, ``PodResizeInProgress``; one of an older pod generation than the
    spec's is about an earlier resize and does not count) or a container whose reported
    resources differ from its spec; None when it runs.

    ``Infeasible`` (more than the node has at all) fails the update: it never fits. ``Deferred``
    (more than the node has free now) and a resize the kubelet could not apply (``Error``, e.g.
    a memory limit below the container's usage) are waited for, named in the status, until the
    deadline fails them."""
    generation = (pod.get("metadata") or {}).get("generation")
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") not in ("PodResizePending", "PodResizeInProgress") \
                or c.get("status") != "True":
            continue
        seen = c.get("observedGeneration")
        if seen is not None and generation is not None and seen < generation:
            continue
        why = f"resize {c.get('reason') or c['type']}: {c.get('message') or ''}".rstrip(": ")
        if c.get("reason") == "Infeasible":
            return Failed(why)
        return Wait(why, held=c.get("reason") in ("Deferred", "Error"))
    for c in (pod.get("spec") or {}).get("containers") or []:
        reported = container_status(pod, c["name"]).get("resources")
        if reported is not None and not same_resources(reported, c.get("resources")):
            return Wait(f"resize: container {c['name']} does not run its new resources yet")
    return None


def config_step(pod: dict[str, Any], target: RevisionInfo, spec: StsPlusSpec,
                start: dict[str, str | None], sidecar_state: dict[str, Any] | None) -> Step | None:
    """The config part of an update: None once the pod has the target's copies applied.

    Switch the volumes to the target's copies (one patch); then wait for the sidecar's report
    and record it in ``podkit.io/config-applied``; a hook that failed on that content fails
    the update (it is rolled back by the same step towards the previous revision)."""
    volumes = spec.config_volumes
    want = volume_sources(target.template["spec"], volumes)
    have = volume_sources(pod.get("spec") or {}, volumes)
    if have != want:
        switch: list[dict[str, Any]] = [{"name": v, "configMap": {"name": want[v]}}
                                        for v in sorted(want) if have.get(v) != want[v]]
        body = pod_patch(ann=start)
        body["spec"] = {"volumes": switch}
        return PatchPod(body, "config: " + ", ".join(f"volume {v['name']} mounts "
                                                     f"{v['configMap']['name']}"
                                                     for v in switch))
    key = config_key(pod["spec"], volumes)
    if annotations_of(pod).get(ANN_CONFIG_APPLIED) == key:
        return None
    found = verdict(sidecar_state, want)
    if isinstance(found, HookFailed):
        return Failed(found.reason)
    if isinstance(found, Applied):
        return PatchPod(pod_patch(ann={**start, ANN_CONFIG_APPLIED: key}),
                        f"config: the sidecar applied {key}")
    if start:
        return PatchPod(pod_patch(ann=start), f"mark the update to {target.name}")
    return Wait(f"config: {found.reason}")


def _serving_slot(active: str, other: Mapping[str, str], pauses: Sequence[str]) -> str:
    """The slot that carries the business's requests (one reservation per pod): the one that
    does not run pause, or while both run (a standby starting, a hand-over under way) the
    active one. So the requests move once a swap's step 2 gave the old slot the pause image,
    after the hand-over: a standby starting at the least weight takes no CPU share from the
    process that serves (docs/architecture.md, "One reservation per pod"). ``pauses``: the
    slots whose spec names the pause image."""
    return other[pauses[0]] if len(pauses) == 1 else active


def _active_slot(pod: dict[str, Any], spec: StsPlusSpec, previous: RevisionInfo | None) -> str:
    a, b = slot_names(spec.business)
    mark = annotations_of(pod).get(ANN_ACTIVE_SLOT)
    if mark in ("a", "b"):
        return a if mark == "a" else b
    if previous is not None and same_image(container_spec(pod, b).get("image"), previous.image):
        return b
    return a


def _converged(pod: dict[str, Any], serving: str, idle: str) -> bool:
    return (running_ready(pod, serving) and running_ready(pod, idle)
            and all_containers_ready(pod) and pod_ready(pod))


def inplace_step(pod: dict[str, Any], target: RevisionInfo, spec: StsPlusSpec, patched: bool,
                 now: datetime, soak_s: int = 0, diffs: DiffMemo | None = None) -> Step:
    """InPlace: patch the containers to the target (images everywhere; env, envFrom, mounts
    and volumes on a patched cluster; cpu/memory by ``pods/resize``); the kubelet restarts
    what changed in place. What cannot change in place deletes the pod."""
    if _at_target(pod, target):
        return Done()
    name = spec.business
    if not container_spec(pod, name):
        return Failed(f"the pod has no container {name} (renamed, or strategy changed): "
                      "delete it to recreate it")
    if failed := _check_failure(pod, target, spec.batch_deadline_s, now, [name]):
        return failed
    start = _start_annotations(pod, target, now)
    want = target.template["spec"]
    if spec.claim_templates:
        want = {**want, "volumes": with_claims(want.get("volumes") or [], spec,
                                               pod["metadata"]["name"])}
    diff = compared(diffs, pod, ("in-place", target.name),
                    functools.partial(classify, pod.get("spec") or {}, want, patched))
    if diff.needs_recreate and not _built_at(pod, target):
        return DeletePod(f"recreated at {target.name}: {diff.recreate_reason()}")
    if (early := _resize_and_rest(pod, diff, want["containers"], want.get("volumes") or [],
                                  start, target, set(), patched)) is not None:
        return early
    if not start and (failed := _soak_failed(pod, target)):
        return failed
    if running_ready(pod, name) and pod_ready(pod):
        return _soak(pod, name, target, soak_s, now, _finish_annotations(pod, target, None))
    if start:
        return PatchPod(pod_patch(ann=start), f"mark the update to {target.name}")
    return Wait(f"container {name} restarting with {target.name}'s image")


def recreate_step(pod: dict[str, Any], target: RevisionInfo, spec: StsPlusSpec,
                  now: datetime, soak_s: int = 0) -> Step:
    """Recreate: delete a pod of another revision; a pod created at the target carries the
    target-revision annotation until it is Ready."""
    ann = annotations_of(pod)
    if ann.get(ANN_REVISION) != target.name:
        if terminating(pod):
            return Wait("pod terminating")
        return DeletePod(f"pod at {ann.get(ANN_REVISION)} is recreated at {target.name}")
    if ANN_TARGET not in ann:
        return Done()
    if failed := (_check_failure(pod, target, spec.batch_deadline_s, now, [spec.business])
                  or _soak_failed(pod, target)):
        return failed
    if pod_ready(pod) and running_ready(pod, spec.business):
        return _soak(pod, spec.business, target, soak_s, now,
                     _finish_annotations(pod, target, None))
    return Wait(f"pod starting at {target.name}")
