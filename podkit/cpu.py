"""CPU priority of slot processes: a slot that does not serve must not delay the one that does.

Measured on the 2-core testbed: while a standby started (interpreter, imports, state attach:
about 80 ms of CPU in 100 ms), the serving slot of the same pod sat runnable but unscheduled for
up to 25 ms, since both weigh the same. So, where the policy may be undone:
- a warm slot's business process starts ``SCHED_IDLE`` (it gets only CPU time nobody else wants;
  the child sets it between fork and exec, :func:`podkit.procs.spawn`), and ``podkit run`` returns
  every thread of it, and of the processes it started, to ``SCHED_OTHER`` when it says READY, and
  again when it says ACTIVE (:func:`foreground`), whatever language it is written in: its wake-up
  on the lock is not delayed and it never serves at idle priority;
- ``podkit run`` itself is never idle: it handles READY (the restore above), forwards
  the kubelet's SIGTERM and the config hooks' signals, and records the roles;
- the pause slot stays ``SCHED_IDLE``.
Leaving ``SCHED_IDLE`` needs ``CAP_SYS_NICE`` (of the process that changes the policy) or an
``RLIMIT_NICE`` of 20 (of the process changed); the kernel treats it as raising the priority.
Containers get neither by default, so a slot without them keeps the default policy throughout
(:func:`may_leave_idle`): never a serving process stuck at idle.
"""

from __future__ import annotations

import os
import resource
import sys
from pathlib import Path

CAP_SYS_NICE = 23
# A bound on foreground()'s passes, so that a process that keeps making threads idle itself
# cannot hold podkit's loop; threads started by threads already restored need no pass.
_MAX_PASSES = 10


def has_cap_sys_nice(pid: int | str = "self") -> bool:
    """Whether process ``pid`` has ``CAP_SYS_NICE`` in its effective set."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> CAP_SYS_NICE & 1)
    return False


def may_leave_idle() -> bool:
    """Whether this process could return from ``SCHED_IDLE`` to ``SCHED_OTHER``."""
    return resource.getrlimit(resource.RLIMIT_NICE)[0] >= 20 or has_cap_sys_nice()


def _set(tid: int, policy: int) -> bool:
    """Give thread ``tid`` (0: the calling one) ``policy``; return whether it was changed."""
    try:
        os.sched_setscheduler(tid, policy, os.sched_param(0))
        return True
    except ProcessLookupError:
        return False  # the thread has exited
    except OSError as exc:  # priority tunes latency; it never decides correctness
        print(f"podkit: cannot change the CPU scheduling policy of thread {tid}: {exc}",
              file=sys.stderr, flush=True)
        return False


def background(permanent: bool = False) -> bool:
    """``SCHED_IDLE`` for the calling thread (and the processes it starts), if it can be undone
    or ``permanent``; returns whether it was applied."""
    if not (permanent or may_leave_idle()):
        return False
    return _set(0, os.SCHED_IDLE)


def _threads(pid: int) -> list[int]:
    try:
        return [int(tid) for tid in os.listdir(f"/proc/{pid}/task")]
    except FileNotFoundError:
        return []  # the process has exited


def _children(pid: int, tid: int) -> list[int]:
    """The processes thread ``tid`` of ``pid`` started (Linux lists them per thread)."""
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{tid}/children").read_text()
                .split()]
    except (FileNotFoundError, ProcessLookupError):
        return []


def _restore_once(pid: int) -> bool:
    """One pass over the threads of ``pid`` and its descendants; whether one was restored."""
    restored = False
    pending = [pid]
    while pending:
        process = pending.pop()
        for tid in _threads(process):
            try:
                idle = os.sched_getscheduler(tid) == os.SCHED_IDLE
            except ProcessLookupError:
                continue
            if idle and _set(tid, os.SCHED_OTHER):
                restored = True
            pending += _children(process, tid)
    return restored


def foreground(pid: int | None = None) -> None:
    """``SCHED_OTHER`` for every ``SCHED_IDLE`` thread of process ``pid`` (default: this one)
    and of the processes it started.

    A thread inherits its creator's policy, so one created by a thread not yet restored starts
    idle, also while a pass runs: passes repeat until one finds no idle thread to restore.
    Processes that left the tree (a daemon re-parented by a double fork) are not followed.
    """
    for _ in range(_MAX_PASSES):
        if not _restore_once(os.getpid() if pid is None else pid):
            return


def yield_cpu() -> None:
    """Drop this thread to the lowest CPU priority: once a process has handed over, its exit
    (interpreter teardown, freeing memory) must not delay its successor's wake-up."""
    os.setpriority(os.PRIO_PROCESS, 0, 19)
