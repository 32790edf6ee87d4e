"""The pod patches of an in-place update (strategic merge patch bodies), and their merge."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .specdiff import IN_PLACE_CONTAINER_FIELDS, pod_own_entries

REPLACE = {"$patch": "replace"}  # a strategic merge patch list directive: the list as given


def container_patch(name: str, image: str, version: str | None,
                    patched: bool) -> dict[str, Any]:
    """A container's new image (and, on a patched cluster, its PODKIT_VERSION env)."""
    c: dict[str, Any] = {"name": name, "image": image}
    if patched and version:
        c["env"] = [{"name": "PODKIT_VERSION", "value": version}]
    return c


def fields_patch(have: Mapping[str, Any], want: Mapping[str, Any],
                 image: str | None = None) -> dict[str, Any]:
    """A container's patch to ``want``'s env, envFrom and volumeMounts (each list replaced
    whole, so a removed entry goes; the pod's own entries, :func:`~.specdiff.pod_own_entries`,
    are kept), and ``image`` when given. Only a patched apiserver accepts it for a running pod."""
    c: dict[str, Any] = {"name": want["name"]}
    if image is not None:
        c["image"] = image
    for key in IN_PLACE_CONTAINER_FIELDS:
        items = list(want.get(key) or []) + pod_own_entries(key, have.get(key))
        c[key] = [*items, REPLACE]
    return c


def pod_patch(containers: list[dict[str, Any]] | None = None,
              ann: Mapping[str, str | None] | None = None) -> dict[str, Any]:
    """A pod patch of containers (merged by name) and annotations (``None`` removes one)."""
    body: dict[str, Any] = {}
    if ann:
        body["metadata"] = {"annotations": dict(ann)}
    if containers:
        body["spec"] = {"containers": containers}
    return body


def merge_patches(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Merge two pod patches of the shapes the step functions produce (annotations, and
    containers and volumes by name)."""
    out: dict[str, Any] = {}
    ann = {**(a.get("metadata") or {}).get("annotations", {}),
           **(b.get("metadata") or {}).get("annotations", {})}
    if ann:
        out["metadata"] = {"annotations": ann}
    by_name: dict[str, dict[str, Any]] = {}
    containers = [*(a.get("spec") or {}).get("containers", []),
                  *(b.get("spec") or {}).get("containers", [])]
    for c in containers:
        by_name.setdefault(c["name"], {}).update(c)  # a later list replaces an earlier one
    if by_name:
        out["spec"] = {"containers": list(by_name.values())}
    volumes = {v["name"]: v for v in [*(a.get("spec") or {}).get("volumes", []),
                                      *(b.get("spec") or {}).get("volumes", [])]}
    if volumes:
        out.setdefault("spec", {})["volumes"] = list(volumes.values())
    return out
