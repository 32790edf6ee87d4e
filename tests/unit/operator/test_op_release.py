"""The release planner through whole releases, with the fake kubelet and controller loop."""

from datetime import timedelta

from op_sim import PAUSE, V1, V2, V3, Sim, make_stsp
from podkit_operator.kube.objects import rfc3339

PAUSE_ANN = "podkit.io/pause-batch-deploy"
CONFIRM = "podkit.io/confirm-batch"
ROLLBACK = "podkit.io/rollback"


def settled(replicas=6, **kw) -> Sim:
    sim = Sim(make_stsp(replicas=replicas, **kw))
    sim.run(lambda s: s.bds.get("generalStatus") == "Completed"
            and s.stsp["status"]["readyReplicas"] == replicas)
    sim.starts.clear()
    return sim


def at(sim, rev_name):
    return sorted(int(n.split("-")[1]) for n, p in sim.pods.items()
                  if p["metadata"]["annotations"].get("podkit.io/revision") == rev_name
                  and "podkit.io/target-revision" not in p["metadata"]["annotations"])


def rev(image):
    from op_sim import template
    from podkit_operator.revisions.revision import RevisionInfo
    return RevisionInfo.from_template("web", template(image)).name


def test_create_in_order_with_status():
    sim = Sim(make_stsp(replicas=3))
    plan = sim.tick()
    assert [c.ordinal for c in plan.create] == [0, 1, 2]
    assert all(c.revision == rev(V1) for c in plan.create)
    sim.run(lambda s: s.bds.get("generalStatus") == "Completed")
    st = sim.stsp["status"]
    assert st["replicas"] == st["readyReplicas"] == st["updatedReplicas"] == 3
    assert st["currentRevision"] == st["updateRevision"] == rev(V1)
    assert st["observedGeneration"] == 1 and st["selector"] == "app=web"
    conds = {c["type"]: c for c in st["conditions"]}
    assert conds["SwapMode"]["reason"] == "Stock" and conds["ReleaseFailed"]["status"] == "False"
    assert conds["Progressing"]["status"] == "False"
    assert not [e for p in sim.plans for e in p.events if e.reason == "ReleaseStarted"]


def test_three_batches_auto():
    sim = settled(pods_num=[1, "50%", "100%"])
    sim.set_image(V2)
    plan = sim.tick()
    assert sim.bds["batchOrder"] == 1 and sim.bds["batchReplicas"] == 1
    assert sim.bds["batchOrdinal"] == 5 and sim.bds["generalStatus"] == "Progressing"
    assert [p.name for p in plan.patches] == ["web-5"]
    assert "ReleaseStarted" in [e.reason for e in plan.events]
    seen_batches = []
    for _ in range(40):
        sim.tick()
        seen_batches.append((sim.bds["batchOrder"], tuple(at(sim, rev(V2)))))
        if sim.bds["generalStatus"] == "Completed":
            break
    # batches in order: {5}, then {4, 3}, then {2, 1, 0}; never a pod of a later batch early
    for k, done in seen_batches:
        assert set(done) <= set([5, 4, 3, 2, 1, 0][:[1, 3, 6][k - 1]])
    st = sim.stsp["status"]
    assert st["currentRevision"] == st["updateRevision"] == rev(V2)
    assert st["updatedReplicas"] == 6 and sim.bds["action"] == "Completed"
    assert all(sim.images(o)[:2] == [PAUSE, V2] for o in range(6))
    assert all(n == 1 for n in sim.starts.values()) and len(sim.starts) == 6


def test_manual_waits_for_confirmation():
    sim = settled(auto=False)
    sim.set_image(V2)
    sim.run(lambda s: s.bds.get("action") == "WaitToConfirm")
    assert sim.bds["generalStatus"] == "WaitToConfirm" and at(sim, rev(V2)) == [4, 5]
    for _ in range(5):
        sim.tick(100)
    assert at(sim, rev(V2)) == [4, 5] and sim.tick().patches == []
    sim.annotate(CONFIRM, "2")
    sim.tick()
    assert sim.bds["batchOrder"] == 2 and sim.bds["action"] == "Next"
    sim.run(lambda s: s.bds.get("action") == "WaitToConfirm" and s.bds["batchOrder"] == 2)
    assert at(sim, rev(V2)) == [2, 3, 4, 5]
    sim.annotate(CONFIRM, "3")
    sim.run(lambda s: s.bds.get("generalStatus") == "Completed")
    assert at(sim, rev(V2)) == list(range(6))
    # a new release does not inherit the old confirmation
    sim.set_image(V3)
    plan = sim.tick()
    assert plan.stsp_annotations == {CONFIRM: None}
    sim.run(lambda s: s.bds.get("action") == "WaitToConfirm")
    assert sim.bds["batchOrder"] == 1


