"""Process plumbing for a container's PID 1: child spawning, reaping and exit codes."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence

from .errors import PodkitError

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def become_subreaper() -> None:
    """Adopt orphaned descendants, so they are reaped here even when we are not PID 1."""
    _libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _child_setup(idle: bool) -> None:
    # Runs in the child between fork and exec: die with the parent (a killed slot must not
    # leave its business process serving), and take a session of its own so a terminal's
    # Ctrl-C reaches only podkit, which forwards it once. ``idle``: SCHED_IDLE from the first
    # instruction of the program (podkit.cpu), without podkit itself ever being idle.
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    os.setsid()
    if idle:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))


def spawn(command: Sequence[str], env: Mapping[str, str] | None,
          pass_fds: Sequence[int] = (), idle: bool = False,
          in_child: Callable[[], None] | None = None) -> subprocess.Popen[bytes]:
    """Start the business process (``idle``: at ``SCHED_IDLE``); a missing program is a
    :class:`PodkitError`.

    ``in_child`` runs in the child just before ``exec``, after the set-up above, for what must
    be done there (:mod:`podkit.inherit`: descriptors at fixed numbers, ``LISTEN_PID``). It then
    owns the descriptors: ``close_fds`` is off, so every inheritable descriptor reaches the
    program; and with ``env`` ``None`` the program gets the environment as ``in_child`` leaves
    it.
    """

    def setup() -> None:
        _child_setup(idle)
        if in_child is not None:
            in_child()

    try:
        # preexec_fn is safe here: podkit spawns while its main thread is the only one, or the
        # other threads wait in the kernel holding no lock the child needs (a wrapped slot's
        # hand-off server, in poll, when a config hook restarts the business).
        return subprocess.Popen(list(command), env=None if env is None else dict(env),
                                pass_fds=tuple(pass_fds), close_fds=in_child is None,
                                preexec_fn=setup)
    except FileNotFoundError as exc:
        raise PodkitError(f"command not found: {command[0]!r}; check the command after `--`",
                          exit_code=127) from exc
    except PermissionError as exc:
        raise PodkitError(f"command not executable: {command[0]!r}; check its permissions",
                          exit_code=126) from exc


def exit_code(status: int) -> int:
    """A wait status as a shell would report it (128 + signal for a killed process)."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.waitstatus_to_exitcode(status)


def reap(children: Mapping[int, subprocess.Popen[bytes]]) -> list[tuple[int, int]]:
    """Reap every exited child (ours or adopted); return (pid, exit code) pairs.

    The ``returncode`` of a reaped ``Popen`` is set so that it does not try to wait again.
    """
    reaped = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
        code = exit_code(status)
        if pid in children:
            children[pid].returncode = code
        reaped.append((pid, code))
    return reaped
