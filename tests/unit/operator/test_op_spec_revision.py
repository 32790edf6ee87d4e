"""Spec parsing and revisions."""

import copy

import pytest

from op_sim import V1, V2, make_stsp, template
from podkit_operator.api.statefulsetplus import SpecError, parse_spec, selector_string
from podkit_operator.revisions.history import controller_revision, prune
from podkit_operator.revisions.revision import (
    RevisionInfo,
    revision_hash,
    revision_name,
    version_of,
)


def test_defaults():
    spec = parse_spec({"selector": {"matchLabels": {"app": "web"}}, "template": template()})
    assert spec.replicas == 1 and spec.strategy == "ABSwap" and spec.batch_num == 1
    assert spec.batch_auto and spec.batch_interval_s == 0 and spec.pods_num_to_update is None
    assert spec.batch_deadline_s == 600 and spec.max_failed_percent == 0
    assert spec.revision_history_limit == 10 and spec.business == "web"
    assert spec.pause_image == "podkit.local/podkit-pause:dev"
    assert spec.sidecar_image == "podkit.local/podkit-sidecar:dev"
    assert spec.service_name is None


def test_full_spec():
    s = make_stsp(pods_num=[1, "50%", "100%"], auto=False, interval=5, deadline=60,
                  max_failed=20)
    s["spec"]["podkit"] = {"pauseImage": "p:1", "sidecarImage": "s:1"}
    spec = parse_spec(s["spec"])
    assert (spec.replicas, spec.batch_num, spec.batch_auto) == (6, 3, False)
    assert spec.pods_num_to_update == [1, "50%", "100%"]
    assert (spec.batch_interval_s, spec.batch_deadline_s, spec.max_failed_percent) == (5, 60, 20)
    assert (spec.pause_image, spec.sidecar_image, spec.service_name) == ("p:1", "s:1", "web")


def _bad(mutate):
    s = make_stsp()
    mutate(s["spec"])
    with pytest.raises(SpecError) as err:
        parse_spec(s["spec"])
    return str(err.value)


def test_spec_errors_say_what_to_fix():
    c = lambda sp: sp["template"]["spec"]["containers"][0]  # noqa: E731
    assert "command/args" in _bad(lambda sp: c(sp).update(command=["x"]))
    assert "unknown" in _bad(lambda sp: sp["updateStrategy"].update(type="Rolling"))
    assert "entries" in _bad(lambda sp: sp["updateStrategy"]["batchDeployConfig"].update(
        podsNumToUpdate=[1, 2]))
    assert "percentage" in _bad(lambda sp: sp["updateStrategy"]["batchDeployConfig"].update(
        podsNumToUpdate=[1, "x", 3]))
    assert "batchNum" in _bad(lambda sp: sp["updateStrategy"]["batchDeployConfig"].update(
        batchNum=0))
    assert "selector" in _bad(lambda sp: sp.update(selector={"matchLabels": {"app": "x"}}))
    assert "pause image" in _bad(lambda sp: c(sp).update(image="podkit.local/podkit-pause:dev"))
    assert "clashes" in _bad(lambda sp: sp["template"]["spec"]["containers"].append(
        {"name": "web-b", "image": "x"}))
    assert "reserved" in _bad(lambda sp: sp["template"]["spec"].update(
        volumes=[{"name": "podkit", "emptyDir": {}}]))
    assert "containers[0]" in _bad(lambda sp: sp["template"]["spec"].update(containers=[]))
    assert "maxFailedPercent" in _bad(lambda sp: sp["updateStrategy"]["batchDeployConfig"]
                                      .update(maxFailedPercent=101))


def test_command_allowed_without_slots():
    s = make_stsp(strategy="InPlace")
    s["spec"]["template"]["spec"]["containers"][0]["command"] = ["x"]
    assert parse_spec(s["spec"]).strategy == "InPlace"


def test_selector_string():
    assert selector_string({"matchLabels": {"b": "2", "a": "1"}, "matchExpressions": [
        {"key": "t", "operator": "In", "values": ["y", "x"]},
        {"key": "u", "operator": "NotIn", "values": ["z"]},
        {"key": "e", "operator": "Exists"}, {"key": "d", "operator": "DoesNotExist"}]}) == \
        "a=1,b=2,t in (x,y),u notin (z),e,!d"


def test_revision_hash_is_stable_and_canonical():
    t = template()
    h = revision_hash(t)
    assert len(h) == 10 and int(h, 16) >= 0
    reordered = {"spec": copy.deepcopy(t["spec"]), "metadata": copy.deepcopy(t["metadata"])}
    assert revision_hash(reordered) == h
    assert revision_hash(template(V2)) != h
    # pinned: the name must not change across processes, Python versions or restarts
    assert revision_hash({"a": 1, "b": [1, "x"]}) == "677ba3966f"
    assert revision_name("web", h) == f"web-{h}"


def test_version_of():
    assert version_of(template(V1)) == "v1"
    assert version_of(template(V1, env=[{"name": "PODKIT_VERSION", "value": "1.2.3"}])) == "1.2.3"
    assert version_of(template("podkit.local/demo")) == "latest"
    info = RevisionInfo.from_template("web", template(V2))
    assert (info.image, info.version) == (V2, "v2") and info.name.startswith("web-")


def test_controller_revision():
    stsp = make_stsp()
    t = stsp["spec"]["template"]
    cr = controller_revision(stsp, t, 3)
    assert cr["apiVersion"] == "apps/v1" and cr["kind"] == "ControllerRevision"
    assert cr["metadata"]["name"] == f"web-{revision_hash(t)}"
    assert cr["metadata"]["namespace"] == "default"
    assert cr["data"] == t and cr["revision"] == 3
    ref = cr["metadata"]["ownerReferences"][0]
    assert ref == {"apiVersion": "podkit.io/v1alpha1", "kind": "StatefulSetPlus", "name": "web",
                   "uid": "uid-1", "controller": True, "blockOwnerDeletion": True}


def test_prune_keeps_limit_and_in_use():
    revs = [{"metadata": {"name": f"r{i}"}, "revision": i} for i in range(1, 7)]
    assert prune(revs, keep=2, in_use=["r6", "r1"]) == ["r2", "r3"]
    assert prune(revs, keep=10, in_use=[]) == []
    assert prune(revs, keep=0, in_use=["r6"]) == ["r1", "r2", "r3", "r4", "r5"]


def test_business_container_falls_back_to_the_first():
    info = RevisionInfo.from_template("web", template(V2), business="renamed")
    assert info.image == V2
