"""kopf wiring of the StatefulSetPlus controller: one release loop per StatefulSetPlus.

Each StatefulSetPlus gets a daemon that reconciles it: read the object and its revisions from
the API and its pods from the watch-fed cache (:mod:`podkit_operator.kube.podcache`), ask the
pure planner (:mod:`podkit_operator.releases.plan`) what to do, write that back. The loop
sleeps until an event of the object or a change of one of its pods wakes it, or until the
planner's requeue time (a batch interval, a deadline). All progress lives in the API, so a
restarted operator simply reconciles again.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime
from typing import Any

import kopf

from ..api.keys import ANN_REVISION, ANN_TARGET, GROUP, PLURAL, VERSION
from ..api.reasons import EventReason
from ..api.statefulsetplus import SpecError, StsPlusSpec, parse_spec
from ..claims.handlers import sync_claims
from ..configreleases.handlers import collect_garbage, released_template
from ..context import OperatorContext, context_of, namespace_of
from ..inplace.sidecar import awaiting_report, sidecar_states
from ..inplace.specdiff import DiffMemo
from ..kube.client import API_ERRORS, KubeIO, describe
from ..kube.objects import annotations_of, terminating
from ..releases import metrics
from ..releases.actions import Plan
from ..releases.handlers import apply_plan, count_events
from ..releases.plan import choose_revisions, plan_release
from ..revisions.history import controller_revision, prune
from ..revisions.revision import CurrentAndUpdate, RevisionInfo, with_podkit

RETRY_S = 2.0  # after a pass the apiserver refused
SYNC_WAIT_S = 30.0  # a pass waits this long for its namespace's LIST of pods


class PodsNotListed(OSError):
    """The pod cache has no LIST of the namespace in (the apiserver down at the start, or
    since a broken watch): the pass is retried like one the apiserver refused."""


@kopf.on.event(GROUP, VERSION, PLURAL)
async def stsp_changed(namespace: str | None, name: str, memo: kopf.Memo, **_: Any) -> None:
    context_of(memo).wake(namespace_of(namespace), name)


@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=10.0)
async def release_loop(namespace: str | None, name: str, memo: kopf.Memo, logger: kopf.Logger,
                       stopped: kopf.DaemonStopped, **_: Any) -> None:
    context, namespace = context_of(memo), namespace_of(namespace)
    waker = context.wakers.setdefault((namespace, name), asyncio.Event())
    context.pods.follow(namespace)
    diffs = DiffMemo()  # this object's comparisons, from one pass to the next
    try:
        while not stopped:
            waker.clear()
            try:
                requeue = await asyncio.to_thread(reconcile, context, namespace, name, logger,
                                               diffs)
            except API_ERRORS as exc:  # a refusal, or a timeout of the client
                logger.warning("reconcile of %s/%s failed: %s; retrying", namespace, name,
                               describe(exc))
                requeue = RETRY_S
            try:
                await asyncio.wait_for(waker.wait(),
                                       timeout=requeue or context.settings.resync_s)
            except TimeoutError:
                pass
    finally:
        context.wakers.pop((namespace, name), None)


# --- one pass ------------------------------------------------------------------------------

def reconcile(context: OperatorContext, namespace: str, name: str,
              logger: kopf.Logger, diffs: DiffMemo | None = None) -> float | None:
    """Read, plan, write; return when to look again without an event (seconds).
    ``diffs``: the loop's memo of comparisons (a pod unchanged since the last pass is not
    compared with its target again).

    A spec the operator cannot act on (:class:`SpecError`) is an event, and the release under
    way goes on with the last spec that worked (:func:`held_pass`): its deadlines, failures and
    rollbacks, never a new release."""
    io = context.io
    if not context.pods.wait_synced(namespace, SYNC_WAIT_S):
        raise PodsNotListed(f"the pods of namespace {namespace} are not listed yet")
    with metrics.RECONCILE_SECONDS.time():
        stsp = io.get_stsp(namespace, name)
        if stsp is None or terminating(stsp):
            return None
        try:
            spec = parse_spec(stsp["spec"])
            template, copies = released_template(context, stsp, spec, stsp["spec"]["template"])
            template = with_podkit(template, spec)
            pods = context.pods.pods(namespace, name)
            revisions = resolve_revisions(io, stsp, template, spec.business,
                                          spec.revision_history_limit, pods)
            revisions = dataclasses.replace(revisions, copies=copies.by_name,
                                            missing_sources=copies.missing)
            states = (sidecar_states(pods, spec, context.writers)
                      if context.patched and spec.config_volumes else {})
            plan = plan_release(stsp, pods, revisions, datetime.now(UTC),
                                context.patched, context.settings.max_starts,
                                sidecar_states=states, spec=spec, diffs=diffs)
        except SpecError as exc:
            kopf.warn(stsp, reason=EventReason.INVALID_SPEC,  # type: ignore[arg-type]
                      message=str(exc))  # kopf reads the raw object as its Body
            logger.warning("%s/%s: %s", namespace, name, exc)
            return held_pass(context, stsp, logger, diffs)
        context.last_good_specs[(namespace, name)] = spec
        write_plan(context, stsp, spec, pods, plan)
        count_events(plan, pods)
        if copies.by_name:
            collect_garbage(io, namespace, spec, revisions, pods, logger)
    poll = context.settings.config_poll_s
    if context.patched and any(awaiting_report(p, spec) for p in pods):
        return min(plan.requeue_after or poll, poll)
    return plan.requeue_after


def write_plan(context: OperatorContext, stsp: dict[str, Any], spec: StsPlusSpec,
               pods: list[dict[str, Any]], plan: Plan) -> None:
    """The pods' claims first (:func:`sync_claims`), then the plan; a pod whose claim is still
    being deleted is created on a later pass."""
    waiting = sync_claims(context.io, stsp, spec, pods, [c.ordinal for c in plan.create])
    if waiting:
        plan.create = [c for c in plan.create if c.ordinal not in waiting]
        plan.requeue_after = min(plan.requeue_after or RETRY_S, RETRY_S)
    apply_plan(context, stsp, plan)


def held_pass(context: OperatorContext, stsp: dict[str, Any],
              logger: kopf.Logger, diffs: DiffMemo | None = None) -> float | None:
    """A pass while the spec is unusable: the release that ``status`` names (its current and
    update revisions, from the history) goes on with the last spec that parsed, so deadlines,
    failures and rollbacks still act. After an operator restart that spec is the object's
    with the update revision's template and no config hook, when that parses; else nothing
    is done until the spec is fixed."""
    io = context.io
    namespace, name = stsp["metadata"]["namespace"], stsp["metadata"]["name"]
    status = stsp.get("status") or {}
    stored = {r["metadata"]["name"]: r["data"] for r in io.list_revisions(namespace, name)}
    update_t, current_t = stored.get(status.get("updateRevision") or ""), \
        stored.get(status.get("currentRevision") or "")
    if update_t is None or current_t is None:
        return None
    spec = context.last_good_specs.get((namespace, name))
    if spec is None:
        podkit = {k: v for k, v in (stsp["spec"].get("podkit") or {}).items()
                  if k != "configHook"}
        try:
            spec = parse_spec({**stsp["spec"], "template": update_t, "podkit": podkit})
        except SpecError:
            return None
    previous = stored.get(status.get("rollbackRevision") or "")
    revisions = CurrentAndUpdate(
        current=RevisionInfo.from_template(name, current_t, spec.business),
        update=RevisionInfo.from_template(name, update_t, spec.business),
        previous=(RevisionInfo.from_template(name, previous, spec.business)
                  if previous is not None else None))
    pods = context.pods.pods(namespace, name)
    plan = plan_release(stsp, pods, revisions, datetime.now(UTC), context.patched,
                        context.settings.max_starts, spec=spec, diffs=diffs)
    plan.status["observedGeneration"] = status.get("observedGeneration")  # not this spec
    write_plan(context, stsp, spec, pods, plan)
    count_events(plan, pods)
    logger.info("%s/%s: held pass with the last usable spec (release %s -> %s)", namespace,
                name, revisions.current.name, revisions.update.name)
    return plan.requeue_after


def resolve_revisions(io: KubeIO, stsp: dict[str, Any], template: dict[str, Any],
                      business: str, history_limit: int,
                      pods: list[dict[str, Any]]) -> CurrentAndUpdate:
    """The current, update and previous revisions, ``template`` being the update revision's
    (the spec's, with released ConfigMaps replaced by their current copies); records the
    update revision and prunes the history beyond ``history_limit``. The current revision
    and the rollback target come from the status, else from what ``pods`` run
    (:func:`~podkit_operator.releases.plan.choose_revisions`)."""
    namespace, name = stsp["metadata"]["namespace"], stsp["metadata"]["name"]
    stored = {r["metadata"]["name"]: r for r in io.list_revisions(namespace, name)}
    update = RevisionInfo.from_template(name, template, business)
    if update.name not in stored:
        number = max((r.get("revision", 0) for r in stored.values()), default=0) + 1
        body = controller_revision(stsp, template, number)
        io.create_revision(namespace, body)
        stored[update.name] = body

    def info(revision_name: str | None) -> RevisionInfo | None:
        found = stored.get(revision_name or "")
        if found is None:
            return None
        return RevisionInfo.from_template(name, found["data"], business)

    current_name, previous_name = choose_revisions(stsp.get("status") or {}, pods,
                                                   update.name, stored)
    current = info(current_name) or update
    previous = info(previous_name)
    in_use = {current.name, update.name} | ({previous.name} if previous else set())
    in_use |= {v for p in pods for k, v in annotations_of(p).items()
               if k in (ANN_REVISION, ANN_TARGET)}  # what a lost status is derived from
    for doomed in prune(stored.values(), history_limit, in_use):
        io.delete_revision(namespace, doomed)
    return CurrentAndUpdate(current=current, update=update, previous=previous)