def test_interval_between_batches():
    sim = settled(interval=30)
    sim.set_image(V2)
    plan = sim.run(lambda s: s.bds.get("batchOrder") == 2)
    t_converged = sim.now
    assert at(sim, rev(V2)) == [4, 5] and 29 <= plan.requeue_after <= 31
    assert sim.bds["batchDeadlineTime"] == rfc3339(t_converged + timedelta(seconds=630))
    assert "starts at" in [e for e in plan.events if e.reason == "BatchStarted"][0].message
    for _ in range(5):  # nothing starts before the interval passed
        assert sim.tick(5).patches == []
    sim.tick(6)
    assert {p["metadata"]["annotations"].get("podkit.io/target-revision")
            for n, p in sim.pods.items() if n in ("web-3", "web-2")} == {rev(V2)}


def test_pause_holds_new_swaps_but_finishes_started_ones():
    sim = settled()
    sim.set_image(V2)
    sim.tick()  # batch 1 = {5, 4} starts
    sim.annotate(PAUSE_ANN, "true")
    sim.run(lambda s: at(s, rev(V2)) == [4, 5])
    for _ in range(10):
        plan = sim.tick()
    assert sim.bds["generalStatus"] == "Paused" and sim.bds["batchOrder"] == 1
    assert plan.patches == [] and at(sim, rev(V2)) == [4, 5]
    sim.annotate(PAUSE_ANN, None)
    sim.run(lambda s: s.bds.get("generalStatus") == "Completed")
    assert at(sim, rev(V2)) == list(range(6))


def test_pause_in_the_middle_of_a_batch_starts_nothing():
    sim = settled(replicas=4, batch_num=1)
    sim.max_concurrent = 2
    sim.set_image(V2)
    sim.tick()
    sim.annotate(PAUSE_ANN, "true")
    sim.run(lambda s: at(s, rev(V2)) == [2, 3], ticks=30)  # the swaps under way finish
    sim.run(ticks=20)
    assert at(sim, rev(V2)) == [2, 3] and at(sim, rev(V1)) == [0, 1]


def test_bounded_starts_per_call():
    sim = settled(replicas=10, batch_num=1)
    sim.max_concurrent = 3
    sim.set_image(V2)
    plan = sim.tick()
    assert [p.name for p in plan.patches] == ["web-9", "web-8", "web-7"]
    assert plan.requeue_after == 1.0
    sim.run(lambda s: s.bds.get("generalStatus") == "Completed")
    assert all(n == 1 for n in sim.starts.values()) and len(sim.starts) == 10


def test_crashing_image_fails_the_batch_and_rolls_it_back():
    sim = settled(max_failed=0)
    sim.set_image(V2)
    sim.bad.add(V2)
    sim.run(lambda s: s.bds.get("generalStatus") == "Failed")
    st = sim.stsp["status"]
    conds = {c["type"]: c for c in st["conditions"]}
    assert conds["ReleaseFailed"]["status"] == "True" and conds["Progressing"]["status"] == "False"
    assert st["currentRevision"] == rev(V1) and st["updateRevision"] == rev(V2)
    assert at(sim, rev(V1)) == list(range(6))
    assert all(sim.images(o)[:2] == [V1, PAUSE] for o in range(6))
    assert set(sim.starts) == {"web-5", "web-4"}  # batch 2 never started
    assert "BatchFailed" in [e.reason for p in sim.plans for e in p.events]
    for _ in range(5):  # it stays failed
        assert sim.tick(100).patches == []
    # a new template starts a new release that works
    sim.bad.clear()
    sim.set_image(V3)
    sim.run(lambda s: s.bds.get("generalStatus") == "Completed")
    assert at(sim, rev(V3)) == list(range(6))


