"""podkit.cpu: a starting slot goes to SCHED_IDLE only where it may come back, and comes back
for every thread; the pause slot may stay idle for good."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

CHECK = """
import os, sys, threading
from podkit import cpu
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
