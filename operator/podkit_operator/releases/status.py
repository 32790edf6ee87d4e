"""The status the planner writes: ``batchDeployStatus``, the conditions, when to look again."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from ..api.keys import ANN_REVISION, ANN_TARGET
from ..api.reasons import BatchAction, ConditionReason, ConditionType, GeneralStatus
from ..api.statefulsetplus import BatchDeployStatus, Condition, selector_string
from ..inplace.pods import pod_name
from ..inplace.steps import serving_problem
from ..kube.objects import (
    annotations_of,
    available_at,
    deletion_overdue_at,
    parse_time,
    pod_ready,
    rfc3339,
)
from .batches import started_members
from .config_status import config_condition, config_status
from .rounds import PodRound, ReleasePass

# A pod still there this long after its deletion was due (deletionTimestamp plus the grace
# period once more) has a kubelet that does not answer: its node is gone or cut off.
STUCK_MARGIN = timedelta(seconds=60)
UNHEALTHY_LISTED = 100  # unhealthyPods names at most this many
WAITING_NAMED = 10  # the Progressing condition names at most this many pods of each kind


def stuck_since(release: ReleasePass) -> dict[str, datetime]:
    """Pods stuck terminating, by name: when they became stuck (or will, when in the future)."""
    out = {}
    for ordinal in sorted(release.pods):
        due = deletion_overdue_at(release.pods[ordinal])
        if due is not None:
            out[pod_name(release.name, ordinal)] = due + STUCK_MARGIN
    return out


def unhealthy_pods(release: ReleasePass) -> dict[str, str]:
    """Pods with no update under way whose serving container restarted since it took over or
    is not ready (a crash, or the business's own probes failing), by name: what is wrong."""
    out = {}
    for ordinal in sorted(release.pods):
        pod = release.pods[ordinal]
        if ANN_TARGET in annotations_of(pod):
            continue
        if problem := serving_problem(pod):
            out[pod_name(release.name, ordinal)] = problem
    return out


def pods_waiting(release: ReleasePass, what: str, why: Mapping[int, str]) -> str:
    """Pods the round waits for (``PodRound.waiting``: their update start is held because they
    have not started; ``PodRound.held``: the kubelet holds their update, a resize), as the end
    of the Progressing message, introduced by ``what``; "" when none."""
    waiting = [f"{pod_name(release.name, ordinal)} ({reason})"
               for ordinal, reason in sorted(why.items())]
    if not waiting:
        return ""
    more = len(waiting) - WAITING_NAMED
    return (f"; {what}: " + ", ".join(waiting[:WAITING_NAMED])
            + (f" and {more} more" if more > 0 else ""))


def percent(done: int, total: int) -> int:
    return 100 if total <= 0 else max(0, done) * 100 // total


def batch_position(release: ReleasePass, batch: int, action: BatchAction, general: GeneralStatus,
                 deadline: datetime | None, round_: PodRound,
                 complete: bool) -> BatchDeployStatus:
    """A release's position: batch ``batch`` and how far its pods got."""
    total = round_.batch_total
    return BatchDeployStatus(
        action=action,
        batch_order=batch,
        batch_ordinal=min(started_members(release.order, release.targets, batch),
                          default=release.spec.ordinals_start + release.replicas),
        batch_replicas=total,
        deadline_time=rfc3339(deadline) if deadline else None,
        complete=complete,
        success_percent=percent(round_.batch_done, total),
        progress=f"{round_.batch_done}/{total}",
        rollback_progress="",
        general=general,
    )


def failed_batch_status(release: ReleasePass, batch: int, deadline: datetime | None,
                        round_: PodRound) -> BatchDeployStatus:
    """A failed batch, rolled back (``Failed`` once it is back, ``RollingBack`` until then)."""
    done = round_.converged
    base = batch_position(release, batch, BatchAction.COMPLETED if done else BatchAction.NEXT,
                        GeneralStatus.FAILED if done else GeneralStatus.ROLLING_BACK, deadline,
                        round_, False)
    total = round_.batch_total
    return replace(base, progress=f"{total - round_.rollback_done}/{total}",
                   success_percent=percent(total - round_.batch_failed, total),
                   rollback_progress=f"{round_.rollback_done}/{round_.rollback_total}")


def rollback_status(release: ReleasePass, round_: PodRound) -> BatchDeployStatus:
    """A one-key rollback: every pod at once, no batches and no deadline."""
    updated = round_.rollback_done - round_.batch_failed
    if round_.converged:
        general = GeneralStatus.FAILED if round_.batch_failed else GeneralStatus.COMPLETED
    else:
        general = GeneralStatus.ROLLING_BACK
    return BatchDeployStatus(
        action=BatchAction.COMPLETED if round_.converged else BatchAction.NEXT,
        batch_order=1,
        batch_ordinal=release.spec.ordinals_start,
        batch_replicas=release.replicas,
        deadline_time=None,
        complete=round_.converged,
        success_percent=percent(updated, release.replicas),
        progress=f"{updated}/{release.replicas}",
        rollback_progress=f"{round_.rollback_done}/{release.replicas}",
        general=general,
    )


def conditions(release: ReleasePass, batch: BatchDeployStatus, rollback: bool,
               round_: PodRound) -> list[dict[str, Any]]:
    """The conditions; each keeps its transition time while its status stays the same."""
    general = batch.general
    failed = general == GeneralStatus.FAILED or (general == GeneralStatus.ROLLING_BACK
                                                 and not rollback)
    if failed:
        failure = (Condition(ConditionType.RELEASE_FAILED, "True",
                             ConditionReason.ROLLBACK_FAILED, "a pod could not be rolled back")
                   if rollback else
                   Condition(ConditionType.RELEASE_FAILED, "True", ConditionReason.BATCH_FAILED,
                             f"batch {batch.batch_order} failed and is rolled back"))
    else:
        failure = Condition(ConditionType.RELEASE_FAILED, "False", ConditionReason.NO_FAILURE, "")
    wanted = [
        Condition(ConditionType.SWAP_MODE, "True",
                  ConditionReason.PATCHED if release.patched else ConditionReason.STOCK,
                  "pods carry PODKIT_VERSION in env (apiserver patch present)" if release.patched
                  else "versions come from the images (stock apiserver)"),
        Condition(ConditionType.PROGRESSING,
                  "False" if general in (GeneralStatus.COMPLETED, GeneralStatus.FAILED)
                  else "True", general,
                  f"batch {batch.batch_order}: {batch.progress} updated"
                  + pods_waiting(release, "waiting for pods to start", round_.waiting)
                  + pods_waiting(release, "held by the kubelet", round_.held)),
        failure,
    ]
    stuck = sorted(name for name, at in stuck_since(release).items() if at <= release.now)
    wanted.append(
        Condition(ConditionType.TERMINATION_STUCK, "True", ConditionReason.POD_STUCK_TERMINATING,
                  f"pods {', '.join(stuck)} were deleted but are still terminating past their "
                  "grace period: their node does not answer (down or cut off); bring it back, "
                  "or if it is gone for good force the deletion (kubectl delete pod <name> "
                  "--force --grace-period=0) and the pods are created again")
        if stuck else
        Condition(ConditionType.TERMINATION_STUCK, "False", ConditionReason.NONE_STUCK, ""))
    if release.spec.config_maps:
        wanted.append(config_condition(release.patched))
    if release.spec.config_maps and release.patched:
        missing = release.revisions.missing_sources
        wanted.append(
            Condition(ConditionType.CONFIG_SOURCES, "False", ConditionReason.CONFIG_SOURCE_MISSING,
                      f"ConfigMap {', '.join(missing)} (spec.configMaps) is gone: pods keep its "
                      "last released copy; create it again to release its content")
            if missing else
            Condition(ConditionType.CONFIG_SOURCES, "True", ConditionReason.CONFIG_SOURCES_FOUND,
                      ""))
    prior = {c.get("type"): c for c in release.prior_status.get("conditions") or []}
    out = []
    for condition in wanted:
        before = prior.get(condition.type) or {}
        since = (before.get("lastTransitionTime") if before.get("status") == condition.status
                 else None)
        out.append({"type": condition.type, "status": condition.status,
                    "reason": condition.reason, "message": condition.message,
                    "lastTransitionTime": since or rfc3339(release.now)})
    return out


def status(release: ReleasePass, batch: BatchDeployStatus, current: str, update: str,
           rollback: bool, round_: PodRound) -> dict[str, Any]:
    """The whole ``status`` of the object; ``round_``: the round it reports (what it waits
    for)."""
    live = list(release.pods.values())
    unhealthy = unhealthy_pods(release)
    at_update = sum(1 for ordinal, pod in release.pods.items() if ordinal in release.ordinals
                    and annotations_of(pod).get(ANN_REVISION) == update
                    and ANN_TARGET not in annotations_of(pod))
    at_current = sum(1 for ordinal, pod in release.pods.items() if ordinal in release.ordinals
                     and annotations_of(pod).get(ANN_REVISION) == current)
    available = [at for pod in live if (at := available_at(pod, release.spec.min_ready_s))]
    out = {
        "observedGeneration": release.stsp["metadata"].get("generation"),
        "replicas": len(live),
        "readyReplicas": sum(1 for pod in live if pod_ready(pod)),
        "availableReplicas": sum(1 for at in available if at <= release.now),
        "updatedReplicas": at_update,
        "currentReplicas": at_current,
        "unhealthyReplicas": len(unhealthy),
        "unhealthyPods": sorted(unhealthy, key=_ordinal_key)[:UNHEALTHY_LISTED],
        "currentRevision": current,
        "updateRevision": update,
        "collisionCount": 0,
        "selector": selector_string(release.spec.selector),
        "batchDeployStatus": batch.to_status(),
    }
    if rollback_to := _rollback_revision(release, current):
        out["rollbackRevision"] = rollback_to
    if release.spec.config_maps and release.patched:
        out["configMaps"] = config_status(release, current, update)
    out["conditions"] = conditions(release, batch, rollback, round_)
    return out


def _rollback_revision(release: ReleasePass, current: str) -> str | None:
    """``status.rollbackRevision``: the revision that was current before the latest release
    (while one runs, its current revision; afterwards it stays), the one-key rollback target."""
    if release.releasing:
        return release.current.name
    previous = release.revisions.previous
    return previous.name if previous is not None and previous.name != current else None


def status_patch(prior: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) from ``prior`` to ``new``: a field of ``prior`` that
    ``new`` lacks is set to null, so the API removes it (a stale ``batchDeadlineTime``, a
    condition's message); objects recurse, lists and values are sent whole when changed."""
    out: dict[str, Any] = {}
    for key in prior.keys() - new.keys():
        out[key] = None
    for key, value in new.items():
        before = prior.get(key)
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            if nested := status_patch(before, value):
                out[key] = nested
        elif before != value or key not in prior:
            out[key] = value
    return out


def requeue_after(release: ReleasePass, round_: PodRound,
                  batch: BatchDeployStatus) -> float | None:
    """When to look again without an event: a batch interval, a deadline, held-back starts."""
    now = release.now
    times: list[datetime] = list(round_.deadlines)
    times += [at for at in stuck_since(release).values() if at > now]
    # a pod turning available: availableReplicas, and OrderedReady's next creation or deletion
    times += [at for pod in release.pods.values()
              if (at := available_at(pod, release.spec.min_ready_s)) and at > now]
    deadline = parse_time(batch.deadline_time)
    if (deadline and not batch.complete and deadline > now
            and batch.general in (GeneralStatus.PROGRESSING, GeneralStatus.PAUSED)):
        times.append(deadline)
    if deadline and batch.general == GeneralStatus.PROGRESSING:  # waiting for its interval
        start = deadline - timedelta(seconds=release.spec.batch_deadline_s)
        if start > now:
            times.append(start)
    delays = [(t - now).total_seconds() + 1 for t in times]
    if round_.more_to_start:
        delays.append(1.0)
    delays = [max(d, 1.0) for d in delays]
    return min(delays) if delays else None


def _ordinal_key(name: str) -> int:
    return int(name.rpartition("-")[2])
