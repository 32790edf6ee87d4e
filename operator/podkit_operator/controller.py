"""The operator's kopf wiring: one release loop per StatefulSetPlus.

Run it with ``kopf run --standalone --all-namespaces -m podkit_operator.controller``.

Each StatefulSetPlus gets a daemon that reconciles it: read the object, its pods and its
revisions from the API, ask the pure planner (:mod:`podkit_operator.release`) what to do, write
that back. The loop sleeps until an event of the object or one of its pods wakes it, or until
the planner's requeue time (a batch interval, a deadline). All progress lives in the API, so a
restarted operator simply reconciles again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any

import kopf
from kubernetes import client, config
from kubernetes.client.rest import ApiException
from prometheus_client import start_http_server

from . import configio, metrics
from . import service_endpoints  # noqa: F401  (registers the EndpointSlice handlers)
from .configs import with_copies
from .kubeio import GROUP, PLURAL, STSP_LABEL, VERSION, KubeIO
from .release import CurrentAndUpdate, Plan, plan_release
from .revision import RevisionInfo, controller_revision, prune
from .podspec import ANN_STARTED
from .spec import SpecError, parse_spec
from .swap import annotations, parse_time

PATCH_GATE = "PodkitMutablePodSpec"
RESYNC_S = 60.0  # a loop with nothing to wait for still looks again this often
CONFIG_POLL_S = 0.3  # how often pods awaiting a config report are asked again
WRITERS = 16  # concurrent pod writes of one reconcile pass


def _load_kube_config() -> client.ApiClient:
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.ApiClient()


def detect_patched(io: KubeIO, logger: logging.Logger) -> bool:
    """Whether the apiserver lets opted-in pods change env and volumes in place.

    ``PODKIT_PATCHED=true|false`` decides; otherwise the apiserver's feature-gate metric does.
    """
    forced = os.environ.get("PODKIT_PATCHED", "auto").lower()
    if forced in ("true", "false"):
        return forced == "true"
    try:
        return io.feature_gates().get(PATCH_GATE, False)
    except ApiException as exc:
        logger.warning("cannot read the apiserver's /metrics (%s): assuming a stock cluster; "
                       "set PODKIT_PATCHED=true to override", exc.status)
        return False


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, logger: logging.Logger,
              **_: Any) -> None:
    settings.peering.standalone = True
    settings.posting.level = logging.WARNING  # our own events say what happens
    settings.watching.server_timeout = 300
    # kopf logs every handled pod event at INFO; at thousands of pods that drowns the log.
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    memo.io = KubeIO(_load_kube_config())
    memo.patched = detect_patched(memo.io, logger)
    memo.writers = ThreadPoolExecutor(max_workers=WRITERS, thread_name_prefix="pod-write")
    memo.wakers = {}
    memo.config_users = {}  # (namespace, ConfigMap) -> names of the stsp that release it
    port = int(os.environ.get("PODKIT_OPERATOR_METRICS_PORT", "9090"))
    if port:
        start_http_server(port)
    logger.info("podkit operator: %s cluster", "patched" if memo.patched else "stock")


@kopf.on.cleanup()
def cleanup(memo: kopf.Memo, **_: Any) -> None:
    memo.writers.shutdown(wait=True)


def _wake(memo: kopf.Memo, namespace: str, name: str) -> None:
    waker = memo.wakers.get((namespace, name))
    if waker is not None:
        waker.set()


@kopf.on.event(GROUP, VERSION, PLURAL)
async def stsp_changed(namespace: str, name: str, memo: kopf.Memo, **_: Any) -> None:
    _wake(memo, namespace, name)


@kopf.on.event("", "v1", "pods", labels={STSP_LABEL: kopf.PRESENT})
async def pod_changed(namespace: str, labels: dict[str, str], memo: kopf.Memo,
                      **_: Any) -> None:
    _wake(memo, namespace, labels[STSP_LABEL])


@kopf.on.event("", "v1", "configmaps")
async def configmap_changed(namespace: str, name: str, memo: kopf.Memo, **_: Any) -> None:
    """An edit of a released ConfigMap starts a config release: wake its StatefulSetPlus."""
    for stsp_name in memo.config_users.get((namespace, name), ()):
        _wake(memo, namespace, stsp_name)


@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=10.0)
async def release_loop(namespace: str, name: str, memo: kopf.Memo, logger: logging.Logger,
                       stopped: kopf.DaemonStopped, **_: Any) -> None:
    waker = memo.wakers.setdefault((namespace, name), asyncio.Event())
    try:
        while not stopped:
            waker.clear()
            try:
                requeue = await asyncio.to_thread(reconcile, memo, namespace, name, logger)
            except ApiException as exc:
                logger.warning("reconcile of %s/%s failed: %s %s; retrying", namespace, name,
                               exc.status, exc.reason)
                requeue = 2.0
            try:
                await asyncio.wait_for(waker.wait(), timeout=requeue or RESYNC_S)
            except asyncio.TimeoutError:
                pass
    finally:
        memo.wakers.pop((namespace, name), None)


# --- one pass ------------------------------------------------------------------------------

def reconcile(memo: kopf.Memo, namespace: str, name: str,
              logger: logging.Logger) -> float | None:
    """Read, plan, write; return when to look again without an event (seconds)."""
    io: KubeIO = memo.io
    with metrics.RECONCILE_SECONDS.time():
        stsp = io.get_stsp(namespace, name)
        if stsp is None or stsp["metadata"].get("deletionTimestamp"):
            return None
        try:
            spec = parse_spec(stsp["spec"])
            template, copies = stsp["spec"]["template"], {}
            if spec.config_maps:
                for source in spec.config_maps:
                    memo.config_users.setdefault((namespace, source), set()).add(name)
                if memo.patched:
                    current_copies, copies = configio.resolve_copies(io, namespace, spec)
                    template = with_copies(template, current_copies)
            revisions = resolve_revisions(io, stsp, template, spec.business,
                                          spec.revision_history_limit)
            revisions = dataclasses.replace(revisions, copies=copies)
            pods = io.list_pods(namespace, name)
            states = (configio.sidecar_states(pods, spec, memo.writers)
                      if memo.patched and spec.config_volumes else {})
            plan = plan_release(stsp, pods, revisions, datetime.now(timezone.utc),
                                memo.patched, sidecar_states=states)
        except SpecError as exc:
            kopf.warn(stsp, reason="InvalidSpec", message=str(exc))
            logger.warning("%s/%s: %s", namespace, name, exc)
            return None
        apply_plan(memo, stsp, plan)
        count_events(plan, pods)
        if copies:
            configio.collect_garbage(io, namespace, spec, revisions, pods, logger)
    if memo.patched and any(configio.awaiting_report(p, spec) for p in pods):
        return min(plan.requeue_after or CONFIG_POLL_S, CONFIG_POLL_S)
    return plan.requeue_after


def resolve_revisions(io: KubeIO, stsp: dict[str, Any], template: dict[str, Any],
                      business: str, history_limit: int) -> CurrentAndUpdate:
    """The current, update and previous revisions, ``template`` being the update revision's
    (the spec's, with released ConfigMaps replaced by their current copies); records the
    update revision and prunes the history beyond ``history_limit``."""
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

    status = stsp.get("status") or {}
    current = info(status.get("currentRevision")) or update
    number = stored[current.name].get("revision", 0)
    earlier = [r for r in stored.values() if r.get("revision", 0) < number]
    previous = info(max(earlier, key=lambda r: r.get("revision", 0))["metadata"]["name"]) \
        if earlier else None
    in_use = {current.name, update.name} | ({previous.name} if previous else set())
    for doomed in prune(stored.values(), history_limit, in_use):
        io.delete_revision(namespace, doomed)
    return CurrentAndUpdate(current=current, update=update, previous=previous)


def apply_plan(memo: kopf.Memo, stsp: dict[str, Any], plan: Plan) -> None:
    """Write what the planner decided: pods first, then annotations, status and events."""
    io: KubeIO = memo.io
    namespace, name = stsp["metadata"]["namespace"], stsp["metadata"]["name"]
    writes = [memo.writers.submit(io.create_pod, namespace, c.body) for c in plan.create]
    writes += [memo.writers.submit(io.delete_pod, namespace, d.name) for d in plan.delete]
    writes += [memo.writers.submit(io.patch_pod, namespace, p.name, p.patch)
               for p in plan.patches]
    for write in writes:
        write.result()  # an error fails this pass; the next one retries from the API
    if plan.stsp_annotations:
        io.patch_stsp_annotations(namespace, name, plan.stsp_annotations)
    if plan.status != (stsp.get("status") or {}):
        io.patch_status(namespace, name, plan.status)
    for event in plan.events:
        about = f"{event.pod}: " if event.pod and not event.message.startswith(event.pod) else ""
        kopf.event(stsp, type=event.type, reason=event.reason, message=about + event.message)


def count_events(plan: Plan, pods: list[dict[str, Any]]) -> None:
    """Metrics follow the planner's events, each of which names a finished step."""
    started = {p["metadata"]["name"]: parse_time(annotations(p).get(ANN_STARTED)) for p in pods}
    now = datetime.now(timezone.utc)
    for event in plan.events:
        if event.reason == "UpdateCompleted":
            metrics.SWAPS.labels(result="done").inc()
            if (since := started.get(event.pod or "")) is not None:
                metrics.SWAP_SECONDS.observe((now - since).total_seconds())
        elif event.reason == "UpdateFailed":
            metrics.SWAPS.labels(result="failed").inc()
        elif event.reason in ("BatchCompleted", "BatchFailed"):
            metrics.BATCHES.labels(result="done" if event.reason == "BatchCompleted"
                                   else "failed").inc()
