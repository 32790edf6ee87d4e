"""ConfigMap grayscale release, pure part: versioned copies, templates mounting them, GC.

A StatefulSetPlus names the ConfigMaps it releases (``spec.configMaps``); its template mounts
them by those names. The operator never lets a pod see an edit of such a ConfigMap directly:
it makes an immutable copy ``<name>-<hash>`` of each content (the same data never makes a
second copy) and writes the copy's name into the template's configMap volume before the
revision is hashed. So a config edit is a new revision, released with the batch, failure and
rollback machinery of an image. On a pod, a revision that changes a copy name is applied by
switching the volume's source in place (the patched apiserver allows it for opted-in pods);
the kubelet projects the new copy (``..data`` swap), the sidecar runs the service's hook and
reports the content hash it applied on ``/state`` (the switch and the report are the in-place
update's: :mod:`podkit_operator.inplace.config`).

The hash is :func:`podkit.configdir.hash_files`, the function the sidecar applies to the
projected directory, so the copy's name (:func:`podkit_operator.api.configcopy.copy_name`)
says which content the sidecar must report. Everything here is pure: :mod:`.handlers` does
the I/O.
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Iterable, Mapping
from typing import Any

from podkit.configdir import hash_files

from ..api.configcopy import ConfigCopy, copy_name
from ..api.keys import (
    ANN_CONFIG_HASH,
    API_VERSION,
    KIND,
    LABEL_CONFIG_SOURCE,
    LABEL_CONFIG_VERSION,
)


def data_hash(configmap: Mapping[str, Any]) -> str:
    """The content hash of a ConfigMap's data and binaryData (as the files it projects)."""
    files = {k: str(v).encode() for k, v in (configmap.get("data") or {}).items()}
    for key, value in (configmap.get("binaryData") or {}).items():
        files[key] = base64.b64decode(value)
    return hash_files(files)


def copy_owner(stsp: Mapping[str, Any]) -> dict[str, Any]:
    """A copy's owner reference to a StatefulSetPlus that releases it. Not a controller
    reference: StatefulSetPlus objects releasing the same ConfigMap share its copies, and the
    API deletes a copy only once every owner is gone."""
    meta = stsp["metadata"]
    return {"apiVersion": stsp.get("apiVersion", API_VERSION), "kind": KIND,
            "name": meta["name"], "uid": meta["uid"]}


def versioned_copy(source: Mapping[str, Any], content_hash: str, version: int,
                   owner: Mapping[str, Any]) -> dict[str, Any]:
    """The immutable copy of ``source``, owned by the StatefulSetPlus ``owner`` (never by the
    source: deleting or re-creating the source must not delete what pods mount)."""
    meta = source["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": copy_name(meta["name"], content_hash),
            "namespace": meta.get("namespace"),
            "labels": {LABEL_CONFIG_SOURCE: meta["name"], LABEL_CONFIG_VERSION: str(version)},
            "annotations": {ANN_CONFIG_HASH: content_hash},
            "ownerReferences": [copy_owner(owner)],
        },
        "immutable": True,
        **{k: copy.deepcopy(source[k]) for k in ("data", "binaryData") if source.get(k)},
    }


def owners_with(configmap: Mapping[str, Any],
                stsp: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """A listed copy's ownerReferences once ``stsp`` owns it and no ConfigMap does (copies
    an older operator made were owned by their source); None when they are so already."""
    refs = list((configmap.get("metadata") or {}).get("ownerReferences") or [])
    want = [r for r in refs if r.get("kind") != "ConfigMap"]
    uid = stsp["metadata"]["uid"]
    if all(r.get("uid") != uid for r in want):
        want.append(copy_owner(stsp))
    return None if want == refs else want


def newest(copies: Iterable[ConfigCopy]) -> ConfigCopy | None:
    """The copy of the highest version (the content released last)."""
    return max(copies, key=lambda c: (c.version, c.name), default=None)


def parse_copy(configmap: Mapping[str, Any]) -> ConfigCopy | None:
    """A listed ConfigMap as a copy; None when it lacks the labels of one."""
    meta = configmap.get("metadata") or {}
    labels = meta.get("labels") or {}
    try:
        version = int(labels.get(LABEL_CONFIG_VERSION, ""))
    except ValueError:
        return None
    if LABEL_CONFIG_SOURCE not in labels:
        return None
    content = (meta.get("annotations") or {}).get(ANN_CONFIG_HASH) or data_hash(configmap)
    return ConfigCopy(meta["name"], labels[LABEL_CONFIG_SOURCE], version, content)


def next_version(copies: Iterable[ConfigCopy]) -> int:
    """The version a new copy of these copies' source gets."""
    return max((c.version for c in copies), default=0) + 1


def with_copies(template: Mapping[str, Any], copies: Mapping[str, str]) -> dict[str, Any]:
    """The template with each configMap volume of a source in ``copies`` ({source: copy
    name}) mounting the copy instead."""
    out = copy.deepcopy(dict(template))
    for vol in out.get("spec", {}).get("volumes") or []:
        cm = vol.get("configMap")
        if cm is not None and cm.get("name") in copies:
            cm["name"] = copies[cm["name"]]
    return out


def referenced(specs: Iterable[Mapping[str, Any]]) -> set[str]:
    """Names of every ConfigMap the pod (or template) specs mount."""
    names: set[str] = set()
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
