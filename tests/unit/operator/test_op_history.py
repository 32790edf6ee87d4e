"""A history that follows releases: the rollback target, a lost status, removable fields."""

import copy

from test_op_release import ROLLBACK, at, rev, settled

from op_sim import V1, V2, V3, Sim, make_stsp
from podkit_operator.releases.plan import choose_revisions
from podkit_operator.releases.status import status_patch


def _release(sim, image):
    sim.set_image(image)
    sim.run(lambda s: s.bds.get("generalStatus") == "Completed"
            and s.stsp["status"]["currentRevision"] == rev(image))


def _rollback(sim):
    sim.annotate(ROLLBACK, "true")
    sim.run(lambda s: s.bds.get("generalStatus") == "Completed"
            and s.bds.get("currentRollbackProgress", "").startswith("3/"))


def test_r1_r2_r1_one_key_rollback_goes_to_r2():
    sim = settled(replicas=3)
    _release(sim, V2)
    _release(sim, V1)  # the same template again: the old revision, with its old number
    assert sim.stsp["status"]["rollbackRevision"] == rev(V2)
    _rollback(sim)
    assert at(sim, rev(V2)) == [0, 1, 2]


def test_after_a_failed_r2_and_a_good_r3_rollback_goes_to_r1():
    sim = settled(replicas=3, batch_num=1)
    sim.bad.add(V2)
    sim.set_image(V2)
    sim.run(lambda s: s.bds.get("generalStatus") == "Failed")
    assert at(sim, rev(V1)) == [0, 1, 2]
    sim.bad.clear()
    _release(sim, V3)
    assert sim.stsp["status"]["rollbackRevision"] == rev(V1)
    _rollback(sim)
    assert at(sim, rev(V1)) == [0, 1, 2]


def test_a_lost_status_is_a_release_in_batches_from_what_the_pods_run():
    sim = settled(replicas=6, batch_num=3)
    sim.set_image(V2)
    del sim.stsp["status"]  # restored from a backup / orphan delete and re-create
    plan = sim.tick()
    started = {p.name for p in plan.patches}
    assert started == {"web-5", "web-4"}, started  # batch 1 only, not every pod at once
    assert plan.status["currentRevision"] == rev(V1)
    assert plan.status["rollbackRevision"] == rev(V1)
    sim.run(lambda s: s.bds.get("generalStatus") == "Completed"
            and s.stsp["status"]["currentRevision"] == rev(V2))
    assert max(sim.starts.values()) == 1  # no pod swapped twice


def test_a_lost_status_after_a_completed_release_derives_the_rollback_target_from_pods():
    pods = [{"metadata": {"annotations": {"podkit.io/revision": r}}}
            for r in ("w-2", "w-2", "w-1", "w-3", "w-1")]
    assert choose_revisions({}, pods, "w-2", {"w-1", "w-2", "w-3"}) == ("w-1", "w-3")
    assert choose_revisions({}, pods[:2], "w-2", {"w-1", "w-2"}) == ("w-2", None)
    # a name the history no longer holds is never chosen
    assert choose_revisions({"currentRevision": "gone", "rollbackRevision": "gone"}, pods,
                            "w-2", {"w-2", "w-3"}) == ("w-3", None)
    kept = {"currentRevision": "w-2", "rollbackRevision": "w-1"}
    assert choose_revisions(kept, pods, "w-2", {"w-1", "w-2", "w-3"}) == ("w-2", "w-1")


def merge(doc, patch):
    """RFC 7386, as the apiserver applies a merge patch."""
    out = copy.deepcopy(doc)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def test_status_patch_removes_what_the_new_status_lacks():
    prior = {"a": 1, "gone": "x", "batch": {"batchDeadlineTime": "t", "order": 2},
             "conditions": [{"type": "X"}], "obj": {"k": 1}}
    new = {"a": 1, "batch": {"order": 3}, "conditions": [], "obj": "now a string"}
    patch = status_patch(prior, new)
    assert patch == {"gone": None, "batch": {"batchDeadlineTime": None, "order": 3},
                     "conditions": [], "obj": "now a string"}
    assert merge(prior, patch) == new
    assert status_patch(new, new) == {}


def test_a_rollback_leaves_no_batch_deadline_in_the_written_status():
    sim = settled(replicas=3, batch_num=3)
    sim.set_image(V2)
    sim.tick()
    written = sim.stsp["status"]
    assert "batchDeadlineTime" in written["batchDeployStatus"]
    sim.annotate(ROLLBACK, "true")
    plan = sim.tick()
    assert "batchDeadlineTime" not in plan.status["batchDeployStatus"]
    assert merge(written, status_patch(written, plan.status)) == plan.status


def test_a_new_object_has_no_rollback_target():
    sim = Sim(make_stsp(replicas=2))
    sim.run(lambda s: s.bds.get("generalStatus") == "Completed")
    assert "rollbackRevision" not in sim.stsp["status"]
