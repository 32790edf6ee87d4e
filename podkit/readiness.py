"""What the sidecar sees of the pod, and the readiness rule.

TKEx's rule: the pod is ready when both version files are equal and exactly one slot is
active. "Active" is read from the state records and checked against the locks: a record whose
writer no longer holds its slot's liveness lock was left by a killed process and counts as
``exited``, and the active slot must hold the hand-over lock.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from .errors import PodkitError
from .layout import SLOTS, SharedDir
from .lock import lock_is_held
from .slot_records import SlotState, read_state, read_version


@dataclass(frozen=True)
class SlotView:
    slot: str
    version: str | None
    state: SlotState | None
    error: str | None  # a corrupt file, reported rather than raised


@dataclass(frozen=True)
class PodView:
    slots: dict[str, SlotView]
    lock_held: bool

    @property
    def active_slots(self) -> list[str]:
        return [s for s, view in self.slots.items()
                if view.state is not None and view.state.role == "active"]

    def readiness(self) -> tuple[bool, str]:
        """(ready, reason): the reason says what is missing when not ready."""
        for view in self.slots.values():
            if view.error:
                return False, view.error
        versions = {s: view.version for s, view in self.slots.items()}
        missing = [s for s, v in versions.items() if v is None]
        if missing:
            return False, f"slot {missing[0]} has written no version yet"
        if versions["a"] != versions["b"]:
            return False, f"versions differ: a={versions['a']} b={versions['b']}"
        active = self.active_slots
        if len(active) != 1:
            return False, f"{len(active)} slots say active (want exactly 1)"
        if not self.lock_held:
            return False, f"slot {active[0]} says active but nobody holds the hand-over lock"
        return True, f"slot {active[0]} active at {versions['a']}"

    def slot_readiness(self, slot: str) -> tuple[bool, str]:
        """(ready, reason) of one slot container: its process lives and has initialised."""
        view = self.slots[slot]
        if view.error:
            return False, view.error
        if view.state is None:
            return False, f"slot {slot} has no state yet"
        if view.state.role not in ("idle", "standby", "active"):
            return False, f"slot {slot} is {view.state.role}"
        return True, f"slot {slot} is {view.state.role} at {view.state.version}"

    def as_json(self) -> dict[str, Any]:
        ready, reason = self.readiness()
        return {
            "ready": ready,
            "reason": reason,
            "lock_held": self.lock_held,
            "slots": {s: {"version": v.version, "error": v.error,
                          "state": asdict(v.state) if v.state else None}
                      for s, v in self.slots.items()},
        }


def observe(shared: SharedDir) -> PodView:
    """Read both slots' files and probe the lock, without taking it."""
    slots = {}
    for slot in SLOTS:
        version = state = error = None
        try:
            version = read_version(shared, slot)
            state = read_state(shared, slot)
        except PodkitError as exc:
            error = str(exc)
        if state is not None and not lock_is_held(shared.alive_file(slot)):
            state = replace(state, role="exited")  # its writer died without a word
        slots[slot] = SlotView(slot=slot, version=version, state=state, error=error)
    return PodView(slots=slots, lock_held=lock_is_held(shared.lock_file))
