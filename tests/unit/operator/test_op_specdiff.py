"""The classification of a pod's difference from its target, and swaps that carry every field."""

import copy
from datetime import timedelta

import pytest

from op_sim import T0, V1, V2, apply_patch, kubelet, make_stsp, template
from podkit_operator.api.statefulsetplus import parse_spec
from podkit_operator.inplace.pods import build_pod
from podkit_operator.inplace.specdiff import DiffMemo, classify, covers
from podkit_operator.inplace.steps import (
    DeletePod,
    Done,
    Failed,
    PatchPod,
    ResizePod,
    Wait,
    swap_step,
)
from podkit_operator.revisions.revision import RevisionInfo


def _spec(containers, volumes=None):
    out = {"containers": containers}
    if volumes is not None:
        out["volumes"] = volumes
    return out


def _c(**fields):
    return {"name": "web", "image": V1, **fields}


def test_api_defaults_are_covered():
    have = _spec([_c(ports=[{"containerPort": 80, "protocol": "TCP"}],
                     terminationMessagePath="/dev/termination-log",
                     volumeMounts=[{"name": "kube-api-access-x",
                                    "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}],
                     resources={})],
                 [{"name": "kube-api-access-x", "projected": {}},
                  {"name": "cfg", "configMap": {"name": "c1", "defaultMode": 420}}])
    want = _spec([_c(ports=[{"containerPort": 80}])], [{"name": "cfg",
                                                       "configMap": {"name": "c1"}}])
    assert classify(have, want, patched=False).empty


@pytest.mark.parametrize("patched", [True, False])
def test_env_envfrom_mounts_in_place_only_when_patched(patched):
    have = _spec([_c(env=[{"name": "A", "value": "1"}])])
    for want_c in (_c(env=[{"name": "A", "value": "2"}]), _c(),
                   _c(env=[{"name": "A", "value": "1"}],
                      envFrom=[{"configMapRef": {"name": "x"}}]),
                   _c(env=[{"name": "A", "value": "1"}],
                      volumeMounts=[{"name": "v", "mountPath": "/v"}])):
        diff = classify(have, _spec([want_c]), patched)
        assert bool(diff.in_place) is patched and diff.needs_recreate is not patched, want_c


def test_image_is_in_place_everywhere():
    diff = classify(_spec([_c()]), _spec([_c(image=V2)]), patched=False)
    assert diff.in_place == ("container web image",) and not diff.needs_recreate


def test_cpu_memory_values_resize_a_new_resource_recreates():
    have = _spec([_c(resources={"requests": {"cpu": "100m", "memory": "64Mi"}})])
    want = _spec([_c(resources={"requests": {"cpu": "200m", "memory": "64Mi"}})])
    diff = classify(have, want, patched=False)
    assert diff.resize == {"web": {"requests": {"cpu": "200m", "memory": "64Mi"}}}
    assert not diff.needs_recreate and not diff.in_place
    added = _spec([_c(resources={"requests": {"cpu": "100m", "memory": "64Mi"},
                                 "limits": {"cpu": "1"}})])
    assert classify(have, added, patched=True).needs_recreate  # QoS class changes
    gpu = _spec([_c(resources={"requests": {"cpu": "100m", "memory": "64Mi",
                                            "example.com/gpu": "1"}})])
    assert classify(have, gpu, patched=True).needs_recreate


@pytest.mark.parametrize("want,reason", [
    (_spec([_c(ports=[{"containerPort": 81}])]), "container web ports"),
    (_spec([_c(), {"name": "log", "image": "busybox"}]), "container log added"),
    (_spec([]), "container web removed"),
    (_spec([_c(readinessProbe={"exec": {"command": ["true"]}})]), "container web readinessProbe"),
    (_spec([_c()], []), "volume cfg removed"),
    (_spec([_c()], [{"name": "cfg", "emptyDir": {}}]), "volume cfg changes its type"),
    (_spec([_c()], [{"name": "cfg", "configMap": {"name": "c1"}}]) | {"nodeSelector": {"a": "b"}},
     "pod nodeSelector"),
])
def test_what_cannot_change_in_place_recreates_with_the_field_named(want, reason):
    have = _spec([_c(ports=[{"containerPort": 80}])] if "ports" in str(want) else [_c()],
                 [{"name": "cfg", "configMap": {"name": "c1"}}])
    diff = classify(have, want, patched=True)
    assert reason in diff.recreate, diff
    assert reason in diff.recreate_reason()


def test_a_volume_switching_its_source_or_added_is_in_place_when_patched():
    have = _spec([_c()], [{"name": "cfg", "configMap": {"name": "c1"}}])
    want = _spec([_c()], [{"name": "cfg", "configMap": {"name": "c2"}},
                          {"name": "new", "emptyDir": {}}])
    assert classify(have, want, patched=True).in_place == ("volume cfg", "volume new")
    assert classify(have, want, patched=False).needs_recreate


def test_covers():
    assert covers({"a": 1, "b": 2}, {"a": 1}) and not covers({"a": 1}, {"a": 1, "b": 2})
    assert not covers([{"a": 1}], [{"a": 1}, {"a": 2}]) and covers(None, None)


# --- swaps that carry every field --------------------------------------------------------------

def _env(pod, name):
    c = next(c for c in pod["spec"]["containers"] if c["name"] == name)
    return {e["name"]: e.get("value") for e in c.get("env", [])}


def _pod_and_spec(tmpl, patched=True):
    stsp = make_stsp(deadline=60)
    stsp["spec"]["template"] = tmpl
    spec = parse_spec(stsp["spec"])
    r = RevisionInfo.from_template("web", tmpl)
    pod = build_pod(stsp, spec, 0, r.name, r.template, patched)
    kubelet(pod)
    return spec, pod


@pytest.mark.parametrize("patched", [True, False])
def test_two_pods_of_one_revision_differ_only_in_what_is_their_own(patched):
    """Each pod's sidecar has a token of its own: never a difference between revisions."""
    stsp = make_stsp(deadline=60)
    spec = parse_spec(stsp["spec"])
    r = RevisionInfo.from_template("web", stsp["spec"]["template"])
    one, two = (build_pod(stsp, spec, 0, r.name, r.template, patched)["spec"] for _ in (1, 2))
    assert one["containers"][-1]["env"] != two["containers"][-1]["env"]
    assert classify(one, two, patched).empty


def _drive(pod, target, spec, patched=True, max_steps=10):
    steps, now = [], T0
    for _ in range(max_steps):
        st = swap_step(pod, target, spec, patched, now)
        steps.append(st)
        if isinstance(st, Done):
            if st.patch:
                apply_patch(pod, st.patch)
            assert swap_step(pod, target, spec, patched, now) == Done()
            return steps
        if isinstance(st, PatchPod):
            apply_patch(pod, st.patch)
            assert isinstance(swap_step(pod, target, spec, patched, now), (Wait, PatchPod))
        elif not isinstance(st, Wait):
            return steps
        kubelet(pod)
        now += timedelta(seconds=1)
    raise AssertionError(steps)


def test_env_only_release_swaps_through_the_idle_slot_and_reaches_both_slots():
    t1 = template(V1, env=[{"name": "MODE", "value": "one"}, {"name": "GONE", "value": "x"}])
    t2 = template(V1, env=[{"name": "MODE", "value": "two"}])
    spec, pod = _pod_and_spec(t1)
    r2 = RevisionInfo.from_template("web", t2)
    steps = _drive(pod, r2, spec)
    first = steps[0]
    assert isinstance(first, PatchPod) and "step 1: idle slot web-b" in first.reason
    assert isinstance(steps[-1], Done)
    for slot in ("web-a", "web-b"):
        assert _env(pod, slot)["MODE"] == "two" and "GONE" not in _env(pod, slot)
    serving = next(c for c in pod["spec"]["containers"] if c["name"] == "web-b")
    assert serving["image"] == V1  # the new process in slot b runs the same image, new env


def test_env_change_on_a_stock_cluster_recreates_the_pod():
    t1 = template(V1, env=[{"name": "MODE", "value": "one"}])
    spec, pod = _pod_and_spec(t1, patched=False)
    r2 = RevisionInfo.from_template("web", template(V1, env=[{"name": "MODE", "value": "two"}]))
    step = swap_step(pod, r2, spec, False, T0)
    assert isinstance(step, DeletePod) and "needs the patched apiserver" in step.reason


def test_a_port_change_recreates_even_when_patched():
    spec, pod = _pod_and_spec(template(V1))
    t2 = copy.deepcopy(template(V1))
    t2["spec"]["containers"][0]["ports"] = [{"name": "http", "containerPort": 9090}]
    step = swap_step(pod, RevisionInfo.from_template("web", t2), spec, True, T0)
    assert isinstance(step, DeletePod) and "container web-a ports" in step.reason


def _cpu_release() -> tuple:
    """A swap pod requesting 100m of cpu, and a revision requesting 300m."""
    t1 = template(V1)
    t1["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "100m"}}
    t2 = copy.deepcopy(t1)
    t2["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "300m"}}
    spec, pod = _pod_and_spec(t1)
    return spec, pod, RevisionInfo.from_template("web", t2)


def test_cpu_change_marks_then_resizes_then_waits_for_the_kubelet():
    spec, pod, r2 = _cpu_release()
    mark = swap_step(pod, r2, spec, True, T0)
    assert isinstance(mark, PatchPod) and "mark" in mark.reason
    apply_patch(pod, mark.patch)
    resize = swap_step(pod, r2, spec, True, T0)
    assert isinstance(resize, ResizePod)  # the serving slot only: the idle one requests 1m
    assert resize.patch["spec"]["containers"] == [
        {"name": "web-a", "resources": {"requests": {"cpu": "300m"}}}]
    apply_patch(pod, resize.patch)  # the subresource changes the spec; the kubelet lags behind
    running = {"web-a": {"requests": {"cpu": "100m"}}, "web-b": {"requests": {"cpu": "1m"}}}
    for status in pod["status"]["containerStatuses"]:
        if status["name"] in running:
            status["resources"] = running[status["name"]]
    assert isinstance(swap_step(pod, r2, spec, True, T0), Wait)
    running["web-a"]["requests"]["cpu"] = "300m"
    assert isinstance(swap_step(pod, r2, spec, True, T0), Done)  # no swap: nothing else changed


def test_one_reservation_the_requests_move_to_the_new_slot_once_the_old_one_pauses():
    """Slot a serves v1 with the business's requests, slot b idles on 1m/1Mi with the same
    limits. A swap starts v2 in slot b at the least weight and hands over (step 2); once
    slot a has the pause image, one resize moves the requests to b; then the soak."""
    t1 = template(V1)
    t1["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "100m"},
                                                "limits": {"cpu": "1", "memory": "256Mi"}}
    spec, pod = _pod_and_spec(t1)
    assert {c["name"]: c["resources"] for c in pod["spec"]["containers"][:2]} == {
        "web-a": {"requests": {"cpu": "100m", "memory": "256Mi"},
                  "limits": {"cpu": "1", "memory": "256Mi"}},
        "web-b": {"requests": {"cpu": "1m", "memory": "1Mi"},
                  "limits": {"cpu": "1", "memory": "256Mi"}}}
    t2 = copy.deepcopy(t1)
    t2["spec"]["containers"][0]["image"] = V2
    r2 = RevisionInfo.from_template("web", t2)
    reasons = []
    for _ in range(12):
        step = swap_step(pod, r2, spec, True, T0)
        if isinstance(step, Done):
            break
        reasons.append(step.reason if not isinstance(step, ResizePod) else
                       {c["name"]: c["resources"]["requests"]["cpu"]
                        for c in step.patch["spec"]["containers"]})
        if isinstance(step, (PatchPod, ResizePod)):
            apply_patch(pod, step.patch)
        kubelet(pod)
    assert reasons[0].startswith("step 1: idle slot web-b"), reasons
    assert reasons[1].startswith("step 2: slot web-a gets the pause image"), reasons
    assert reasons[2] == {"web-a": "1m", "web-b": "100m"}, reasons
    assert {c["name"]: c["resources"]["requests"]["cpu"]
            for c in pod["spec"]["containers"][:2]} == {"web-a": "1m", "web-b": "100m"}


def _resized_pod(condition: dict) -> tuple:
    """A pod whose cpu resize to 300m was sent, and the kubelet's ``condition`` about it."""
    spec, pod, r2 = _cpu_release()
    apply_patch(pod, swap_step(pod, r2, spec, True, T0).patch)  # the mark
    apply_patch(pod, swap_step(pod, r2, spec, True, T0).patch)  # the resize
    pod["metadata"]["generation"] = 2
    pod["status"].setdefault("conditions", []).append(
        {"status": "True", "observedGeneration": 2, **condition})
    return spec, pod, r2


def test_a_resize_the_node_can_never_fit_fails_the_update():
    spec, pod, r2 = _resized_pod({
        "type": "PodResizePending", "reason": "Infeasible",
        "message": "Node didn't have enough capacity: cpu, requested: 500000, capacity: 2000"})
    step = swap_step(pod, r2, spec, True, T0)
    assert isinstance(step, Failed)
    assert step.reason == ("resize Infeasible: Node didn't have enough capacity: cpu, "
                           "requested: 500000, capacity: 2000")


def test_a_deferred_or_refused_resize_is_waited_for_and_held_in_the_status():
    for reason, kind in (("Deferred", "PodResizePending"), ("Error", "PodResizeInProgress")):
        spec, pod, r2 = _resized_pod({"type": kind, "reason": reason, "message": "no room"})
        step = swap_step(pod, r2, spec, True, T0)
        assert isinstance(step, Wait) and step.held and step.reason == f"resize {reason}: no room"


def test_a_resize_condition_of_an_earlier_generation_does_not_count():
    """The condition of the resize a rollback undoes stays until the kubelet looks again."""
    spec, pod, r2 = _resized_pod({"type": "PodResizePending", "reason": "Infeasible",
                                  "message": "no room"})
    pod["metadata"]["generation"] = 3
    assert isinstance(swap_step(pod, r2, spec, True, T0), Done)


# --- spec.podkit is part of the revision -------------------------------------------------------

def test_a_new_pause_image_is_a_release_that_reaches_every_idle_slot_batch_by_batch():
    from test_op_release import settled

    from op_sim import Sim
    sim = settled(replicas=4, batch_num=2)
    before = sim.stsp["status"]["currentRevision"]
    sim.stsp["spec"]["podkit"] = {"pauseImage": "podkit.local/podkit-pause:v9"}
    plan = sim.tick()
    assert sim.stsp["status"]["updateRevision"] != before
    assert {p.name for p in plan.patches} == {"web-3", "web-2"}  # batch 1 only
    sim.run(lambda s: s.stsp["status"]["currentRevision"] == s.stsp["status"]["updateRevision"]
            and s.bds.get("generalStatus") == "Completed")
    for ordinal in range(4):
        assert sim.images(ordinal)[:2] == [V1, "podkit.local/podkit-pause:v9"]
    assert isinstance(sim, Sim) and max(sim.starts.values()) == 1


def test_a_new_sidecar_image_reaches_the_sidecars():
    from test_op_release import settled
    sim = settled(replicas=2, batch_num=1)
    sim.stsp["spec"]["podkit"] = {"sidecarImage": "podkit.local/podkit-sidecar:v9"}
    sim.run(lambda s: s.stsp["status"]["currentRevision"] == s.stsp["status"]["updateRevision"]
            and s.bds.get("generalStatus") == "Completed")
    for ordinal in range(2):
        assert sim.images(ordinal)[2] == "podkit.local/podkit-sidecar:v9"


def test_default_podkit_settings_leave_the_revision_as_it_was():
    from podkit_operator.revisions.revision import revision_spec, with_podkit
    spec = parse_spec(make_stsp()["spec"])
    assert with_podkit(template(V1), spec) == template(V1)
    raw = make_stsp()["spec"]
    raw["podkit"] = {"pauseImage": "p:2"}
    custom = with_podkit(template(V1), parse_spec(raw))
    assert custom["metadata"]["annotations"] == {"podkit.io/pause-image": "p:2"}
    assert revision_spec(spec, custom).pause_image == "p:2"
    assert revision_spec(parse_spec(raw), template(V1)).pause_image == spec.pause_image


def test_quantities_compare_as_numbers():
    have = _spec([_c(resources={"requests": {"cpu": "500m", "memory": "1Gi"}})])
    want = _spec([_c(resources={"requests": {"cpu": "0.5", "memory": "1024Mi"}})])
    assert classify(have, want, patched=True).empty


def test_a_pod_level_field_of_the_template_is_compared():
    spec, pod = _pod_and_spec(template(V1))
    t2 = copy.deepcopy(template(V1))
    t2["spec"]["nodeSelector"] = {"disk": "ssd"}
    step = swap_step(pod, RevisionInfo.from_template("web", t2), spec, True, T0)
    assert isinstance(step, DeletePod) and "pod nodeSelector" in step.reason


def test_inplace_strategy_patches_env_on_a_patched_cluster():
    from podkit_operator.inplace.pods import build_plain_pod
    from podkit_operator.inplace.steps import inplace_step
    stsp = make_stsp(strategy="InPlace")
    t1 = template(V1, env=[{"name": "MODE", "value": "one"}])
    stsp["spec"]["template"] = t1
    spec = parse_spec(stsp["spec"])
    pod = build_plain_pod(stsp, spec, 0, RevisionInfo.from_template("web", t1).name, t1)
    kubelet(pod, slots=False)
    r2 = RevisionInfo.from_template("web", template(V1, env=[{"name": "MODE", "value": "two"}]))
    step = inplace_step(pod, r2, spec, True, T0)
    assert isinstance(step, PatchPod) and step.patch["spec"]["containers"][0]["env"][0] == \
        {"name": "MODE", "value": "two"}
    apply_patch(pod, step.patch)
    kubelet(pod, slots=False)
    assert isinstance(inplace_step(pod, r2, spec, True, T0), Done)
    assert isinstance(inplace_step(pod, r2, spec, False, T0), Done)  # already so
    stale = build_plain_pod(stsp, spec, 0, "x", t1)
    kubelet(stale, slots=False)
    assert isinstance(inplace_step(stale, r2, spec, False, T0), DeletePod)  # stock: recreate


def test_a_port_release_recreates_batch_by_batch_at_the_update_revision():
    from test_op_release import at, settled
    sim = settled(replicas=4, batch_num=2, auto=False)
    sim.stsp["spec"]["template"]["spec"]["containers"][0]["ports"] = [
        {"name": "http", "containerPort": 9090}]
    plan = sim.tick()
    assert [d.name for d in plan.delete] == ["web-3", "web-2"]  # batch 1 only
    assert all("cannot change in place: container web-a ports" in d.reason for d in plan.delete)
    update = sim.stsp["status"]["updateRevision"]
    sim.run(lambda s: s.bds.get("action") == "WaitToConfirm")
    assert at(sim, update) == [2, 3] and sim.uids["web-3"] == 2 and sim.uids["web-1"] == 1
    sim.annotate("podkit.io/confirm-batch", "2")
    sim.run(lambda s: s.bds.get("generalStatus") == "Completed"
            and s.stsp["status"]["currentRevision"] == update)
    assert at(sim, update) == [0, 1, 2, 3] and all(sim.uids[f"web-{o}"] == 2 for o in range(4))


def test_a_pod_created_at_the_target_is_never_recreated_again():
    t2 = copy.deepcopy(template(V1))
    t2["spec"]["containers"][0]["ports"] = [{"name": "http", "containerPort": 9090}]
    spec, pod = _pod_and_spec(t2)  # built at t2's revision
    pod["spec"]["containers"][0]["ports"].append({"containerPort": 1})  # as if defaulted
    r2 = RevisionInfo.from_template("web", t2)
    pod["metadata"]["annotations"]["podkit.io/target-revision"] = r2.name
    assert not isinstance(swap_step(pod, r2, spec, True, T0), DeletePod)


def test_init_containers_with_the_token_mount_match():
    token = {"name": "kube-api-access-q", "mountPath":
             "/var/run/secrets/kubernetes.io/serviceaccount"}
    init = {"name": "init", "image": "busybox"}
    have = _spec([_c()]) | {"initContainers": [{**init, "volumeMounts": [token]}]}
    assert classify(have, _spec([_c()]) | {"initContainers": [init]}, patched=True).empty


def _versioned(uid, version):
    return {"metadata": {"uid": uid, "resourceVersion": version}}


def test_a_memo_compares_a_pod_again_only_once_it_changed():
    memo, calls = DiffMemo(), []

    def compare(answer):
        return lambda: calls.append(answer) or answer

    memo.begin("scope")
    assert memo.diff(_versioned("u1", "1"), "t", compare("first")) == "first"
    assert memo.diff(_versioned("u1", "1"), "t", compare("again")) == "first"
    memo.begin("scope")  # the next pass: an unchanged pod keeps its answer
    assert memo.diff(_versioned("u1", "1"), "t", compare("again")) == "first"
    assert memo.diff(_versioned("u1", "2"), "t", compare("changed")) == "changed"
    assert memo.diff(_versioned("u1", "2"), "other", compare("other")) == "other"
    assert memo.diff({"metadata": {}}, "t", compare("unversioned")) == "unversioned"
    assert memo.diff({"metadata": {}}, "t", compare("unversioned")) == "unversioned"
    assert calls == ["first", "changed", "other", "unversioned", "unversioned"]


def test_a_memo_forgets_another_scope_and_the_pass_before_the_last():
    memo, calls = DiffMemo(), []

    def compare(answer):
        return lambda: calls.append(answer) or answer

    memo.begin("spec-1")
    memo.diff(_versioned("u1", "1"), "t", compare("a"))
    memo.begin("spec-2")  # another spec: what was wanted of the pod changed
    assert memo.diff(_versioned("u1", "1"), "t", compare("b")) == "b"
    memo.begin("spec-2")
    memo.begin("spec-2")  # a pass that did not look at the pod: its answer is gone
    assert memo.diff(_versioned("u1", "1"), "t", compare("c")) == "c"
    assert calls == ["a", "b", "c"]
