"""The kubelet mode's probes: every serving pod asked ``WHO`` about 50 times a second, one
request at a time, each on a new connection, and its shared-memory ``STATE`` read every few
seconds. One thread per pod, from its first look ready until it terminates or is gone."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from podkit_demo.client import tcp_state, tcp_who

from .observe import Seen
from .records import Answer, StateRead

DEMO_PORT = 7000
INTERVAL_S = 0.02
STATE_EVERY_S = 3.0
TIMEOUT_S = 3.0  # per try: a reply this late is slow, not lost


@dataclass
class PodProbe:
    uid: str
    ip: str
    started: float  # monotonic time of the release's start
    answers: list[Answer] = field(default_factory=list)
    reads: list[StateRead] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> PodProbe:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def halt(self) -> None:
        """Ask no more (the thread ends after the request under way)."""
        self._stop.set()

    def stop(self) -> None:
        self.halt()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        next_state = 0.0
        while not self._stop.is_set():
            self.answers.append(self._ask())
            now = time.monotonic()
            if now >= next_state:
                self._read_state()
                next_state = now + STATE_EVERY_S
            self._stop.wait(INTERVAL_S)

    def _ask(self) -> Answer:
        at_s = time.monotonic() - self.started
        error = ""
        for retried in (False, True):
            try:
                version, slot, process = tcp_who((self.ip, DEMO_PORT), TIMEOUT_S)
                return Answer(at_s, self.uid, version, slot, process, retried)
            except (OSError, ValueError) as err:
                error = f"{type(err).__name__}: {err}"
        return Answer(at_s, self.uid, None, None, None, True, error)

    def _read_state(self) -> None:
        at_s = time.monotonic() - self.started
        try:
            state = tcp_state((self.ip, DEMO_PORT), TIMEOUT_S * 2)
        except (OSError, ValueError):
            return  # the answers record the pod's outages; a state read is a sample
        self.reads.append(StateRead(at_s, self.uid, state["served"], state["intact"],
                                    state["blob_crc"], state["blob_crc_at_create"],
                                    state["generation"]))


@dataclass
class Probes:
    """Follows the observer's looks: a probe for each pod once it is seen ready with an IP,
    stopped when it is seen terminating or gone."""

    started: float
    _probes: dict[str, PodProbe] = field(default_factory=dict)
    _done: list[PodProbe] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def follow(self, look: Seen) -> None:
        with self._lock:
            live = {p.uid: p for p in look.pods if not p.terminating}
            for uid in [u for u in self._probes if u not in live]:
                probe = self._probes.pop(uid)
                probe.halt()  # joined in stop: the observer's looks go on meanwhile
                self._done.append(probe)
            for uid, pod in live.items():
                if uid not in self._probes and pod.ready and pod.ip:
                    self._probes[uid] = PodProbe(uid, pod.ip, self.started).start()

    def stop(self) -> tuple[list[Answer], list[StateRead]]:
        with self._lock:
            self._done.extend(self._probes.values())
            for probe in self._done:
                probe.stop()
            self._probes.clear()
            answers = sorted((a for p in self._done for a in p.answers), key=lambda a: a.at_s)
            reads = sorted((r for p in self._done for r in p.reads), key=lambda r: r.at_s)
        return answers, reads
