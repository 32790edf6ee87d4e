"""ConfigMap grayscale release: versioned copies, their names, GC, and the sidecar's report.

A StatefulSetPlus names the ConfigMaps it releases (``spec.configMaps``); its template mounts
them by those names. The operator never lets a pod see an edit of such a ConfigMap directly:
it makes an immutable copy ``<name>-<hash>`` of each content (the same data never makes a
second copy) and writes the copy's name into the template's configMap volume before the
revision is hashed. So a config edit is a new revision, released with the batch, failure and
rollback machinery of an image. On a pod, a revision that changes a copy name is applied by
switching the volume's source in place (the patched apiserver allows it for opted-in pods);
the kubelet projects the new copy (``..data`` swap), the sidecar runs the service's hook and
reports the content hash it applied on ``/state``.

The hash is :func:`podkit.configdir.hash_files`, the function the sidecar applies to the
projected directory, so the copy's name says which content the sidecar must report.
Everything here is pure: the controller does the I/O.
"""

from __future__ import annotations

import base64
import copy
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from podkit.configdir import hash_files

LABEL_SOURCE = "podkit.io/config-source"  # on a copy: the ConfigMap it copies
LABEL_VERSION = "podkit.io/config-version"  # on a copy: 1, 2, ... per source
ANN_HASH = "podkit.io/config-hash"  # on a copy: the full content hash
ANN_APPLIED = "podkit.io/config-applied"  # on a pod: the copies its sidecar reported applied
SIDECAR_CONFIG_ROOT = "/podkit-config"  # the sidecar sees volume <v> at /podkit-config/<v>
NAME_HASH_CHARS = 10


@dataclass(frozen=True)
class ConfigCopy:
    """A versioned copy of a released ConfigMap, as listed from the API."""

    name: str
    source: str
    version: int
    hash: str


def data_hash(configmap: Mapping[str, Any]) -> str:
    """The content hash of a ConfigMap's data and binaryData (as the files it projects)."""
    files = {k: str(v).encode() for k, v in (configmap.get("data") or {}).items()}
    for key, value in (configmap.get("binaryData") or {}).items():
        files[key] = base64.b64decode(value)
    return hash_files(files)


def copy_name(source: str, content_hash: str) -> str:
    """``<source>-<first 10 hex of the content hash>``."""
    return f"{source}-{content_hash[:NAME_HASH_CHARS]}"


def name_hash(name: str) -> str:
    """The content hash prefix a copy's name carries."""
    return name[-NAME_HASH_CHARS:]


def versioned_copy(source: Mapping[str, Any], content_hash: str, version: int) -> dict[str, Any]:
    """The immutable copy of ``source`` (owned by it: deleting the source deletes its copies)."""
    meta = source["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": copy_name(meta["name"], content_hash),
            "namespace": meta.get("namespace"),
            "labels": {LABEL_SOURCE: meta["name"], LABEL_VERSION: str(version)},
            "annotations": {ANN_HASH: content_hash},
            "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": meta["name"],
                                 "uid": meta["uid"]}],
        },
        "immutable": True,
        **{k: copy.deepcopy(source[k]) for k in ("data", "binaryData") if source.get(k)},
    }


def parse_copy(configmap: Mapping[str, Any]) -> ConfigCopy | None:
    """A listed ConfigMap as a copy; None when it lacks the labels of one."""
    meta = configmap.get("metadata") or {}
    labels = meta.get("labels") or {}
    try:
        version = int(labels.get(LABEL_VERSION, ""))
    except ValueError:
        return None
    if LABEL_SOURCE not in labels:
        return None
    content = (meta.get("annotations") or {}).get(ANN_HASH) or data_hash(configmap)
    return ConfigCopy(meta["name"], labels[LABEL_SOURCE], version, content)


def next_version(copies: Iterable[ConfigCopy]) -> int:
    return max((c.version for c in copies), default=0) + 1


# --- templates and pods ----------------------------------------------------------------------

