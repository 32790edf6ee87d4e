"""The A/B swap between real slot processes: ``podkit run`` (wrapped and warm), ``podkit
pause`` and ``podkit probe`` over one shared directory, as the containers of a pod run them.

The business is :mod:`benchmarks.stub`, which logs when it becomes active and when it
releases, so that the tests see the active intervals of every business process.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest

from benchmarks.intervals import gaps_ms, overlaps, read_intervals
from podkit.layout import SharedDir
from podkit.lock import lock_is_held
from podkit.slot_records import read_state, read_version, write_version

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

MODES = ("wrapped", "warm")


def versions(shared: SharedDir) -> tuple[str | None, str | None]:
    return read_version(shared, "a"), read_version(shared, "b")


def swap_step_by_step(sp, cli, version: str) -> str:
    """One swap, as :meth:`LocalPod.swap` does it, with the pod's readiness checked at every
    step. Returns the newly active slot."""
    pod, shared = sp.pod, sp.shared
    old = pod.active_slot()
    new = "b" if old == "a" else "a"
    before = read_version(shared, old)
    assert versions(shared) == (before, before)
    assert cli.probe(shared)[0] == 0

    # 1. the idle slot gets the business image: it stands by at the new version
    assert pod.stop(new) == 0
    pod.start_business(new, version)
    pod.wait_role(new, "standby", version)
    assert read_version(shared, new) == version
    assert read_state(shared, old).role == "active"
    assert lock_is_held(shared.lock_file)
    code, reason = cli.probe(shared)
    assert code == 1, reason
    assert "versions differ" in reason, reason

    # 2. the active slot gets the pause image: it hands over and exits with its business's code
    assert pod.stop(old) == 0
    pod.start_pause(old, version)
    state = pod.wait_role(new, "active", version)
    pod.wait_role(old, "idle", version)
    assert state.mode == pod.mode
    assert read_state(shared, old).mode == "pause"
    assert versions(shared) == (version, version)
    code, reason = cli.probe(shared)
    assert code == 0, reason
    assert reason == f"slot {new} active at {version}"
    return new


@pytest.mark.parametrize("mode", MODES)
def test_swap_v1_v2_and_back(mode: str, stub_pod, cli) -> None:
    sp = stub_pod(mode)
    code, reason = cli.probe(sp.shared)
    assert code == 1 and "no version" in reason, reason

    sp.pod.start("v1")
    assert versions(sp.shared) == ("v1", "v1")
    assert read_state(sp.shared, "a").role == "active"
    assert read_state(sp.shared, "b").role == "idle"

    assert swap_step_by_step(sp, cli, "v2") == "b"
    assert swap_step_by_step(sp, cli, "v1") == "a"

    sp.pod.close()
    intervals = read_intervals(sp.log)
    assert [(i.slot, i.version) for i in intervals] == [("a", "v1"), ("b", "v2"), ("a", "v1")]
    assert overlaps(intervals) == 0
    assert len(gaps_ms(intervals)) == 2


def swaps_without_overlap(sp, count: int) -> None:
    sp.pod.start("v0")
    for n in range(1, count + 1):
        new = sp.pod.swap(f"v{n}")
        # A wrapped slot records "active" as it starts the business: wait until the business
        # runs, as the operator waits for readiness, or the next swap's SIGTERM could stop it
        # before it served at all.
        sp.wait_event("active", new, f"v{n}")
    sp.pod.close()  # SIGKILL: the last business process never logs a release
    intervals = read_intervals(sp.log)
    assert [i.version for i in intervals] == [f"v{n}" for n in range(count + 1)]
    assert [i.slot for i in intervals] == ["ab"[n % 2] for n in range(count + 1)]
    assert overlaps(intervals) == 0
    assert len(gaps_ms(intervals)) == count
    assert all(gap >= 0 for gap in gaps_ms(intervals))
    assert intervals[-1].end_ns is None


def test_never_two_active_across_200_warm_swaps(stub_pod) -> None:
    swaps_without_overlap(stub_pod("warm"), 200)


def test_never_two_active_across_30_wrapped_swaps(stub_pod) -> None:
    swaps_without_overlap(stub_pod("wrapped"), 30)


# --- crashes -----------------------------------------------------------------------------------

def start_with_standby(sp) -> None:
    """a active at v1, b standing by at v2 (the middle of a swap)."""
    sp.pod.start("v1")
    assert sp.pod.stop("b") == 0
    sp.pod.start_business("b", "v2")
    sp.pod.wait_role("b", "standby", "v2")


def business_child(sp, h: SimpleNamespace, slot: str, version: str,
                   event: str) -> tuple[int, int]:
    """(pid, start time) of the slot's business process: the stub that logged ``event``, which
    must be a child of the slot's podkit process."""
    pid = sp.wait_event(event, slot, version)
    podkit_pid = sp.pod.procs[slot].pid
    assert pid in h.children_of(podkit_pid), (pid, h.children_of(podkit_pid))
    started = h.start_time(pid)
    assert started is not None
    return pid, started


