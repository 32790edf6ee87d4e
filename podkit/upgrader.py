"""One object that owns the order of a warm business process's life.

A process under ``podkit run --mode warm`` goes through the same steps whatever it serves, and
the order is what makes a swap lose nothing (``docs/handoff-protocol.md``, "The stop order"):

1. **attach**: listeners received from the active peer (bound only when nobody serves them),
   shared memory attached read-only: :meth:`Upgrader.from_environ`, then the service's own
   set-up.
2. **stand by**: READY, then the hand-over lock (a SIGTERM here ends the process: a standby
   told to stop never serves).
3. **serve**: ACTIVE; the service becomes the writer of its shared state (``promote``) and
   serves; the hand-off socket serves the next standby.
4. **stop** (SIGTERM): the service stops accepting and stops reading requests, answers what it
   has already read, and returns. Nothing in this step waits on a client.
5. **seal**: the hand-off socket stops (before the lock goes, as the protocol requires), and
   the service makes its last write to shared state (``seal``).
6. **release**: the lock goes; the successor wakes now. RELEASED.
7. **drain**: within ``drain_s``, the service finishes what is still in flight (replies queued
   for slow clients, connections closed gracefully) without writing shared state and without
   answering new requests; then the process exits.

The service supplies the four steps that are its own (:class:`Service`); :meth:`Upgrader.run`
calls them in this order and no other.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable
from typing import Protocol

from .handoff import HandoffServer, ListenerSet, ListenerSpec, acquire_listeners
from .slot import Slot, SlotStopping

DEFAULT_DRAIN_S = 2.0


class Service(Protocol):
    """What a business process does at each step that is its own."""

    def promote(self) -> None:
        """Become the writer of the shared state (this process holds the lock now)."""

    def serve(self, stop_fd: int) -> None:
        """Serve until ``stop_fd`` is readable; then stop accepting and reading, answer the
        requests already read, and return without waiting on any client."""

    def seal(self) -> None:
        """The last write to shared state (e.g. mark a clean hand-over)."""

    def drain(self, deadline: float) -> None:
        """Finish in-flight work until ``deadline`` (``time.monotonic()``) at the latest,
        without writing shared state and without answering new requests."""


class Upgrader:
    """The slot, the listeners and the hand-off socket of one warm business process."""

    def __init__(self, slot: Slot, listeners: ListenerSet,
                 drain_s: float = DEFAULT_DRAIN_S) -> None:
        self.slot = slot
        self.listeners = listeners
        self.drain_s = drain_s
        self._stop_r, self._stop_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        slot.on_stop(self._wake)

    @classmethod
    def from_environ(cls, specs: Iterable[ListenerSpec | str],
                     drain_s: float = DEFAULT_DRAIN_S) -> Upgrader:
        """The slot from ``PODKIT_CONTROL_FD`` and ``PODKIT_DIR``, and the listeners
        ``specs`` received from the active peer (or bound when nobody serves them)."""
        slot = Slot.from_environ()
        return cls(slot, acquire_listeners(slot.shared, specs), drain_s)

    @property
    def stop_fd(self) -> int:
        """Readable once SIGTERM has arrived: register it with the service's selector."""
        return self._stop_r

    def _wake(self) -> None:
        try:
            os.write(self._stop_w, b"!")  # from the SIGTERM handler: async-signal-safe
        except BlockingIOError:
            pass  # written already

    def run(self, service: Service) -> int:
        """Stand by, serve, stop, seal, release, drain (see the module docstring); the
        process's exit code."""
        try:
            self.slot.wait_active()
        except SlotStopping:
            return 0
        service.promote()
        # Serve first: the hand-off socket is for the next standby, so it starts aside.
        handoff = HandoffServer(self.slot.shared, self.listeners)
        starting = threading.Thread(target=handoff.start, name="handoff-start")
        starting.start()
        try:
            service.serve(self._stop_r)
        finally:
            starting.join()
            handoff.stop()
        service.seal()
        self.slot.release()
        service.drain(time.monotonic() + self.drain_s)
        return 0
