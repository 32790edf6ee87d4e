"""Revisions: the hash of a pod template, its version, and the ControllerRevision history.

A revision is named ``<stsp>-<hash>`` where the hash is over the canonical JSON of the template
(sorted keys, no whitespace), so the same template always gets the same name, across operator
restarts and Python versions, and the history is kept as ``apps/v1`` ControllerRevisions like a
StatefulSet's.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Iterable

from .images import image_tag

GROUP_VERSION = "podkit.io/v1alpha1"
KIND = "StatefulSetPlus"
REVISION_LABEL = "podkit.io/stsp"


@dataclass(frozen=True)
class RevisionInfo:
    """What a swap needs to know about a revision: its name, business image and version."""

    name: str
    image: str
    version: str
    template: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_template(cls, stsp_name: str, template: dict[str, Any],
                      business: str | None = None) -> "RevisionInfo":
        """The revision of ``template`` (business = the first container when not given); the
        template is copied, so a later change of the object's spec cannot leak into it."""
        template = copy.deepcopy(template)
        container = business_container(template, business)
        return cls(name=revision_name(stsp_name, revision_hash(template)),
                   image=container["image"], version=version_of(template, container["name"]),
                   template=template)


def revision_hash(template: dict[str, Any]) -> str:
    """10 hex characters of the sha256 of the template's canonical JSON."""
    canonical = json.dumps(template, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:10]


def revision_name(stsp_name: str, hash_: str) -> str:
    """``<stsp>-<hash>``, the ControllerRevision's name and the pods' revision annotation."""
    return f"{stsp_name}-{hash_}"


def business_container(template: dict[str, Any], business: str | None = None) -> dict[str, Any]:
    """The business container of a template: by name, else the first (an older revision may
    name it differently)."""
    containers = template["spec"]["containers"]
    for c in containers:
        if c.get("name") == business:
            return c
    return containers[0]


def version_of(template: dict[str, Any], business: str | None = None) -> str:
    """The version of a template: the business container's PODKIT_VERSION env, else its tag."""
    container = business_container(template, business)
    for env in container.get("env") or []:
        if env.get("name") == "PODKIT_VERSION" and env.get("value"):
            return str(env["value"])
    return image_tag(container["image"])


def controller_revision(stsp: dict[str, Any], template: dict[str, Any],
                        revision_number: int) -> dict[str, Any]:
    """The ``apps/v1`` ControllerRevision recording ``template``, owned by the stsp."""
    meta = stsp["metadata"]
    return {
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": {
            "name": revision_name(meta["name"], revision_hash(template)),
            "namespace": meta.get("namespace"),
            "labels": {REVISION_LABEL: meta["name"]},
            "ownerReferences": [owner_reference(stsp)],
        },
        "data": template,
        "revision": revision_number,
    }


def owner_reference(stsp: dict[str, Any]) -> dict[str, Any]:
    """The controller owner reference to a StatefulSetPlus (garbage collection, ownership)."""
    meta = stsp["metadata"]
    return {"apiVersion": GROUP_VERSION, "kind": KIND, "name": meta["name"],
            "uid": meta["uid"], "controller": True, "blockOwnerDeletion": True}


def prune(revisions: Iterable[dict[str, Any]], keep: int, in_use: Iterable[str]) -> list[str]:
    """Names of ControllerRevisions to delete: the oldest beyond ``keep``, never one in use.

    ``in_use`` holds the current and update revisions and every revision a pod runs or is
    swapping to; those never count against the limit, as in a StatefulSet.
    """
    used = set(in_use)
    old = [r for r in revisions if r["metadata"]["name"] not in used]
    old.sort(key=lambda r: (r.get("revision", 0), r["metadata"]["name"]))
    excess = len(old) - max(0, keep)
    return [r["metadata"]["name"] for r in old[:excess]] if excess > 0 else []