def assert_untouched(sp, active_pid: int, stub_pid: int) -> None:
    """Slot a is still the active slot it was, and its business never released."""
    state = read_state(sp.shared, "a")
    assert (state.role, state.version, state.pid) == ("active", "v1", active_pid)
    assert sp.pod.procs["a"].poll() is None
    assert lock_is_held(sp.shared.lock_file)
    assert [e[0] for e in sp.events() if e[3] == stub_pid and e[0] != "ready"] == ["active"]


def assert_still_hands_over(sp) -> None:
    """A new standby in b still takes over from the untouched a."""
    sp.pod.start_business("b", "v2")
    sp.pod.wait_role("b", "standby", "v2")
    assert sp.pod.stop("a") == 0
    sp.pod.wait_role("b", "active", "v2")
    assert overlaps(read_intervals(sp.log)) == 0


@pytest.mark.parametrize("mode", MODES)
def test_standby_podkit_killed_leaves_active_untouched(mode: str, stub_pod, h) -> None:
    sp = stub_pod(mode)
    start_with_standby(sp)
    active_pid = sp.pod.procs["a"].pid
    stub_pid, _ = business_child(sp, h, "a", "v1", "active")
    standby = sp.pod.procs["b"]
    if mode == "warm":
        child = business_child(sp, h, "b", "v2", "ready")
    else:  # wrapped: the business starts only once active
        assert h.children_of(standby.pid) == []
    assert sp.pod.kill("b") == -signal.SIGKILL
    if mode == "warm":
        h.wait_gone(*child, "the killed standby's business process")

    assert_untouched(sp, active_pid, stub_pid)
    assert_still_hands_over(sp)


def test_standby_business_killed_leaves_active_untouched(stub_pod, h) -> None:
    sp = stub_pod("warm")  # only a warm standby has a business process
    start_with_standby(sp)
    active_pid = sp.pod.procs["a"].pid
    stub_pid, _ = business_child(sp, h, "a", "v1", "active")
    child, _ = business_child(sp, h, "b", "v2", "ready")
    h.sigkill(child)
    assert sp.pod.procs["b"].wait(h.LIVENESS_S) == 128 + signal.SIGKILL
    assert read_state(sp.shared, "b").role == "exited"
    del sp.pod.procs["b"]

    assert_untouched(sp, active_pid, stub_pid)
    assert_still_hands_over(sp)


@pytest.mark.parametrize("mode", MODES)
def test_active_podkit_killed_hands_over(mode: str, stub_pod, h) -> None:
    sp = stub_pod(mode)
    start_with_standby(sp)
    child = business_child(sp, h, "a", "v1", "active")
    assert sp.pod.kill("a") == -signal.SIGKILL

    state = sp.pod.wait_role("b", "active", "v2")
    assert state.pid == sp.pod.procs["b"].pid
    sp.wait_event("active", "b", "v2")
    assert lock_is_held(sp.shared.lock_file)
    # PR_SET_PDEATHSIG: the business process of a killed slot does not outlive it
    h.wait_gone(*child, "the business process of the killed active slot")


