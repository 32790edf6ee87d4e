"""Revisions: the hash of a pod template, its name and version, and the revisions a pass uses.

A revision is named ``<stsp>-<hash>`` where the hash is over the canonical JSON of the template
(sorted keys, no whitespace), so the same template always gets the same name, across operator
restarts and Python versions.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ..api.configcopy import ConfigCopy
from ..api.keys import ANN_CONFIG_HOOK, ANN_PAUSE_IMAGE, ANN_SIDECAR_IMAGE
from ..api.statefulsetplus import (
    DEFAULT_CONFIG_HOOK,
    DEFAULT_PAUSE_IMAGE,
    DEFAULT_SIDECAR_IMAGE,
    StsPlusSpec,
)
from ..images import image_tag


@dataclass(frozen=True)
class RevisionInfo:
    """What a swap needs to know about a revision: its name, business image and version."""

    name: str
    image: str
    version: str
    template: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_template(cls, stsp_name: str, template: dict[str, Any],
                      business: str | None = None) -> RevisionInfo:
        """The revision of ``template`` (business = the first container when not given); the
        template is copied, so a later change of the object's spec cannot leak into it."""
        template = copy.deepcopy(template)
        container = business_container(template, business)
        return cls(name=revision_name(stsp_name, revision_hash(template)),
                   image=container["image"], version=version_of(template, container["name"]),
                   template=template)


_PODKIT_SETTINGS = ((ANN_PAUSE_IMAGE, "pause_image", DEFAULT_PAUSE_IMAGE),
                    (ANN_SIDECAR_IMAGE, "sidecar_image", DEFAULT_SIDECAR_IMAGE),
                    (ANN_CONFIG_HOOK, "config_hook", DEFAULT_CONFIG_HOOK))


def with_podkit(template: dict[str, Any], spec: StsPlusSpec) -> dict[str, Any]:
    """The template with ``spec.podkit``'s pause image, sidecar image and config hook in its
    annotations, so they are part of the revision (its hash) and rolled out like any field.
    A default is left out, so a template's revision stays what it was before they counted."""
    out = copy.deepcopy(template)
    set_ = {key: getattr(spec, attr) for key, attr, default in _PODKIT_SETTINGS
            if getattr(spec, attr) != default}
    if set_:
        meta = out.setdefault("metadata", {})
        meta["annotations"] = {**(meta.get("annotations") or {}), **set_}
    return out


def revision_spec(spec: StsPlusSpec, template: dict[str, Any]) -> StsPlusSpec:
    """``spec`` with the pause image, sidecar image and config hook of the revision whose
    template is ``template`` (:func:`with_podkit`): what that revision's pods run."""
    ann = (template.get("metadata") or {}).get("annotations") or {}
    return replace(spec, **{attr: ann.get(key, default) for key, attr, default
                            in _PODKIT_SETTINGS})


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


@dataclass(frozen=True)
class CurrentAndUpdate:
    """The revisions the controller resolved from the API.

    ``current``: ``status.currentRevision`` (the last good revision; the update revision when
    the object is new). ``update``: the revision of ``spec.template``. ``previous``: the
    revision that was current before the latest release (``status.rollbackRevision``, see
    :func:`podkit_operator.releases.plan.choose_revisions`), the target of a one-key rollback
    once a release has completed. Each carries its template (to build pods). ``copies``: the
    config copies of the released ConfigMaps, by name; ``missing_sources``: those of them that
    are gone.
    """

    current: RevisionInfo
    update: RevisionInfo
    previous: RevisionInfo | None = None
    copies: Mapping[str, ConfigCopy] = field(default_factory=dict)
    missing_sources: tuple[str, ...] = ()  # released ConfigMaps deleted: their last copy stays

    @property
    def in_use(self) -> tuple[RevisionInfo, ...]:
        """Current, update and previous (when there is one)."""
        return tuple(r for r in (self.current, self.update, self.previous) if r is not None)
