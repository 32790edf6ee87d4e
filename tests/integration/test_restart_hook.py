"""The RESTART request of a slot's control socket (the sidecar's ``restart`` config hook), in
the orderings that a fast demo service rarely shows: its answer must come whatever podkit
handles first, and a restart cut short by the slot's stop is answered too.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest

from podkit.localpod import LocalPod
from podkit.lock import lock_is_held
from podkit.reload import Hook, HookRunner

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

# Warm, and dies at once on SIGTERM (default action: the lock goes with its fd). Once it holds
# the lock it says ACTIVE only after podkit has reaped the process it replaces, so podkit
# handles that exit before the ACTIVE, every time.
AFTER_ITS_PREDECESSOR = """
import os, socket, sys, time
from pathlib import Path
from podkit import slot as warm
from podkit.lock import OfdLock

pids = Path(sys.argv[1])
predecessor = int(pids.read_text()) if pids.exists() else None
pids.write_text(str(os.getpid()))
control = socket.socket(fileno=int(os.environ[warm.CONTROL_FD_ENV]))
control.sendall(warm.READY)
OfdLock(Path(os.environ["PODKIT_DIR"]) / "handover.lock").acquire()
while predecessor is not None and Path(f"/proc/{predecessor}").exists():  # until reaped
    time.sleep(0.01)
control.sendall(warm.ACTIVE)
while True:
    time.sleep(3600)
"""

# Wrapped; survives its first SIGTERM, dies of the second; says in a file where it is.
STUBBORN = """
import signal, sys
from pathlib import Path

def first(signum, frame):
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    Path(sys.argv[1]).write_text("signalled")

signal.signal(signal.SIGTERM, first)
Path(sys.argv[1]).write_text("waiting")
while True:
    signal.pause()
"""


def restart(pod: LocalPod, h: SimpleNamespace) -> tuple[bool, str]:
    """The sidecar's ``restart`` hook against the pod's active slot."""
    return HookRunner(pod.shared, Hook.parse("restart"), h.LIVENESS_S).run()


@pytest.fixture
def python_pod(tmp_path: Path) -> Iterator[Callable[[str, str], tuple[LocalPod, Path]]]:
    """A factory: ``python_pod(mode, SCRIPT)`` is a pod whose business runs SCRIPT with one
    argument, a file beside the pod; slot a is started at v1 and active. Killed after."""
    pods: list[LocalPod] = []

    def make(mode: str, script: str) -> tuple[LocalPod, Path]:
        scratch = tmp_path / f"scratch-{len(pods)}"
        pod = LocalPod(tmp_path / f"pod-{len(pods)}", lambda slot, version: [
            sys.executable, "-c", script, str(scratch)], mode=mode)
        pods.append(pod)
        pod.start_business("a", "v1")
        pod.wait_role("a", "active", "v1")
        return pod, scratch

    yield make
    for pod in pods:
        pod.close()


def the_business(pod: LocalPod, h: SimpleNamespace) -> int:
    """Slot a's business process, once it is the only one."""
    def only_child() -> int | None:
        children = h.children_of(pod.procs["a"].pid)
        return children[0] if len(children) == 1 else None
    pid = h.wait_for(only_child, "one business process in slot a")
    assert isinstance(pid, int)
    return pid


def restarted_under_the_lock(pod: LocalPod, h: SimpleNamespace) -> None:
    """RESTART the slot's business: answered with the new pid, the slot active, the lock held."""
    old = the_business(pod, h)
    ok, message = restart(pod, h)
    new = the_business(pod, h)
    assert (ok, message) == (True, f"slot a: OK restarted, pid {new}")
    assert new != old
    state = pod.state("a")
    assert state is not None and (state.role, state.pid) == ("active", pod.procs["a"].pid)
    assert lock_is_held(pod.shared.lock_file)


def test_warm_restart_is_answered_when_the_old_exit_is_handled_first(python_pod, h) -> None:
    pod, _ = python_pod("warm", AFTER_ITS_PREDECESSOR)
    for _ in range(2):  # and the slot takes a second restart after it
        restarted_under_the_lock(pod, h)


def test_wrapped_restart_starts_a_new_process_under_the_same_lock(python_pod, h) -> None:
    pod, _ = python_pod("wrapped", "import time; time.sleep(3600)")
    restarted_under_the_lock(pod, h)  # podkit held the lock throughout


def test_a_slot_stopped_during_a_wrapped_restart_answers_it(python_pod, h) -> None:
    pod, where = python_pod("wrapped", STUBBORN)
    h.wait_for(lambda: where.exists() and where.read_text() == "waiting",
               "the business to handle SIGTERM")
    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(restart, pod, h)
        h.wait_for(lambda: where.read_text() == "signalled",
                   "the restart's SIGTERM to reach the business")
        # The forwarded SIGTERM ended it; no new one started.
        assert pod.stop("a") == 128 + signal.SIGTERM
        assert answer.result(h.LIVENESS_S) == (False, "slot a: ERR slot a is stopping")
    assert not lock_is_held(pod.shared.lock_file)