@pytest.mark.parametrize("mode", MODES)
def test_active_business_killed_hands_over(mode: str, stub_pod, h) -> None:
    sp = stub_pod(mode)
    start_with_standby(sp)
    child, _ = business_child(sp, h, "a", "v1", "active")
    h.sigkill(child)
    assert sp.pod.procs["a"].wait(h.LIVENESS_S) == 128 + signal.SIGKILL
    assert read_state(sp.shared, "a").role == "exited"
    del sp.pod.procs["a"]

    sp.pod.wait_role("b", "active", "v2")
    sp.wait_event("active", "b", "v2")
    assert lock_is_held(sp.shared.lock_file)


# --- signals ---------------------------------------------------------------------------------

def wait_role(h, shared: SharedDir, slot: str, role: str, pid: int):
    def check():
        try:
            state = read_state(shared, slot)
        except Exception:  # noqa: BLE001 (a test helper: keep waiting)
            return None
        return state if state is not None and (state.role, state.pid) == (role, pid) else None
    return h.wait_for(check, f"slot {slot} {role}")


def test_sigterm_to_pause_exits_zero(tmp_path: Path, cli, h) -> None:
    shared = SharedDir(tmp_path)
    proc = cli.start("pause", PODKIT_SLOT="b", PODKIT_VERSION="v1", PODKIT_DIR=str(tmp_path))
    try:
        wait_role(h, shared, "b", "idle", proc.pid)
        assert read_version(shared, "b") == "v1"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        proc.kill()
        proc.wait()


@contextmanager
def active_sleep(tmp_path: Path, cli, h) -> Iterator[tuple[SharedDir, subprocess.Popen[bytes],
                                                       int, int]]:
    """``podkit run -- sleep 100`` active in slot a: the shared directory, podkit's process,
    the sleep's pid and start time; podkit is killed afterwards."""
    shared = SharedDir(tmp_path)
    proc = cli.start("run", "--", "sleep", "100", PODKIT_SLOT="a", PODKIT_VERSION="v1",
                     PODKIT_DIR=str(tmp_path))
    try:
        wait_role(h, shared, "a", "active", proc.pid)
        [child] = h.wait_for(lambda: h.children_of(proc.pid), "sleep to start")
        yield shared, proc, child, h.start_time(child)
    finally:
        proc.kill()
        proc.wait()


# A warm business that writes 1 MB without a newline, then stands by as the protocol says.
ENDLESS_LINE = """
import os, socket, time
channel = socket.socket(fileno=int(os.environ["PODKIT_CONTROL_FD"]))
channel.sendall(b"x" * 1_000_000)
channel.sendall(b"\\nREADY\\n")
time.sleep(100)
"""


def test_a_control_message_without_an_end_is_dropped_and_the_protocol_goes_on(
        tmp_path: Path, cli, h) -> None:
    """podkit keeps at most CHANNEL_LINE_MAX bytes of a line (found reading the code, #24)."""
    shared = SharedDir(tmp_path)
    log = tmp_path / "run.log"
    with open(log, "wb") as out:
        proc = cli.start("run", "--mode", "warm", "--", sys.executable, "-c", ENDLESS_LINE,
                         stdout=out, PODKIT_SLOT="b", PODKIT_VERSION="v1",
                         PODKIT_DIR=str(tmp_path))
    try:
        wait_role(h, shared, "b", "standby", proc.pid)
        assert "ignoring a control message over 256 bytes without a newline" in log.read_text()
    finally:
        proc.kill()
        proc.wait()


def test_sigterm_to_run_reaches_the_business_process(tmp_path: Path, cli, h) -> None:
    with active_sleep(tmp_path, cli, h) as (shared, proc, child, started):
        assert lock_is_held(shared.lock_file)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 128 + signal.SIGTERM  # sleep died of the forwarded SIGTERM
        assert h.start_time(child) != started
        assert read_state(shared, "a").role == "exited"
        assert not lock_is_held(shared.lock_file)


