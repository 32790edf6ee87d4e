"""Names of the files in the shared directory and the slot's environment.

The shared directory (``PODKIT_DIR``, default ``/podkit``) is an emptyDir mounted into
both slots and the sidecar. Its files are the protocol between them:

===========================  ===============================================
``slot-<s>.version``          the slot's version, one line
``slot-<s>.state.json``       the slot's state record (role, version, pid, since)
``slot-<s>.alive``            locked by the slot's PID 1 while it lives
``handover.lock``             the exclusive hand-over lock; its holder is active
``handoff.sock``              the active process's listener hand-off socket
``slot-<s>.ctl``              the slot's control socket (config hooks: signal, restart)
===========================  ===============================================
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .errors import PodkitError
from .lock import OfdLock

SLOTS = ("a", "b")
DEFAULT_DIR = "/podkit"
# What ``SIGNAL <NAME>`` on a slot's control socket may send (docs/handoff-protocol.md, "The slot
# control socket"): the reload signals. A stop or kill signal there would end the active
# business without a hand-over; the kubelet stops slots, a config hook never does.
CONTROL_SIGNALS = ("HUP", "USR1", "USR2")
# The control socket's mode: only the slots' and the sidecar's uid may connect.
CONTROL_SOCKET_MODE = 0o600
_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+:@/-]{0,127}$")


def other_slot(slot: str) -> str:
    """The peer of ``slot`` (a <-> b)."""
    return "b" if slot == "a" else "a"


@dataclass(frozen=True)
class SharedDir:
    """Paths of the protocol files inside the shared directory."""

    root: Path

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None,
                     override: str | None = None) -> SharedDir:
        """``override`` (a ``--dir`` option), else ``PODKIT_DIR``, else ``/podkit``."""
        env = os.environ if environ is None else environ
        return cls(Path(override or env.get("PODKIT_DIR") or DEFAULT_DIR))

    def version_file(self, slot: str) -> Path:
        return self.root / f"slot-{slot}.version"

    def state_file(self, slot: str) -> Path:
        return self.root / f"slot-{slot}.state.json"

    def alive_file(self, slot: str) -> Path:
        return self.root / f"slot-{slot}.alive"

    def control_socket(self, slot: str) -> Path:
        return self.root / f"slot-{slot}.ctl"

    @property
    def lock_file(self) -> Path:
        return self.root / "handover.lock"

    @property
    def handoff_socket(self) -> Path:
        return self.root / "handoff.sock"

    def check_exists(self) -> None:
        """Fail with a readable message unless the directory exists."""
        if self.root.exists() and not self.root.is_dir():
            raise PodkitError(f"PODKIT_DIR {self.root} is not a directory; mount the shared "
                              "emptyDir there or set PODKIT_DIR to a directory")
        if not self.root.is_dir():
            raise PodkitError(f"PODKIT_DIR {self.root} does not exist; mount the shared "
                              "emptyDir there or set PODKIT_DIR to an existing directory")

    def claim_slot(self, slot: str) -> OfdLock:
        """Take the slot's liveness lock for this process's life, or fail if another
        process runs the same slot."""
        alive = OfdLock(self.alive_file(slot))
        if not alive.acquire(blocking=False):
            raise PodkitError(f"slot {slot} already runs in {self.root}; give each slot "
                              "container its own PODKIT_SLOT")
        return alive

    def check_writable(self) -> None:
        """Fail with a readable message unless the directory exists and is writable."""
        self.check_exists()
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise PodkitError(f"PODKIT_DIR {self.root} is not writable; give the container "
                              "write access to the shared emptyDir")


def validate_version(version: str, source: str) -> str:
    """Return ``version`` when it is a sane one-line token, else raise naming ``source``."""
    if not _VERSION_RE.fullmatch(version):  # match() would let "v1\n" through ($)
        raise PodkitError(f"{source} {version!r} is not a valid version; use 1-128 characters "
                          "of letters, digits and . _ + : @ / -")
    return version


@dataclass(frozen=True)
class SlotEnv:
    """What a slot container learns from its environment."""

    slot: str
    version: str | None
    shared: SharedDir

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None,
                     require_version: bool = True) -> SlotEnv:
        env = os.environ if environ is None else environ
        slot = env.get("PODKIT_SLOT", "")
        if slot not in SLOTS:
            raise PodkitError(f"PODKIT_SLOT is {slot!r}; set it to 'a' or 'b'")
        raw_version = env.get("PODKIT_VERSION", "").strip()
        if raw_version:
            version: str | None = validate_version(raw_version, "PODKIT_VERSION")
        elif require_version:
            raise PodkitError("PODKIT_VERSION is not set; set it in the pod spec or bake it "
                              "into the business image (ENV PODKIT_VERSION=...)")
        else:
            version = None
        return cls(slot=slot, version=version, shared=SharedDir.from_environ(env))
