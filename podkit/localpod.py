"""Two slots as local processes sharing a directory: a pod without Kubernetes.

Tests, benchmarks and services adopting podkit use it to run the A/B protocol on one machine:
each slot is a ``podkit run`` or ``podkit pause`` process, as the kubelet would start them in
the slot containers, and :meth:`LocalPod.swap` does what the operator and kubelet do in a pod.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from .errors import PodkitError
from .layout import SLOTS, SharedDir, other_slot
from .slot_records import SlotState, read_state

CommandFor = Callable[[str, str], Sequence[str]]  # (slot, version) -> business command
T = TypeVar("T")


def wait_until(check: Callable[[], T | None], what: str, timeout: float,
               interval: float = 0.01) -> T:
    """Poll ``check`` until it returns something truthy; raise naming ``what`` on time-out."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise PodkitError(f"gave up waiting for {what} after {timeout:.0f}s")
        time.sleep(interval)


class LocalPod:
    """Slot processes ``a`` and ``b`` over one shared directory."""

    def __init__(self, root: Path, command_for: CommandFor, mode: str = "warm",
                 env: dict[str, str] | None = None, run_args: Sequence[str] = ()) -> None:
        """``run_args``: options of ``podkit run`` besides ``--mode`` (``--listen`` ...)."""
        self.shared = SharedDir(root)
        self.command_for = command_for
        self.mode = mode
        self.env = env or {}
        self.run_args = list(run_args)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.exits: list[tuple[str, int]] = []  # (slot, exit code) of each process stopped
        root.mkdir(parents=True, exist_ok=True)

    # --- one slot ------------------------------------------------------------------------
    def _start(self, slot: str, args: Sequence[str], version: str | None) -> None:
        env = dict(os.environ, **self.env, PODKIT_SLOT=slot, PODKIT_DIR=str(self.shared.root))
        env.pop("PODKIT_VERSION", None)
        if version is not None:
            env["PODKIT_VERSION"] = version
        log = open(self.shared.root / f"slot-{slot}.log", "ab")
        self.procs[slot] = subprocess.Popen([sys.executable, "-m", "podkit", *args], env=env,
                                            stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def start_business(self, slot: str, version: str) -> None:
        self._start(slot, ["run", "--mode", self.mode, *self.run_args, "--",
                           *self.command_for(slot, version)], version)

    def start_pause(self, slot: str, version: str | None = None) -> None:
        self._start(slot, ["pause"], version)

    def stop(self, slot: str, timeout: float = 10.0) -> int:
        """SIGTERM the slot's process, as the kubelet does, and wait for its exit code."""
        proc = self.procs.pop(slot)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise PodkitError(f"slot {slot} did not stop within {timeout}s of SIGTERM") from None
        self.exits.append((slot, code))
        return code

    def kill(self, slot: str) -> int:
        proc = self.procs.pop(slot)
        proc.kill()
        return proc.wait()

    def state(self, slot: str) -> SlotState | None:
        return read_state(self.shared, slot)

    def wait_role(self, slot: str, role: str, version: str | None = None,
                  timeout: float = 20.0) -> SlotState:
        """Wait until the slot's state record says ``role`` (and ``version``)."""

        def reached() -> SlotState | None:
            state = self.state(slot)
            if (state is not None and state.role == role
                    and (version is None or state.version == version)
                    and state.pid == self._pid_of(slot)):
                return state
            proc = self.procs.get(slot)
            if proc is not None and proc.poll() is not None:
                raise PodkitError(f"slot {slot} exited with {proc.returncode} while waiting "
                                  f"for role {role}; see {self.shared.root}/slot-{slot}.log")
            return None

        return wait_until(reached, f"slot {slot} to be {role}", timeout, interval=0.002)

    def _pid_of(self, slot: str) -> int | None:
        proc = self.procs.get(slot)
        return proc.pid if proc is not None else None

    # --- the pod -------------------------------------------------------------------------
    def start(self, version: str, active: str = "a") -> None:
        """A new pod: business ``version`` active in ``active``, pause in the peer."""
        self.start_business(active, version)
        self.wait_role(active, "active", version)
        self.start_pause(other_slot(active), version)
        self.wait_role(other_slot(active), "idle")

    def active_slot(self) -> str:
        for slot in SLOTS:
            state = self.state(slot)
            if state is not None and state.role == "active" and slot in self.procs:
                return slot
        raise PodkitError("no slot is active")

    def swap(self, version: str) -> str:
        """One A/B swap to ``version``; return the newly active slot.

        The idle slot gets the business image (its pause stops, the business starts and
        stands by), then the active slot gets the pause image (its business hands over and
        exits, a pause starts), as the operator drives the kubelet.
        """
        old = self.active_slot()
        new = other_slot(old)
        self.stop(new)
        self.start_business(new, version)
        self.wait_role(new, "standby", version)
        self.stop(old)
        self.start_pause(old, version)
        self.wait_role(new, "active", version)
        self.wait_role(old, "idle")  # converged, as the operator waits for the pod to be
        return new

    def close(self, graceful: bool = False) -> None:
        """Kill every slot; ``graceful``: SIGTERM each first, as the kubelet does when the pod
        is deleted. Outside a container nothing kills what the business itself started once
        podkit is killed (``PR_SET_PDEATHSIG`` reaches only podkit's child): nginx's workers
        would live on."""
        if graceful:
            for slot in list(self.procs):
                with contextlib.suppress(PodkitError):  # killed below
                    self.stop(slot)
        for slot in list(self.procs):
            proc = self.procs.pop(slot)
            if proc.poll() is None:
                proc.kill()
            proc.wait()