def process_state(pid: int) -> str:
    """The state letter of /proc/<pid>/stat (R, S, T for stopped, Z for a zombie ...)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2]


def test_a_signal_for_a_business_that_just_exited_does_not_hide_its_exit(tmp_path: Path, cli,
                                                                         h) -> None:
    """A config hook's signal for a business that has exited but is not reaped yet must not
    reap it behind podkit's exit handling (``Popen.send_signal`` polls first), or the slot never
    sees the exit. Stopping podkit while the business dies and the request arrives makes the
    ordering certain: once continued, podkit's selector reports the request, ready first,
    before the wake-up its SIGCHLD handler writes as the signal is delivered."""
    with active_sleep(tmp_path, cli, h) as (shared, proc, child, started):
        proc.send_signal(signal.SIGSTOP)
        h.wait_for(lambda: process_state(proc.pid) == "T", "podkit to stop")
        h.sigkill(child)
        h.wait_gone(child, started, "sleep")  # a zombie: podkit cannot reap it while stopped
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(h.LIVENESS_S)
            conn.connect(str(shared.control_socket("a")))
            conn.sendall(b"SIGNAL HUP\n")
            proc.send_signal(signal.SIGCONT)
            assert conn.recv(256) == b"OK\n"
        assert proc.wait(h.LIVENESS_S) == 128 + signal.SIGKILL
        state = read_state(shared, "a")
        assert state is not None and state.role == "exited"
        assert not lock_is_held(shared.lock_file)


def control(shared: SharedDir, request: bytes, timeout: float) -> bytes:
    """One request on slot a's control socket, and its answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        conn.connect(str(shared.control_socket("a")))
        conn.sendall(request)
        return conn.recv(256)


