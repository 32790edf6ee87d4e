"""Volume claims: parsing, names, bodies, pod volumes and the retention policy's owners."""

import copy

import pytest

from op_sim import T0, V2, kubelet, make_stsp, template
from podkit_operator.api.statefulsetplus import ClaimRetention, SpecError, parse_spec
from podkit_operator.inplace.claims import claim_bodies, claim_name, claim_owners, with_claims
from podkit_operator.inplace.pods import build_plain_pod, build_pod
from podkit_operator.inplace.steps import DeletePod, PatchPod, inplace_step, swap_step
from podkit_operator.revisions.revision import RevisionInfo

DATA = {"metadata": {"name": "data", "labels": {"tier": "db"}},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        "status": {"phase": "Pending"}}


def _stsp(strategy="ABSwap", replicas=3, templates=(DATA,), **policy):
    stsp = make_stsp(replicas=replicas, batch_num=1, strategy=strategy)
    stsp["spec"]["volumeClaimTemplates"] = [copy.deepcopy(t) for t in templates]
    if policy:
        stsp["spec"]["persistentVolumeClaimRetentionPolicy"] = policy
    return stsp, parse_spec(stsp["spec"])


def test_parse_defaults_and_policies():
    _, spec = _stsp()
    assert [t["metadata"]["name"] for t in spec.claim_templates] == ["data"]
    assert spec.claims_when_deleted is ClaimRetention.RETAIN
    assert spec.claims_when_scaled is ClaimRetention.RETAIN
    _, spec = _stsp(whenDeleted="Delete", whenScaled="Delete")
    assert (spec.claims_when_deleted, spec.claims_when_scaled) == (ClaimRetention.DELETE,) * 2
    assert parse_spec(make_stsp()["spec"]).claim_templates == ()


@pytest.mark.parametrize(("templates", "policy", "words"), [
    ([DATA, DATA], {}, "given twice"),
    ([{**DATA, "metadata": {"name": "podkit-shm"}}], {}, "a volume podkit needs"),
    ([{**DATA, "metadata": {"name": "Data_1"}}], {}, "DNS label"),
    ([{"spec": {}}], {}, "DNS label"),
    ([DATA], {"whenScaled": "Sometimes"}, "whenScaled 'Sometimes' is unknown"),
])
def test_parse_refuses(templates, policy, words):
    with pytest.raises(SpecError, match=words):
        _stsp(templates=templates, **policy)


def test_a_template_named_as_a_released_configmap_volume_is_refused():
    stsp = make_stsp()
    stsp["spec"]["configMaps"] = ["conf"]
    stsp["spec"]["template"]["spec"]["volumes"] = [{"name": "data", "configMap": {"name": "conf"}}]
    stsp["spec"]["volumeClaimTemplates"] = [DATA]
    with pytest.raises(SpecError, match="released ConfigMap"):
        parse_spec(stsp["spec"])


def test_names_and_volumes_as_upstream():
    assert claim_name("data", "web-0") == "data-web-0"
    _, spec = _stsp()
    volumes = with_claims([{"name": "data", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}],
                          spec, "web-2")
    # a template volume of the claim's name is replaced by it (updateStorage upstream)
    assert volumes == [{"name": "data", "persistentVolumeClaim": {"claimName": "data-web-2"}},
                       {"name": "tmp", "emptyDir": {}}]


def test_swap_and_plain_pods_mount_their_claims():
    stsp, spec = _stsp()
    pod = build_pod(stsp, spec, 2, "r1", spec.template, False)
    assert pod["spec"]["volumes"][0] == {"name": "data",
                                         "persistentVolumeClaim": {"claimName": "data-web-2"}}
    assert {v["name"] for v in pod["spec"]["volumes"]} == {"data", "podkit", "podkit-shm"}
    stsp, spec = _stsp(strategy="InPlace")
    plain = build_plain_pod(stsp, spec, 1, "r1", spec.template)
    assert plain["spec"]["volumes"] == [{"name": "data",
                                         "persistentVolumeClaim": {"claimName": "data-web-1"}}]


@pytest.mark.parametrize("patched", [False, True])
def test_a_swap_keeps_the_claim_volumes(patched):
    """A pod's claim volumes are part of what the target wants: they never read as a volume
    the template removed (which would recreate the pod)."""
    stsp, spec = _stsp()
    t1 = spec.template
    pod = build_pod(stsp, spec, 0, RevisionInfo.from_template("web", t1).name, t1, patched)
    kubelet(pod)
    step = swap_step(pod, RevisionInfo.from_template("web", template(V2)), spec, patched, T0)
    assert isinstance(step, PatchPod), step