def test_deadline_with_tolerance_continues():
    sim = settled(replicas=4, batch_num=2, max_failed=50, deadline=20)
    # every pod available (Ready for minReadySeconds): no look is due before the deadline
    sim.run(lambda s: s.stsp["status"]["availableReplicas"] == 4)
    sim.set_image(V2)
    sim.stuck_on["web-3"] = {V2}  # v2 never gets ready on pod 3: only the deadline ends it
    plan = sim.tick()
    started = sim.now
    assert 20 <= plan.requeue_after <= 22  # the controller looks again at the deadline
    sim.run(lambda s: "podkit.io/swap-failed" in s.pods["web-3"]["metadata"]["annotations"],
            ticks=30)
    assert sim.now - started > timedelta(seconds=20)
    sim.run(lambda s: s.bds.get("generalStatus") == "Completed")
    assert at(sim, rev(V2)) == [0, 1, 2] and at(sim, rev(V1)) == [3]
    assert sim.images(3)[:2] == [V1, PAUSE]
    failed = [e for p in sim.plans for e in p.events if e.reason == "UpdateFailed"]
    assert len(failed) == 1 and "within 20s" in failed[0].message


def test_deadline_and_tolerance_rolls_back():
    sim = settled(replicas=4, batch_num=2, max_failed=49, deadline=20)
    sim.set_image(V2)
    sim.stuck.add(V2)
    sim.run(lambda s: s.bds.get("generalStatus") in ("RollingBack", "Failed"), ticks=30)
    assert sim.bds["batchOrder"] == 1
    sim.stuck.clear()
    sim.run(lambda s: s.bds.get("generalStatus") == "Failed")
    assert at(sim, rev(V1)) == [0, 1, 2, 3]
    assert sim.bds["currentRollbackProgress"] == "2/2"


def test_one_failed_pod_within_tolerance_is_rolled_back_and_skipped():
    sim = settled(replicas=4, batch_num=2, max_failed=50)
    sim.set_image(V2)
    sim.bad_on["web-3"] = {V2}  # v2 crashes on pod 3 only: 1 of 2 in batch 1 fails (50%)
    sim.run(lambda s: s.bds.get("generalStatus") == "Completed")
    ann3 = sim.pods["web-3"]["metadata"]["annotations"]
    assert ann3["podkit.io/swap-failed"] == rev(V2) and ann3["podkit.io/revision"] == rev(V1)
    assert sim.images(3)[:2] == [V1, PAUSE]
    assert at(sim, rev(V2)) == [0, 1, 2]
    assert sim.stsp["status"]["updatedReplicas"] == 3
    assert [t for n, t in sim.started_to if n == "web-3"] == [rev(V2), rev(V1)]  # and back
    for _ in range(5):
        assert sim.tick(100).patches == []  # never tried again in this release


def test_one_key_rollback_during_a_release():
    sim = settled()
    sim.set_image(V2)
    sim.run(lambda s: s.bds.get("batchOrder") == 2)
    sim.annotate(ROLLBACK, "true")
    plan = sim.tick()
    assert sim.bds["generalStatus"] == "RollingBack"
    assert "RollbackStarted" in [e.reason for e in plan.events]
    sim.run(lambda s: s.bds.get("generalStatus") == "Completed")
    st = sim.stsp["status"]
    assert st["currentRevision"] == st["updateRevision"] == rev(V1)
    assert at(sim, rev(V1)) == list(range(6))
    assert sim.tick().patches == []  # holds while the annotation stays


def test_one_key_rollback_after_a_completed_release():
    sim = settled(replicas=3)
    sim.set_image(V2)
    sim.run(lambda s: s.bds.get("generalStatus") == "Completed")
    assert at(sim, rev(V2)) == [0, 1, 2]
    sim.annotate(ROLLBACK, "true")
    plan = sim.tick()
    assert len(plan.patches) == 3  # all pods at once
    sim.run(lambda s: s.bds.get("generalStatus") == "Completed")
    assert at(sim, rev(V1)) == [0, 1, 2]
    assert sim.stsp["status"]["currentRevision"] == rev(V1)
    # removing the annotation releases the template again
    sim.annotate(ROLLBACK, None)
    sim.run(lambda s: s.bds.get("generalStatus") == "Completed"
            and s.stsp["status"]["currentRevision"] == rev(V2))


