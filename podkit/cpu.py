"""CPU priority of slot processes: a slot that does not serve must not delay the one that does.

Measured on the 2-core testbed: while a standby started (interpreter, imports, state attach:
about 80 ms of CPU in 100 ms), the serving slot of the same pod sat runnable but unscheduled for
up to 25 ms, since both weigh the same. So, where the process may undo it:
- a starting warm slot runs ``SCHED_IDLE`` (it gets only CPU time nobody else wants) and
  returns to ``SCHED_OTHER`` when it is initialised, just before it waits for the lock, so its
  wake-up on the lock is not delayed;
- the pause slot stays ``SCHED_IDLE``.
Leaving ``SCHED_IDLE`` needs ``CAP_SYS_NICE`` or an ``RLIMIT_NICE`` of 20 (the kernel treats it
as raising the priority). Containers get neither by default, so a slot without them keeps the
default policy throughout (:func:`may_leave_idle`): never a serving process stuck at idle.
"""

from __future__ import annotations

import os
import resource
import sys
from pathlib import Path

CAP_SYS_NICE = 23


def may_leave_idle() -> bool:
    """Whether this process could return from ``SCHED_IDLE`` to ``SCHED_OTHER``."""
    if resource.getrlimit(resource.RLIMIT_NICE)[0] >= 20:
        return True
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> CAP_SYS_NICE & 1)
    return False


def _set(tid: int, policy: int) -> None:
    try:
        os.sched_setscheduler(tid, policy, os.sched_param(0))
    except ProcessLookupError:
        pass  # the thread has exited
    except OSError as exc:  # priority tunes latency; it never decides correctness
        print(f"podkit: cannot change the CPU scheduling policy: {exc}", file=sys.stderr,
              flush=True)


def background(permanent: bool = False) -> bool:
    """``SCHED_IDLE`` for the calling thread (and the processes it starts), if it can be undone
    or ``permanent``; returns whether it was applied."""
    if not (permanent or may_leave_idle()):
        return False
    _set(0, os.SCHED_IDLE)
    return True


def foreground() -> None:
    """``SCHED_OTHER`` for every thread of this process that runs ``SCHED_IDLE``."""
    for task in Path("/proc/self/task").iterdir():
        try:
            idle = os.sched_getscheduler(int(task.name)) == os.SCHED_IDLE
        except ProcessLookupError:
            continue
        if idle:
            _set(int(task.name), os.SCHED_OTHER)


def yield_cpu() -> None:
    """Drop this thread to the lowest CPU priority: once a process has handed over, its exit
    (interpreter teardown, freeing memory) must not delay its successor's wake-up."""
    os.setpriority(os.PRIO_PROCESS, 0, 19)
