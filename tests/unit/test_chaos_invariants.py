"""make chaos's checker: each invariant finds the violation it exists for, and passes a run
that kept it (pure: observations built here)."""

from __future__ import annotations

from dataclasses import replace

from chaos.invariants import check, first_batch
from chaos.observe import PodSeen, Seen
from chaos.scenario import CRASHING, V1, V2, Fault, Scenario, scenario


def pod(ordinal: int, image: str, *, in_flight: bool = False, ready: bool = True,
        env: dict[str, str] | None = None) -> PodSeen:
    return PodSeen(name=f"web-{ordinal}", uid=f"u{ordinal}", ordinal=ordinal,
                   images={"web-a": image, "web-b": "pause"},
                   env={"PODKIT_SLOT": "a", **(env or {})},  # podkit's own env is always there
                   active="web-a", in_flight=in_flight, reported={"web-a": image},
                   ready=ready, terminating=False)


def run_of(kind: str, replicas: int = 4, batches: int = 2) -> Scenario:
    return Scenario(seed=7, kind=kind, replicas=replicas, batches=batches, faults=(),
                    pod_management="Parallel", scale_to=None, steer_at_s=None)


def look(at_s: float, pods: list[PodSeen], general: str = "Progressing", updated: int = 0,
         failed: str | None = None, generation: int = 2, observed: int | None = None) -> Seen:
    """A look at generation ``generation`` (1: before the release's patch, 2: after it),
    with a status that observed ``observed`` (the same by default)."""
    status = {"replicas": len(pods), "updatedReplicas": updated,
              "observedGeneration": generation if observed is None else observed,
              "batchDeployStatus": {"generalStatus": general}, "conditions": []}
    if failed:
        status["conditions"] = [{"type": "ReleaseFailed", "status": failed}]
    return Seen(at_s, status, tuple(pods), generation)


def test_a_good_release_that_kept_every_promise_passes() -> None:
    plan = run_of("image")
    seen = [look(0, [pod(o, V1) for o in range(4)], general="Completed", updated=4,
                 generation=1),
            look(1, [pod(0, V1), pod(1, V1), pod(2, V1), pod(3, V2)], updated=1),
            look(2, [pod(o, V2) for o in range(4)], general="Completed", updated=4)]
    assert check(plan, seen, seen[-1]) == {}


def test_a_bad_version_beyond_batch_1_is_found() -> None:
    plan = run_of("crash")
    assert first_batch(plan) == {2, 3}
    seen = [look(1, [pod(0, V1), pod(1, CRASHING), pod(2, CRASHING), pod(3, CRASHING)])]
    final = look(2, [pod(o, V1) for o in range(4)], general="Failed", failed="True")
    assert check(plan, seen, final) == {
        "bad-version-contained": ["the bad version reached ordinal(s) [1] beyond batch 1 "
                                  "[2, 3]"]}


def test_a_bad_version_that_completes_or_fails_without_the_condition_is_found() -> None:
    plan = run_of("crash")
    final = look(2, [pod(o, V1) for o in range(4)], general="Failed", failed="False")
    assert list(check(plan, [], final)) == ["ended-with-a-reason"]
    final = look(2, [pod(o, V1) for o in range(4)], general="Completed")
    assert list(check(plan, [], final)) == ["ended-with-a-reason"]


def test_a_pod_left_behind_missing_or_unready_breaks_convergence() -> None:
    plan = run_of("image")
    final = look(9, [pod(0, V1), pod(1, V2, ready=False), pod(3, V2)], general="Completed",
                 updated=2)
    assert check(plan, [], final)["converged"] == [
        "pods [0, 1, 3], expected 0..3", "web-1 is not ready",
        "web-0 serves " + V1 + ", expected " + V2]


def test_a_good_release_may_fail_after_a_lost_node_with_the_batches_before_kept() -> None:
    plan = replace(run_of("image"), faults=(Fault("node-lost", 3.0, 0, 0.0),))
    kept = look(9, [pod(0, V1), pod(1, V1), pod(2, V2), pod(3, V2)], general="Failed",
                failed="True", updated=2)
    assert check(plan, [], kept) == {}
    mixed = look(9, [pod(0, V2), pod(1, V1), pod(2, V1), pod(3, V2)], general="Failed",
                 failed="True", updated=2)
    assert check(plan, [], mixed) == {"converged": [
        "after the failed release v1 is at ordinals [1, 2] of the pods there before it "
        "[0, 1, 2, 3], not the lowest"]}
    killed = replace(run_of("image"), faults=(Fault("active-kill", 3.0, 0, 0.0),))
    assert check(killed, [], kept) == {}  # kubelet seed 3: a killed active is a crash
    without_the_fault = run_of("image")
    assert list(check(without_the_fault, [], kept)) == ["converged", "ended-with-a-reason"]


def test_an_env_release_converges_only_with_the_env() -> None:
    plan = run_of("env")
    final = look(9, [pod(o, V1, env={"CHAOS_RELEASE": "7"}) for o in range(3)]
                 + [pod(3, V1)], general="Completed", updated=3)
    assert check(plan, [], final)["converged"] == ["web-3 lacks env {'CHAOS_RELEASE': '7'}"]


