"""``podkit pause``: the idle slot. It writes its version and state, sleeps, and exits 0 at
once on SIGTERM.

Its version is ``PODKIT_VERSION`` when the pod spec sets it (the operator does on a patched
cluster, as TKEx does). On a stock cluster the operator cannot change a running container's
env, so an idle slot without ``PODKIT_VERSION`` follows its peer's version file: the sidecar's
rule "both version files equal" then means "no second business version is present".
"""

from __future__ import annotations

import signal

from . import cpu
from .errors import PodkitError
from .layout import SlotEnv, other_slot
from .slot_records import SlotState, read_version, write_state, write_version

FOLLOW_INTERVAL_S = 1.0


def run_pause(env: SlotEnv) -> int:
    """Idle until SIGTERM or SIGINT; return the exit code (0)."""
    env.shared.check_writable()
    cpu.background(permanent=True)  # it never serves (podkit.cpu)
    alive = env.shared.claim_slot(env.slot)  # held until this process exits
    stop = (signal.SIGTERM, signal.SIGINT)
    signal.pthread_sigmask(signal.SIG_BLOCK, stop)
    written: str | None = None
    while True:
        version = env.version or _peer_version(env)
        if version is not None and version != written:
            write_version(env.shared, env.slot, version)
            write_state(env.shared, SlotState.now(env.slot, "idle", version, "pause"))
            written = version
        if signal.sigtimedwait(stop, FOLLOW_INTERVAL_S) is not None:
            alive.release()
            return 0


def _peer_version(env: SlotEnv) -> str | None:
    try:
        return read_version(env.shared, other_slot(env.slot))
    except PodkitError:
        return None  # the peer is mid-write or broken; keep the last version
