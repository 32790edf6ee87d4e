"""The config-release part of the status: the ``ConfigGrayscale`` condition and, per released
ConfigMap, the copies of the current and update revisions and the versions each batch mounts."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..api.configcopy import ConfigCopy
from ..api.reasons import ConditionReason, ConditionType
from ..api.statefulsetplus import Condition
from ..inplace.config import volume_sources
from .rounds import ReleasePass

CONFIG_REFUSED = ("the apiserver does not let pods change volumes in place (no "
                  "PodkitMutablePodSpec gate): config grayscale is refused; pods mount "
                  "spec.configMaps as named, so an edit reaches every pod at once")


def config_condition(patched: bool) -> Condition:
    """``ConfigGrayscale``: whether edits of spec.configMaps are released batch by batch."""
    if patched:
        return Condition(ConditionType.CONFIG_GRAYSCALE, "True", ConditionReason.ENABLED,
                         "each edit of spec.configMaps is a versioned copy released batch by "
                         "batch")
    return Condition(ConditionType.CONFIG_GRAYSCALE, "False", ConditionReason.STOCK_CLUSTER,
                     CONFIG_REFUSED)


def config_status(release: ReleasePass, current: str, update: str) -> list[dict[str, Any]]:
    """Per released ConfigMap: the copies of the current and update revisions, and the
    versions the pods of each batch mount."""
    volumes = release.spec.config_volumes
    copies = release.revisions.copies
    revisions = {r.name: r for r in release.revisions.in_use}
    specs = {o: pod.get("spec") or {} for o, pod in release.pods.items() if o in release.ordinals}
    per_batch = [batch_versions(specs, release.members(batch), volumes, copies)
                 for batch in range(1, len(release.targets) + 1)]
    out = []
    for source in release.spec.config_maps:
        entry: dict[str, Any] = {"name": source}
        for key, revision_name in (("current", current), ("update", update)):
            revision = revisions.get(revision_name)
            mounted = volume_sources(revision.template["spec"], volumes) if revision else {}
            name = next((n for n in mounted.values()
                         if (c := copies.get(n)) and c.source == source), None)
            if name:
                entry[f"{key}Copy"] = name
                entry[f"{key}Version"] = copies[name].version
        entry["batchVersions"] = [b.get(source, "") for b in per_batch]
        out.append(entry)
    return out


def batch_versions(pod_specs: Mapping[int, Mapping[str, Any]], members: Iterable[int],
                   volumes: Iterable[str], copies: Mapping[str, ConfigCopy]) -> dict[str, str]:
    """``{source: versions}`` the pods of one batch mount, e.g. ``"3"`` or ``"2,3"`` while the
    batch is mixed (a copy unknown to ``copies`` shows as ``?``)."""
    seen: dict[str, set[str]] = {}
    wanted = list(volumes)
    for o in members:
        spec = pod_specs.get(o)
        if spec is None:
            continue
        for name in volume_sources(spec, wanted).values():
            found = copies.get(name)
            source = found.source if found else name
            seen.setdefault(source, set()).add(str(found.version) if found else "?")
    return {s: ",".join(sorted(v, key=lambda x: (len(x), x))) for s, v in seen.items()}
