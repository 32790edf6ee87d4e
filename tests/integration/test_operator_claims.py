"""Volume claims of a StatefulSetPlus on a real apiserver, as the StatefulSet e2e suite checks
them (test/e2e/apps/statefulset.go in kubernetes/kubernetes: PVC creation, "should delete PVCs
with a WhenDeleted policy", "with a WhenScaled policy", recreate with the same claim).

An API-only cluster with kwok's fake nodes and the testbed's volume provisioner (claims bind,
so the scheduler places the pods; kwok mounts nothing, tests/e2e/test_operator_claims.py
mounts them for real); the operator runs as a local ``kopf run`` process with its own RBAC.
Garbage collection is the controller-manager's, as on any cluster.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
from test_operator_kwok import V1, V2, stsp

from podkit_operator.api import keys
from testbed.fixtures import operator_on_api_cluster
from testbed.kube import Kube, KubectlError
from testbed.provisioner import CLASS_NAME
from testbed.stsp import pods, serving_image, set_image

pytestmark = pytest.mark.integration

TEMPLATE = {"metadata": {"name": "data", "labels": {"tier": "db"}},
            "spec": {"accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": "1Gi"}}}}


@pytest.fixture(scope="module")
def kube() -> Iterator[Kube]:
    """An API-only cluster with storage, the CRD, and the operator running against it."""
    with operator_on_api_cluster(f"claims-{os.getpid()}", nodes=2, storage=True) as (kube, _):
        yield kube


@pytest.fixture
def namespace(kube: Kube) -> str:
    return kube.create_namespace(f"claims-{os.urandom(4).hex()}")


def with_claims(namespace: str, replicas: int, **policy: str) -> dict[str, Any]:
    obj = stsp(namespace, replicas, V1, batchNum=1)
    obj["spec"]["volumeClaimTemplates"] = [TEMPLATE]
    if policy:
        obj["spec"]["persistentVolumeClaimRetentionPolicy"] = policy
    return obj


def claims(kube: Kube, namespace: str) -> dict[str, dict[str, Any]]:
    listed = json.loads(kube.run("get", "pvc", "-n", namespace, "-o", "json"))["items"]
    return {c["metadata"]["name"]: c for c in listed}


def ready_pods(kube: Kube, namespace: str, count: int) -> dict[str, dict[str, Any]]:
    """The pods once ``count`` of them are Running and Ready, by name (else {})."""
    listed = {p["metadata"]["name"]: p for p in pods(kube, namespace)
              if not p["metadata"].get("deletionTimestamp")
              and any(c["type"] == "Ready" and c["status"] == "True"
                      for c in (p.get("status") or {}).get("conditions") or [])}
    return listed if len(listed) == count else {}


def claim_of(pod: dict[str, Any], volume: str = "data") -> str | None:
    return next((v["persistentVolumeClaim"]["claimName"] for v in pod["spec"]["volumes"]
                 if v["name"] == volume and "persistentVolumeClaim" in v), None)


def owners(claim: dict[str, Any]) -> list[tuple[str, str]]:
    return sorted((r["kind"], r["name"]) for r in claim["metadata"].get("ownerReferences") or [])


def test_a_claim_per_pod_named_labelled_bound_and_kept_across_a_swap(kube: Kube,
                                                                      namespace: str) -> None:
    kube.apply(with_claims(namespace, 2))
    running = kube.wait_for("2 ready pods", lambda: ready_pods(kube, namespace, 2),
                            timeout=90, explain=lambda: kube.why_pods_wait(namespace))
    found = claims(kube, namespace)
    assert sorted(found) == ["data-web-0", "data-web-1"]
    for ordinal in (0, 1):
        claim = found[f"data-web-{ordinal}"]
        assert claim["metadata"]["labels"] == {"tier": "db", "app": "web"}  # template + selector
        assert claim["spec"]["storageClassName"] == CLASS_NAME  # the default class
        assert claim["status"]["phase"] == "Bound"
        assert owners(claim) == []  # Retain, Retain: nothing of podkit's
        assert claim_of(running[f"web-{ordinal}"]) == f"data-web-{ordinal}"
    pod_uids = {n: p["metadata"]["uid"] for n, p in running.items()}
    set_image(kube, namespace, V2)
    kube.wait_for("both pods swapped to v2", lambda: all(
        serving_image(p) == V2 for p in ready_pods(kube, namespace, 2).values()) and
        len(ready_pods(kube, namespace, 2)) == 2, timeout=120)
    after = ready_pods(kube, namespace, 2)
    assert {n: p["metadata"]["uid"] for n, p in after.items()} == pod_uids  # swapped in place
    assert {n: c["metadata"]["uid"] for n, c in claims(kube, namespace).items()} == \
        {n: c["metadata"]["uid"] for n, c in found.items()}
    # whenDeleted: Retain: the claims outlive the StatefulSetPlus and its pods
    kube.run("delete", keys.PLURAL, "web", "-n", namespace, "--wait=true", timeout=90)
    kube.wait_for("the pods gone", lambda: not pods(kube, namespace), timeout=60)
    assert sorted(claims(kube, namespace)) == ["data-web-0", "data-web-1"]


def test_an_existing_claim_is_adopted_and_reused_by_a_pod_created_again(kube: Kube,
                                                                        namespace: str) -> None:
    """A claim made before (as a StatefulSet leaves it) keeps its spec and its uid."""
    kube.apply({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": "data-web-0", "namespace": namespace,
                             "annotations": {"made-by": "hand"}},
                "spec": {"accessModes": ["ReadWriteOnce"],
                         "resources": {"requests": {"storage": "2Gi"}}}})
    before = kube.wait_for("the claim bound", lambda: (c := claims(kube, namespace)
                                                       .get("data-web-0")) and
                           c["status"].get("phase") == "Bound" and c, timeout=30)
    kube.apply(with_claims(namespace, 1))
    first = kube.wait_for("web-0 ready", lambda: ready_pods(kube, namespace, 1), timeout=90,
                          explain=lambda: kube.why_pods_wait(namespace))["web-0"]
    assert claim_of(first) == "data-web-0"
    adopted = claims(kube, namespace)["data-web-0"]
    assert adopted["metadata"]["uid"] == before["metadata"]["uid"]
    assert adopted["spec"]["resources"]["requests"]["storage"] == "2Gi"
    assert adopted["metadata"]["annotations"]["made-by"] == "hand"
    kube.delete("pod", "web-0", namespace)
    again = kube.wait_for("web-0 created again", lambda: (p := ready_pods(kube, namespace, 1)
                                                          .get("web-0")) and
                          p["metadata"]["uid"] != first["metadata"]["uid"] and p, timeout=90)
    assert claim_of(again) == "data-web-0"
    assert claims(kube, namespace)["data-web-0"]["metadata"]["uid"] == before["metadata"]["uid"]


def test_when_deleted_delete_the_claims_go_with_the_statefulsetplus(kube: Kube,
                                                                    namespace: str) -> None:
    kube.apply(with_claims(namespace, 2, whenDeleted="Delete"))
    kube.wait_for("2 ready pods", lambda: ready_pods(kube, namespace, 2), timeout=90)
    found = claims(kube, namespace)
    assert {n: owners(c) for n, c in found.items()} == {
        "data-web-0": [(keys.KIND, "web")], "data-web-1": [(keys.KIND, "web")]}
    # whenScaled: Retain: a claim scaled away stays (still owned by the StatefulSetPlus)
    kube.run("scale", keys.PLURAL, "web", "-n", namespace, "--replicas=1")
    kube.wait_for("1 pod", lambda: ready_pods(kube, namespace, 1) and
                  len(pods(kube, namespace)) == 1, timeout=60)
    assert sorted(claims(kube, namespace)) == ["data-web-0", "data-web-1"]
    kube.run("delete", keys.PLURAL, "web", "-n", namespace, "--wait=true", timeout=90)
    kube.wait_for("the claims deleted by the garbage collector",
                  lambda: not claims(kube, namespace), timeout=90)


def test_when_scaled_delete_a_scale_down_deletes_the_claims_it_leaves(kube: Kube,
                                                                      namespace: str) -> None:
    kube.apply(with_claims(namespace, 3, whenScaled="Delete"))
    kube.wait_for("3 ready pods", lambda: ready_pods(kube, namespace, 3), timeout=90)
    kept = claims(kube, namespace)["data-web-0"]["metadata"]["uid"]
    assert all(owners(c) == [] for c in claims(kube, namespace).values())  # in range: none
    kube.run("scale", keys.PLURAL, "web", "-n", namespace, "--replicas=1")
    kube.wait_for("the claims of web-1 and web-2 deleted with their pods",
                  lambda: sorted(claims(kube, namespace)) == ["data-web-0"], timeout=90)
    assert claims(kube, namespace)["data-web-0"]["metadata"]["uid"] == kept
    kube.run("scale", keys.PLURAL, "web", "-n", namespace, "--replicas=2")
    running = kube.wait_for("2 ready pods", lambda: ready_pods(kube, namespace, 2), timeout=90)
    assert claim_of(running["web-1"]) == "data-web-1"
    found = claims(kube, namespace)
    assert sorted(found) == ["data-web-0", "data-web-1"]  # a new claim for web-1
    assert owners(found["data-web-1"]) == []
    # whenDeleted: Retain: deleting the StatefulSetPlus leaves them
    kube.run("delete", keys.PLURAL, "web", "-n", namespace, "--wait=true", timeout=90)
    kube.wait_for("the pods gone", lambda: not pods(kube, namespace), timeout=60)
    assert sorted(claims(kube, namespace)) == ["data-web-0", "data-web-1"]


def rejected(kube: Kube, args: list[str], body: str | None = None) -> str:
    try:
        kube.run(*args, input=body)
    except KubectlError as err:
        return err.stderr
    pytest.fail(f"kubectl {' '.join(args)} was accepted")


def test_the_schema_refuses_changed_duplicate_and_reserved_claim_templates(
        kube: Kube, namespace: str) -> None:
    obj = with_claims(namespace, 0)
    obj["spec"]["persistentVolumeClaimRetentionPolicy"] = {}
    kube.apply(obj)
    bigger = {**TEMPLATE, "spec": {**TEMPLATE["spec"],
                                   "resources": {"requests": {"storage": "5Gi"}}}}
    message = rejected(kube, ["patch", keys.PLURAL, "web", "-n", namespace, "--type=merge", "-p",
                              json.dumps({"spec": {"volumeClaimTemplates": [bigger]}})])
    assert "volumeClaimTemplates is immutable" in message
    message = rejected(kube, ["patch", keys.PLURAL, "web", "-n", namespace, "--type=json", "-p",
                              json.dumps([{"op": "remove",
                                           "path": "/spec/volumeClaimTemplates"}])])
    assert "volumeClaimTemplates is immutable" in message
    for templates, words in (([TEMPLATE, TEMPLATE], "names must be unique"),
                             ([{**TEMPLATE, "metadata": {"name": "podkit"}}], "are taken by"),
                             ([{**TEMPLATE, "metadata": {"name": "Data"}}], "should match")):
        obj = with_claims(namespace, 0)
        obj["metadata"]["name"] = "other"
        obj["spec"]["volumeClaimTemplates"] = templates
        assert words in rejected(kube, ["create", "-f", "-"], json.dumps(obj))
    obj = with_claims(namespace, 0, whenScaled="Sometimes")
    obj["metadata"]["name"] = "other"
    assert "Unsupported value" in rejected(kube, ["create", "-f", "-"], json.dumps(obj))
    policy = kube.get(keys.PLURAL, "web", namespace)["spec"]["persistentVolumeClaimRetentionPolicy"]
    assert policy == {"whenDeleted": "Retain", "whenScaled": "Retain"}  # each defaulted