def test_scale_up_during_a_release_gets_the_last_good_revision():
    sim = settled(replicas=4, batch_num=2, auto=False)
    sim.set_image(V2)
    sim.run(lambda s: s.bds.get("action") == "WaitToConfirm")
    assert at(sim, rev(V2)) == [2, 3]
    sim.stsp["spec"]["replicas"] = 6
    plan = sim.tick()
    assert [(c.ordinal, c.revision) for c in plan.create] == [(4, rev(V1)), (5, rev(V1))]
    sim.annotate(CONFIRM, "2")
    sim.run(lambda s: s.bds.get("generalStatus") == "Completed")
    assert at(sim, rev(V2)) == list(range(6))


def test_a_scale_up_while_a_release_waits_to_confirm_leaves_the_confirmed_batch_as_it_was():
    """The full testbed, an HPA scaling 2 -> 3 while batch 1 (web-1) waited to be confirmed:
    web-2 was made at v1 and swapped to v2 at once, because batch 1 was the highest ordinal.
    A batch counts pods, and the pod already at the update counts first."""
    sim = settled(replicas=2, batch_num=2, pods_num=[1, "100%"], auto=False)
    sim.set_image(V2)
    sim.run(lambda s: s.bds.get("action") == "WaitToConfirm")
    assert at(sim, rev(V2)) == [1]
    sim.stsp["spec"]["replicas"] = 3
    for _ in range(20):
        sim.tick()
    assert at(sim, rev(V1)) == [0, 2] and at(sim, rev(V2)) == [1]
    assert sim.bds["action"] == "WaitToConfirm" and sim.bds["batchOrdinal"] == 1
    assert not [p for p in sim.plans[-20:] for p in p.patches]
    sim.annotate(CONFIRM, "2")
    sim.run(lambda s: s.bds.get("generalStatus") == "Completed")
    assert at(sim, rev(V2)) == [0, 1, 2]


def test_a_scale_up_under_recreate_makes_the_new_pod_at_the_last_good_revision():
    """Recreate: a pod deleted for the update comes back at the update revision while its
    batch counts it, a pod added by a scale-up comes at the last good one."""
    sim = settled(replicas=2, batch_num=2, pods_num=[1, "100%"], auto=False,
                  strategy="Recreate")
    sim.set_image(V2)
    sim.run(lambda s: s.bds.get("action") == "WaitToConfirm")
    assert at(sim, rev(V2)) == [1]
    sim.stsp["spec"]["replicas"] = 3
    plan = sim.tick()
    assert [(c.ordinal, c.revision) for c in plan.create] == [(2, rev(V1))]
    for _ in range(20):
        sim.tick()
    assert at(sim, rev(V1)) == [0, 2] and sim.bds["action"] == "WaitToConfirm"


def test_scale_down_from_the_highest_ordinal():
    sim = settled(replicas=5)
    sim.stsp["spec"]["replicas"] = 2
    plan = sim.tick()
    assert [d.name for d in plan.delete] == ["web-4", "web-3", "web-2"]
    assert sorted(sim.pods) == ["web-0", "web-1"]
    assert sim.stsp["status"]["replicas"] == 5  # the status reports the pods it saw
    sim.tick()
    assert sim.stsp["status"]["replicas"] == 2


def test_scale_down_during_a_release():
    sim = settled(replicas=6)
    sim.set_image(V2)
    sim.tick()
    sim.stsp["spec"]["replicas"] = 3
    sim.run(lambda s: s.bds.get("generalStatus") == "Completed")
    assert sorted(sim.pods) == ["web-0", "web-1", "web-2"] and at(sim, rev(V2)) == [0, 1, 2]


def test_same_inputs_same_plan():
    sim = settled()
    sim.set_image(V2)
    for _ in range(6):
        sim.now += timedelta(seconds=1)
        a, b = sim.plan(), sim.plan()
        assert a == b
        sim.apply(a)


