"""The readiness rule (TKEx: both version files equal, exactly one slot active) and the
hand-over lock it checks against."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from podkit.errors import PodkitError
from podkit.layout import SharedDir
from podkit.lock import OfdLock, lock_is_held
from podkit.readiness import PodView, SlotView, observe
from podkit.slot_records import SlotState, write_state, write_version


def view(slot: str, version: str | None, role: str | None = None,
         error: str | None = None) -> SlotView:
    state = None
    if role is not None:
        mode = "pause" if role == "idle" else "warm"
        state = SlotState(slot, role, version or "v0", 100 + ord(slot), 1.0, mode)
    return SlotView(slot=slot, version=version, state=state, error=error)


def pod(a: SlotView, b: SlotView, lock_held: bool = True) -> PodView:
    return PodView(slots={"a": a, "b": b}, lock_held=lock_held)


RULES = {
    "ok-a": (pod(view("a", "v1", "active"), view("b", "v1", "idle")),
             True, "slot a active at v1"),
    "ok-b": (pod(view("a", "v2", "idle"), view("b", "v2", "active")),
             True, "slot b active at v2"),
    "ok-standby-same-version": (pod(view("a", "v1", "active"), view("b", "v1", "standby")),
                                True, "slot a active at v1"),
    "versions-differ": (pod(view("a", "v1", "active"), view("b", "v2", "standby")),
                        False, "versions differ: a=v1 b=v2"),
    "versions-differ-first": (pod(view("a", "v1", "active"), view("b", "v2", "active"),
                                  lock_held=False),
                              False, "versions differ: a=v1 b=v2"),
    "no-version-a": (pod(view("a", None), view("b", "v1", "idle")),
                     False, "slot a has written no version yet"),
    "no-version-b": (pod(view("a", "v1", "active"), view("b", None)),
                     False, "slot b has written no version yet"),
    "none-active": (pod(view("a", "v1", "exited"), view("b", "v1", "idle")),
                    False, "0 slots say active (want exactly 1)"),
    "none-active-no-state": (pod(view("a", "v1"), view("b", "v1")),
                             False, "0 slots say active (want exactly 1)"),
    "standby-only": (pod(view("a", "v1", "standby"), view("b", "v1", "stopping")),
                     False, "0 slots say active (want exactly 1)"),
    "two-active": (pod(view("a", "v1", "active"), view("b", "v1", "active")),
                   False, "2 slots say active (want exactly 1)"),
    "lock-not-held": (pod(view("a", "v1", "idle"), view("b", "v1", "active"), lock_held=False),
                      False, "slot b says active but nobody holds the hand-over lock"),
    "corrupt-file": (pod(view("a", "v1", "active"),
                         view("b", None, error="/podkit/slot-b.version is empty; delete it")),
                     False, "/podkit/slot-b.version is empty; delete it"),
}


@pytest.mark.parametrize("case", RULES)
def test_readiness_rule(case: str) -> None:
    pod_view, ready, reason = RULES[case]
    assert pod_view.readiness() == (ready, reason)
    document = pod_view.as_json()
    assert (document["ready"], document["reason"]) == (ready, reason)


def test_active_slots_and_json() -> None:
    pod_view = pod(view("a", "v1", "idle"), view("b", "v1", "active"))
    assert pod_view.active_slots == ["b"]
    document = pod_view.as_json()
    assert document["lock_held"] is True
    assert document["slots"]["b"] == {
        "version": "v1", "error": None,
        "state": {"slot": "b", "role": "active", "version": "v1", "pid": 198, "since": 1.0,
                  "mode": "warm"}}
    assert pod(view("a", None), view("b", None)).as_json()["slots"]["a"]["state"] is None


# --- observe: the same rule read from real files and a real lock -------------------------------

def write_slot(shared: SharedDir, slot: str, version: str, role: str) -> None:
    write_version(shared, slot, version)
    write_state(shared, SlotState(slot, role, version, 1, 1.0, "warm"))


def test_observe_reads_files_and_probes_the_lock(tmp_path: Path) -> None:
    shared = SharedDir(tmp_path)
    assert observe(shared).readiness() == (False, "slot a has written no version yet")
    assert not shared.lock_file.exists()  # observing creates nothing

    write_slot(shared, "a", "v1", "active")
    write_slot(shared, "b", "v1", "idle")
    alive = [shared.claim_slot("a"), shared.claim_slot("b")]  # as each slot's PID 1 does
    lock = OfdLock(shared.lock_file)
    assert observe(shared).readiness() == (
        False, "slot a says active but nobody holds the hand-over lock")
    assert lock.acquire()
    try:
        seen = observe(shared)
        assert seen.lock_held
        assert seen.readiness() == (True, "slot a active at v1")
        assert seen.slots["b"].state.role == "idle"

        write_slot(shared, "b", "v2", "standby")
        assert observe(shared).readiness() == (False, "versions differ: a=v1 b=v2")
    finally:
        lock.release()
        for claim in alive:
            claim.release()
    assert not observe(shared).lock_held


def test_a_record_whose_writer_died_counts_as_exited(tmp_path: Path) -> None:
    """A slot killed with SIGKILL leaves "active" in its record; its liveness lock is gone."""
    shared = SharedDir(tmp_path)
    write_slot(shared, "a", "v1", "active")
    write_slot(shared, "b", "v1", "active")
    b_alive, lock = shared.claim_slot("b"), OfdLock(shared.lock_file)
    assert lock.acquire()
    try:
        seen = observe(shared)
        assert seen.slots["a"].state.role == "exited"
        assert seen.active_slots == ["b"]
        assert seen.readiness() == (True, "slot b active at v1")
    finally:
        lock.release()
        b_alive.release()


def test_a_slot_runs_once_per_directory(tmp_path: Path) -> None:
    shared = SharedDir(tmp_path)
    first = shared.claim_slot("a")
    try:
        with pytest.raises(PodkitError, match="slot a already runs in"):
            shared.claim_slot("a")
    finally:
        first.release()


def test_observe_reports_a_corrupt_file_and_reads_the_rest(tmp_path: Path) -> None:
    shared = SharedDir(tmp_path)
    write_slot(shared, "a", "v1", "active")
    write_slot(shared, "b", "v1", "idle")
    shared.state_file("b").write_text('{"slot": "b", "ro')
    a_alive = shared.claim_slot("a")
    seen = observe(shared)
    a_alive.release()
    assert seen.slots["a"].error is None and seen.slots["a"].state.role == "active"
    assert str(shared.state_file("b")) in seen.slots["b"].error
    ready, reason = seen.readiness()
    assert not ready and reason == seen.slots["b"].error


# --- the hand-over lock ----------------------------------------------------------------------

def test_lock_acquire_release(tmp_path: Path) -> None:
    path = tmp_path / "handover.lock"
    assert not lock_is_held(path)
    assert not path.exists()  # probing does not create the lock file
    lock = OfdLock(path)
    assert not lock.held
    assert lock.acquire()
    assert lock.held and lock_is_held(path)
    assert lock.acquire()  # taking it again while held is a no-op
    lock.release()
    assert not lock.held and not lock_is_held(path)
    lock.release()  # releasing twice is harmless
    assert lock.acquire(blocking=False)
    lock.release()


def test_lock_excludes_a_second_holder_even_in_one_process(tmp_path: Path) -> None:
    """OFD locks belong to the open file description: two descriptions conflict even inside
    one process (classic POSIX record locks would not)."""
    path = tmp_path / "handover.lock"
    first, second = OfdLock(path), OfdLock(path)
    assert first.acquire()
    assert not second.acquire(blocking=False)
    assert not second.held
    first.release()
    assert second.acquire(blocking=False)
    assert not first.acquire(blocking=False)
    assert lock_is_held(path)
    second.release()
    assert not lock_is_held(path)


def test_blocked_waiter_wakes_when_the_holder_releases(tmp_path: Path) -> None:
    path = tmp_path / "handover.lock"
    holder, waiter = OfdLock(path), OfdLock(path)
    assert holder.acquire()
    started, woke = threading.Event(), threading.Event()

    def wait() -> None:
        started.set()
        waiter.acquire()
        woke.set()

    thread = threading.Thread(target=wait, daemon=True)
    thread.start()
    assert started.wait(10)
    assert not woke.wait(0.2)  # still blocked: the holder has it
    assert not waiter.held
    holder.release()
    assert woke.wait(10)  # a liveness bound, not a timing
    thread.join(10)
    assert waiter.held and lock_is_held(path)
    waiter.release()


def test_lock_in_a_missing_directory_is_a_readable_error(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "handover.lock"
    with pytest.raises(PodkitError, match="cannot open the hand-over lock .*PODKIT_DIR"):
        OfdLock(path).acquire()
    assert not lock_is_held(path)
