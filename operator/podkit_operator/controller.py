"""The operator's entry module: ``kopf run --standalone --all-namespaces -m
podkit_operator.controller``.

Importing it registers every feature's kopf handlers; its startup handler builds the one
:class:`~podkit_operator.context.OperatorContext` they share, from
:class:`~podkit_operator.settings.Settings` read from the environment.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kopf
from kubernetes.client.rest import ApiException
from prometheus_client import start_http_server

# Importing a feature's handlers registers them with kopf.
from .configreleases import handlers as _configreleases  # noqa: F401
from .context import OperatorContext, context_of
from .endpoints import handlers as _endpoints  # noqa: F401
from .kube.client import KubeIO, connect
from .settings import Settings
from .statefulsetplus import handlers as _statefulsetplus  # noqa: F401

PATCH_GATE = "PodkitMutablePodSpec"


def detect_patched(io: KubeIO, settings: Settings, logger: kopf.Logger) -> bool:
    """Whether the apiserver lets opted-in pods change env and volumes in place.

    ``PODKIT_PATCHED=true|false`` decides; otherwise the apiserver's feature-gate metric does.
    """
    if settings.patched is not None:
        return settings.patched
    try:
        return io.feature_gates().get(PATCH_GATE, False)
    except ApiException as exc:
        logger.warning("cannot read the apiserver's /metrics (%s): assuming a stock cluster; "
                       "set PODKIT_PATCHED=true to override", exc.status)
        return False


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, logger: kopf.Logger,
              **_: Any) -> None:
    settings.peering.standalone = True
    settings.posting.level = logging.WARNING  # our own events say what happens
    settings.watching.server_timeout = 300
    # kopf logs every handled pod event at INFO; at thousands of pods that drowns the log.
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    ours = Settings.from_environ()
    settings.scanning.disabled = not ours.follow_crds
    io = KubeIO(connect())
    context = OperatorContext(
        settings=ours, io=io, patched=detect_patched(io, ours, logger),
        writers=ThreadPoolExecutor(max_workers=ours.writers, thread_name_prefix="pod-write"))
    memo["context"] = context
    if ours.metrics_port:
        start_http_server(ours.metrics_port)
    logger.info("podkit operator: %s cluster", "patched" if context.patched else "stock")


@kopf.on.cleanup()
def cleanup(memo: kopf.Memo, **_: Any) -> None:
    context_of(memo).writers.shutdown(wait=True)