def test_lost_status_writes_start_no_pod_twice():
    """An operator that dies after patching pods but before writing the status: the next run
    sees the pods' annotations and continues."""
    sim = settled()
    sim.set_image(V2)
    for i in range(60):
        sim.now += timedelta(seconds=1)
        plan = sim.plan()
        old_status = sim.stsp.get("status")
        sim.apply(plan)
        if i % 3 == 1:
            sim.stsp["status"] = old_status  # the status write was lost
        if sim.bds.get("generalStatus") == "Completed" and i % 3 != 1:
            break
    assert at(sim, rev(V2)) == list(range(6))
    assert all(n == 1 for n in sim.starts.values()) and len(sim.starts) == 6


def test_template_change_mid_release():
    sim = settled()
    sim.set_image(V2)
    sim.run(lambda s: s.bds.get("batchOrder") == 2)
    sim.set_image(V3)
    sim.run(lambda s: s.bds.get("generalStatus") == "Completed")
    assert at(sim, rev(V3)) == list(range(6))
    assert sim.stsp["status"]["currentRevision"] == rev(V3)


def test_patched_mode_condition():
    sim = Sim(make_stsp(replicas=2), patched=True)
    sim.run(lambda s: s.bds.get("generalStatus") == "Completed")
    conds = {c["type"]: c for c in sim.stsp["status"]["conditions"]}
    assert conds["SwapMode"]["reason"] == "Patched"
    sim.set_image(V2)
    sim.run(lambda s: s.bds.get("generalStatus") == "Completed"
            and s.stsp["status"]["currentRevision"] == rev(V2))


def test_inplace_and_recreate_releases():
    for strategy in ("InPlace", "Recreate"):
        sim = settled(replicas=4, batch_num=2, strategy=strategy)
        sim.set_image(V2)
        sim.run(lambda s: s.bds.get("generalStatus") == "Completed"
                and s.stsp["status"]["currentRevision"] == rev(V2))
        assert at(sim, rev(V2)) == [0, 1, 2, 3]
        assert all(sim.images(o) == [V2] for o in range(4))


def test_killed_at_random_points_no_pod_swapped_twice():
    import random
    for seed in range(20):
        rnd = random.Random(seed)
        sim = settled(replicas=7, pods_num=[1, "40%", "100%"])
        sim.started_to.clear()
        sim.set_image(V2)
        for _ in range(300):
            sim.now += timedelta(seconds=1)
            plan = sim.plan()
            if rnd.random() < 0.3:  # killed half way: some writes happened, the status not
                sim.apply(plan, keep=lambda a: rnd.random() < 0.5,  # noqa: B023 (used at once)
                          write_status=False)
            else:
                sim.apply(plan)
                if sim.bds.get("generalStatus") == "Completed":
                    break
        assert at(sim, rev(V2)) == list(range(7)), seed
        forward = [n for n, t in sim.started_to if t == rev(V2)]
        assert sorted(forward) == sorted(set(forward)) and len(forward) == 7, (seed, forward)
        assert all(t == rev(V2) for _, t in sim.started_to)


def test_a_batch_of_zero_pods_converges_at_once():
    sim = settled(replicas=2, batch_num=3, pods_num=[0, 1, 2])
    sim.set_image(V2)
    sim.tick()
    assert sim.bds["batchOrder"] == 2 and sim.bds["batchReplicas"] == 1


def test_status_progress_fields():
    sim = settled(replicas=4, batch_num=2, auto=False)
    sim.set_image(V2)
    sim.tick()
    bds = sim.bds
    assert bds["currentOrderProgress"] == "0/2" and bds["currentDeployComplete"] is False
    assert bds["batchDeadlineTime"] == rfc3339(sim.now + timedelta(seconds=600))
    sim.run(lambda s: s.bds.get("action") == "WaitToConfirm")
    bds = sim.bds
    assert bds["currentOrderProgress"] == "2/2" and bds["currentOrderSuccessPer"] == 100
    assert bds["currentDeployComplete"] is True
    events = [e.reason for p in sim.plans for e in p.events if e.pod is None]
    assert events == ["ReleaseStarted", "BatchCompleted"]  # once each, not on every reconcile
    assert sim.stsp["status"]["updatedReplicas"] == 2