def released_volumes(pod_spec: Mapping[str, Any], sources: Iterable[str]) -> dict[str, str]:
    """``{volume: source}`` for the configMap volumes that mount a released ConfigMap."""
    wanted = set(sources)
    out = {}
    for vol in pod_spec.get("volumes") or []:
        name = (vol.get("configMap") or {}).get("name")
        if name in wanted:
            out[vol["name"]] = name
    return out


def volume_sources(pod_spec: Mapping[str, Any], volumes: Iterable[str]) -> dict[str, str]:
    """``{volume: configMap name}`` of the given volumes in a pod (or template) spec."""
    wanted = set(volumes)
    return {v["name"]: (v.get("configMap") or {}).get("name", "")
            for v in pod_spec.get("volumes") or [] if v.get("name") in wanted}


def with_copies(template: Mapping[str, Any], copies: Mapping[str, str]) -> dict[str, Any]:
    """The template with each configMap volume of a source in ``copies`` ({source: copy
    name}) mounting the copy instead."""
    out = copy.deepcopy(dict(template))
    for vol in out.get("spec", {}).get("volumes") or []:
        cm = vol.get("configMap")
        if cm is not None and cm.get("name") in copies:
            cm["name"] = copies[cm["name"]]
    return out


def config_key(pod_spec: Mapping[str, Any], volumes: Iterable[str]) -> str:
    """What a pod's config volumes mount, as one string: ``vol=copy,...`` by volume name.

    The operator writes it to ``podkit.io/config-applied`` once the sidecar reported that
    content applied; a pod whose key differs from its annotation awaits that report."""
    sources = volume_sources(pod_spec, volumes)
    return ",".join(f"{v}={sources[v]}" for v in sorted(sources))


def sidecar_dir(volume: str) -> str:
    return f"{SIDECAR_CONFIG_ROOT}/{volume}"


def referenced(specs: Iterable[Mapping[str, Any]]) -> set[str]:
    """Names of every ConfigMap the pod (or template) specs mount."""
    names = set()
    for spec in specs:
        for vol in spec.get("volumes") or []:
            if name := (vol.get("configMap") or {}).get("name"):
                names.add(name)
            for src in (vol.get("projected") or {}).get("sources") or []:
                if name := (src.get("configMap") or {}).get("name"):
                    names.add(name)
    return names


def to_delete(copies: Iterable[ConfigCopy], keep: int, in_use: Iterable[str]) -> list[str]:
    """The copies GC deletes: per source, those beyond the ``keep`` newest versions, never one
    in ``in_use`` (mounted by a pod, or named by a revision still in use)."""
    used = set(in_use)
    by_source: dict[str, list[ConfigCopy]] = {}
    for c in copies:
        by_source.setdefault(c.source, []).append(c)
    doomed = []
    for listed in by_source.values():
        listed.sort(key=lambda c: (c.version, c.name), reverse=True)
        doomed += [c.name for c in listed[max(0, keep):] if c.name not in used]
    return sorted(doomed)


# --- what the sidecar reports ----------------------------------------------------------------

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


def batch_versions(pod_specs: Mapping[int, Mapping[str, Any]], members: Iterable[int],
                   volumes: Iterable[str], copies: Mapping[str, ConfigCopy]) -> dict[str, str]:
    """``{source: versions}`` the pods of one batch mount, e.g. ``"3"`` or ``"2,3"`` while the
    batch is mixed (a copy unknown to ``copies`` shows as ``?``)."""
    seen: dict[str, set[str]] = {}
    volumes = list(volumes)
    for o in members:
        spec = pod_specs.get(o)
        if spec is None:
            continue
        for name in volume_sources(spec, volumes).values():
            found = copies.get(name)
            source = found.source if found else name
            seen.setdefault(source, set()).add(str(found.version) if found else "?")
    return {s: ",".join(sorted(v, key=lambda x: (len(x), x))) for s, v in seen.items()}