def connect_as_nobody(path: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    """Connect to the Unix socket ``path`` from a process of uid and gid 65534."""
    return subprocess.run(
        ["/usr/bin/python3", "-c", "import socket, sys; s = socket.socket(socket.AF_UNIX); "
         "s.connect(sys.argv[1])", str(path)],
        user=65534, group=65534, extra_groups=[], capture_output=True, text=True,
        timeout=timeout)


def test_the_control_socket_is_0600_under_any_umask(cli, h) -> None:
    """Created 0600 even when podkit inherits umask 000 (the socket's mode comes from the umask
    at bind): a process of another uid cannot connect, where it can to a socket of mode 0666
    beside it (the directory lets it in)."""
    if os.geteuid() != 0:
        pytest.fail("this test needs root: it connects as another uid (65534)", pytrace=False)
    directory = Path(tempfile.mkdtemp(prefix="podkit-ctl-"))
    directory.chmod(0o755)
    previous = os.umask(0)
    try:
        ctx = active_sleep(directory, cli, h)
        shared, _, _, _ = ctx.__enter__()
    finally:
        os.umask(previous)
    try:
        assert stat.S_IMODE(os.stat(shared.control_socket("a")).st_mode) == 0o600
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as open_one:
            open_one.bind(str(directory / "open.sock"))
            os.chmod(directory / "open.sock", 0o666)
            open_one.listen(1)
            allowed = connect_as_nobody(directory / "open.sock", h.LIVENESS_S)
            assert allowed.returncode == 0, allowed.stderr
        refused = connect_as_nobody(shared.control_socket("a"), h.LIVENESS_S)
        assert refused.returncode != 0 and "PermissionError" in refused.stderr, refused
    finally:
        ctx.__exit__(None, None, None)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.parametrize("name", ["KILL", "TERM", "SIGQUIT", "INT", "STOP"])
def test_the_control_socket_refuses_a_signal_it_does_not_document(tmp_path: Path, cli, h,
                                                                  name: str) -> None:
    with active_sleep(tmp_path, cli, h) as (shared, proc, child, started):
        answer = control(shared, f"SIGNAL {name}\n".encode(), h.LIVENESS_S).decode()
        assert answer.startswith("ERR signal SIG") and "not allowed" in answer, answer
        assert "HUP, USR1, USR2" in answer
        assert h.start_time(child) == started and proc.poll() is None


def test_the_control_socket_sends_a_documented_signal(tmp_path: Path, cli, h) -> None:
    with active_sleep(tmp_path, cli, h) as (shared, proc, _, _):
        assert control(shared, b"SIGNAL USR1\n", h.LIVENESS_S) == b"OK\n"
        assert proc.wait(h.LIVENESS_S) == 128 + signal.SIGUSR1  # sleep dies of USR1


@pytest.mark.parametrize("mode", MODES)
def test_sigterm_to_run_makes_the_stub_release(mode: str, stub_pod) -> None:
    sp = stub_pod(mode)
    sp.pod.start("v1")
    pid = sp.wait_event("active", "a", "v1")
    assert sp.pod.stop("a") == 0
    assert [e[0] for e in sp.events() if e[3] == pid and e[0] != "ready"] == ["active", "release"]
    assert read_state(sp.shared, "a").role == "exited"
    assert not lock_is_held(sp.shared.lock_file)


@pytest.mark.parametrize("mode", MODES)
def test_sigterm_to_standby_exits_without_serving(mode: str, stub_pod) -> None:
    sp = stub_pod(mode)
    start_with_standby(sp)
    assert sp.pod.stop("b") == 0
    assert not [e for e in sp.events() if e[1] == "b" and e[0] == "active"]
    assert read_state(sp.shared, "a").role == "active"
    assert lock_is_held(sp.shared.lock_file)


# --- pause -------------------------------------------------------------------------------------

def in_sigtimedwait(pid: int) -> bool:
    """Whether the process sleeps in sigtimedwait(2), i.e. pause is in its idle loop."""
    return "sigtimedwait" in Path(f"/proc/{pid}/wchan").read_text()


def test_pause_without_version_follows_the_peer(tmp_path: Path, cli, h) -> None:
    shared = SharedDir(tmp_path)
    proc = cli.start("pause", PODKIT_SLOT="b", PODKIT_DIR=str(tmp_path))
    try:
        # once it sleeps in its loop with no peer version to follow, it has written nothing
        h.wait_for(lambda: in_sigtimedwait(proc.pid), "pause to enter its loop")
        assert read_version(shared, "b") is None
        assert read_state(shared, "b") is None
        write_version(shared, "a", "v1")
        state = wait_role(h, shared, "b", "idle", proc.pid)
        assert state.version == "v1"
        assert read_version(shared, "b") == "v1"

        write_version(shared, "a", "v2")
        # it writes the version file, then the state record
        h.wait_for(lambda: read_version(shared, "b") == "v2", "pause b to follow a to v2")
        h.wait_for(lambda: read_state(shared, "b").version == "v2", "b's record to say v2")
        assert read_state(shared, "b").role == "idle"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        proc.kill()
        proc.wait()


def test_pause_with_version_ignores_the_peer(tmp_path: Path, cli, h) -> None:
    shared = SharedDir(tmp_path)
    write_version(shared, "a", "v1")
    proc = cli.start("pause", PODKIT_SLOT="b", PODKIT_VERSION="v9", PODKIT_DIR=str(tmp_path))
    try:
        wait_role(h, shared, "b", "idle", proc.pid)
        assert read_version(shared, "b") == "v9"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert read_version(shared, "b") == "v9"
    finally:
        proc.kill()
        proc.wait()


def slot_probe(cli, shared: SharedDir, slot: str) -> tuple[int, str]:
    done = cli.run("probe", "slot", "--dir", str(shared.root), PODKIT_SLOT=slot)
    return done.returncode, done.stdout.strip()


def test_slot_probe_follows_each_slot_container(stub_pod, cli) -> None:
    """``podkit probe slot``: the slot container's readiness (up and initialised)."""
    sp = stub_pod("warm")
    assert slot_probe(cli, sp.shared, "a") == (1, "slot a has no state yet")
    sp.pod.start("v1")
    assert slot_probe(cli, sp.shared, "a") == (0, "slot a is active at v1")
    assert slot_probe(cli, sp.shared, "b") == (0, "slot b is idle at v1")
    sp.pod.stop("b")
    assert slot_probe(cli, sp.shared, "b") == (1, "slot b is exited")
    sp.pod.start_business("b", "v2")
    sp.pod.wait_role("b", "standby", "v2")
    assert slot_probe(cli, sp.shared, "b") == (0, "slot b is standby at v2")
