"""Version files and slot state records, as the slots write them and the sidecar reads them."""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass

from .errors import PodkitError
from .files import atomic_write, atomic_write_json, read_bytes, read_json
from .layout import SLOTS, SharedDir, validate_version

ROLES = ("starting", "standby", "active", "stopping", "idle", "exited")


@dataclass(frozen=True)
class SlotState:
    """The state record of one slot: what it runs and whether it serves."""

    slot: str
    role: str
    version: str
    pid: int
    since: float
    mode: str  # wrapped, warm or pause

    @classmethod
    def now(cls, slot: str, role: str, version: str, mode: str) -> SlotState:
        return cls(slot=slot, role=role, version=version, pid=os.getpid(), since=time.time(),
                   mode=mode)


def write_version(shared: SharedDir, slot: str, version: str) -> None:
    atomic_write(shared.version_file(slot), f"{version}\n".encode())


def read_version(shared: SharedDir, slot: str) -> str | None:
    """The slot's version, ``None`` if it has not written one; corrupt files raise."""
    path = shared.version_file(slot)
    raw = read_bytes(path)
    if raw is None:
        return None
    try:
        text = raw.decode("ascii").strip()
    except UnicodeDecodeError as exc:
        raise PodkitError(f"{path} is corrupt (not ASCII); delete it and restart the slot") from exc
    if not text:
        raise PodkitError(f"{path} is empty; delete it and restart the slot")
    return validate_version(text, str(path))


def write_state(shared: SharedDir, state: SlotState) -> None:
    atomic_write_json(shared.state_file(state.slot), asdict(state))


def read_state(shared: SharedDir, slot: str) -> SlotState | None:
    """The slot's state record, ``None`` if absent; a corrupt or foreign record raises."""
    path = shared.state_file(slot)
    record = read_json(path)
    if record is None:
        return None
    try:
        state = SlotState(slot=str(record["slot"]), role=str(record["role"]),
                          version=str(record["version"]), pid=int(record["pid"]),
                          since=float(record["since"]), mode=str(record["mode"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise PodkitError(f"{path} is corrupt (missing or bad field: {exc}); delete it and "
                          "restart the slot") from exc
    if state.slot != slot or state.slot not in SLOTS or state.role not in ROLES:
        raise PodkitError(f"{path} is corrupt (slot {state.slot!r}, role {state.role!r}); "
                          "delete it and restart the slot")
    validate_version(state.version, f"{path} is corrupt: version")
    return state
