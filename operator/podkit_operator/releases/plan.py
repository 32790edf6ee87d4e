"""The release planner: from the object, its pods and its revisions to the next actions.

``plan_release`` is the whole control logic of a StatefulSetPlus as one pure function. Every
input comes from the API (the object with its spec, annotations and *status*, the pods with their
annotations and statuses, the revisions); the output is what to write back. Nothing lives in
memory between calls, so an operator killed at any moment and restarted continues the release:

- a release is identified by ``status.updateRevision``; a template whose revision differs starts
  a new release at batch 1;
- the current batch and its deadline are in ``status.batchDeployStatus`` (a batch starts at
  ``batchDeadlineTime - batchDeadlineSeconds``, which also carries the interval);
- a swap under way is visible on the pod (``podkit.io/target-revision``), so it is continued,
  never started twice; a pod whose update failed carries ``podkit.io/swap-failed=<revision>``
  and is not tried again while that revision is released; a mark of another revision is stale
  and dropped (never at a release's start, which a lost status write would repeat);
- a failed release is ``status`` with condition ``ReleaseFailed`` for ``updateRevision``; if
  that status write is lost, the failure is derived again from the marks and the deadline.

A lost write of any kind is therefore harmless: the next call sees the same API state and gives
the same plan (calling it twice with the same inputs gives the same plan).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ..api.keys import (
    ANN_CONFIRM,
    ANN_FAILED,
    ANN_PAUSE,
    ANN_REVISION,
    ANN_ROLLBACK,
    ANN_STARTED,
    ANN_TARGET,
)
from ..api.reasons import BatchAction, ConditionType, EventReason, GeneralStatus
from ..api.statefulsetplus import BatchDeployStatus, StsPlusSpec, condition_status, parse_spec
from ..inplace.pods import pod_name
from ..inplace.specdiff import DiffMemo
from ..kube.objects import annotations_of, parse_time, rfc3339
from ..revisions.revision import CurrentAndUpdate, RevisionInfo, revision_spec
from .actions import Event, Plan, PodCreate, PodDelete, PodPatch
from .config_status import CONFIG_REFUSED
from .ordering import order_pods
from .rounds import PodRound, ReleasePass
from .status import (
    batch_position,
    failed_batch_status,
    requeue_after,
    rollback_status,
    status,
    unhealthy_pods,
)

DEFAULT_MAX_CONCURRENT = 50


@dataclass
class _Outcome:
    """What one mode of the planner found: the round to write and the status it leads to."""

    round: PodRound
    batch: BatchDeployStatus
    current_revision: str
    update_revision: str
    rollback: bool = False  # a one-key rollback (its failures are rollback failures)
    stsp_annotations: dict[str, str | None] = field(default_factory=dict)


def plan_release(stsp_obj: dict[str, Any], pods: list[dict[str, Any]],
                 revisions: CurrentAndUpdate, now: datetime, patched: bool,
                 max_concurrent: int = DEFAULT_MAX_CONCURRENT,
                 sidecar_states: Mapping[str, dict[str, Any]] | None = None,
                 spec: StsPlusSpec | None = None, diffs: DiffMemo | None = None) -> Plan:
    """The next actions for a StatefulSetPlus; raises SpecError for an unusable spec.

    ``pods``: the pods the object owns (any order). ``patched``: the apiserver patch is on (the
    controller found out, e.g. by a dry-run env update of a pod with the opt-in annotation).
    ``max_concurrent``: at most this many pod updates *start* per call; updates under way always
    continue. ``sidecar_states``: by pod name, the sidecar's ``/state`` of pods that await a
    config report (:func:`podkit_operator.inplace.config.verdict`). ``spec``: the object's spec
    as the caller parsed it already (parsed here when not given). ``diffs``: the caller's
    memo of comparisons, kept from one call to the next (:class:`DiffMemo`; a release loop
    keeps one), so a pod unchanged since the last call is not compared again.
    """
    release = ReleasePass(stsp_obj, spec or parse_spec(stsp_obj["spec"]), pods, revisions, now,
                          patched, max_concurrent, sidecar_states or {}, diffs)
    if release.stsp_annotations.get(ANN_ROLLBACK) == "true":
        outcome = _plan_rollback(release)
    elif (release.prior_status.get("updateRevision") == revisions.update.name
          and condition_status(release.prior_status, ConditionType.RELEASE_FAILED) == "True"):
        outcome = _plan_failed(release)
    else:
        outcome = _plan_forward(release)
    plan = Plan(stsp_annotations=outcome.stsp_annotations)
    _fill_pods(release, outcome.round, plan)
    plan.events = list(outcome.round.events)
    if (release.spec.config_maps and not patched
            and condition_status(release.prior_status, ConditionType.CONFIG_GRAYSCALE) != "False"):
        plan.events.append(Event(EventReason.CONFIG_GRAYSCALE_REFUSED, CONFIG_REFUSED, "Warning"))
    plan.status = status(release, outcome.batch, outcome.current_revision,
                         outcome.update_revision, outcome.rollback, outcome.round)
    plan.events += _health_events(release, plan.status)
    plan.requeue_after = requeue_after(release, outcome.round, outcome.batch)
    return plan


def _batch_in_status(release: ReleasePass) -> int:
    """The batch the status names, within 1..batchNum."""
    return min(max(int(release.prior_batch.get("batchOrder") or 1), 1), release.spec.batch_num)


def _confirmed(release: ReleasePass, batch: int) -> bool:
    """Manual mode: ``podkit.io/confirm-batch`` >= batch confirms it (and those before it)."""
    try:
        return int(str(release.stsp_annotations.get(ANN_CONFIRM, "")).strip()) >= batch
    except ValueError:
        return False


def _plan_forward(release: ReleasePass) -> _Outcome:
    """A release toward the update revision, batch by batch.

    A batch's start is ``batchDeadlineTime - batchDeadlineSeconds``: automatic mode moves to
    batch k+1 as soon as batch k converged, with a start ``batchIntervalSeconds`` ahead, so
    the interval needs no status field of its own (and survives restarts).
    """
    update, current, spec, now = release.update, release.current, release.spec, release.now
    span = release.deadline_span()
    new_release = release.prior_status.get("updateRevision") != update.name
    paused = release.stsp_annotations.get(ANN_PAUSE) == "true"
    releasing = release.releasing  # else nothing to hold: no pause, confirmation or interval
    events: list[Event] = []
    stsp_annotations: dict[str, str | None] = {}
    if new_release:
        batch, deadline = 1, now + span
        if ANN_CONFIRM in release.stsp_annotations:
            # a confirmation left from an earlier release confirms nothing
            stsp_annotations[ANN_CONFIRM] = None
            release.stsp_annotations = {key: value for key, value
                                        in release.stsp_annotations.items()
                                        if key != ANN_CONFIRM}
        if releasing:
            events.append(Event(EventReason.RELEASE_STARTED,
                                f"release {current.name} -> {update.name} in "
                                f"{spec.batch_num} batches {release.targets}"))
    else:
        batch = _batch_in_status(release)
        deadline = parse_time(release.prior_batch.get("batchDeadlineTime")) or now + span
    seen_converged = (not new_release and release.prior_batch.get("batchOrder") == batch
                      and bool(release.prior_batch.get("currentDeployComplete")))
    while True:
        not_before = deadline - span
        round_ = release.release_round(batch, deadline, paused or now < not_before)
        members = release.members(batch)
        if releasing and members and \
                round_.batch_failed * 100 > spec.max_failed_percent * len(members):
            events.append(Event(EventReason.BATCH_FAILED,
                                f"batch {batch}: {round_.batch_failed} of {len(members)} pods "
                                f"failed (maxFailedPercent {spec.max_failed_percent}); rolling "
                                "the batch back", "Warning"))
            back = release.failed_round(batch)
            for ordinal, pending in round_.patches.items():  # keep the failures' patches
                mark = (pending.patch.get("metadata") or {}).get("annotations", {}) \
                    .get(ANN_FAILED)
                if mark:  # the mark and the first step back (a pod of an earlier batch too)
                    back.patch(ordinal, pending.patch, pending.reason)
                    back.converged = back.converged and "spec" not in pending.patch
            back.events = round_.events + back.events + events
            return _Outcome(back, failed_batch_status(release, batch, deadline, back),
                            current.name, update.name, stsp_annotations=stsp_annotations)
        if not round_.converged:
            break
        if releasing and not seen_converged:
            events.append(Event(EventReason.BATCH_COMPLETED,
                                f"batch {batch} of {spec.batch_num} converged "
                                f"({round_.batch_done}/{round_.batch_total} updated)"))
        if batch >= spec.batch_num and release.held_by_partition:
            round_.events += events
            held = batch_position(release, batch, BatchAction.NEXT, GeneralStatus.PARTITIONED,
                                  deadline, round_, True)
            return _Outcome(round_, held, current.name, update.name,
                            stsp_annotations=stsp_annotations)
        if batch >= spec.batch_num:
            if releasing:
                events.append(Event(EventReason.RELEASE_COMPLETED, f"all pods at {update.name}"))
            round_.events += events
            done = batch_position(release, batch, BatchAction.COMPLETED, GeneralStatus.COMPLETED,
                            deadline, round_, True)
            return _Outcome(round_, done, update.name, update.name,
                            stsp_annotations=stsp_annotations)
        if releasing and (paused or (not spec.batch_auto and not _confirmed(release, batch + 1))):
            break
        interval = spec.batch_interval_s if releasing and spec.batch_auto else 0
        batch, deadline = batch + 1, now + timedelta(seconds=interval) + span
        seen_converged = False
        if releasing:
            events.append(Event(EventReason.BATCH_STARTED,
                                f"batch {batch} of {spec.batch_num} (pods "
                                f"{release.members(batch)}) starts at "
                                f"{rfc3339(deadline - span)}"))
    round_.events += events
    waiting = round_.converged and releasing and not paused  # only a confirmation is missing
    if paused and releasing:
        general = GeneralStatus.PAUSED
    else:
        general = GeneralStatus.WAIT_TO_CONFIRM if waiting else GeneralStatus.PROGRESSING
    action = BatchAction.WAIT_TO_CONFIRM if waiting else BatchAction.NEXT
    return _Outcome(round_, batch_position(release, batch, action, general, deadline, round_,
                                     round_.converged),
                    current.name, update.name, stsp_annotations=stsp_annotations)


def _plan_failed(release: ReleasePass) -> _Outcome:
    """A release that failed: the failed batch stays rolled back until a new release."""
    batch = _batch_in_status(release)
    round_ = release.failed_round(batch)
    deadline = parse_time(release.prior_batch.get("batchDeadlineTime"))
    return _Outcome(round_, failed_batch_status(release, batch, deadline, round_),
                    release.current.name, release.update.name)


def _plan_rollback(release: ReleasePass) -> _Outcome:
    """One-key rollback: to the current revision while a release is under way, else to the
    previous one."""
    current = release.current
    target = current if release.releasing else (release.revisions.previous or current)
    round_ = release.rollback_round(target)
    if not round_.converged and (
            release.prior_status.get("updateRevision") != target.name
            or release.prior_batch.get("generalStatus") != GeneralStatus.ROLLING_BACK):
        round_.events.append(Event(EventReason.ROLLBACK_STARTED,
                                   f"one-key rollback to {target.name}"))
    return _Outcome(round_, rollback_status(release, round_),
                    target.name if round_.converged else current.name, target.name,
                    rollback=True)


def _health_events(release: ReleasePass, new_status: dict[str, Any]) -> list[Event]:
    """Warnings for what turned bad since the status written before: a pod whose serving
    container failed (once per failure, not per pass), pods stuck terminating."""
    events = []
    before = set(release.prior_status.get("unhealthyPods") or [])
    problems = unhealthy_pods(release)
    for name in new_status.get("unhealthyPods") or []:
        if name not in before:
            events.append(Event(EventReason.SERVING_FAILED, f"{name}: {problems[name]}",
                                "Warning", name))
    stuck: dict[str, Any] = next((c for c in new_status["conditions"]
                                  if c["type"] == ConditionType.TERMINATION_STUCK), {})
    if (stuck.get("status") == "True"
            and condition_status(release.prior_status, ConditionType.TERMINATION_STUCK)
            != "True"):
        events.append(Event(EventReason.POD_STUCK_TERMINATING, stuck["message"], "Warning"))
    return events


# --- which revisions: current and rollback target ------------------------------------------

def _most_run(pods: Iterable[dict[str, Any]], besides: set[str]) -> str | None:
    """The revision most pods are at (``podkit.io/revision``), leaving out ``besides``; ties go
    to the name, so every call chooses the same."""
    counts = Counter(r for p in pods if (r := annotations_of(p).get(ANN_REVISION))
                     and r not in besides)
    if not counts:
        return None
    return min(counts, key=lambda r: (-counts[r], r))


def choose_revisions(status: Mapping[str, Any], pods: Iterable[dict[str, Any]],
                     update: str, stored: Container[str]) -> tuple[str, str | None]:
    """The names of the current revision and of the one-key rollback target.

    Current: ``status.currentRevision``; when the status is lost (restored from a backup, an
    orphan delete and re-create), the revision most pods not at the update revision run, so
    what remains is a release in batches from it, never all pods at once; the update revision
    when every pod is at it (or there is none). Rollback target: ``status.rollbackRevision``,
    the revision that was current before the latest release (:func:`.status.status` keeps it);
    without it, the revision most pods not at the update or the current revision run. Only
    names in ``stored`` (the ControllerRevisions) are chosen.
    """
    pods = list(pods)
    current = str(status.get("currentRevision") or "")
    if current not in stored:
        current = _most_run((p for p in pods if annotations_of(p).get(ANN_REVISION) in stored),
                            {update}) or update
    rollback: str | None = status.get("rollbackRevision")
    if rollback not in stored or rollback == current:
        rollback = _most_run((p for p in pods if annotations_of(p).get(ANN_REVISION) in stored),
                             {update, current})
    return current, rollback


# --- pods to create and delete ---------------------------------------------------------------

def _fill_pods(release: ReleasePass, round_: PodRound, plan: Plan) -> None:
    spec = release.spec
    ordered = order_pods(spec.pod_management, release.ordinals, release.pods, round_.creates,
                         release.now, spec.min_ready_s)
    for ordinal in ordered.create:
        create = round_.creates[ordinal]
        plan.create.append(PodCreate(ordinal, create.revision.name,
                                     _new_pod(release, ordinal, create.revision,
                                              create.in_flight)))
    for ordinal in ordered.delete:
        plan.delete.append(PodDelete(pod_name(release.name, ordinal), ordinal, "scale down"))
    for ordinal in sorted(round_.deletes, reverse=True):
        plan.delete.append(PodDelete(pod_name(release.name, ordinal), ordinal,
                                     round_.deletes[ordinal]))
    for ordinal in sorted(round_.patches, reverse=True):
        if ordinal in round_.deletes:  # a pod deleted (Recreate) needs no patch
            continue
        pending = round_.patches[ordinal]
        plan.patches.append(PodPatch(pod_name(release.name, ordinal), ordinal, pending.patch,
                                     pending.reason))
    for ordinal in sorted(round_.resizes, reverse=True):
        if ordinal not in round_.deletes:
            resize = round_.resizes[ordinal]
            plan.resizes.append(PodPatch(pod_name(release.name, ordinal), ordinal, resize.patch,
                                         resize.reason))


def _new_pod(release: ReleasePass, ordinal: int, revision: RevisionInfo,
             in_flight: bool) -> dict[str, Any]:
    if not revision.template:
        raise ValueError(f"revision {revision.name} has no template; pass RevisionInfo.template")
    body = release.rules.build_pod(release.stsp, revision_spec(release.spec, revision.template),
                                   ordinal, revision.name,
                                   revision.template, release.patched)
    if in_flight:  # Recreate: a pod created at the target is an update under way until Ready
        body["metadata"]["annotations"].update({ANN_TARGET: revision.name,
                                                ANN_STARTED: rfc3339(release.now)})
    return body
