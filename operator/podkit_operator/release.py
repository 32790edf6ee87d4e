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

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Mapping

from .batches import batch_members, batch_targets, started_members, update_order
from .configs import ConfigCopy, batch_versions, volume_sources
from .podspec import (ANN_FAILED, ANN_REVISION, ANN_STARTED, ANN_TARGET, build_plain_pod,
                      build_pod, ordinal_of, pod_name)
from .revision import RevisionInfo
from .spec import StsPlusSpec, parse_spec, selector_string
from .swap import (DeletePod, Done, Failed, PatchPod, Step, annotations, inplace_step,
                   parse_time, pod_ready, recreate_step, rfc3339, swap_step)

ANN_PAUSE = "podkit.io/pause-batch-deploy"
ANN_CONFIRM = "podkit.io/confirm-batch"
ANN_ROLLBACK = "podkit.io/rollback"
DEFAULT_MAX_CONCURRENT = 50


@dataclass(frozen=True)
class CurrentAndUpdate:
    """The revisions the controller resolved from the API.

    ``current``: ``status.currentRevision`` (the last good revision; the update revision when
    the object is new). ``update``: the revision of ``spec.template``. ``previous``: the
    revision before ``current`` in the history, the target of a one-key rollback once a release
    has completed. Each carries its template (to build pods).
    """

    current: RevisionInfo
    update: RevisionInfo
    previous: RevisionInfo | None = None
    copies: Mapping[str, ConfigCopy] = field(default_factory=dict)  # config copies by name


@dataclass(frozen=True)
class PodCreate:
    ordinal: int
    revision: str
    body: dict[str, Any]


@dataclass(frozen=True)
class PodDelete:
    name: str
    ordinal: int
    reason: str


@dataclass(frozen=True)
class PodPatch:
    """A strategic merge patch of a pod (content type application/strategic-merge-patch+json)."""

    name: str
    ordinal: int
    patch: dict[str, Any]
    reason: str


@dataclass(frozen=True)
class Event:
    reason: str
    message: str
    type: str = "Normal"
    pod: str | None = None  # the pod it is about (None: the StatefulSetPlus)


@dataclass
class Plan:
    """What the controller writes: pods to create, delete and patch, the status, events."""

    create: list[PodCreate] = field(default_factory=list)
    delete: list[PodDelete] = field(default_factory=list)
    patches: list[PodPatch] = field(default_factory=list)
    status: dict[str, Any] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    requeue_after: float | None = None
    stsp_annotations: dict[str, str | None] = field(default_factory=dict)


