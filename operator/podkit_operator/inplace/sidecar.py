"""Asking a swap pod's sidecar for its ``/state``: which config content it applied.

Why the operator asks the sidecar over HTTP (``GET http://<pod IP>:9901/state``) rather than
reading the report from the API: a pod cannot write to the API without rights of its own (a
service account allowed to patch pods, in every namespace that runs podkit), and the pod's
readiness is one bit that cannot name *which* content was applied, nor say that a hook failed
(a pod that turns NotReady for a config also drops out of its Service). ``/state`` says both,
and the operator already runs where it reaches pod IPs (in the cluster; a host process on the
testbed). Only pods that await a report are asked, with a short timeout, in parallel. The
sidecar answers ``/state`` from outside the pod only with its bearer token, which the operator
put into the pod's sidecar env and reads back from the pod here.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterable
from concurrent.futures import Executor
from typing import Any

from ..api.keys import ANN_CONFIG_APPLIED, ANN_TARGET
from ..api.statefulsetplus import StsPlusSpec
from ..kube.objects import annotations_of
from .config import config_key
from .pods import SIDECAR_PORT, sidecar_token

STATE_TIMEOUT_S = 1.0


def awaiting_report(pod: dict[str, Any], spec: StsPlusSpec) -> bool:
    """An update is under way on the pod and its config volumes differ from what its sidecar
    last reported applied."""
    ann = annotations_of(pod)
    return (bool(spec.config_volumes) and ANN_TARGET in ann
            and bool((pod.get("status") or {}).get("podIP"))
            and config_key(pod.get("spec") or {}, spec.config_volumes)
            != ann.get(ANN_CONFIG_APPLIED))


def read_state(ip: str, token: str | None, port: int = SIDECAR_PORT,
               timeout: float = STATE_TIMEOUT_S) -> dict[str, Any] | None:
    """The sidecar's ``/state``; None when it does not answer (yet) or refuses."""
    request = urllib.request.Request(f"http://{ip}:{port}/state")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            state: dict[str, Any] = json.loads(reply.read())
            return state
    except (OSError, urllib.error.URLError, ValueError):
        return None


def sidecar_states(pods: Iterable[dict[str, Any]], spec: StsPlusSpec,
                   pool: Executor) -> dict[str, dict[str, Any]]:
    """``/state`` of every pod that awaits a config report, by pod name (unreachable left
    out)."""
    asked = {p["metadata"]["name"]: pool.submit(read_state, p["status"]["podIP"],
                                                 sidecar_token(p))
             for p in pods if awaiting_report(p, spec)}
    return {name: state for name, future in asked.items()
            if (state := future.result()) is not None}
