"""The ControllerRevision history of a StatefulSetPlus, kept like a StatefulSet's."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..api.keys import LABEL_STSP
from ..api.statefulsetplus import owner_reference
from .revision import revision_hash, revision_name


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
            "labels": {LABEL_STSP: meta["name"]},
            "ownerReferences": [owner_reference(stsp)],
        },
        "data": template,
        "revision": revision_number,
    }


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
