"""What the kubelet mode records beside the looks: every probe's answer, every read of a pod's
shared-memory state, and every fault's hit. Plain records, so the checker stays pure."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Answer:
    """One ``WHO`` request to a pod's IP, on a new connection, retried once on a new one."""

    at_s: float  # seconds after the release started, when it was sent
    uid: str  # the pod's UID
    version: str | None  # None: no answer, to the request or its retry
    slot: str | None
    process: str | None  # the answering process: ``<pid>@<started-ns>`` (WHO)
    retried: bool  # the first try failed
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.version is not None


@dataclass(frozen=True)
class StateRead:
    """The demo's ``STATE`` of one pod: its shared-memory counters and blob checksums."""

    at_s: float
    uid: str
    served: int
    intact: bool
    blob_crc: int
    blob_crc_at_create: int
    generation: int


@dataclass(frozen=True)
class Hit:
    """What a fault hit: the pod (its UID), and for a kill the pids killed, in the pod's PID
    namespace (as ``WHO`` names them)."""

    kind: str
    at_s: float
    uid: str | None = None
    pids: tuple[int, ...] = ()


@dataclass(frozen=True)
class Probed:
    answers: tuple[Answer, ...]
    reads: tuple[StateRead, ...]
    hits: tuple[Hit, ...]
