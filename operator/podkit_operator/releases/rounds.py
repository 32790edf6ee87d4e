"""One look at every pod of a StatefulSetPlus for one position of its release: a round.

A :class:`ReleasePass` holds one planner call's inputs (parsed once) and the pods by ordinal;
its ``*_round`` methods look at every pod once toward a target and collect what to do in a
:class:`PodRound`. The planner (:mod:`.plan`) decides which rounds to run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ..api.keys import ANN_FAILED, ANN_REVISION, ANN_STARTED, ANN_TARGET
from ..api.reasons import EventReason
from ..api.statefulsetplus import Strategy, StsPlusSpec, scaled_count
from ..inplace.patches import merge_patches
from ..inplace.pods import SwapLayout, ordinal_of, pod_name, slot_names
from ..inplace.specdiff import DiffMemo, classify
from ..inplace.steps import (
    DeletePod,
    Done,
    Failed,
    PatchPod,
    ResizePod,
    Step,
    Wait,
    not_started,
    serving_problem,
    serving_record,
)
from ..inplace.strategies import STRATEGIES, PodUpdate
from ..kube.objects import annotations_of, parse_time, pod_ready, terminating
from ..revisions.revision import CurrentAndUpdate, RevisionInfo, revision_spec
from .actions import Event
from .batches import batch_members, batch_targets, started_members, update_order


class StartBudget:
    """How many pod updates may still *start* in this round (updates under way always go on).

    ``held``: none may start (a pause, or the batch's start is still ahead). ``recheck``: a
    start held back by ``limit`` needs another look soon (the per-pass bound); False when the
    limit is the pods in flight or unavailable, whose changes wake the loop anyway."""

    def __init__(self, limit: int, held: bool = False, recheck: bool = True) -> None:
        self.remaining = limit
        self.held = held
        self.recheck = recheck

    def take(self) -> bool:
        """Spend one start; False when held or used up."""
        if self.held or self.remaining <= 0:
            return False
        self.remaining -= 1
        return True


@dataclass(frozen=True)
class PodToCreate:
    """A missing pod, created at ``revision``; ``in_flight``: as an update under way
    (Recreate: the pod is replaced at the target)."""

    revision: RevisionInfo
    in_flight: bool


@dataclass
class PodRound:
    """The outcome of looking at every pod once for one batch position."""

    patches: dict[int, PatchPod] = field(default_factory=dict)  # the pod's patch so far, and why
    deletes: dict[int, str] = field(default_factory=dict)  # ordinal -> reason
    resizes: dict[int, ResizePod] = field(default_factory=dict)  # pods/resize bodies
    events: list[Event] = field(default_factory=list)
    creates: dict[int, PodToCreate] = field(default_factory=dict)
    converged: bool = True
    batch_total: int = 0
    batch_done: int = 0
    batch_failed: int = 0
    rollback_total: int = 0
    rollback_done: int = 0
    more_to_start: bool = False  # a start was held back by the per-call bound: look again soon
    waiting: dict[int, str] = field(default_factory=dict)  # starts held: the pod has not started
    held: dict[int, str] = field(default_factory=dict)  # updates the kubelet holds (a resize)
    deadlines: list[datetime] = field(default_factory=list)  # of the updates under way

    def patch(self, ordinal: int, patch: dict[str, Any] | None, reason: str) -> None:
        """Add ``patch`` to the pod's patch of this round."""
        if not patch:
            return
        old = self.patches.get(ordinal)
        self.patches[ordinal] = (PatchPod(merge_patches(old.patch, patch),
                                          f"{old.reason}; {reason}")
                                 if old else PatchPod(patch, reason))


class ReleasePass:
    """One planner call over one StatefulSetPlus: its inputs and the steps of its pods."""

    def __init__(self, stsp: dict[str, Any], spec: StsPlusSpec, pods: list[dict[str, Any]],
                 revisions: CurrentAndUpdate, now: datetime, patched: bool,
                 max_concurrent: int, sidecar_states: Mapping[str, dict[str, Any]],
                 diffs: DiffMemo | None = None) -> None:
        self.stsp = stsp
        self.name: str = stsp["metadata"]["name"]
        self.stsp_annotations = annotations_of(stsp)
        self.spec = spec
        self.rules = STRATEGIES[spec.strategy]
        self.prior_status: dict[str, Any] = stsp.get("status") or {}
        self.prior_batch: dict[str, Any] = self.prior_status.get("batchDeployStatus") or {}
        self.revisions = revisions
        self.now = now
        self.patched = patched
        self.max_concurrent = max_concurrent
        self.sidecar_states = sidecar_states
        self.pods: dict[int, dict[str, Any]] = {}
        for pod in pods:
            ordinal = ordinal_of(self.name, pod)
            if ordinal is not None:
                self.pods[ordinal] = pod
        self.replicas = spec.replicas
        self.ordinals = spec.ordinals
        self._steps: dict[tuple[int, str], Step] = {}
        self._targets: dict[str, tuple[StsPlusSpec, SwapLayout | None]] = {}
        self._update_recreates: bool | None = None
        if spec.strategy is Strategy.ROLLING_UPDATE:  # one batch: the ordinals >= the partition
            self.order = update_order(self.ordinals)
            self.targets = [self.replicas - min(spec.partition, self.replicas)]
        else:
            done, reached = self.reached()
            absent = [o for o in self.ordinals if o not in self.pods]
            replaced = bool(absent) and (self.rules.replaces_pods or self.update_recreates)
            self.order = update_order(self.ordinals, done, reached, absent if replaced else ())
            self.targets = batch_targets(self.replicas, spec.batch_num, spec.pods_num_to_update)
        self.diffs = diffs
        if diffs is not None:
            diffs.begin((repr(spec), patched))

    @property
    def current(self) -> RevisionInfo:
        return self.revisions.current

    @property
    def update(self) -> RevisionInfo:
        return self.revisions.update

    @property
    def releasing(self) -> bool:
        """The update revision differs from the current one: a release is under way."""
        return self.update.name != self.current.name

    @property
    def held_by_partition(self) -> bool:
        """A release whose last batch leaves pods below the partition at the current
        revision (RollingUpdate's ``partition``): it waits there, never completes."""
        return self.releasing and bool(self.targets) and self.targets[-1] < self.replicas

    @property
    def update_recreates(self) -> bool:
        """A pod at the current revision cannot be brought to the update revision in place:
        a pod deleted for it is created again at the update revision."""
        if self._update_recreates is None:
            current, update = self.current, self.update
            if not (current.template and update.template) or not self.releasing:
                self._update_recreates = False
            else:
                have, want = (self.rules.build_pod(self.stsp, revision_spec(self.spec,
                                                                            r.template),
                                                   0, r.name, r.template, self.patched)["spec"]
                              for r in (current, update))
                slots = slot_names(self.spec.business)
                self._update_recreates = classify(have, want, self.patched,
                                                  ignore={s: ("image",) for s in slots}
                                                  ).needs_recreate
        return self._update_recreates

    def reached(self) -> tuple[set[int], set[int]]:
        """Ordinals whose pod the release has reached: those done (recorded at the update
        revision, no update under way, not failed), and all of them (on the way there or
        failed there too; terminating pods too: one a ``Recreate`` is replacing)."""
        update = self.update.name
        done, reached = set(), set()
        for ordinal, pod in self.pods.items():
            ann = annotations_of(pod)
            if update in (ann.get(ANN_REVISION), ann.get(ANN_TARGET), ann.get(ANN_FAILED)):
                reached.add(ordinal)
                if (ann.get(ANN_REVISION) == update and ANN_TARGET not in ann
                        and ann.get(ANN_FAILED) != update):
                    done.add(ordinal)
        return done, reached

    def members(self, batch: int) -> list[int]:
        """The ordinals of batch ``batch`` (1-based)."""
        return batch_members(self.order, self.targets, batch)

    def deadline_span(self) -> timedelta:
        return timedelta(seconds=self.spec.batch_deadline_s)

    def ordinals_descending(self) -> list[int]:
        """Every ordinal of the range (``ordinals.start`` on), pod or not, highest first."""
        return sorted(self.ordinals, reverse=True)

    def unavailable(self) -> int:
        """Pods in range that are missing, terminating, not Ready or being updated."""
        return sum(1 for o in self.ordinals
                   if (pod := self.live(o)) is None or not pod_ready(pod)
                   or ANN_TARGET in annotations_of(pod))

    def start_budget(self, started: set[int], held: bool) -> StartBudget:
        """The starts this round may make: the per-pass bound, ``maxInFlight`` less the pods of
        the release under way, ``maxUnavailable`` less the pods unavailable."""
        spec, limit = self.spec, self.max_concurrent
        if spec.max_in_flight is not None:
            under_way = sum(1 for o in started if (pod := self.live(o)) is None
                            or annotations_of(pod).get(ANN_TARGET) == self.update.name)
            limit = min(limit, spec.max_in_flight - under_way)
        if spec.max_unavailable is not None:
            limit = min(limit, scaled_count(spec.max_unavailable, self.replicas)
                        - self.unavailable())
        return StartBudget(max(0, limit), held=held, recheck=limit >= self.max_concurrent)

    # --- per pod ---------------------------------------------------------------------------

    def target_spec(self, target: RevisionInfo) -> tuple[StsPlusSpec, SwapLayout | None]:
        """What ``target``'s pods run (:func:`revision_spec`) and their layout, when the
        strategy has one: built once per pass, for all its pods."""
        if target.name not in self._targets:
            spec = revision_spec(self.spec, target.template)
            layout = (self.rules.layout(spec, target.template, self.patched)
                      if self.rules.layout is not None else None)
            self._targets[target.name] = spec, layout
        return self._targets[target.name]

    def step(self, ordinal: int, target: RevisionInfo) -> Step:
        """The pod's next step toward ``target`` (computed once per pass)."""
        key = (ordinal, target.name)
        if key not in self._steps:
            # a way back to the current revision is not soaked: it ran there before
            forward = target.name != self.current.name
            spec, layout = self.target_spec(target)
            self._steps[key] = self.rules.step(PodUpdate(
                self.pods[ordinal], target, spec, self.now,
                self.patched, self.current if forward else None,
                self.sidecar_states.get(pod_name(self.name, ordinal)),
                self.spec.min_ready_s if forward else 0, layout, self.diffs))
        return self._steps[key]

    def live(self, ordinal: int) -> dict[str, Any] | None:
        """The pod at ``ordinal`` unless it is terminating."""
        pod = self.pods.get(ordinal)
        if pod is None or terminating(pod):
            return None
        return pod

    def started_at(self, ordinal: int) -> datetime | None:
        return parse_time(annotations_of(self.pods[ordinal]).get(ANN_STARTED))

    def in_flight(self, ordinal: int, target: RevisionInfo) -> bool:
        return annotations_of(self.pods[ordinal]).get(ANN_TARGET) == target.name

    def out_of_time(self, ordinal: int) -> bool:
        """The pod's own time (its start + batchDeadlineSeconds) is up too. A pod whose update
        started after its batch did (after a pause, a scale that moved the batch boundaries,
        a pod made again, a start held back) has that whole span, not what was left of the
        batch's (make chaos seed 27: a 10 s soak begun 7 s before the batch deadline)."""
        started = self.started_at(ordinal)
        return started is None or self.now > started + self.deadline_span()

    def record(self, round_: PodRound, ordinal: int, step: Step, *, is_start: bool,
               budget: StartBudget) -> bool:
        """Record the action of ``step``; False when a start was held back by the budget."""
        name = pod_name(self.name, ordinal)
        if isinstance(step, (PatchPod, DeletePod, ResizePod)) and is_start:
            if not budget.take():
                round_.more_to_start |= not budget.held and budget.recheck
                return False
            round_.events.append(Event(EventReason.UPDATE_STARTED, step.reason, pod=name))
        if isinstance(step, PatchPod):
            round_.patch(ordinal, step.patch, step.reason)
        elif isinstance(step, Done) and step.patch:
            round_.patch(ordinal, step.patch, "update finished")
            revision = (step.patch["metadata"]["annotations"].get(ANN_REVISION)
                        or annotations_of(self.pods[ordinal]).get(ANN_REVISION))
            round_.events.append(Event(EventReason.UPDATE_COMPLETED, f"{name} is at {revision}",
                                       pod=name))
        elif isinstance(step, DeletePod):
            round_.deletes[ordinal] = step.reason
        elif isinstance(step, Wait):
            if step.until is not None:
                round_.deadlines.append(step.until)
            if step.held:
                round_.held[ordinal] = step.reason
        elif isinstance(step, ResizePod):
            round_.resizes[ordinal] = step
        if (started := self.started_at(ordinal)) is not None:
            round_.deadlines.append(started + self.deadline_span())
        return True

    def settle(self, round_: PodRound, ordinal: int, target: RevisionInfo,
               budget: StartBudget) -> bool:
        """Drive a pod to ``target`` (rollbacks, stale swaps); True when it got there or its
        update there failed for good (given up: a human looks at it)."""
        step = self.step(ordinal, target)
        if isinstance(step, Done) and not step.patch:
            return True
        if isinstance(step, Failed):
            round_.events.append(Event(EventReason.UPDATE_FAILED, step.reason, "Warning",
                                       pod_name(self.name, ordinal)))
            return True
        self.record(round_, ordinal, step, is_start=not self.in_flight(ordinal, target),
                    budget=budget)
        return False

    def failed_not_back(self, pod: dict[str, Any]) -> bool:
        """The pod's update failed and it is not back yet: still recorded at the update
        revision (a crash after its soak) or on its way back (a pod of an earlier batch, made
        again during a later one, whose swap failed: make chaos seed 43). Such a failure
        counts in the current batch, whichever batch the pod was in. A replaced pod
        (Recreate) stays where it failed."""
        ann = annotations_of(pod)
        if self.rules.replaces_pods or ann.get(ANN_FAILED) != self.update.name:
            return False
        return (ann.get(ANN_REVISION) == self.update.name
                or ann.get(ANN_TARGET) == self.current.name)

    def clear_stale_mark(self, round_: PodRound, ordinal: int, target: RevisionInfo) -> None:
        """A failure mark of another revision is from an earlier release: drop it (a mark is
        never dropped at a release's start, which a lost status write would repeat)."""
        mark = annotations_of(self.pods[ordinal]).get(ANN_FAILED)
        if mark is not None and mark != target.name:
            round_.patch(ordinal, {"metadata": {"annotations": {ANN_FAILED: None}}},
                         f"the failure mark of {mark} is from an earlier release")

    def fail_pod(self, round_: PodRound, ordinal: int, reason: str) -> None:
        """Mark a pod's update as failed and start taking it back to the current revision."""
        name = pod_name(self.name, ordinal)
        update, current = self.update, self.current
        round_.events.append(Event(EventReason.UPDATE_FAILED, f"{name}: {reason}", "Warning",
                                   name))
        round_.patch(ordinal, {"metadata": {"annotations": {ANN_FAILED: update.name}}},
                     f"update to {update.name} failed: {reason}")
        if self.rules.replaces_pods:  # the pod stays (at the update, failing); no longer updating
            round_.patch(ordinal, {"metadata": {"annotations": {ANN_TARGET: None,
                                                                ANN_STARTED: None}}},
                         "the recreated pod failed")
            return
        if not self.releasing:
            return  # nothing released: there is nothing to go back to
        back = self.step(ordinal, current)
        if isinstance(back, (PatchPod, Done)) and back.patch:
            round_.patch(ordinal, back.patch, f"back to {current.name}")

    # --- rounds ----------------------------------------------------------------------------

    def release_round(self, batch: int, deadline: datetime | None, held: bool) -> PodRound:
        """Release toward the update revision with batches 1..``batch`` started; ``held``:
        start no new update (pause annotation, or the batch's start is still ahead)."""
        update, current = self.update, self.current
        round_ = PodRound()
        started = set(started_members(self.order, self.targets, batch))
        members = set(self.members(batch))
        round_.batch_total = len(members)
        budget = self.start_budget(started, held)
        safety = StartBudget(self.max_concurrent)  # rollbacks, stale swaps: never held
        # paced starts (maxInFlight, maxUnavailable, RollingUpdate) may take the batch past its
        # deadline by design: then each pod has only its own (its start + batchDeadlineSeconds)
        deadline_passed = (deadline is not None and self.now > deadline
                           and not self.spec.paced)
        for ordinal in self.ordinals_descending():
            pod = self.live(ordinal)
            if pod is None:
                if ordinal in started:
                    round_.converged = False
                if ordinal not in self.pods:  # a terminating pod is replaced once it is gone
                    replace = ((self.rules.replaces_pods or self.update_recreates)
                               and ordinal in started)
                    round_.creates[ordinal] = (PodToCreate(update, True) if replace
                                               else PodToCreate(current, False))
                continue
            pod_annotations = annotations_of(pod)
            self.clear_stale_mark(round_, ordinal, update)
            if pod_annotations.get(ANN_FAILED) == update.name:
                # back to the last good revision; once the release completed (current ==
                # update) it rests where its rollback left it, untouched until a new release
                # one not back yet (see failed_not_back) counts in the current batch,
                # whichever batch it was in
                round_.batch_failed += (ordinal in members or self.failed_not_back(pod))
                if (not self.rules.replaces_pods and self.releasing
                        and not self.settle(round_, ordinal, current, safety)):
                    round_.converged = False
                continue
            step = self.step(ordinal, update)
            if isinstance(step, Done) and not step.patch:
                if self.releasing and (problem := serving_problem(pod)):
                    # updated, but its new version crashed or fails its probes before the
                    # release completed: a failure of the release like any other (it counts
                    # in the current batch, whichever batch the pod was in)
                    round_.converged = False
                    self.fail_pod(round_, ordinal, f"{update.name} failed after its soak: "
                                                   f"{problem}")
                    round_.batch_failed += 1
                    continue
                round_.batch_done += ordinal in members
                round_.patch(ordinal, serving_record(pod, self.spec, self.now),
                             "record the container that serves")
                continue
            if self.in_flight(ordinal, update) or isinstance(step, Done):
                round_.converged = False
                if isinstance(step, Failed) or (deadline_passed and not isinstance(step, Done)
                                                and self.out_of_time(ordinal)):
                    reason = (step.reason if isinstance(step, Failed)
                              else "the batch deadline passed")
                    self.fail_pod(round_, ordinal, reason)
                    round_.batch_failed += 1  # in the current batch, whichever it was in
                    continue
                self.record(round_, ordinal, step, is_start=False, budget=budget)
            elif ordinal in started:
                round_.converged = False
                if isinstance(step, Failed):  # cannot even start (e.g. a pod without slots)
                    self.fail_pod(round_, ordinal, step.reason)
                    round_.batch_failed += 1
                    continue
                if (why := not_started(pod)) is not None:  # waited for: see Progressing
                    round_.waiting[ordinal] = why
                    continue
                self.record(round_, ordinal, step, is_start=True, budget=budget)
            elif pod_annotations.get(ANN_TARGET) is not None:
                # a swap of an abandoned release or a rollback under way: to the last good
                if not self.settle(round_, ordinal, current, safety):
                    round_.converged = False
        return round_

    def failed_round(self, batch: int) -> PodRound:
        """A failed batch: its pods (and any swap under way) go back to the current revision,
        and so does any pod at the update revision beyond the batches so far (one a scale
        moved out of them: batches are recomputed from the replicas)."""
        current = self.current
        round_ = PodRound()
        members = set(self.members(batch))
        reached = set(started_members(self.order, self.targets, batch))
        round_.rollback_total = round_.batch_total = len(members)
        budget = StartBudget(self.max_concurrent)
        for ordinal in self.ordinals_descending():
            pod = self.live(ordinal)
            if pod is None:
                if ordinal not in self.pods:
                    round_.creates[ordinal] = PodToCreate(current, False)
                round_.converged = round_.converged and ordinal not in members
                continue
            pod_annotations = annotations_of(pod)
            round_.batch_failed += (ordinal in members
                                    and pod_annotations.get(ANN_FAILED) == self.update.name)
            beyond = (ordinal not in reached
                      and pod_annotations.get(ANN_REVISION) == self.update.name)
            if (ordinal in members or pod_annotations.get(ANN_TARGET) is not None or beyond
                    or self.failed_not_back(pod)):  # in an earlier batch
                if self.settle(round_, ordinal, current, budget):
                    round_.rollback_done += ordinal in members
                else:
                    round_.converged = False
        return round_

    def rollback_round(self, target: RevisionInfo) -> PodRound:
        """One-key rollback: every pod to ``target`` at once (bounded per call), no batches."""
        round_ = PodRound()
        budget = StartBudget(self.max_concurrent)
        round_.rollback_total = self.replicas
        for ordinal in self.ordinals_descending():
            pod = self.live(ordinal)
            if pod is None:
                if ordinal not in self.pods:
                    round_.creates[ordinal] = PodToCreate(target, False)
                round_.converged = False
                continue
            self.clear_stale_mark(round_, ordinal, target)
            if annotations_of(pod).get(ANN_FAILED) == target.name:
                round_.rollback_done += 1
                round_.batch_failed += 1
                continue
            step = self.step(ordinal, target)
            if isinstance(step, Done) and not step.patch:
                round_.rollback_done += 1
            elif isinstance(step, Failed):
                name = pod_name(self.name, ordinal)
                round_.events.append(Event(EventReason.UPDATE_FAILED, f"{name}: {step.reason}",
                                           "Warning", name))
                round_.patch(ordinal, {"metadata": {"annotations": {ANN_FAILED: target.name}}},
                             f"rollback to {target.name} failed: {step.reason}")
                round_.converged = False
            else:
                round_.converged = False
                self.record(round_, ordinal, step, is_start=not self.in_flight(ordinal, target),
                            budget=budget)
        return round_