def merge_patches(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Merge two pod patches of the shapes the step functions produce (annotations, and
    containers and volumes by name)."""
    out: dict[str, Any] = {}
    ann = {**(a.get("metadata") or {}).get("annotations", {}),
           **(b.get("metadata") or {}).get("annotations", {})}
    if ann:
        out["metadata"] = {"annotations": ann}
    by_name: dict[str, dict[str, Any]] = {}
    containers = [*(a.get("spec") or {}).get("containers", []),
                  *(b.get("spec") or {}).get("containers", [])]
    for c in containers:
        by_name.setdefault(c["name"], {}).update(c)
    if by_name:
        out["spec"] = {"containers": list(by_name.values())}
    volumes = {v["name"]: v for v in [*(a.get("spec") or {}).get("volumes", []),
                                      *(b.get("spec") or {}).get("volumes", [])]}
    if volumes:
        out.setdefault("spec", {})["volumes"] = list(volumes.values())
    return out


@dataclass
class _Round:
    """The outcome of looking at every pod for one batch position."""

    patches: dict[int, tuple[dict[str, Any], str]] = field(default_factory=dict)
    deletes: dict[int, str] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    create_at: dict[int, tuple[RevisionInfo, bool]] = field(default_factory=dict)
    converged: bool = True
    batch_total: int = 0
    batch_done: int = 0
    batch_failed: int = 0
    rollback_total: int = 0
    rollback_done: int = 0
    more_to_start: bool = False
    deadlines: list[datetime] = field(default_factory=list)

    def patch(self, ordinal: int, patch: dict[str, Any] | None, reason: str) -> None:
        if not patch:
            return
        old = self.patches.get(ordinal)
        self.patches[ordinal] = (merge_patches(old[0], patch) if old else patch,
                                 f"{old[1]}; {reason}" if old else reason)


class _Planner:
    def __init__(self, stsp: dict[str, Any], pods: list[dict[str, Any]],
                 revisions: CurrentAndUpdate, now: datetime, patched: bool,
                 max_concurrent: int, sidecar_states: Mapping[str, dict[str, Any]]) -> None:
        self.stsp = stsp
        self.sidecar_states = sidecar_states
        self.meta = stsp["metadata"]
        self.name = self.meta["name"]
        self.ann = self.meta.get("annotations") or {}
        self.spec: StsPlusSpec = parse_spec(stsp["spec"])
        self.old = stsp.get("status") or {}
        self.old_bds = self.old.get("batchDeployStatus") or {}
        self.rev = revisions
        self.now = now
        self.patched = patched
        self.max_concurrent = max_concurrent
        self.pods: dict[int, dict[str, Any]] = {}
        for pod in pods:
            o = ordinal_of(self.name, pod)
            if o is not None:
                self.pods[o] = pod
        self.replicas = self.spec.replicas
        self.order = update_order(range(self.replicas))
        self.targets = batch_targets(self.replicas, self.spec.batch_num,
                                     self.spec.pods_num_to_update)
        self._steps: dict[tuple[int, str], Step] = {}

    # --- per pod ---------------------------------------------------------------------------

    def step(self, ordinal: int, target: RevisionInfo) -> Step:
        key = (ordinal, target.name)
        if key not in self._steps:
            pod, spec = self.pods[ordinal], self.spec
            if spec.strategy == "ABSwap":
                prev = self.rev.current if target.name != self.rev.current.name else None
                st = swap_step(pod, target, spec, self.patched, self.now, prev,
                               self.sidecar_states.get(pod_name(self.name, ordinal)))
            elif spec.strategy == "InPlace":
                st = inplace_step(pod, target, spec, self.now)
            else:
                st = recreate_step(pod, target, spec, self.now)
            self._steps[key] = st
        return self._steps[key]

    def live(self, ordinal: int) -> dict[str, Any] | None:
        """The pod at ``ordinal`` unless it is terminating."""
        pod = self.pods.get(ordinal)
        if pod is None or (pod.get("metadata") or {}).get("deletionTimestamp"):
            return None
        return pod

    def pod_deadline(self, ordinal: int) -> datetime | None:
        started = parse_time(annotations(self.pods[ordinal]).get(ANN_STARTED))
        return started + timedelta(seconds=self.spec.batch_deadline_s) if started else None

    def apply(self, rnd: _Round, ordinal: int, st: Step, *, is_start: bool,
              budget: list[int]) -> bool:
        """Record the action of ``st``; False when a start was held back by the budget."""
        name = pod_name(self.name, ordinal)
        if isinstance(st, (PatchPod, DeletePod)) and is_start:
            if budget[0] <= 0:  # -1: held (pause, interval); 0: the per-call bound is used up
                rnd.more_to_start |= budget[0] == 0
                return False
            budget[0] -= 1
            rnd.events.append(Event("UpdateStarted", st.reason, pod=name))
        if isinstance(st, PatchPod):
            rnd.patch(ordinal, st.patch, st.reason)
        elif isinstance(st, Done) and st.patch:
            rnd.patch(ordinal, st.patch, "update finished")
            rnd.events.append(Event("UpdateCompleted", f"{name} is at "
                                    f"{st.patch['metadata']['annotations'].get(ANN_REVISION)}",
                                    pod=name))
        elif isinstance(st, DeletePod):
            rnd.deletes[ordinal] = st.reason
        if (d := self.pod_deadline(ordinal)) is not None:
            rnd.deadlines.append(d)
        return True

    def started_before(self, ordinal: int, deadline: datetime | None) -> bool:
        """The pod's update started before the batch deadline (one started later, after a
        pause, has its own deadline)."""
        started = parse_time(annotations(self.pods[ordinal]).get(ANN_STARTED))
        return deadline is None or started is None or started <= deadline

    def in_flight(self, ordinal: int, target: RevisionInfo) -> bool:
        return annotations(self.pods[ordinal]).get(ANN_TARGET) == target.name

    def settle(self, rnd: _Round, ordinal: int, target: RevisionInfo, budget: list[int]) -> bool:
        """Drive a pod to ``target`` (rollbacks, stale swaps); True when it got there or its
        update there failed for good (given up: a human looks at it)."""
        st = self.step(ordinal, target)
        if isinstance(st, Done) and not st.patch:
            return True
        if isinstance(st, Failed):
            rnd.events.append(Event("UpdateFailed", st.reason, "Warning",
                                    pod_name(self.name, ordinal)))
            return True
        self.apply(rnd, ordinal, st, is_start=not self.in_flight(ordinal, target), budget=budget)
        return False

    # --- modes -----------------------------------------------------------------------------

    def clear_stale_mark(self, rnd: _Round, ordinal: int, target: RevisionInfo) -> None:
        """A failure mark of another revision is from an earlier release: drop it (a mark is
        never dropped at a release's start, which a lost status write would repeat)."""
        mark = annotations(self.pods[ordinal]).get(ANN_FAILED)
        if mark is not None and mark != target.name:
            rnd.patch(ordinal, {"metadata": {"annotations": {ANN_FAILED: None}}},
                      f"the failure mark of {mark} is from an earlier release")

    def release_round(self, k: int, deadline: datetime | None, paused: bool) -> _Round:
        """Release toward the update revision with batches 1..k started; ``paused``: start
        no new update (pause annotation, or batch k's start is still ahead)."""
        U, C = self.rev.update, self.rev.current
        rnd = _Round()
        started = set(started_members(self.order, self.targets, k))
        members = set(batch_members(self.order, self.targets, k))
        rnd.batch_total = len(members)
        budget = [-1 if paused else self.max_concurrent]
        safety = [self.max_concurrent]  # rollbacks and stale swaps are not held by a pause
        deadline_passed = deadline is not None and self.now > deadline
        for o in sorted(set(self.pods) | set(range(self.replicas)), reverse=True):
            if o >= self.replicas:
                continue
            pod = self.live(o)
            if pod is None:
                if o in started:
                    rnd.converged = False
                if o not in self.pods:  # a terminating pod is replaced once it is gone
                    recreate = self.spec.strategy == "Recreate" and o in started
                    rnd.create_at[o] = (U, True) if recreate else (C, False)
                continue
            ann = annotations(pod)
            self.clear_stale_mark(rnd, o, U)
            if ann.get(ANN_FAILED) == U.name:
                # back to the last good revision; once the release completed (current ==
                # update) it rests where its rollback left it, untouched until a new release
                rnd.batch_failed += o in members
                if (self.spec.strategy != "Recreate" and U.name != C.name
                        and not self.settle(rnd, o, C, safety)):
                    rnd.converged = False
                continue
            st = self.step(o, U)
            if isinstance(st, Done) and not st.patch:
                rnd.batch_done += o in members
                continue
            if self.in_flight(o, U) or isinstance(st, Done):
                rnd.converged = False
                if isinstance(st, Failed) or (deadline_passed and not isinstance(st, Done)
                                              and self.started_before(o, deadline)):
                    reason = st.reason if isinstance(st, Failed) else "the batch deadline passed"
                    self.fail_pod(rnd, o, reason)
                    rnd.batch_failed += o in members
                    continue
                self.apply(rnd, o, st, is_start=False, budget=budget)
            elif o in started:
                rnd.converged = False
                if isinstance(st, Failed):  # cannot even start (e.g. a pod without slots)
                    self.fail_pod(rnd, o, st.reason)
                    rnd.batch_failed += o in members
                    continue
                self.apply(rnd, o, st, is_start=True, budget=budget)
            elif ann.get(ANN_TARGET) is not None:
                # a swap of an abandoned release or a rollback under way: to the last good
                if not self.settle(rnd, o, C, safety):
                    rnd.converged = False
        return rnd

    def fail_pod(self, rnd: _Round, ordinal: int, reason: str) -> None:
        """Mark a pod's update as failed and start taking it back to the current revision."""
        name = pod_name(self.name, ordinal)
        U, C = self.rev.update, self.rev.current
        rnd.events.append(Event("UpdateFailed", f"{name}: {reason}", "Warning", name))
        rnd.patch(ordinal, {"metadata": {"annotations": {ANN_FAILED: U.name}}},
                  f"update to {U.name} failed: {reason}")
        if self.spec.strategy == "Recreate":  # the pod stays (at U, failing); no longer updating
            rnd.patch(ordinal, {"metadata": {"annotations": {ANN_TARGET: None, ANN_STARTED: None}}},
                      "the recreated pod failed")
            return
        if C.name == U.name:
            return  # nothing released: there is nothing to go back to
        back = self.step(ordinal, C)
        if isinstance(back, (PatchPod, Done)) and back.patch:
            rnd.patch(ordinal, back.patch, f"back to {C.name}")

    def failed_round(self, k: int) -> _Round:
        """A failed batch: its pods (and any swap under way) go back to the current revision."""
        C = self.rev.current
        rnd = _Round()
        members = set(batch_members(self.order, self.targets, k))
        rnd.rollback_total = rnd.batch_total = len(members)
        budget = [self.max_concurrent]
        for o in sorted(set(self.pods) | set(range(self.replicas)), reverse=True):
            if o >= self.replicas:
                continue
            pod = self.live(o)
            if pod is None:
                if o not in self.pods:
                    rnd.create_at[o] = (C, False)
                rnd.converged = rnd.converged and o not in members
                continue
            ann = annotations(pod)
            rnd.batch_failed += o in members and ann.get(ANN_FAILED) == self.rev.update.name
            if o in members or ann.get(ANN_TARGET) is not None:
                if self.settle(rnd, o, C, budget):
                    rnd.rollback_done += o in members
                else:
                    rnd.converged = False
        return rnd

    def rollback_round(self, target: RevisionInfo) -> _Round:
        """One-key rollback: every pod to ``target`` at once (bounded per call), no batches."""
        rnd = _Round()
        budget = [self.max_concurrent]
        rnd.rollback_total = self.replicas
        for o in range(self.replicas - 1, -1, -1):
            pod = self.live(o)
            if pod is None:
                if o not in self.pods:
                    rnd.create_at[o] = (target, False)
                rnd.converged = False
                continue
            self.clear_stale_mark(rnd, o, target)
            if annotations(pod).get(ANN_FAILED) == target.name:
                rnd.rollback_done += 1
                rnd.batch_failed += 1
                continue
            st = self.step(o, target)
            if isinstance(st, Done) and not st.patch:
                rnd.rollback_done += 1
            elif isinstance(st, Failed):
                name = pod_name(self.name, o)
                rnd.events.append(Event("UpdateFailed", f"{name}: {st.reason}", "Warning", name))
                rnd.patch(o, {"metadata": {"annotations": {ANN_FAILED: target.name}}},
                          f"rollback to {target.name} failed: {st.reason}")
                rnd.converged = False
            else:
                rnd.converged = False
                self.apply(rnd, o, st, is_start=not self.in_flight(o, target), budget=budget)
        return rnd


# --- the planner ---------------------------------------------------------------------------

def plan_release(stsp_obj: dict[str, Any], pods: list[dict[str, Any]],
                 revisions: CurrentAndUpdate, now: datetime, patched: bool,
                 max_concurrent: int = DEFAULT_MAX_CONCURRENT,
                 sidecar_states: Mapping[str, dict[str, Any]] | None = None) -> Plan:
    """The next actions for a StatefulSetPlus; raises SpecError for an unusable spec.

    ``pods``: the pods the object owns (any order). ``patched``: the apiserver patch is on (the
    controller found out, e.g. by a dry-run env update of a pod with the opt-in annotation).
    ``max_concurrent``: at most this many pod updates *start* per call; updates under way always
    continue. ``sidecar_states``: by pod name, the sidecar's ``/state`` of pods that await a
    config report (:func:`podkit_operator.configs.verdict`).
    """
    p = _Planner(stsp_obj, pods, revisions, now, patched, max_concurrent,
                 sidecar_states or {})
    plan = Plan()
    if p.ann.get(ANN_ROLLBACK) == "true":
        rnd, bds, cur, upd = _plan_rollback(p)
    elif (p.old.get("updateRevision") == revisions.update.name
          and _condition(p.old, "ReleaseFailed") == "True"):
        rnd, bds, cur, upd = _plan_failed(p)
    else:
        rnd, bds, cur, upd, stsp_ann = _plan_forward(p)
        plan.stsp_annotations = stsp_ann
    _fill_pods(p, rnd, plan)
    plan.events = rnd.events + plan.events
    if p.spec.config_maps and not patched and _condition(p.old, "ConfigGrayscale") != "False":
        plan.events.append(Event("ConfigGrayscaleRefused", CONFIG_REFUSED, "Warning"))
    plan.status = _status(p, bds, cur, upd)
    plan.requeue_after = _requeue(p, rnd, bds)
    return plan


# (round, batchDeployStatus, currentRevision, updateRevision)
_Outcome = tuple[_Round, dict[str, Any], str, str]


def _confirmed(p: _Planner, k: int) -> bool:
    """Manual mode: ``podkit.io/confirm-batch`` >= k confirms batch k (and those before it)."""
    try:
        return int(str(p.ann.get(ANN_CONFIRM, "")).strip()) >= k
    except ValueError:
        return False


def _plan_forward(p: _Planner) -> tuple[_Round, dict[str, Any], str, str,
                                         dict[str, str | None]]:
    """A release toward the update revision, batch by batch.

    A batch's start is ``batchDeadlineTime - batchDeadlineSeconds``: automatic mode moves to
    batch k+1 as soon as batch k converged, with a start ``batchIntervalSeconds`` ahead, so
    the interval needs no status field of its own (and survives restarts).
    """
    U, C = p.rev.update, p.rev.current
    spec, now, bds_old = p.spec, p.now, p.old_bds
    dl = timedelta(seconds=spec.batch_deadline_s)
    new_release = p.old.get("updateRevision") != U.name
    paused = p.ann.get(ANN_PAUSE) == "true"
    releasing = U.name != C.name  # else nothing to hold: no pause, confirmation or interval
    events: list[Event] = []
    stsp_ann: dict[str, str | None] = {}
    if new_release:
        k, deadline = 1, now + dl
        if ANN_CONFIRM in p.ann:  # a confirmation left from an earlier release confirms nothing
            stsp_ann[ANN_CONFIRM] = None
            p.ann = {key: v for key, v in p.ann.items() if key != ANN_CONFIRM}
        if releasing:
            events.append(Event("ReleaseStarted", f"release {C.name} -> {U.name} in "
                                f"{spec.batch_num} batches {p.targets}"))
    else:
        k = min(max(int(bds_old.get("batchOrder") or 1), 1), spec.batch_num)
        deadline = parse_time(bds_old.get("batchDeadlineTime")) or now + dl
    seen_converged = (not new_release and bds_old.get("batchOrder") == k
                      and bool(bds_old.get("currentDeployComplete")))
    while True:
        not_before = deadline - dl
        rnd = p.release_round(k, deadline, paused or now < not_before)
        members = batch_members(p.order, p.targets, k)
        if releasing and members and \
                rnd.batch_failed * 100 > spec.max_failed_percent * len(members):
            events.append(Event("BatchFailed", f"batch {k}: {rnd.batch_failed} of "
                                f"{len(members)} pods failed (maxFailedPercent "
                                f"{spec.max_failed_percent}); rolling the batch back", "Warning"))
            rnd2 = p.failed_round(k)
            for o, (patch, reason) in rnd.patches.items():  # keep the failure marks
                mark = (patch.get("metadata") or {}).get("annotations", {}).get(ANN_FAILED)
                if mark:
                    rnd2.patch(o, {"metadata": {"annotations": {ANN_FAILED: mark}}}, reason)
            rnd2.events = rnd.events + rnd2.events + events
            return rnd2, _bds_failed(p, k, deadline, rnd2), C.name, U.name, stsp_ann
        if not rnd.converged:
            break
        if releasing and not seen_converged:
            events.append(Event("BatchCompleted", f"batch {k} of {spec.batch_num} converged "
                                f"({rnd.batch_done}/{rnd.batch_total} updated)"))
        if k >= spec.batch_num:
            if releasing:
                events.append(Event("ReleaseCompleted", f"all pods at {U.name}"))
            rnd.events += events
            bds = _bds(p, k, "Completed", "Completed", deadline, rnd, True)
            return rnd, bds, U.name, U.name, stsp_ann
        if releasing and (paused or (not spec.batch_auto and not _confirmed(p, k + 1))):
            break
        interval = spec.batch_interval_s if releasing and spec.batch_auto else 0
        k, deadline, seen_converged = k + 1, now + timedelta(seconds=interval) + dl, False
        if releasing:
            events.append(Event("BatchStarted", f"batch {k} of {spec.batch_num} (pods "
                                f"{batch_members(p.order, p.targets, k)}) starts at "
                                f"{rfc3339(deadline - dl)}"))
    rnd.events += events
    waiting = rnd.converged and releasing and not paused  # only a confirmation is missing
    general = "Paused" if paused and releasing else (
        "WaitToConfirm" if waiting else "Progressing")
    action = "WaitToConfirm" if waiting else "Next"
    return rnd, _bds(p, k, action, general, deadline, rnd, rnd.converged), C.name, U.name, \
        stsp_ann


def _plan_failed(p: _Planner) -> _Outcome:
    k = min(max(int(p.old_bds.get("batchOrder") or 1), 1), p.spec.batch_num)
    rnd = p.failed_round(k)
    return rnd, _bds_failed(p, k, parse_time(p.old_bds.get("batchDeadlineTime")), rnd), \
        p.rev.current.name, p.rev.update.name


def _plan_rollback(p: _Planner) -> _Outcome:
    """One-key rollback: to the current revision while a release is under way, else to the
    previous one."""
    C, U = p.rev.current, p.rev.update
    target = C if U.name != C.name else (p.rev.previous or C)
    rnd = p.rollback_round(target)
    if not rnd.converged and (p.old.get("updateRevision") != target.name
                              or _general(p) != "RollingBack"):
        rnd.events.append(Event("RollbackStarted", f"one-key rollback to {target.name}"))
    bds = {
        "action": "Completed" if rnd.converged else "Next",
        "batchOrder": 1, "batchOrdinal": 0, "batchReplicas": p.replicas,
        "currentDeployComplete": rnd.converged,
        "currentOrderSuccessPer": _per(rnd.rollback_done - rnd.batch_failed, p.replicas),
        "currentOrderProgress": f"{rnd.rollback_done - rnd.batch_failed}/{p.replicas}",
        "currentRollbackProgress": f"{rnd.rollback_done}/{p.replicas}",
        "generalStatus": ("Failed" if rnd.batch_failed else "Completed") if rnd.converged
        else "RollingBack",
        "rollback": True,
    }
    cur = target.name if rnd.converged else C.name
    return rnd, bds, cur, target.name


def _general(p: _Planner) -> str | None:
    return p.old_bds.get("generalStatus")


def _per(done: int, total: int) -> int:
    return 100 if total <= 0 else max(0, done) * 100 // total


def _bds(p: _Planner, k: int, action: str, general: str, deadline: datetime | None,
         rnd: _Round, converged: bool) -> dict[str, Any]:
    total = rnd.batch_total
    return {
        "action": action,
        "batchOrder": k,
        "batchOrdinal": p.replicas - p.targets[k - 1] if p.targets else 0,
        "batchReplicas": total,
        "batchDeadlineTime": rfc3339(deadline) if deadline else None,
        "currentDeployComplete": converged,
        "currentOrderSuccessPer": _per(rnd.batch_done, total),
        "currentOrderProgress": f"{rnd.batch_done}/{total}",
        "currentRollbackProgress": "",
        "generalStatus": general,
    }


def _bds_failed(p: _Planner, k: int, deadline: datetime | None, rnd: _Round) -> dict[str, Any]:
    bds = _bds(p, k, "Completed" if rnd.converged else "Next",
               "Failed" if rnd.converged else "RollingBack", deadline, rnd, False)
    bds["currentOrderProgress"] = f"{rnd.batch_total - rnd.rollback_done}/{rnd.batch_total}"
    bds["currentOrderSuccessPer"] = _per(rnd.batch_total - rnd.batch_failed, rnd.batch_total)
    bds["currentRollbackProgress"] = f"{rnd.rollback_done}/{rnd.rollback_total}"
    return bds


# --- pods to create and delete ---------------------------------------------------------------

def _fill_pods(p: _Planner, rnd: _Round, plan: Plan) -> None:
    for o in sorted(rnd.create_at):
        rev, in_flight = rnd.create_at[o]
        plan.create.append(PodCreate(o, rev.name, _new_pod(p, o, rev, in_flight)))
    for o in sorted((o for o in p.pods if o >= p.replicas), reverse=True):
        if not (p.pods[o].get("metadata") or {}).get("deletionTimestamp"):
            plan.delete.append(PodDelete(pod_name(p.name, o), o, "scale down"))
    for o in sorted(rnd.deletes, reverse=True):
        plan.delete.append(PodDelete(pod_name(p.name, o), o, rnd.deletes[o]))
    for o in sorted(rnd.patches, reverse=True):
        if o in rnd.deletes:  # a pod deleted (Recreate) needs no patch
            continue
        patch, reason = rnd.patches[o]
        plan.patches.append(PodPatch(pod_name(p.name, o), o, patch, reason))


def _new_pod(p: _Planner, ordinal: int, rev: RevisionInfo, in_flight: bool) -> dict[str, Any]:
    if not rev.template:
        raise ValueError(f"revision {rev.name} has no template; pass RevisionInfo.template")
    if p.spec.strategy == "ABSwap":
        body = build_pod(p.stsp, p.spec, ordinal, rev.name, rev.template, p.patched)
    else:
        body = build_plain_pod(p.stsp, p.spec, ordinal, rev.name, rev.template)
    if in_flight:  # Recreate: a pod created at the target is an update under way until Ready
        body["metadata"]["annotations"].update({ANN_TARGET: rev.name,
                                                ANN_STARTED: rfc3339(p.now)})
    return body


# --- status ----------------------------------------------------------------------------------

def _condition(status: dict[str, Any], ctype: str) -> str | None:
    for c in status.get("conditions") or []:
        if c.get("type") == ctype:
            return c.get("status")
    return None


def _conditions(p: _Planner, bds: dict[str, Any], rollback: bool) -> list[dict[str, Any]]:
    general = bds["generalStatus"]
    failed = general == "Failed" or (general == "RollingBack" and not rollback)
    wanted = [
        ("SwapMode", "True", "Patched" if p.patched else "Stock",
         "pods carry PODKIT_VERSION in env (apiserver patch present)" if p.patched
         else "versions come from the images (stock apiserver)"),
        ("Progressing", "False" if general in ("Completed", "Failed") else "True", general,
         f"batch {bds['batchOrder']}: {bds['currentOrderProgress']} updated"),
        ("ReleaseFailed", "True" if failed else "False",
         ("RollbackFailed" if rollback else "BatchFailed") if failed else "NoFailure",
         ("a pod could not be rolled back" if rollback else
          f"batch {bds['batchOrder']} failed and is rolled back") if failed else ""),
    ]
    if p.spec.config_maps:
        wanted.append(_config_condition(p.patched))
    old = {c.get("type"): c for c in p.old.get("conditions") or []}
    out = []
    for ctype, status, reason, message in wanted:
        prev = old.get(ctype) or {}
        since = prev.get("lastTransitionTime") if prev.get("status") == status else None
        out.append({"type": ctype, "status": status, "reason": reason, "message": message,
                    "lastTransitionTime": since or rfc3339(p.now)})
    return out


CONFIG_REFUSED = ("the apiserver does not let pods change volumes in place (no "
                  "PodkitMutablePodSpec gate): config grayscale is refused; pods mount "
                  "spec.configMaps as named, so an edit reaches every pod at once")


def _config_condition(patched: bool) -> tuple[str, str, str, str]:
    """``ConfigGrayscale``: whether edits of spec.configMaps are released batch by batch."""
    if patched:
        return ("ConfigGrayscale", "True", "Enabled",
                "each edit of spec.configMaps is a versioned copy released batch by batch")
    return ("ConfigGrayscale", "False", "StockCluster", CONFIG_REFUSED)


def _config_status(p: _Planner, current: str, update: str) -> list[dict[str, Any]]:
    """Per released ConfigMap: the copies of the current and update revisions, and the
    versions the pods of each batch mount."""
    volumes = p.spec.config_volumes
    revs = {r.name: r for r in (p.rev.current, p.rev.update, p.rev.previous) if r}
    specs = {o: pod.get("spec") or {} for o, pod in p.pods.items() if o < p.replicas}
    per_batch = [batch_versions(specs, batch_members(p.order, p.targets, k), volumes,
                                p.rev.copies) for k in range(1, len(p.targets) + 1)]
    out = []
    for source in p.spec.config_maps:
        entry: dict[str, Any] = {"name": source}
        for key, rev_name in (("current", current), ("update", update)):
            rev = revs.get(rev_name)
            mounted = volume_sources(rev.template["spec"], volumes) if rev else {}
            name = next((n for n in mounted.values()
                         if (c := p.rev.copies.get(n)) and c.source == source), None)
            if name:
                entry[f"{key}Copy"] = name
                entry[f"{key}Version"] = p.rev.copies[name].version
        entry["batchVersions"] = [b.get(source, "") for b in per_batch]
        out.append(entry)
    return out


def _status(p: _Planner, bds: dict[str, Any], current: str, update: str) -> dict[str, Any]:
    rollback = bool(bds.get("rollback"))
    bds = {k: v for k, v in bds.items() if v is not None and k != "rollback"}
    live = list(p.pods.values())
    at_update = sum(1 for o, pod in p.pods.items() if o < p.replicas
                    and annotations(pod).get(ANN_REVISION) == update
                    and ANN_TARGET not in annotations(pod))
    status = {
        "observedGeneration": p.meta.get("generation"),
        "replicas": len(live),
        "readyReplicas": sum(1 for pod in live if pod_ready(pod)),
        "updatedReplicas": at_update,
        "currentRevision": current,
        "updateRevision": update,
        "selector": selector_string(p.spec.selector),
        "batchDeployStatus": bds,
    }
    if p.spec.config_maps and p.patched:
        status["configMaps"] = _config_status(p, current, update)
    status["conditions"] = _conditions(p, bds, rollback)
    return status


def _requeue(p: _Planner, rnd: _Round, bds: dict[str, Any]) -> float | None:
    """When to look again without an event: a batch interval, a deadline, held-back starts."""
    times: list[datetime] = list(rnd.deadlines)
    if (d := parse_time(bds.get("batchDeadlineTime"))) and not bds.get("currentDeployComplete") \
            and bds["generalStatus"] in ("Progressing", "Paused") and d > p.now:
        times.append(d)
    if d and bds["generalStatus"] == "Progressing":  # a batch waiting for its interval
        start = d - timedelta(seconds=p.spec.batch_deadline_s)
        if start > p.now:
            times.append(start)
    delays = [(t - p.now).total_seconds() + 1 for t in times]
    if rnd.more_to_start:
        delays.append(1.0)
    delays = [max(d, 1.0) for d in delays]
    return min(delays) if delays else None