def test_an_inplace_update_keeps_the_claim_volumes():
    stsp, spec = _stsp(strategy="InPlace")
    t1 = spec.template
    pod = build_plain_pod(stsp, spec, 0, RevisionInfo.from_template("web", t1).name, t1)
    kubelet(pod, slots=False)
    step = inplace_step(pod, RevisionInfo.from_template("web", template(V2)), spec, True, T0)
    assert not isinstance(step, DeletePod), step


def test_claim_bodies():
    stsp, spec = _stsp(whenDeleted="Delete")
    stsp["metadata"]["namespace"] = "team"
    (body,) = claim_bodies(stsp, spec, "web-4")
    assert body["metadata"]["name"] == "data-web-4" and body["metadata"]["namespace"] == "team"
    assert body["metadata"]["labels"] == {"tier": "db", "app": "web"}
    assert body["metadata"]["ownerReferences"] == [
        {"apiVersion": "podkit.io/v1alpha1", "kind": "StatefulSetPlus", "name": "web",
         "uid": "uid-1"}]
    assert "status" not in body and body["spec"] == DATA["spec"]
    assert (body["apiVersion"], body["kind"]) == ("v1", "PersistentVolumeClaim")
    assert DATA["metadata"] == {"name": "data", "labels": {"tier": "db"}}  # not changed
    stsp, spec = _stsp()
    assert "ownerReferences" not in claim_bodies(stsp, spec, "web-0")[0]["metadata"]


POD = {"metadata": {"name": "web-3", "uid": "pod-uid"}}
STSP_REF = ("StatefulSetPlus", "web")
POD_REF = ("Pod", "web-3")


def _owners(claim, in_range, **policy):
    stsp, spec = _stsp(**policy)
    found = claim_owners(claim, stsp, spec, "web-3", in_range, POD)
    return None if found is None else [(r["kind"], r["name"]) for r in found]


@pytest.mark.parametrize(("policy", "in_range", "want"), [
    ({}, True, []), ({}, False, []),
    ({"whenDeleted": "Delete"}, True, [STSP_REF]), ({"whenDeleted": "Delete"}, False, [STSP_REF]),
    ({"whenScaled": "Delete"}, True, []), ({"whenScaled": "Delete"}, False, [POD_REF]),
    ({"whenDeleted": "Delete", "whenScaled": "Delete"}, True, [STSP_REF]),
    ({"whenDeleted": "Delete", "whenScaled": "Delete"}, False, [POD_REF]),
])
def test_retention_policy_owners(policy, in_range, want):
    """The upstream table (claimOwnerMatchesSetAndPod): from a claim with no owner, and from
    one owned every way; a claim already right needs no write."""
    bare = {"metadata": {"name": "data-web-3"}}
    both = {"metadata": {"name": "data-web-3", "ownerReferences": [
        {"apiVersion": "podkit.io/v1alpha1", "kind": "StatefulSetPlus", "name": "web",
         "uid": "uid-1"},
        {"apiVersion": "v1", "kind": "Pod", "name": "web-3", "uid": "old-pod-uid"}]}}
    assert _owners(bare, in_range, **policy) == (want or None)
    assert _owners(both, in_range, **policy) == want
    stsp, spec = _stsp(**policy)
    right = {"metadata": {"ownerReferences": claim_owners(bare, stsp, spec, "web-3", in_range,
                                                          POD) or []}}
    assert claim_owners(right, stsp, spec, "web-3", in_range, POD) is None


def test_others_owners_are_kept_and_a_foreign_controller_is_left_alone():
    other = {"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "uid": "x-uid"}
    claim = {"metadata": {"ownerReferences": [other]}}
    assert _owners(claim, True, whenDeleted="Delete") == [("ConfigMap", "x"), STSP_REF]
    controlled = {"metadata": {"ownerReferences": [{**other, "controller": True}]}}
    assert _owners(controlled, True, whenDeleted="Delete") is None


def test_a_pod_scaled_away_that_is_gone_gets_no_reference():
    stsp, spec = _stsp(whenScaled="Delete")
    assert claim_owners({"metadata": {}}, stsp, spec, "web-3", False, None) is None

