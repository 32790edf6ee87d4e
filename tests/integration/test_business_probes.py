"""The business's own probes, run by a real ``podkit sidecar`` against the active slot of a real
demo service: a business that is alive but hung turns its slot and the pod unready; the idle
slot is never failed; a new process in the slot starts afresh. And the demo's crash switch."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.swaps import demo_pod, free_port
from podkit import shm
from podkit.localpod import LocalPod

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[tuple[LocalPod, int]]:
    segment = f"podkit-test-{os.getpid()}-{time.monotonic_ns()}"
    pod, tcp_port, _ = demo_pod(tmp_path, 1, segment)
    pod.env.update(PODKIT_DEMO_HANG_COMMAND="1", PODKIT_DEMO_CRASH_AFTER_S="1",
                   PODKIT_DEMO_CRASH_VERSION="v-crash")
    yield pod, tcp_port
    pod.close()
    shm.unlink(segment)


def start_sidecar(pod: LocalPod, probes: dict) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = dict(os.environ, PODKIT_PROBES=json.dumps(probes))
    proc = subprocess.Popen([sys.executable, "-m", "podkit", "sidecar", "--dir",
                             str(pod.shared.root), "--address", "127.0.0.1", "--port",
                             str(port)], env=env)
    return proc, port


def hang(tcp_port: int) -> None:
    with socket.create_connection(("127.0.0.1", tcp_port), timeout=2) as conn:
        conn.sendall(b"HANG\n")
        time.sleep(0.2)  # the serving loop read it


def test_a_hung_business_turns_its_slot_and_the_pod_unready(demo, h) -> None:
    pod, tcp_port = demo
    readiness = {"httpGet": {"path": "/healthz", "port": tcp_port}, "periodSeconds": 1,
                 "timeoutSeconds": 1, "failureThreshold": 2}
    sidecar, port = start_sidecar(pod, {"readiness": readiness})
    try:
        pod.start("v1")
        h.wait_for(lambda: h.http_get(port, "/readyz").status == 200, "the pod ready")
        assert h.http_get(port, "/readyz/slot/a").status == 200
        # the probes follow the active process once they have found it, which can come a
        # moment after /readyz first answers 200 (a CI run read the state before)
        h.wait_for(lambda: h.state_json(port)["business_probes"]["active"] == "a",
                   "the probes to follow slot a")
        assert h.state_json(port)["business_probes"]["probes"]["readiness"]["ok"] is True
        hang(tcp_port)
        pid = pod.procs["a"].pid
        h.wait_for(lambda: h.http_get(port, "/readyz/slot/a").status == 503,
                   "the hung slot unready", timeout=10)
        reply = h.http_get(port, "/readyz/slot/a")
        assert "readiness probe GET http://127.0.0.1" in reply.body, reply.body
        assert h.http_get(port, "/readyz").status == 503
        assert h.http_get(port, "/readyz/slot/b").status == 200  # the idle slot: never failed
        assert pod.procs["a"].poll() is None and pod.procs["a"].pid == pid  # alive, but hung
        probes = h.state_json(port)["business_probes"]
        assert probes["active"] == "a" and probes["probes"]["readiness"]["ok"] is False
    finally:
        sidecar.send_signal(signal.SIGTERM)
        sidecar.wait(10)


def test_a_failed_liveness_probe_marks_the_slot_unhealthy_until_a_new_process(demo, h) -> None:
    pod, tcp_port = demo
    liveness = {"httpGet": {"path": "/healthz", "port": tcp_port}, "periodSeconds": 1,
                "timeoutSeconds": 2, "failureThreshold": 3}  # sticky: no false alarm on load
    sidecar, port = start_sidecar(pod, {"liveness": liveness})
    try:
        pod.start("v1")
        h.wait_for(lambda: h.http_get(port, "/readyz").status == 200, "the pod ready")
        hang(tcp_port)
        h.wait_for(lambda: h.http_get(port, "/readyz/slot/a").status == 503,
                   "the slot unhealthy", timeout=20)
        assert "unhealthy: liveness probe" in h.http_get(port, "/readyz/slot/a").body
        pod.kill("a")  # a new process in the slot starts afresh
        pod.start_business("a", "v1")
        h.wait_for(lambda: h.http_get(port, "/readyz").status == 200, "the new process ready",
                   timeout=30)
    finally:
        sidecar.send_signal(signal.SIGTERM)
        sidecar.wait(10)


def test_the_crash_switch_exits_a_version_after_it_took_over(demo, h) -> None:
    pod, _ = demo
    pod.start("v1")
    pod.stop("b")
    pod.start_business("b", "v-crash")
    pod.wait_role("b", "standby", "v-crash")
    time.sleep(1.5)  # standing by does not count: the clock starts at the take-over
    assert pod.procs["b"].poll() is None
    pod.stop("a")  # a hands over: b takes over, and crashes a second later
    h.wait_for(lambda: pod.procs["b"].poll() is not None, "the crash", timeout=20)
    assert pod.procs["b"].returncode == 70
    assert "v-crash crashes as asked" in (pod.shared.root / "slot-b.log").read_text()
