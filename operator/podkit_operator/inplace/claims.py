"""Volume claims of a StatefulSetPlus's pods, as a StatefulSet makes them (pure logic).

Each entry of ``spec.volumeClaimTemplates`` gives every pod a PersistentVolumeClaim of its own,
named ``<template>-<stsp>-<ordinal>`` (that is ``<template>-<pod>``), and the pod a volume of the
template's name that mounts it. The claim is made before the pod and outlives it: a swap keeps
the pod (and so the claim), and a pod created again at the same ordinal mounts the same claim.
A claim that already has that name is adopted as it is (its spec is never changed), so the
claims of a StatefulSet carry over to a StatefulSetPlus of the same name.

``spec.persistentVolumeClaimRetentionPolicy`` decides, as upstream, by owner references that
the garbage collector acts on (:func:`claim_owners`):

- ``whenDeleted: Delete``: the claim is owned by the StatefulSetPlus, so deleting it (with
  cascade) deletes the claim;
- ``whenScaled: Delete``: a claim whose ordinal the replicas no longer reach is owned by its
  pod before the pod is deleted, so the claim goes with the pod; scaled up again before that,
  the pod's reference is removed;
- ``Retain``: no reference of podkit's at all.

The references are not controller references and do not block the owner's deletion: a claim is
not managed (podkit never writes its spec), and ``blockOwnerDeletion`` would need ``update`` on
the owner's finalizers. A claim controlled by something else (a controller reference to another
object) is left alone, as upstream leaves it.
"""

from __future__ import annotations

import copy
from typing import Any

from ..api.keys import API_VERSION, KIND
from ..api.statefulsetplus import ClaimRetention, StsPlusSpec


def claim_name(template_name: str, pod: str) -> str:
    """``<template>-<pod>``: ``data-web-0`` for template ``data`` of pod ``web-0``."""
    return f"{template_name}-{pod}"


def template_names(spec: StsPlusSpec) -> list[str]:
    """The volume names the claim templates give the pods."""
    return [t["metadata"]["name"] for t in spec.claim_templates]


def with_claims(volumes: list[dict[str, Any]], spec: StsPlusSpec, pod: str
                ) -> list[dict[str, Any]]:
    """``volumes`` with a ``persistentVolumeClaim`` volume per claim template first; as upstream,
    a volume of the same name in the pod template is replaced by the claim's."""
    names = template_names(spec)
    claims = [{"name": n, "persistentVolumeClaim": {"claimName": claim_name(n, pod)}}
              for n in names]
    return claims + [v for v in volumes if v.get("name") not in names]


def claim_bodies(stsp: dict[str, Any], spec: StsPlusSpec, pod: str) -> list[dict[str, Any]]:
    """The claims of pod ``pod`` (in range), as created when missing: each template with the
    claim's name and namespace, its labels plus the selector's ``matchLabels``, and the owner
    references the retention policy gives a claim in range."""
    meta = stsp["metadata"]
    out = []
    for template in spec.claim_templates:
        body = copy.deepcopy(template)
        body.pop("status", None)
        tmeta = body.setdefault("metadata", {})
        tmeta["name"] = claim_name(template["metadata"]["name"], pod)
        tmeta["namespace"] = meta.get("namespace")
        tmeta["labels"] = {**(tmeta.get("labels") or {}),
                           **(spec.selector.get("matchLabels") or {})}
        owners = _wanted(stsp, spec, in_range=True, pod=None)
        if owners:
            tmeta["ownerReferences"] = owners
        body.setdefault("apiVersion", "v1")
        body.setdefault("kind", "PersistentVolumeClaim")
        out.append(body)
    return out


def _stsp_ref(stsp: dict[str, Any]) -> dict[str, Any]:
    meta = stsp["metadata"]
    return {"apiVersion": API_VERSION, "kind": KIND, "name": meta["name"], "uid": meta["uid"]}


def _pod_ref(pod: dict[str, Any]) -> dict[str, Any]:
    meta = pod["metadata"]
    return {"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "uid": meta["uid"]}


def _wanted(stsp: dict[str, Any], spec: StsPlusSpec, in_range: bool,
            pod: dict[str, Any] | None) -> list[dict[str, Any]]:
    """podkit's owner references of a claim: the StatefulSetPlus's while whenDeleted deletes
    (unless whenScaled deletes a claim scaled away: then its pod's alone)."""
    scaled_away = not in_range and spec.claims_when_scaled is ClaimRetention.DELETE
    refs = []
    if spec.claims_when_deleted is ClaimRetention.DELETE and not scaled_away:
        refs.append(_stsp_ref(stsp))
    if scaled_away and pod is not None:
        refs.append(_pod_ref(pod))
    return refs


def claim_owners(claim: dict[str, Any], stsp: dict[str, Any], spec: StsPlusSpec, pod: str,
                 in_range: bool, live: dict[str, Any] | None) -> list[dict[str, Any]] | None:
    """The new ``ownerReferences`` of a claim of pod ``pod`` under the retention policy, or
    None when they are right already or the claim is controlled by another object.
    ``in_range``: the replicas reach the pod's ordinal; ``live``: the pod if it exists.
    References of others are kept; podkit's are the
    StatefulSetPlus's (by uid) and any to the pod of that name (a stale one of an earlier pod
    too)."""
    stsp_meta = stsp["metadata"]
    refs = list((claim.get("metadata") or {}).get("ownerReferences") or [])
    if any(r.get("controller") and r.get("uid") != stsp_meta["uid"] for r in refs):
        return None

    def ours(ref: dict[str, Any]) -> bool:
        return ref.get("uid") == stsp_meta["uid"] or (
            ref.get("kind") == "Pod" and ref.get("apiVersion") == "v1"
            and ref.get("name") == pod)

    want = [r for r in refs if not ours(r)]
    want += _wanted(stsp, spec, in_range=in_range, pod=live)

    def key(ref: dict[str, Any]) -> tuple[Any, ...]:
        return ref.get("kind"), ref.get("name"), ref.get("uid"), ref.get("controller")

    return None if [key(r) for r in refs] == [key(r) for r in want] else want
