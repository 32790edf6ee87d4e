"""podkit.cpu: a starting slot goes to SCHED_IDLE only where it may come back, and comes back
for every thread, also of another process; the pause slot may stay idle for good."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from podkit import cpu

CHECK = """
import os, sys, threading
from podkit import cpu
from podkit.procs import spawn
if sys.argv[1] == "unprivileged":
    os.setuid(65534)  # after the imports: nobody may not read the interpreter's files
    assert not cpu.may_leave_idle()
    assert cpu.background() is False, "went idle without a way back"
    assert os.sched_getscheduler(0) == os.SCHED_OTHER
    assert cpu.background(permanent=True) is True
    assert os.sched_getscheduler(0) == os.SCHED_IDLE
    print("ok")
    sys.exit(0)
assert cpu.may_leave_idle()
started = spawn(["sleep", "30"], os.environ, idle=True)
assert os.sched_getscheduler(0) == os.SCHED_OTHER, "the starter went idle"
assert os.sched_getscheduler(started.pid) == os.SCHED_IDLE, "the process started idle is not"
cpu.foreground(started.pid)
assert os.sched_getscheduler(started.pid) == os.SCHED_OTHER, "another process was not restored"
started.kill()
started.wait()
assert cpu.background() is True
child = os.fork()
if child == 0:  # processes started from here inherit the background policy
    os._exit(0 if os.sched_getscheduler(0) == os.SCHED_IDLE else 3)
_, status = os.waitpid(child, 0)
assert os.waitstatus_to_exitcode(status) == 0, "the child did not inherit SCHED_IDLE"
worker = threading.Thread(target=threading.Event().wait, args=(5,), daemon=True)
worker.start()
assert os.sched_getscheduler(worker.native_id) == os.SCHED_IDLE
cpu.foreground()
assert os.sched_getscheduler(0) == os.SCHED_OTHER
assert os.sched_getscheduler(worker.native_id) == os.SCHED_OTHER, "a thread stayed idle"
print("ok")
"""


def _run(mode: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", CHECK, mode], capture_output=True, text=True,
                          timeout=30)


def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("this test needs root: it compares a process with CAP_SYS_NICE to one "
                    "without", pytrace=False)


def test_with_cap_sys_nice_a_slot_goes_idle_and_every_thread_comes_back() -> None:
    _need_root()
    done = _run("privileged")
    assert (done.returncode, done.stdout.strip(), done.stderr) == (0, "ok", "")


def test_without_it_only_a_permanent_background_is_taken() -> None:
    _need_root()
    done = _run("unprivileged")
    assert (done.returncode, done.stdout.strip(), done.stderr) == (0, "ok", "")


def test_foreground_repeats_until_no_thread_is_idle(monkeypatch: pytest.MonkeyPatch) -> None:
    """A thread created by a thread not yet restored starts idle, also while a pass runs: one
    pass over /proc/<pid>/task is not enough."""
    policies = {1: os.SCHED_IDLE, 2: os.SCHED_IDLE}

    def set_policy(tid: int, policy: int, param: os.sched_param) -> None:
        if tid == 2 and 3 not in policies:
            policies[3] = os.SCHED_IDLE  # thread 2 created thread 3 just before it was restored
        policies[tid] = policy

    monkeypatch.setattr(cpu, "_threads", lambda pid: sorted(policies))
    monkeypatch.setattr(cpu, "_children", lambda pid, tid: [])
    monkeypatch.setattr(os, "sched_getscheduler", policies.__getitem__)
    monkeypatch.setattr(os, "sched_setscheduler", set_policy)
    cpu.foreground(1000)
    assert policies == {1: os.SCHED_OTHER, 2: os.SCHED_OTHER, 3: os.SCHED_OTHER}


def test_foreground_ends_when_a_process_keeps_going_idle(monkeypatch: pytest.MonkeyPatch) -> None:
    """A process that sets its threads idle again as soon as they are restored cannot hold
    podkit's loop."""
    restored: list[int] = []

    def set_policy(tid: int, policy: int, param: os.sched_param) -> None:
        restored.append(tid)
        if len(restored) > 1000:
            raise AssertionError("foreground() does not stop")

    monkeypatch.setattr(cpu, "_threads", lambda pid: [1])
    monkeypatch.setattr(cpu, "_children", lambda pid, tid: [])
    monkeypatch.setattr(os, "sched_getscheduler", lambda tid: os.SCHED_IDLE)
    monkeypatch.setattr(os, "sched_setscheduler", set_policy)
    cpu.foreground(1000)
    assert len(restored) > 1, "it did not try again"