def test_killed_at_random_points_during_a_failing_release():
    import random
    for seed in range(20):
        rnd = random.Random(seed)
        sim = settled(replicas=6, max_failed=0)
        sim.started_to.clear()
        sim.set_image(V2)
        sim.bad_on["web-4"] = {V2}
        for _ in range(300):
            sim.now += timedelta(seconds=1)
            plan = sim.plan()
            if rnd.random() < 0.3:
                sim.apply(plan, keep=lambda a: rnd.random() < 0.5,  # noqa: B023 (used at once)
                          write_status=False)
            else:
                sim.apply(plan)
                if sim.bds.get("generalStatus") == "Failed":
                    break
        assert sim.bds["generalStatus"] == "Failed", seed
        assert at(sim, rev(V1)) == list(range(6)), seed
        forward = [n for n, t in sim.started_to if t == rev(V2)]
        assert sorted(forward) == sorted(set(forward)) and set(forward) <= {"web-5", "web-4"}, \
            (seed, sim.started_to)


def test_pause_longer_than_the_deadline_does_not_fail_later_pods():
    sim = settled(replicas=4, batch_num=1, deadline=30)
    sim.max_concurrent = 2
    sim.set_image(V2)
    sim.tick()
    sim.annotate(PAUSE_ANN, "true")
    sim.run(lambda s: at(s, rev(V2)) == [2, 3])
    sim.tick(100)
    sim.annotate(PAUSE_ANN, None)
    sim.run(lambda s: s.bds.get("generalStatus") == "Completed")
    assert at(sim, rev(V2)) == [0, 1, 2, 3]


def test_strategy_change_that_cannot_swap_fails_instead_of_hanging():
    sim = settled(replicas=2, batch_num=1, strategy="InPlace")
    sim.stsp["spec"]["updateStrategy"]["type"] = "ABSwap"
    sim.set_image(V2)
    sim.run(lambda s: s.bds.get("generalStatus") == "Failed")
    reasons = [e.message for p in sim.plans for e in p.events if e.reason == "UpdateFailed"]
    assert reasons and "no slot containers" in reasons[0]


def test_a_failed_batch_after_a_scale_up_takes_back_every_pod_beyond_the_batches():
    """make chaos seed 20: 5 pods in 3 batches, pod 4 updated in batch 1, then a scale to 8
    moved batch 1 to pods 6 and 7 (batches were by ordinal then; now batch 1 counts 2 pods,
    4 and 7); when that batch failed, pod 4 kept the failed version. Every pod of the batches
    started goes back with the batch."""
    sim = settled(replicas=5, batch_num=3, max_failed=0, deadline=20)
    sim.set_image(V2)
    sim.run(lambda s: at(s, rev(V2)) == [4])
    sim.stsp["spec"]["replicas"] = 8
    for pod in ("web-6", "web-7"):  # batch 1 is now pods 6 and 7: v2 never gets ready there
        sim.stuck_on[pod] = {V2}
    sim.run(lambda s: s.bds.get("generalStatus") == "Failed", ticks=60)
    sim.stuck_on.clear()
    sim.run(lambda s: not any("podkit.io/target-revision" in p["metadata"]["annotations"]
                              for p in s.pods.values()))
    assert at(sim, rev(V1)) == list(range(8))


def test_a_pod_that_joins_a_batch_late_has_its_own_deadline():
    """make chaos seed 27: 10 pods in 2 batches, a scale to 5 while batch 1 (pods 5-9) swapped
    moved batch 1 to the highest ordinals left (pods 2-4); they started 7 s before the batch's
    deadline with a 10 s soak to serve, and the deadline failed them and the release. A pod
    whose swap starts after its batch did (a scale, a pause, a pod made again) has the whole
    batchDeadlineSeconds from its own start."""
    sim = settled(replicas=10, batch_num=2, max_failed=0, deadline=20)
    sim.stsp["spec"]["minReadySeconds"] = 10
    sim.set_image(V2)
    sim.run(lambda s: at(s, rev(V2)) == [5, 6, 7, 8, 9])  # soaked: 13 s in, 9 s left
    sim.stsp["spec"]["replicas"] = 5  # batch 1 is now pods 3 and 4
    sim.run(lambda s: s.bds.get("generalStatus") in ("Completed", "Failed", "RollingBack"),
            ticks=120)
    failed = [e.message for p in sim.plans for e in p.events if e.reason == "UpdateFailed"]
    assert sim.bds["generalStatus"] == "Completed", failed
    assert at(sim, rev(V2)) == [0, 1, 2, 3, 4]


