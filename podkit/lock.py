"""Exclusive kernel locks in the shared directory.

Two are used: the hand-over lock (whoever holds it is the active slot) and each slot's
liveness lock (held by the slot's PID 1 for its whole life, so a state record whose writer was
killed is known to be stale).

It is a blocking kernel lock on ``handover.lock``, not a polling loop (a polling lock such as
fasteners' sleeps 10 to 100 ms between tries; the kernel wakes a blocked waiter within a
fraction of a millisecond). We use Linux open-file-description locks (``F_OFD_SETLKW``)
rather than ``flock``: they block and release the same way (released when the holder's file
description closes, so a killed holder frees the lock), and in addition ``F_OFD_GETLK`` lets
the sidecar see whether *someone* holds the lock without taking it. ``/proc/locks`` cannot
answer that from another container, since the kernel filters it by PID namespace.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
from pathlib import Path

from .errors import PodkitError

# struct flock on 64-bit Linux: short l_type, short l_whence, off_t l_start, off_t l_len,
# pid_t l_pid, padded to 32 bytes.
_FLOCK = struct.Struct("hhqqi4x")


def _flock(lock_type: int) -> bytes:
    return _FLOCK.pack(lock_type, os.SEEK_SET, 0, 0, 0)


def _open(path: Path) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    except OSError as exc:
        raise PodkitError(f"cannot open the hand-over lock {path}: {exc.strerror}; "
                          "make PODKIT_DIR writable") from exc


class OfdLock:
    """An exclusive lock on a file, released by :meth:`release` or when its holder dies."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, blocking: bool = True) -> bool:
        """Take the lock, waiting in the kernel when ``blocking``; return whether held."""
        if self._fd is not None:
            return True
        fd = _open(self.path)
        command = fcntl.F_OFD_SETLKW if blocking else fcntl.F_OFD_SETLK
        try:
            fcntl.fcntl(fd, command, _flock(fcntl.F_WRLCK))
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                return False
            raise
        self._fd = fd
        return True

    def release(self) -> None:
        """Give the lock up; a blocked waiter wakes at once."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def lock_is_held(path: Path) -> bool:
    """Whether any process holds the lock on ``path``, found without taking it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        # A read-lock probe conflicts only with a write lock; F_OFD_GETLK needs l_pid == 0.
        answer = fcntl.fcntl(fd, fcntl.F_OFD_GETLK, _flock(fcntl.F_RDLCK))
    finally:
        os.close(fd)
    return _FLOCK.unpack(answer)[0] != fcntl.F_UNLCK