def test_a_status_that_counts_a_pod_not_yet_serving_the_release_is_found() -> None:
    plan = run_of("image")
    before = look(0, [pod(o, V1) for o in range(4)], general="Completed", updated=4,
                  generation=1)  # the release before: its spec, its pods
    counted_early = look(3, [pod(0, V1), pod(1, V1), pod(2, V2, in_flight=True), pod(3, V2)],
                         updated=2)
    final = look(9, [pod(o, V2) for o in range(4)], general="Completed", updated=4)
    assert check(plan, [before, counted_early, final], final) == {
        "counted-only-what-runs": ["at 3.0 s updatedReplicas 2 but 1 pod(s) served the "
                                   "release"]}


def test_pods_that_served_and_went_or_moved_back_may_still_be_counted() -> None:
    plan = run_of("image")
    before = look(0, [pod(o, V1) for o in range(4)], general="Completed", updated=4,
                  generation=1)
    both = look(2, [pod(0, V1), pod(1, V1), pod(2, V2), pod(3, V2)], updated=2)
    # the status of the pass before; pod 3 deleted since, and pod 2 swapping back
    after = look(3, [pod(0, V1), pod(1, V1), pod(2, V2, in_flight=True),
                     replace(pod(3, V1), uid="u3-again")], updated=2)
    final = look(9, [pod(o, V2) for o in range(4)], general="Completed", updated=4)
    assert check(plan, [before, both, after, final], final) == {}


def test_kwok_seed_16_a_status_late_for_v1_read_after_the_release_patch_is_not_the_release(
        ) -> None:
    """Kwok seed 16 (a loaded machine): the first look saw the settled v1 pods before the
    operator had written their status; looks after the release's patch then read the status
    of the v1 spec (observedGeneration 1, every pod updated to v1) before the one of the
    release. That status counts v1, not the release."""
    plan = run_of("crash")
    pods_v1 = [pod(o, V1) for o in range(4)]
    first = Seen(0, {}, tuple(pods_v1), 1)  # no status yet
    late = look(0.9, pods_v1, general="Completed", updated=4, observed=1)
    started = look(1.6, pods_v1, updated=0)
    final = look(9, pods_v1, general="Failed", failed="True")
    assert check(plan, [first, late, started, final], final) == {}
    counted = look(1.9, pods_v1, updated=1)  # the release's status counting a v1 pod
    assert check(plan, [first, late, started, counted, final], final) == {
        "counted-only-what-runs": ["at 1.9 s updatedReplicas 1 but 0 pod(s) served the "
                                   "release"]}


def test_kwok_seeds_14_and_15_a_pod_made_again_after_the_failure_may_stay_at_v1() -> None:
    """Kwok seeds 14 and 15: a lost node took a pod of batch 1 (already at the release) and
    one of the failing batch; made again after the release failed, both came at the last
    good revision, v1, and stay there. The pods there since before the release still show
    the batches: v1 at their lowest ordinals."""
    plan = replace(run_of("image"), faults=(Fault("node-lost", 3.0, 0, 0.0),))
    first = look(0, [pod(o, V1) for o in range(4)], general="Completed", updated=4,
                 generation=1)
    again = [replace(pod(o, V1), uid=f"u{o}-again") for o in (0, 3)]
    final = look(90, [again[0], pod(1, V1), pod(2, V2), again[1]], general="Failed",
                 failed="True", updated=1)
    assert check(plan, [first, final], final) == {}
    reverted = look(90, [again[0], pod(1, V2), pod(2, V1), again[1]], general="Failed",
                    failed="True", updated=1)  # an old pod of batch 1 went back: a defect
    assert check(plan, [first, reverted], reverted) == {"converged": [
        "after the failed release v1 is at ordinals [2] of the pods there before it "
        "[1, 2], not the lowest"]}


def test_kwok_seed_54_a_status_written_before_a_pod_went_may_be_read_a_pass_later() -> None:
    """Kwok seed 54: pod 3 served the release, then its lost node's pods were removed; the
    status that still counted it (written before) was read at the next two looks."""
    plan = run_of("image")
    first = look(0, [pod(o, V1) for o in range(4)], general="Completed", updated=4,
                 generation=1)
    counted = look(60.0, [pod(0, V1), pod(1, V1), pod(2, V2), pod(3, V2)], updated=2)
    gone = [pod(0, V1), pod(1, V1), pod(2, V2)]
    read_late = [look(60.3, gone, updated=2), look(60.6, gone, updated=2)]
    final = look(90, [pod(0, V2), pod(1, V2), pod(2, V2),
                      replace(pod(3, V2), uid="u3-again")], general="Completed", updated=4)
    assert check(plan, [first, counted, *read_late, final], final) == {}
    much_later = look(62.5, gone, updated=2)  # a status that lags more is a defect
    assert check(plan, [first, counted, much_later, final], final) == {
        "counted-only-what-runs": ["at 62.5 s updatedReplicas 2 but 1 pod(s) served the "
                                   "release"]}


def test_a_seed_gives_the_same_run_every_time() -> None:
    assert [scenario(s) for s in range(1, 30)] == [scenario(s) for s in range(1, 30)]
    plans = [scenario(s) for s in range(1, 200)]
    assert {p.kind for p in plans} == {"image", "env", "crash", "broken", "rollback", "scale"}
    assert all(p.batches >= 2 for p in plans if p.bad)  # a batch the bad version never reaches


def test_a_scale_scenario_never_scales_below_its_batches():
    """Seed 118 scaled 5 pods in 3 batches to 2, which the CRD refuses (batchNum > replicas)."""
    scales = [s for s in map(scenario, range(1, 400)) if s.kind == "scale"]
    assert scales and all(s.scale_to is not None and s.scale_to >= s.batches for s in scales)
    assert scenario(118).scale_to == 3
