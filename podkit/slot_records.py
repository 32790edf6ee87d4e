"""Version files and slot state records, as the slots write them and the sidecar reads them."""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass

from .errors import PodkitError
from .files import atomic_write, atomic_write_json, read_bytes, read_json
from .layout import SLOTS, SharedDir, validate_version

ROLES = ("starting", "standby", "active", "stopping", "idle", "exited")
MODES = ("wrapped", "warm", "pause")
# A record's fields and the JSON types each may have (bool is not an int here).
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "slot": (str,), "role": (str,), "version": (str,), "pid": (int,), "since": (float, int),
    "mode": (str,)}


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
    missing = [key for key in _FIELD_TYPES if key not in record]
    if missing:
        raise PodkitError(f"{path} is corrupt (missing field {', '.join(missing)}); delete it "
                          "and restart the slot")
    wrong = [f"{key} {record[key]!r}" for key, kinds in _FIELD_TYPES.items()
             if type(record[key]) not in kinds]
    if wrong:
        raise PodkitError(f"{path} is corrupt (bad field {', '.join(wrong)}); delete it and "
                          "restart the slot")
    state = SlotState(slot=record["slot"], role=record["role"], version=record["version"],
                      pid=record["pid"], since=float(record["since"]), mode=record["mode"])
    if (state.slot != slot or state.slot not in SLOTS or state.role not in ROLES
            or state.mode not in MODES):
        raise PodkitError(f"{path} is corrupt (slot {state.slot!r}, role {state.role!r}, mode "
                          f"{state.mode!r}); delete it and restart the slot")
    if state.pid < 1 or not math.isfinite(state.since):
        raise PodkitError(f"{path} is corrupt (pid {state.pid}, since {state.since}); delete "
                          "it and restart the slot")
    validate_version(state.version, f"{path} is corrupt: version")
    return state
