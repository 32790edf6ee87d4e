"""Health over time: the soak (minReadySeconds), crashes after taking over, progress by what runs
(first repo tags, image IDs), with the unit kubelet of op_sim."""

from datetime import timedelta

from test_op_release import at, rev

from op_sim import V1, V2, Sim, make_stsp, reported_image, retag
from podkit_operator.kube.objects import rfc3339

CRASHING = "podkit.local/podkit-demo:v2-crash-after-8s"


def settled(replicas=3, min_ready=None, **kw) -> Sim:
    stsp = make_stsp(replicas=replicas, **kw)
    if min_ready is not None:
        stsp["spec"]["minReadySeconds"] = min_ready
    sim = Sim(stsp)
    sim.run(lambda s: s.bds.get("generalStatus") == "Completed"
            and s.stsp["status"]["readyReplicas"] == replicas)
    sim.starts.clear()
    sim.started_to.clear()
    return sim


def runs(sim, image) -> set[str]:
    """Pods with a container whose spec names ``image`` now."""
    return {n for n, p in sim.pods.items() if any(c["image"] == image
                                                  for c in p["spec"]["containers"])}


def release_until_failed(sim, image, ticks=120) -> set[str]:
    """Release ``image`` until the release fails; the pods whose spec ever named it."""
    sim.set_image(image)
    ever = set()
    for _ in range(ticks):
        sim.tick()
        ever |= runs(sim, image)
        if sim.bds.get("generalStatus") == "Failed":
            break
    return ever


def test_a_version_that_crashes_8s_after_start_fails_batch_1_and_reaches_no_other_pod():
    sim = settled(batch_num=3, interval=20)
    ever = release_until_failed(sim, CRASHING)
    st = sim.stsp["status"]
    assert sim.bds["generalStatus"] == "Failed" and sim.bds["batchOrder"] == 1
    assert {c["type"]: c["status"] for c in st["conditions"]}["ReleaseFailed"] == "True"
    assert ever == {"web-2"}  # batch 1 only, never batch 2 or 3
    assert at(sim, rev(V1)) == [0, 1, 2] and st["updatedReplicas"] == 0
    failed = [e for p in sim.plans for e in p.events if e.reason == "UpdateFailed"]
    assert failed and "CrashLoopBackOff" in failed[0].message
    assert not [e for p in sim.plans for e in p.events if e.reason == "UpdateCompleted"
                and rev(CRASHING) in e.message]


def test_without_a_soak_the_same_crash_reaches_more_than_the_canary():
    """The case the soak exists for (minReadySeconds 0 is the old behaviour): the crash is
    still caught before the release completes, but after later batches started."""
    sim = settled(batch_num=3, min_ready=0)
    ever = release_until_failed(sim, CRASHING)
    assert sim.bds["generalStatus"] == "Failed" and len(ever) > 1


def test_the_soak_holds_the_pod_until_minreadyseconds_passed():
    sim = settled(replicas=1, min_ready=30)
    sim.set_image(V2)
    sim.run(lambda s: "podkit.io/serving-since" in
            s.pods["web-0"]["metadata"]["annotations"], ticks=20)
    since = sim.now
    ann = sim.pods["web-0"]["metadata"]["annotations"]
    assert ann["podkit.io/target-revision"] == rev(V2)  # still an update under way
    assert ann["podkit.io/serving-since"] == rfc3339(since)
    plan = sim.tick()
    assert plan.requeue_after is not None and 25 <= plan.requeue_after <= 31  # the soak's end
    sim.run(lambda s: at(s, rev(V2)) == [0], ticks=40)
    sim.tick()
    assert sim.now >= since + timedelta(seconds=30)
    assert sim.stsp["status"]["updatedReplicas"] == 1


