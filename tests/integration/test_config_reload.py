"""Config hot-reload end to end: a LocalPod running the demo service in warm mode, the real
``podkit sidecar`` CLI watching a config directory written the kubelet's way, and each hook
kind acting on the active slot's business process.

The demo's greeting comes from ``$PODKIT_DEMO_CONFIG`` (``<cfg>/greeting``, a symlink into
``..data``) and is re-read on SIGHUP; every GET reply ends with it. Waits are liveness bounds
(see conftest), never timed assertions.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from benchmarks.swaps import free_port
from podkit import shm
from podkit.configdir import hash_files, write_like_kubelet
from podkit.localpod import LocalPod
from podkit.slot_records import SlotState
from podkit_demo.client import tcp_get
from podkit_demo.protocol import parse_reply

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


@dataclass
class DemoPod:
    pod: LocalPod
    config: Path
    tcp: tuple[str, int]

    def reply(self) -> tuple[str, str, int, int, str]:
        """(version, slot, seq, served, greeting) of one GET on a new connection."""
        return parse_reply(tcp_get(self.tcp, 7))

    def try_greeting(self) -> str | None:
        try:
            return self.reply()[4]
        except OSError:
            return None  # between two business processes (restart): nobody listens

    def business_pid(self, slot: str, h) -> int | None:
        """The business process: the only child of the slot's ``podkit run``."""
        children = h.children_of(self.pod.procs[slot].pid)
        return children[0] if len(children) == 1 else None


@pytest.fixture
def demo_pod(tmp_path: Path) -> Iterator[DemoPod]:
    """The demo at v1 active in slot a (pause in b), greeting "hello v1" from a kubelet-style
    config directory."""
    segment = f"podkit-cfgtest-{os.getpid()}-{time.monotonic_ns()}"
    tcp_port = free_port()
    udp_port = free_port(socket.SOCK_DGRAM)
    config = tmp_path / "cfg"
    write_like_kubelet(config, {"greeting": b"hello v1\n"})
    env = {"PODKIT_DEMO_LISTEN": f"tcp=tcp://127.0.0.1:{tcp_port},"
                                 f"udp=udp://127.0.0.1:{udp_port}",
           "PODKIT_DEMO_STATE_MB": "1", "PODKIT_DEMO_SEGMENT": segment,
           "PODKIT_DEMO_CONFIG": str(config / "greeting")}
    pod = LocalPod(tmp_path / "pod", lambda slot, version: [sys.executable, "-m", "podkit_demo"],
                   mode="warm", env=env)
    try:
        pod.start("v1")
        yield DemoPod(pod, config, ("127.0.0.1", tcp_port))
    finally:
        pod.close()
        shm.unlink(segment)


@dataclass
class SidecarProc:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    def config(self, h) -> dict:
        return h.state_json(self.port)["config"]

    def metric(self, h, line_start: str) -> list[str]:
        body = h.http_get(self.port, "/metrics").body
        return [line for line in body.splitlines() if line.startswith(line_start)]


