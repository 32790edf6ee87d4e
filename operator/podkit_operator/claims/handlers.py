"""Writing the pods' volume claims (the pure rules: :mod:`podkit_operator.inplace.claims`).

A pass of the release loop calls :func:`sync_claims` before it writes its plan: the claims of
the pods about to be created exist before those pods (a pod whose claim is missing would stay
Pending, one whose claim is still being deleted would mount a claim about to vanish), and the
claims of pods the plan deletes for a scale-down are owned by those pods first, so the garbage
collector removes them with the pods when ``whenScaled`` is ``Delete``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..api.statefulsetplus import StsPlusSpec
from ..inplace.claims import claim_bodies, claim_owners
from ..inplace.pods import ordinal_of, pod_name
from ..kube.client import KubeIO
from ..kube.objects import terminating


def sync_claims(io: KubeIO, stsp: dict[str, Any], spec: StsPlusSpec,
                pods: list[dict[str, Any]], creating: Iterable[int]) -> set[int]:
    """Create the missing claims of the pods at ``creating`` and of the existing pods, and set
    every claim's owner references; return the ordinals in ``creating`` whose pod must wait
    (a claim of the same name is still terminating)."""
    if not spec.claim_templates:
        return set()
    namespace, name = stsp["metadata"]["namespace"], stsp["metadata"]["name"]
    claims = {c["metadata"]["name"]: c for c in io.list_claims(namespace)}
    live = {o: p for p in pods if (o := ordinal_of(name, p)) is not None}
    waiting: set[int] = set()
    for ordinal in sorted(set(creating) | set(live)):
        pod = pod_name(name, ordinal)
        in_range = ordinal in spec.ordinals
        for body in claim_bodies(stsp, spec, pod):
            found = claims.get(body["metadata"]["name"])
            if found is None:
                if in_range:  # a pod scaled away gets no new claim
                    io.create_claim(namespace, body)
            elif terminating(found):
                waiting.add(ordinal)
            elif (owners := claim_owners(found, stsp, spec, pod, in_range,
                                         live.get(ordinal))) is not None:
                io.set_claim_owners(namespace, found["metadata"]["name"], owners)
    return waiting & set(creating)