def test_a_pod_of_an_earlier_batch_made_again_whose_swap_fails_fails_the_release():
    """make chaos seed 43: web-5, updated in batch 1, was deleted during batch 2 and made
    again at the last good revision; it stayed unready (unscheduled for a minute), its swap
    failed, and as it was not one of batch 2's pods its failure counted nowhere: the release
    ended Completed, "all pods at" the update, with web-5 back at v1. A swap that fails counts
    in the current batch, whichever batch its pod is in, while that pod goes back."""
    sim = settled(replicas=7, batch_num=2, pods_num=[3, "100%"], max_failed=0, deadline=40)
    sim.set_image(V2)
    sim.run(lambda s: s.bds.get("batchOrder") == 2)
    del sim.pods["web-5"]
    sim.stuck_on["web-5"] = {V1, V2}  # made again, it gets ready at neither
    sim.run(lambda s: s.bds.get("generalStatus") in ("Completed", "Failed"), ticks=200)
    assert sim.bds["generalStatus"] == "Failed", sim.bds
    reasons = [e.message for p in sim.plans for e in p.events if e.reason == "UpdateFailed"]
    assert any(m.startswith("web-5:") for m in reasons), reasons


def test_seed_43_a_pod_made_again_and_not_yet_scheduled_is_waited_for():
    """make chaos seed 43 (three runs at once): web-5, updated in batch 1, was deleted during
    batch 2 and made again at the last good revision, then stayed unscheduled for a minute;
    its swap started on the Pending pod, outran batchDeadlineSeconds and failed the release
    of a good version. A swap starts only on a pod that has been scheduled and started: a
    pod of a started batch that has not is waited for, named in the Progressing condition."""
    sim = settled(replicas=7, batch_num=2, pods_num=[3, "100%"], max_failed=0, deadline=40)
    sim.set_image(V2)
    sim.run(lambda s: s.bds.get("batchOrder") == 2)
    del sim.pods["web-5"]
    sim.unscheduled.add("web-5")
    sim.run(lambda s: "web-5" in s.pods, ticks=5)
    for _ in range(60):  # a minute unscheduled, longer than the batch's deadline
        sim.tick()
        assert "podkit.io/target-revision" not in sim.pods["web-5"]["metadata"]["annotations"]
    progressing = next(c for c in sim.stsp["status"]["conditions"]
                       if c["type"] == "Progressing")
    assert "web-5 (not scheduled yet (Unschedulable))" in progressing["message"], progressing
    sim.unscheduled.clear()
    sim.run(lambda s: s.bds.get("generalStatus") in ("Completed", "Failed"), ticks=120)
    failed = [e.message for p in sim.plans for e in p.events if e.reason == "UpdateFailed"]
    assert sim.bds["generalStatus"] == "Completed", failed
    assert at(sim, rev(V2)) == list(range(7))


def test_one_reservation_per_pod_through_a_release():
    """Every pod requests the business's cpu once (plus 1m for the slot that does not serve) at
    every moment of a release, and ends with the requests on the slot that serves."""
    from podkit_operator.inplace.specdiff import quantity as parse_quantity
    stsp = make_stsp(replicas=3, batch_num=1)
    stsp["spec"]["template"]["spec"]["containers"][0]["resources"] = {
        "requests": {"cpu": "100m"}, "limits": {"cpu": "1"}}
    sim = Sim(stsp)
    sim.run(lambda s: s.bds.get("generalStatus") == "Completed"
            and s.stsp["status"]["readyReplicas"] == 3)

    def requested(pod, slot):
        return parse_quantity(next(c for c in pod["spec"]["containers"] if c["name"] == slot)
                              ["resources"]["requests"]["cpu"])

    sim.set_image(V2)
    for _ in range(60):
        sim.tick()
        for pod in sim.pods.values():
            assert requested(pod, "web-a") + requested(pod, "web-b") == parse_quantity("101m")
        if sim.bds.get("generalStatus") == "Completed":
            break
    assert all(sim.images(o)[:2] == [PAUSE, V2] for o in range(3)), sim.bds
    for pod in sim.pods.values():
        serving = f"web-{pod['metadata']['annotations']['podkit.io/active-slot']}"
        assert serving == "web-b" and requested(pod, serving) == parse_quantity("100m")
