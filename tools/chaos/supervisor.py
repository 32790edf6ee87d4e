"""The cluster kept running as a node keeps it: the control plane's processes as the kubelet
keeps static pods (and the kubelet and containerd as systemd keeps them), the operator as its
Deployment keeps it. A process that exits is started
again (the controller-manager and the scheduler exit when they lose their leases while the
apiserver restarts; an operator that loses its Lease exits on purpose, to come back as a
candidate). Faults that stop a process go through here, so nothing restarts it early."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from testbed.daemons import Proc
from testbed.operator_proc import OperatorProcess

POLL_S = 0.5


class Cluster(Protocol):
    """An API-only cluster or the full testbed: its processes by name."""

    def proc(self, name: str) -> Proc: ...

    def is_up(self) -> bool: ...


@dataclass
class Supervisor:
    cluster: Cluster
    bring_up: Callable[[], None]  # starts what is not running and waits until it serves
    operator: OperatorProcess
    restarts: int = 0  # the operator exited by itself and was started again
    _held_until: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Supervisor:
        self.operator.start()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=120)
        with self._lock:
            self.operator.stop()

    def kill_operator(self, outage_s: float) -> None:
        """SIGKILL the operator; it stays down ``outage_s`` seconds, then is started again."""
        with self._lock:
            self._held_until = time.monotonic() + outage_s
            self.operator.kill()

    def restart(self, component: str) -> None:
        """Stop one of the control plane's processes and start it again, serving."""
        with self._lock:
            self.cluster.proc(component).stop()
            self.bring_up()

    def _run(self) -> None:
        while not self._stop.wait(POLL_S):
            with self._lock:
                if not self.cluster.is_up():
                    self.bring_up()
                if time.monotonic() < self._held_until:
                    continue
                proc = self.operator.proc
                if proc is None:  # killed by a fault, its outage over
                    self.operator.start()
                elif proc.poll() is not None:  # exited by itself
                    self.operator.proc = None
                    self.operator.start()
                    self.restarts += 1
