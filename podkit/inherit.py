"""Listeners a wrapped slot holds, passed to a server that cannot speak the hand-off protocol.

``podkit run --listen NAME=tcp://HOST:PORT ... --pass STYLE -- CMD`` (wrapped mode): podkit
receives the listeners from the active peer (or binds them on the pod's first start) and holds
them for its whole life; once its slot is active it starts CMD with them inherited in one of the
ways servers already know. Every style puts the listeners at descriptors 3, 4, ... in the order
of the ``--listen`` options, and CMD gets no other descriptor above 2:

* ``systemd``: socket activation (``sd_listen_fds(3)``): ``LISTEN_FDS`` (the count),
  ``LISTEN_PID`` (CMD's own pid, so it is set in the child between fork and exec),
  ``LISTEN_FDNAMES`` (the names, colon-separated).
* ``nginx``: ``NGINX=3;4;``, the variable of nginx's binary upgrade. nginx takes an inherited
  socket for the ``listen`` directive with the same address; it binds the others itself.
* ``podkit``: ``PODKIT_LISTENERS``, read by :meth:`podkit.handoff.ListenerSet.from_environ`.

The servers known to accept each are listed in ``docs/handoff-protocol.md`` ("Passing
listeners to a child process").

For the stop, :func:`holders` tells whether the server still holds a listener: it looks for the
sockets' inodes among the descriptors in ``/proc/<pid>/fd`` of every process podkit started.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterable
from typing import NamedTuple

from .cpu import _children, _threads
from .handoff import LISTENERS_ENV, ListenerSet

STYLES = ("podkit", "systemd", "nginx")
FIRST_FD = 3  # sd_listen_fds(3): SD_LISTEN_FDS_START
# Every style's variables: the server sees only those of the style declared.
_VARIABLES = ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NGINX", LISTENERS_ENV)


class Passing:
    """How the listeners reach the server: :meth:`in_child` runs between fork and exec."""

    def __init__(self, listeners: ListenerSet, style: str) -> None:
        assert style in STYLES, style  # podkit run checks it first
        self.style = style
        self._fds = [item.sock.fileno() for item in listeners]
        count = len(self._fds)
        if style == "systemd":
            self.environment = {"LISTEN_FDS": str(count),
                                "LISTEN_FDNAMES": ":".join(listeners.names)}
        elif style == "nginx":
            self.environment = {"NGINX": "".join(f"{FIRST_FD + i};" for i in range(count))}
        else:
            self.environment = listeners.child_env(first_fd=FIRST_FD)[0]

    def in_child(self) -> None:
        """Place the listeners at 3, 4, ..., close every other inheritable descriptor above 2
        and set the style's environment (``LISTEN_PID`` is this process's pid, the one that
        execs). For :func:`podkit.procs.spawn`'s ``in_child``."""
        floor = FIRST_FD + len(self._fds)
        moved = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, floor) for fd in self._fds]
        for target, source in zip(range(FIRST_FD, floor), moved):
            with contextlib.suppress(OSError):  # EBADF: the number is free
                if not os.get_inheritable(target):
                    # Close-on-exec descriptors here are the parent's, and one may be
                    # subprocess's error pipe, which must stay open until exec: a copy keeps
                    # it open (a failed exec then reports no error, only exit code 255).
                    fcntl.fcntl(target, fcntl.F_DUPFD_CLOEXEC, floor)
            os.dup2(source, target)
        for name in os.listdir("/proc/self/fd"):
            with contextlib.suppress(OSError):  # the listing's own descriptor, closed by now
                if int(name) >= floor and os.get_inheritable(int(name)):
                    os.close(int(name))
        for variable in _VARIABLES:
            os.environ.pop(variable, None)
        os.environ.update(self.environment)
        if self.style == "systemd":
            os.environ["LISTEN_PID"] = str(os.getpid())


def socket_inodes(listeners: ListenerSet) -> frozenset[int]:
    """The inodes that name these sockets in ``/proc/<pid>/fd`` (``socket:[<inode>]``)."""
    return frozenset(os.fstat(item.sock.fileno()).st_ino for item in listeners)


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children of all its threads, and theirs)."""
    found: list[int] = []
    pending = [pid]
    while pending:
        process = pending.pop()
        for tid in _threads(process):
            children = _children(process, tid)
            found += children
            pending += children
    return found


class Holders(NamedTuple):
    """Which processes still hold a listener, and which could not be looked at."""

    holding: list[int]
    # /proc/<pid>/fd denied: a process of another user (nginx's workers under its ``user``
    # directive) while podkit lacks CAP_SYS_PTRACE
    unreadable: list[int]


def holders(pids: Iterable[int], inodes: frozenset[int]) -> Holders:
    """The processes among ``pids`` with a descriptor of one of the sockets ``inodes``."""
    links = {f"socket:[{inode}]" for inode in inodes}
    holding: list[int] = []
    unreadable: list[int] = []
    for pid in pids:
        try:
            names = os.listdir(f"/proc/{pid}/fd")
        except FileNotFoundError:
            continue  # exited
        except PermissionError:
            unreadable.append(pid)
            continue
        for name in names:
            try:
                if os.readlink(f"/proc/{pid}/fd/{name}") in links:
                    holding.append(pid)
                    break
            except PermissionError:  # the listing is allowed, the links are ptrace-checked
                unreadable.append(pid)
                break
            except OSError:
                continue  # closed meanwhile
    return Holders(holding, unreadable)
