"""Which ConfigMaps a pod mounts, and whether its sidecar reports that content applied.

A released ConfigMap is switched on a running pod by pointing its configMap volume at another
copy; the kubelet projects it and the sidecar runs the config hook and reports the content it
applied on ``/state`` (:mod:`podkit.sidecar`). These functions read both sides.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..api.configcopy import name_hash

SIDECAR_CONFIG_ROOT = "/podkit-config"  # the sidecar sees volume <v> at /podkit-config/<v>


def volume_sources(pod_spec: Mapping[str, Any], volumes: Iterable[str]) -> dict[str, str]:
    """``{volume: configMap name}`` of the given volumes in a pod (or template) spec."""
    wanted = set(volumes)
    return {v["name"]: (v.get("configMap") or {}).get("name", "")
            for v in pod_spec.get("volumes") or [] if v.get("name") in wanted}


def config_key(pod_spec: Mapping[str, Any], volumes: Iterable[str]) -> str:
    """What a pod's config volumes mount, as one string: ``vol=copy,...`` by volume name.

    The operator writes it to ``podkit.io/config-applied`` once the sidecar reported that
    content applied; a pod whose key differs from its annotation awaits that report."""
    sources = volume_sources(pod_spec, volumes)
    return ",".join(f"{v}={sources[v]}" for v in sorted(sources))


def sidecar_dir(volume: str) -> str:
    return f"{SIDECAR_CONFIG_ROOT}/{volume}"


@dataclass(frozen=True)
class Applied:
    """The sidecar reports the expected content applied (hook done, or started with it)."""


@dataclass(frozen=True)
class HookFailed:
    reason: str


@dataclass(frozen=True)
class Pending:
    reason: str


Verdict = Applied | HookFailed | Pending


def verdict(state: Mapping[str, Any] | None, expected: Mapping[str, str]) -> Verdict:
    """Whether the sidecar's ``/state`` shows ``expected`` ({volume: copy name}) applied.

    ``state`` is the sidecar's ``/state`` document (None: not reachable). The content is
    applied when the sidecar's current hash of every volume's directory matches its copy and
    the last hook ran for exactly that content and succeeded (or no hook ran since the sidecar
    started: it started with that content).
    """
    if state is None:
        return Pending("the sidecar's /state is not reachable yet")
    config = state.get("config")
    if not isinstance(config, dict):
        return HookFailed("the sidecar watches no config directory (the pod was built before "
                          "spec.configMaps named this ConfigMap): delete the pod to recreate "
                          "it")
    hashes = config.get("hashes") or {}
    for volume, name in sorted(expected.items()):
        seen = hashes.get(sidecar_dir(volume))
        if seen is None:
            return HookFailed(f"the sidecar does not watch {sidecar_dir(volume)} (the pod was "
                              "built before spec.configMaps named it): delete the pod to "
                              "recreate it")
        if not seen.startswith(name_hash(name)):
            return Pending(f"volume {volume}: {name} is not projected yet, or its hook still "
                           "runs")
    last = config.get("last_reload")
    if last is None:
        return Applied()
    if (last.get("hashes") or {}) != hashes:
        return Pending(f"hook {config.get('hook')} running")
    if last.get("ok"):
        return Applied()
    return HookFailed(f"config hook {config.get('hook')} failed: {last.get('message')}")
