"""The controller's side of a config release: copies, their GC, and the sidecars' reports.

Why the operator asks the sidecar over HTTP (``GET http://<pod IP>:9901/state``) rather than
reading the report from the API: a pod cannot write to the API without rights of its own (a
service account allowed to patch pods, in every namespace that runs podkit), and the pod's
readiness is one bit that cannot name *which* content was applied, nor say that a hook failed
(a pod that turns NotReady for a config also drops out of its Service). ``/state`` says both,
and the operator already runs where it reaches pod IPs (in the cluster; a host process on the
testbed). Only pods that await a report are asked, with a short timeout, in parallel.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from concurrent.futures import Executor
from typing import Any, Iterable

from .configs import (ANN_APPLIED, ConfigCopy, config_key, copy_name, data_hash, next_version,
                      parse_copy, referenced, to_delete, versioned_copy)
from .kubeio import KubeIO
from .podspec import ANN_TARGET, SIDECAR_PORT
from .release import CurrentAndUpdate
from .spec import SpecError, StsPlusSpec
from .swap import annotations

STATE_TIMEOUT_S = 1.0


def resolve_copies(io: KubeIO, namespace: str,
                   spec: StsPlusSpec) -> tuple[dict[str, str], dict[str, ConfigCopy]]:
    """Make sure each released ConfigMap's current content has its copy.

    Returns ``{source: copy name of its current content}`` and every copy of these sources
    by name (with their versions)."""
    current: dict[str, str] = {}
    copies: dict[str, ConfigCopy] = {}
    for source in spec.config_maps:
        configmap = io.get_configmap(namespace, source)
        if configmap is None:
            raise SpecError(f"ConfigMap {namespace}/{source} (spec.configMaps) does not exist; "
                            "create it")
        listed = [c for c in (parse_copy(cm) for cm in io.list_config_copies(namespace, source))
                  if c is not None and c.source == source]
        content = data_hash(configmap)
        name = copy_name(source, content)
        if all(c.name != name for c in listed):  # the same data never makes a second copy
            made = ConfigCopy(name, source, next_version(listed), content)
            io.create_configmap(namespace, versioned_copy(configmap, content, made.version))
            listed.append(made)
        current[source] = name
        copies.update({c.name: c for c in listed})
    return current, copies


def collect_garbage(io: KubeIO, namespace: str, spec: StsPlusSpec, revisions: CurrentAndUpdate,
                    pods: Iterable[dict[str, Any]], logger: logging.Logger) -> list[str]:
    """Delete the copies beyond ``spec.configHistoryLimit`` per source, never one that a pod
    of the namespace mounts (another StatefulSetPlus may release the same ConfigMap) or that
    the current, update or previous revision names. Returns the names deleted."""
    revs = [r for r in (revisions.current, revisions.update, revisions.previous) if r]
    in_use = referenced([r.template.get("spec") or {} for r in revs])
    in_use |= referenced([p.get("spec") or {} for p in pods])
    doomed = to_delete(revisions.copies.values(), spec.config_history_limit, in_use)
    if doomed:  # only then is the namespace's every pod worth a list
        in_use |= referenced([p.get("spec") or {} for p in io.list_namespace_pods(namespace)])
        doomed = [name for name in doomed if name not in in_use]
    for name in doomed:
        io.delete_configmap(namespace, name)
        logger.info("config GC: deleted %s/%s", namespace, name)
    return doomed


def awaiting_report(pod: dict[str, Any], spec: StsPlusSpec) -> bool:
    """An update is under way on the pod and its config volumes differ from what its sidecar
    last reported applied."""
    ann = annotations(pod)
    return (bool(spec.config_volumes) and ANN_TARGET in ann
            and bool((pod.get("status") or {}).get("podIP"))
            and config_key(pod.get("spec") or {}, spec.config_volumes) != ann.get(ANN_APPLIED))


def read_state(ip: str, port: int = SIDECAR_PORT,
               timeout: float = STATE_TIMEOUT_S) -> dict[str, Any] | None:
    """The sidecar's ``/state``; None when it does not answer (yet)."""
    try:
        with urllib.request.urlopen(f"http://{ip}:{port}/state", timeout=timeout) as reply:
            return json.loads(reply.read())
    except (OSError, urllib.error.URLError, ValueError):
        return None


def sidecar_states(pods: Iterable[dict[str, Any]], spec: StsPlusSpec,
                   pool: Executor) -> dict[str, dict[str, Any]]:
    """``/state`` of every pod that awaits a config report, by pod name (unreachable left
    out)."""
    asked = {p["metadata"]["name"]: pool.submit(read_state, p["status"]["podIP"])
             for p in pods if awaiting_report(p, spec)}
    return {name: state for name, future in asked.items()
            if (state := future.result()) is not None}
