"""The operator's entry module: ``kopf run --standalone --all-namespaces -m
podkit_operator.controller``.

Importing it registers every feature's kopf handlers; its startup handler waits until this
process leads (:mod:`podkit_operator.leader`: two replicas, one Lease), then builds the one
:class:`~podkit_operator.context.OperatorContext` they share, from
:class:`~podkit_operator.settings.Settings` read from the environment.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kopf
from prometheus_client import start_http_server

from . import liveness

# Importing a feature's handlers registers them with kopf.
from .configreleases import handlers as _configreleases  # noqa: F401
from .context import OperatorContext, context_of
from .endpoints import handlers as _endpoints  # noqa: F401
from .kube.client import API_ERRORS, REQUEST_TIMEOUT, KubeIO, connect, describe
from .kube.podcache import PodCache
from .kube.podindex import PodIndex
from .kube.ratelimit import TokenBucket
from .leader import LeaderElector, LeaseTimes
from .settings import Settings, SettingsError
from .statefulsetplus import handlers as _statefulsetplus  # noqa: F401

PATCH_GATE = "PodkitMutablePodSpec"
POOL_SPARE = 4  # connections beyond one per writer: the pass's own reads and status writes


def detect_patched(io: KubeIO, settings: Settings, logger: kopf.Logger) -> bool:
    """Whether the apiserver lets opted-in pods change env and volumes in place.

    ``PODKIT_PATCHED=true|false`` decides; otherwise the apiserver's feature-gate metric does.
    """
    if settings.patched is not None:
        return settings.patched
    try:
        return io.feature_gates().get(PATCH_GATE, False)
    except API_ERRORS as exc:  # never fail the startup once it leads: it would elect again
        logger.warning("cannot read the apiserver's /metrics (%s): assuming a stock cluster; "
                       "set PODKIT_PATCHED=true to override", describe(exc))
        return False


def port_taken(what: str, port: int, variable: str, exc: OSError) -> kopf.PermanentError:
    return kopf.PermanentError(f"cannot serve {what} on port {port} ({exc.strerror}): free it "
                               f"or set {variable} to another port (0 serves none)")


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, logger: kopf.Logger,
                    **_: Any) -> None:
    """Serve metrics and ``/healthz``, wait to lead (a standby stays here: kopf starts no
    watch and no handler before this returns), then build the context."""
    settings.peering.standalone = True
    settings.posting.level = logging.WARNING  # our own events say what happens
    # Every request of kopf's times out too: short calls (patches, events) as a whole,
    # watches a little after the server-side timeout the apiserver is asked for.
    settings.networking.connect_timeout = REQUEST_TIMEOUT[0]
    settings.networking.request_timeout = 60
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = REQUEST_TIMEOUT[0]
    # kopf logs every handled pod event at INFO; at thousands of pods that drowns the log.
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    try:
        ours = Settings.from_environ()
    except SettingsError as exc:  # kopf would retry the startup every minute, serving nothing
        raise kopf.PermanentError(str(exc)) from exc
    settings.scanning.disabled = not ours.follow_crds
    times = LeaseTimes()
    elector = LeaderElector(KubeIO(connect("lease", (times.retry_s, times.retry_s))),
                            ours.lease_namespace, ours.lease_name, ours.identity, times)
    # kopf retries a failed startup handler every minute, the process alive and serving
    # nothing: a port another process holds ends it instead, saying which
    if ours.metrics_port:
        try:
            start_http_server(ours.metrics_port)
        except OSError as exc:
            raise port_taken("metrics", ours.metrics_port, "PODKIT_OPERATOR_METRICS_PORT",
                             exc) from exc
    health = None
    if ours.health_port:
        try:
            health = await liveness.serve(ours.health_port, lambda: elector.leading)
        except OSError as exc:
            raise port_taken("/healthz", ours.health_port, "PODKIT_OPERATOR_HEALTH_PORT",
                             exc) from exc
    await elector.acquire()
    index = PodIndex()
    # one rate limit for the pod writes and the pod watch; the Lease's renewals never wait
    # behind a batch's writes
    limit = TokenBucket(ours.qps, ours.burst)
    io = KubeIO(connect(pool=ours.writers + POOL_SPARE, limit=limit), index)
    context = OperatorContext(
        settings=ours, io=io,
        patched=await asyncio.to_thread(detect_patched, io, ours, logger),
        writers=ThreadPoolExecutor(max_workers=ours.writers, thread_name_prefix="pod-write"),
        pods=PodCache(KubeIO(connect("pod-watch", limit=limit)), index),
        leader=elector, health=health)
    loop = asyncio.get_running_loop()  # the index changes in the watch's and writers' threads
    index.on_change = lambda key: loop.call_soon_threadsafe(context.wake, *key)
    memo["context"] = context
    logger.info("podkit operator: %s cluster", "patched" if context.patched else "stock")


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    context = context_of(memo)
    context.pods.stop()
    context.stop_slice_writers()
    context.writers.shutdown(wait=True)
    if context.leader is not None:
        await asyncio.to_thread(context.leader.release)
    if context.health is not None:
        await context.health.cleanup()
