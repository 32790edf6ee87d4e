"""make chaos's kubelet-mode checks, on what the probes saw: one process serves at a time,
no request is lost but where a fault stopped the server, the shared state stays intact
(pure: records built here)."""

from __future__ import annotations

from dataclasses import replace

from chaos.invariants import check, lost_requests
from chaos.observe import PodSeen, Seen
from chaos.records import Answer, Hit, Probed, StateRead
from chaos.scenario import V1, V2, Scenario, scenario


def plan(kind: str = "image") -> Scenario:
    return Scenario(seed=3, kind=kind, replicas=1, batches=2, faults=(),
                    pod_management="Parallel", scale_to=None, steer_at_s=None,
                    mode="kubelet", crash_after_s=0 if kind == "crash" else None)


def pod(image: str) -> PodSeen:
    return PodSeen(name="web-0", uid="u0", ordinal=0, images={"web-a": V1, "web-b": image},
                   env={}, active="web-b", in_flight=False, reported={"web-b": image},
                   ready=True, terminating=False, envs={"web-a": {}, "web-b": {}})


def ok(at_s: float, pid: int, slot: str = "a", version: str = "v1", started: int = 0
       ) -> Answer:
    return Answer(at_s, "u0", version, slot, f"{pid}@{started}", retried=False)


def failed(at_s: float) -> Answer:
    return Answer(at_s, "u0", None, None, None, retried=True, error="ConnectionRefusedError")


def state(at_s: float, served: int, crc: int = 7, created: int = 7) -> StateRead:
    return StateRead(at_s, "u0", served, crc == created, crc, created, generation=1)


def probed(answers: list[Answer], reads: list[StateRead] | None = None,
           hits: tuple[Hit, ...] = ()) -> Probed:
    return Probed(tuple(answers), tuple(reads if reads is not None else [state(0, 1)]), hits)


def only_probes(found: dict[str, list[str]]) -> dict[str, list[str]]:
    return {k: v for k, v in found.items()
            if k in ("one-serving-process", "no-lost-request", "state-intact")}


FINAL = Seen(9, {}, (pod(V2),))


def test_a_swap_seen_by_the_probes_keeps_every_promise() -> None:
    answers = [ok(0.0, 10), ok(0.1, 10), ok(0.2, 20, "b", "v2"), ok(0.3, 20, "b", "v2")]
    found = check(plan(), [], FINAL, probed(answers, [state(0, 1), state(1, 5)]))
    assert only_probes(found) == {}


def test_a_process_answering_again_after_its_successor_is_two_active() -> None:
    answers = [ok(0.0, 10), ok(0.1, 20, "b", "v2"), ok(0.2, 10)]
    assert only_probes(check(plan(), [], FINAL, probed(answers))) == {
        "one-serving-process": ["pod u0: process 10@0 (slot a) answered again at 0.20 s "
                                "after process 20@0 had"]}
    # kubelet seed 5: a restarted container's new PID namespace gives pid 10 again, to
    # another process (started later)
    again = [ok(0.0, 10), ok(0.1, 20, "b", "v2"), ok(0.2, 10, started=5)]
    assert only_probes(check(plan(), [], FINAL, probed(again))) == {}


def test_a_failed_request_during_a_swap_or_a_kubelet_restart_is_lost() -> None:
    answers = [ok(0.0, 10), failed(0.1), ok(0.2, 20, "b", "v2")]
    found = check(plan(), [], FINAL, probed(answers, hits=(Hit("kubelet-restart", 0.05),)))
    assert found["no-lost-request"] == [
        "1 request(s) lost, the first to pod u0 at 0.10 s (ConnectionRefusedError)"]


def test_a_killed_server_excuses_its_outage_and_a_killed_standby_does_not() -> None:
    answers = [ok(0.0, 10), failed(0.1), failed(0.2), ok(1.5, 11)]
    server = probed(answers, hits=(Hit("active-kill", 0.05, "u0", (10,)),))
    assert lost_requests(plan(), [], server) == ([], answers[1:3])
    # the same process answers after the kill: what was killed was not serving
    standby = probed([ok(0.0, 10), failed(0.1), ok(0.2, 10)],
                     hits=(Hit("standby-kill", 0.05, "u0", (20,)),))
    assert len(lost_requests(plan(), [], standby)[0]) == 1


def test_a_deleted_pod_and_a_version_that_crashes_after_takeover_excuse_their_outage() -> None:
    answers = [ok(0.0, 10), failed(1.0), failed(2.0)]
    deleted = probed(answers, hits=(Hit("pod-delete", 0.5, "u0"),))
    assert lost_requests(plan(), [], deleted)[0] == []
    crash = plan("crash")
    carried = [Seen(0.5, {}, (pod(V2),))]
    assert lost_requests(crash, carried, probed(answers))[0] == []
    assert len(lost_requests(crash, [], probed(answers))[0]) == 2  # never carried it


def test_probes_that_saw_nothing_prove_nothing() -> None:
    found = check(plan(), [], FINAL, probed([failed(0.1)], reads=[]))
    assert only_probes(found) == {"no-lost-request": ["no probe was answered (1 sent)"],
                                  "state-intact": ["no state was read"]}


def test_a_changed_blob_a_new_segment_or_a_counter_going_back_is_found() -> None:
    def found(reads: list[StateRead]) -> list[str]:
        return check(plan(), [], FINAL, probed([ok(0, 10)], reads)).get("state-intact", [])
    assert found([state(0, 1), state(3, 2, crc=8)]) == [
        "pod u0: blob checksum 8 at 3.0 s, created as 7"]
    assert found([state(0, 1), state(3, 2, crc=9, created=9)]) == [
        "pod u0: the segment was created again by 3.0 s"]
    assert found([state(0, 5), state(3, 2)]) == ["pod u0: served went back to 2 at 3.0 s from 5"]
    assert found([state(0, 1), state(3, 2), replace(state(6, 9), generation=4)]) == []


def test_kubelet_mode_seeds_draw_the_real_processes_faults() -> None:
    plans = [scenario(s, "kubelet") for s in range(1, 300)]
    assert plans == [scenario(s, "kubelet") for s in range(1, 300)]
    assert {p.kind for p in plans} == {"image", "env", "crash", "crash-start", "rollback"}
    kinds = {f.kind for p in plans for f in p.faults}
    assert {"kubelet-restart", "containerd-restart", "active-kill", "standby-kill"} <= kinds
    assert "node-lost" not in kinds and all(2 <= p.replicas <= 4 for p in plans)
    crash_after = {p.crash_after_s for p in plans if p.kind == "crash"}
    assert 0 in crash_after and crash_after - {0} <= set(range(5, 9))