def test_a_crash_after_the_release_completed_shows_in_status_and_events():
    sim = settled(replicas=2, batch_num=1)
    sim.set_image("podkit.local/podkit-demo:v2-crash-after-40s")
    sim.run(lambda s: s.bds.get("generalStatus") == "Completed", ticks=40)
    assert sim.stsp["status"]["unhealthyReplicas"] == 0
    sim.run(lambda s: s.stsp["status"]["unhealthyReplicas"] == 2, ticks=60)
    st = sim.stsp["status"]
    assert st["unhealthyPods"] == ["web-0", "web-1"] and st["updatedReplicas"] == 2
    events = [e for p in sim.plans for e in p.events if e.reason == "ServingFailed"]
    assert sorted(e.pod for e in events) == ["web-0", "web-1"]  # once each, not every pass
    assert all(e.type == "Warning" and "restarted" in e.message for e in events)


def test_a_pod_of_an_earlier_batch_that_crashes_later_fails_the_release():
    sim = settled(batch_num=2, replicas=2, interval=60)
    sim.set_image("podkit.local/podkit-demo:v2-crash-after-30s")
    sim.run(lambda s: s.bds.get("generalStatus") == "Failed", ticks=90)
    assert sim.bds["batchOrder"] == 2
    assert at(sim, rev(V1)) == [0, 1]  # the crashed pod of batch 1 was swapped back too


def test_a_retagged_image_reported_under_its_first_tag_still_swaps():
    retag("podkit.local/podkit-demo:v2-retagged", "podkit.local/podkit-demo:a-first")
    image, image_id = reported_image("podkit.local/podkit-demo:v2-retagged")
    assert image == "podkit.local/podkit-demo:a-first" and image_id.startswith("sha256:")
    sim = settled(replicas=2, batch_num=1)
    sim.set_image("podkit.local/podkit-demo:v2-retagged")
    sim.run(lambda s: s.bds.get("generalStatus") == "Completed", ticks=40)
    assert at(sim, rev("podkit.local/podkit-demo:v2-retagged")) == [0, 1]
    assert all(n == 1 for n in sim.starts.values())


def test_a_digest_pinned_image_swaps_by_its_image_id():
    pinned = "podkit.local/podkit-demo@sha256:" + "ab" * 32
    retag("podkit.local/podkit-demo:pinned-tag", pinned)
    image, image_id = reported_image(pinned)
    assert image != pinned and image_id == pinned
    sim = settled(replicas=2, batch_num=1)
    sim.set_image(pinned)
    sim.run(lambda s: s.bds.get("generalStatus") == "Completed", ticks=40)
    assert at(sim, rev(pinned)) == [0, 1]


def test_a_stuck_terminating_pod_makes_a_condition():
    sim = settled(replicas=2, batch_num=1)
    pod = sim.pods["web-1"]
    pod["metadata"]["deletionTimestamp"] = rfc3339(sim.now + timedelta(seconds=30))
    pod["metadata"]["deletionGracePeriodSeconds"] = 30
    plan = sim.tick()
    cond = {c["type"]: c for c in sim.stsp["status"]["conditions"]}["TerminationStuck"]
    assert cond["status"] == "False" and plan.requeue_after is not None
    sim.now += timedelta(seconds=30 + 30 + 60)
    sim.tick()
    cond = {c["type"]: c for c in sim.stsp["status"]["conditions"]}["TerminationStuck"]
    assert cond["status"] == "True" and cond["reason"] == "PodStuckTerminating"
    assert "web-1" in cond["message"] and "--force" in cond["message"]
    assert [e for e in sim.plans[-1].events if e.reason == "PodStuckTerminating"]


def test_a_pod_never_updated_is_followed_from_its_first_ready_look():
    sim = settled(replicas=1)
    ann = sim.pods["web-0"]["metadata"]["annotations"]
    assert ann["podkit.io/serving-run"].startswith("web-a|containerd://")
    status = sim.pods["web-0"]["status"]["containerStatuses"][0]
    status["ready"] = False  # its business's probes fail (the sidecar fails the slot)
    sim.plan()  # the kubelet of the sim would mark it ready again: plan on this state
    plan = sim.plan()
    assert plan.status["unhealthyPods"] == ["web-0"]
    assert [e.reason for e in plan.events] == ["ServingFailed"]
    assert "not ready" in plan.events[0].message
