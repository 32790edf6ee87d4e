"""A business stub that records when it is active, for tests and benchmarks.

Each event is one line appended to ``--log`` (O_APPEND keeps lines from two processes whole):
``<event> <slot> <version> <pid> <monotonic_ns>`` with events ``ready``, ``active``,
``release``. CLOCK_MONOTONIC is one clock for all processes of a machine, so intervals from
two slots compare directly.

warm mode (under ``podkit run --mode warm``): initialise, wait for ACTIVE, serve until SIGTERM,
say RELEASED. wrapped mode: started once active, serve until SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
import time

from podkit.errors import PodkitError
from podkit.slot import Slot


class EventLog:
    def __init__(self, path: str, slot: str, version: str) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self._prefix = f"{slot} {version} {os.getpid()}"

    def record(self, event: str) -> None:
        os.write(self._fd, f"{event} {self._prefix} {time.monotonic_ns()}\n".encode())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--log", required=True)
    parser.add_argument("--mode", choices=("warm", "wrapped"), default="warm")
    args = parser.parse_args()
    log = EventLog(args.log, os.environ.get("PODKIT_SLOT", "?"),
                   os.environ.get("PODKIT_VERSION", "?"))
    if args.mode == "warm":
        slot = Slot.from_environ()
        log.record("ready")
        try:
            slot.wait_active()
        except PodkitError:
            return 0  # stopped while standby
        log.record("active")
        slot.stopping.wait()
        log.record("release")
        slot.release()
        return 0
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    log.record("active")
    stopping.wait()
    log.record("release")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