@pytest.fixture
def sidecar(demo_pod: DemoPod, tmp_path: Path, h) -> Iterator[Callable[[str], SidecarProc]]:
    """A factory: ``sidecar("signal:HUP")`` runs ``python -m podkit sidecar`` on the demo pod's
    directory, watching its config directory, and returns once it answers /state."""
    started: list[subprocess.Popen[bytes]] = []

    def start(hook: str) -> SidecarProc:
        port = free_port()
        log = tmp_path / f"sidecar-{len(started)}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("PODKIT_")}
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "podkit", "sidecar", "--address", "127.0.0.1",
                 "--port", str(port), "--dir", str(demo_pod.pod.shared.root),
                 "--config-dir", str(demo_pod.config), "--config-hook", hook],
                env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        started.append(proc)

        def answering() -> bool:
            if proc.poll() is not None:
                pytest.fail(f"the sidecar exited with {proc.returncode}: {log.read_text()}")
            try:
                return h.http_get(port, "/healthz").status == 200
            except OSError:
                return False
        # /state answers only from serve_forever, which starts after the watch is in place
        h.wait_for(answering, f"the sidecar on port {port}")
        return SidecarProc(proc, port, log)

    yield start
    for proc in started:
        proc.terminate()
        try:
            proc.wait(timeout=h.LIVENESS_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_reload(side: SidecarProc, h) -> dict:
    """The sidecar's first recorded reload."""
    return h.wait_for(lambda: side.config(h)["last_reload"], "the sidecar's config reload")


def test_signal_hook_reloads_the_active_process_once(demo_pod: DemoPod, sidecar, h) -> None:
    pod = demo_pod.pod
    runner = pod.procs["a"].pid
    business = h.wait_for(lambda: demo_pod.business_pid("a", h), "the business process")
    assert demo_pod.reply()[:2] == ("v1", "a")
    assert demo_pod.reply()[4] == "hello v1"

    side = sidecar("signal:HUP")
    key = str(demo_pod.config)
    before = side.config(h)
    assert before == {"hook": "signal:HUP", "last_reload": None,
                      "hashes": {key: hash_files({"greeting": b"hello v1\n"})}}
    assert side.metric(h, "podkit_config_reloads_total") == []

    write_like_kubelet(demo_pod.config, {"greeting": b"hello reloaded\n"})
    last = wait_reload(side, h)
    assert last["ok"] is True, last
    assert last["hook"] == "signal:HUP"
    assert last["message"] == "slot a: OK"
    assert last["hashes"] == {key: hash_files({"greeting": b"hello reloaded\n"})}
    assert last["hashes"] != before["hashes"]
    config = side.config(h)
    assert config["hashes"] == last["hashes"] and config["last_reload"] == last
    assert side.metric(h, "podkit_config_reloads_total") == [
        'podkit_config_reloads_total{result="ok"} 1.0']
    assert side.metric(h, "podkit_config_reload_seconds_count") == [
        "podkit_config_reload_seconds_count 1.0"]

    h.wait_for(lambda: demo_pod.try_greeting() == "hello reloaded", "the new greeting")
    version, slot, _, _, greeting = demo_pod.reply()
    assert (version, slot, greeting) == ("v1", "a", "hello reloaded")
    # reloaded in place: the same processes, still the active slot
    assert demo_pod.business_pid("a", h) == business
    state = pod.state("a")
    assert state is not None and (state.role, state.pid) == ("active", runner)
    # nothing fired twice
    assert side.config(h)["last_reload"] == last
    assert side.metric(h, "podkit_config_reloads_total") == [
        'podkit_config_reloads_total{result="ok"} 1.0']


def before_the_hook(demo_pod: DemoPod, h) -> tuple[int, int, SlotState, int]:
    """Slot a's business process (pid, start time), its state record and served count."""
    business = h.wait_for(lambda: demo_pod.business_pid("a", h), "the business process")
    state = demo_pod.pod.state("a")
    assert state is not None and state.role == "active"
    return business, h.start_time(business), state, demo_pod.reply()[3]


def test_failing_hook_is_reported_and_leaves_the_process_alone(demo_pod: DemoPod, sidecar,
                                                                 h) -> None:
    pod = demo_pod.pod
    business, started, state_before, served_before = before_the_hook(demo_pod, h)

    side = sidecar("command:false")
    write_like_kubelet(demo_pod.config, {"greeting": b"never applied\n"})
    last = wait_reload(side, h)
    assert last["ok"] is False
    assert last["hook"] == "command:false"
    assert last["message"].startswith("hook command exited 1"), last
    assert last["hashes"] == {str(demo_pod.config): hash_files({"greeting": b"never applied\n"})}
    state = h.state_json(side.port)
    assert state["config"]["last_reload"] == last
    assert state["ready"] is True, state["reason"]
    assert side.metric(h, "podkit_config_reloads_total") == [
        'podkit_config_reloads_total{result="failed"} 1.0']

    # the active business process is untouched: same process, same state record, still
    # answering with the greeting it had (nobody signalled it)
    assert demo_pod.business_pid("a", h) == business
    assert h.start_time(business) == started
    assert pod.state("a") == state_before
    version, slot, _, served, greeting = demo_pod.reply()
    assert (version, slot, greeting) == ("v1", "a", "hello v1")
    assert served > served_before


def test_restart_hook_restarts_the_business_process_in_place(demo_pod: DemoPod, sidecar,
                                                            h) -> None:
    pod = demo_pod.pod
    runner = pod.procs["a"].pid
    business, started, state_before, served_before = before_the_hook(demo_pod, h)

    side = sidecar("restart")
    write_like_kubelet(demo_pod.config, {"greeting": b"hello after restart\n"})
    last = wait_reload(side, h)
    assert last["ok"] is True, last
    assert last["hook"] == "restart"
    # the answer comes once the successor is active, and names it
    assert last["message"].startswith("slot a: OK restarted, pid "), last
    successor = int(last["message"].rsplit(" ", 1)[1])
    assert successor != business

    # the old business process goes, the new one serves in the same slot and holds the lock
    h.wait_gone(business, started, "the restarted business process")
    # a process gone may be a zombie its runner has not reaped yet, still listed as its child
    h.wait_for(lambda: demo_pod.business_pid("a", h) == successor,
               f"the successor (pid {successor}) as the only business process of slot a")

    def restarted_and_active() -> bool:
        state = pod.state("a")
        new = demo_pod.business_pid("a", h)
        return (state is not None and state.role == "active" and state.since > state_before.since
                and new is not None and new != business)
    h.wait_for(restarted_and_active, "slot a active again with a new business process")
    state = pod.state("a")
    assert state is not None
    assert (state.slot, state.version, state.mode, state.pid) == ("a", "v1", "warm", runner)
    assert pod.procs["a"].poll() is None  # the slot (its podkit run) never exited
    assert pod.state("b") is not None and pod.state("b").role == "idle"

    h.wait_for(lambda: demo_pod.try_greeting() == "hello after restart",
               "the restarted process to answer")
    version, slot, _, served, greeting = demo_pod.reply()
    assert (version, slot, greeting) == ("v1", "a", "hello after restart")
    assert served > served_before  # the counter in shared memory survived the restart
    assert side.metric(h, "podkit_config_reloads_total") == [
        'podkit_config_reloads_total{result="ok"} 1.0']
    ready = h.state_json(side.port)
    assert ready["ready"] is True, ready["reason"]


def test_state_shows_new_content_only_once_its_hook_has_finished(demo_pod: DemoPod, sidecar,
                                                                 h, tmp_path: Path) -> None:
    """An operator polls /state for "this content applied": while the hook runs, /state must
    still show the previous content, or a hook about to fail would look done."""
    gate = tmp_path / "hook-may-finish"
    side = sidecar(f"command:sh -c 'while [ ! -e {gate} ]; do sleep 0.05; done'")
    old_hashes = side.config(h)["hashes"]
    new = {"greeting": b"slow hook\n"}
    write_like_kubelet(demo_pod.config, new)
    # for a second, while the hook is held, /state never runs ahead of it
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        config = side.config(h)
        assert (config["hashes"], config["last_reload"]) == (old_hashes, None), config
        time.sleep(0.05)
    gate.touch()
    last = wait_reload(side, h)
    assert last["ok"] is True
    assert side.config(h)["hashes"] == {str(demo_pod.config): hash_files(new)}
