"""The warm-mode API: a business process that starts early and takes over when it may.

Under ``podkit run --mode warm -- CMD``, CMD starts at once (while the peer slot may still be
active), initialises, and then takes the hand-over lock *itself*, so that the only thing
between the old process and the new one is the kernel waking the lock's waiter: no relay
through podkit. The protocol, for programs in any language:

1. Initialise (attach shared memory, receive listeners), then write ``READY\\n`` to the Unix
   stream socket whose fd number is in ``PODKIT_CONTROL_FD`` (podkit records "standby").
2. Take an exclusive open-file-description lock on ``$PODKIT_DIR/handover.lock``: open it
   (O_RDWR|O_CREAT|O_CLOEXEC) and ``fcntl(fd, F_OFD_SETLKW, {F_WRLCK, SEEK_SET, 0, 0})``.
   It blocks until the active slot lets go. Then write ``ACTIVE\\n`` and serve.
3. On SIGTERM (podkit forwards the kubelet's): stop accepting and reading new requests,
   answer those already read, make the last write to shared state, close the lock fd (the
   peer wakes now), write ``RELEASED\\n``, then drain within a bound (queued replies sent,
   connections half-closed, no more writes to shared state) and exit: "The stop order" in
   ``docs/handoff-protocol.md``. A process that dies holding the lock releases it with its fd.
   :class:`podkit.upgrader.Upgrader` owns this order for Python services.

A standby that gets SIGTERM while it waits simply exits. The lock must be an OFD lock (not
``flock``), because the two kinds do not exclude each other; see :mod:`podkit.lock`.

CPU priority is podkit's job; the business does nothing. Where the slot may undo it
(``CAP_SYS_NICE``, or ``RLIMIT_NICE`` 20), ``podkit run`` starts CMD ``SCHED_IDLE``, so that
its initialisation takes only CPU time the serving slot leaves, and when CMD writes
``READY``, and again when it writes ``ACTIVE``, podkit returns every thread of CMD and of the
processes CMD started to ``SCHED_OTHER``. Without the capability CMD runs ``SCHED_OTHER``
throughout. A thread meant to run idle is set so after ``ACTIVE``; processes detached by a
double fork before ``READY`` are not followed. :meth:`Slot.wait_active` also restores itself
just before ``READY``, so it never waits on the lock idle.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
from collections.abc import Callable
from types import FrameType, TracebackType

from . import cpu
from .errors import PodkitError
from .layout import SharedDir
from .lock import OfdLock

CONTROL_FD_ENV = "PODKIT_CONTROL_FD"
READY = b"READY\n"
ACTIVE = b"ACTIVE\n"
RELEASED = b"RELEASED\n"


class SlotStopping(PodkitError):
    """Raised out of :meth:`Slot.wait_active` when SIGTERM arrives before the slot is active."""

    exit_code = 0


class Slot:
    """A warm business process's handle on its slot.

    Typical use::

        slot = Slot.from_environ()
        state = initialise()          # attach shared memory, receive listeners ...
        with slot.active():           # blocks until this slot holds the lock
            while not slot.stopping.is_set():
                serve_one()
        # leaving the block released the lock; finish in-flight work, then exit
    """

    def __init__(self, control: socket.socket, shared: SharedDir,
                 handle_sigterm: bool = True) -> None:
        self._control = control
        self.shared = shared
        self.lock = OfdLock(shared.lock_file)
        self._waiting = False
        self._released = False
        self.stopping = threading.Event()
        self._on_stop: list[Callable[[], None]] = []
        if handle_sigterm:
            signal.signal(signal.SIGTERM, self._on_stop_signal)

    @classmethod
    def from_environ(cls, handle_sigterm: bool = True) -> Slot:
        raw = os.environ.get(CONTROL_FD_ENV)
        if not raw:
            raise PodkitError(f"{CONTROL_FD_ENV} is not set; start the service with "
                              "`podkit run --mode warm -- CMD`")
        try:
            control = socket.socket(fileno=int(raw))
        except (ValueError, OverflowError, OSError) as exc:
            raise PodkitError(f"{CONTROL_FD_ENV}={raw!r} is not an open socket; start the "
                              "service with `podkit run --mode warm -- CMD`") from exc
        return cls(control, SharedDir.from_environ(), handle_sigterm=handle_sigterm)

    def on_stop(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` from the SIGTERM handler, e.g. to wake a blocked accept loop."""
        self._on_stop.append(callback)

    def _on_stop_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stopping.set()
        for callback in self._on_stop:
            callback()
        if self._waiting:
            # Interrupts the blocking lock wait: a standby told to stop never serves.
            raise SlotStopping("stopped while standby")

    def wait_active(self) -> None:
        """Say READY, block until this process holds the hand-over lock, say ACTIVE.

        Raises :class:`SlotStopping` if SIGTERM comes first. A slot that initialised in the
        background (:mod:`podkit.cpu`) competes normally from here, so its wake-up on the lock
        is not delayed.
        """
        cpu.foreground()
        self._send(READY)
        self._waiting = True
        try:
            if self.stopping.is_set():
                raise SlotStopping("stopped while standby")
            self.lock.acquire()
        finally:
            self._waiting = False
        self._send(ACTIVE)

    def release(self) -> None:
        """Let the peer take over: release the lock, then say RELEASED.

        Call it once this process accepts no new work and writes no shared state.
        """
        if not self._released:
            self._released = True
            self.lock.release()
            self._send(RELEASED)
            cpu.yield_cpu()

    def active(self) -> _ActiveBlock:
        """A context manager: waits until active on entry, releases on exit."""
        return _ActiveBlock(self)

    def _send(self, message: bytes) -> None:
        try:
            self._control.sendall(message)
        except OSError:
            pass  # podkit is gone; the lock alone keeps the protocol safe


class _ActiveBlock:
    def __init__(self, slot: Slot) -> None:
        self._slot = slot

    def __enter__(self) -> Slot:
        self._slot.wait_active()
        return self._slot

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._slot.release()
