"""The sidecar over HTTP, against real slot processes: /healthz, /readyz, /state, /metrics."""

from __future__ import annotations

import json
import selectors
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from podkit.layout import SharedDir

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def metric_lines(body: str) -> list[str]:
    return [line for line in body.splitlines() if line and not line.startswith("#")]


def test_endpoints_follow_a_swap(stub_pod, sidecar_for, h) -> None:
    sp = stub_pod("warm")
    port = sidecar_for(sp.shared).port

    assert h.http_get(port, "/healthz") == h.http_get(port, "/healthz?probe=1")
    assert h.http_get(port, "/healthz").status == 200
    empty = h.http_get(port, "/readyz")
    assert (empty.status, empty.body) == (503, "slot a has written no version yet\n")
    assert "podkit_ready 0.0" in metric_lines(h.http_get(port, "/metrics").body)
    unknown = h.http_get(port, "/nope")
    assert unknown.status == 404 and "/readyz" in unknown.body

    sp.pod.start("v1")
    ready = h.http_get(port, "/readyz")
    assert (ready.status, ready.body) == (200, "slot a active at v1\n")
    state = h.state_json(port)
    assert state["ready"] is True and state["lock_held"] is True
    assert set(state["slots"]) == {"a", "b"}
    a, b = state["slots"]["a"], state["slots"]["b"]
    assert (a["version"], a["state"]["role"], a["state"]["mode"], a["error"]) == (
        "v1", "active", "warm", None)
    assert a["state"]["pid"] == sp.pod.procs["a"].pid
    assert (b["version"], b["state"]["role"], b["state"]["mode"]) == ("v1", "idle", "pause")
    metrics = metric_lines(h.http_get(port, "/metrics").body)
    assert "podkit_ready 1.0" in metrics
    assert "podkit_handover_lock_held 1.0" in metrics
    assert 'podkit_slot_info{mode="warm",role="active",slot="a",version="v1"} 1.0' in metrics
    assert 'podkit_slot_info{mode="pause",role="idle",slot="b",version="v1"} 1.0' in metrics
    assert 'podkit_slot_active{slot="a"} 1.0' in metrics
    assert 'podkit_slot_active{slot="b"} 0.0' in metrics

    # mid-swap: b stands by at v2 while a serves v1
    sp.pod.stop("b")
    sp.pod.start_business("b", "v2")
    sp.pod.wait_role("b", "standby", "v2")
    mid = h.http_get(port, "/readyz")
    assert (mid.status, mid.body) == (503, "versions differ: a=v1 b=v2\n")
    assert h.state_json(port)["slots"]["b"]["state"]["role"] == "standby"
    metrics = metric_lines(h.http_get(port, "/metrics").body)
    assert "podkit_ready 0.0" in metrics
    assert 'podkit_slot_info{mode="warm",role="standby",slot="b",version="v2"} 1.0' in metrics

    # converged on v2
    sp.pod.stop("a")
    sp.pod.start_pause("a", "v2")
    sp.pod.wait_role("b", "active", "v2")
    sp.pod.wait_role("a", "idle", "v2")
    done = h.http_get(port, "/readyz")
    assert (done.status, done.body) == (200, "slot b active at v2\n")
    assert 'podkit_slot_active{slot="b"} 1.0' in metric_lines(h.http_get(port, "/metrics").body)


def test_readyz_says_when_the_active_slot_has_exited(stub_pod, sidecar_for, h) -> None:
    sp = stub_pod("wrapped")
    port = sidecar_for(sp.shared).port
    sp.pod.start("v1")
    sp.wait_event("active", "a", "v1")  # the wrapped business has installed its handler
    assert h.http_get(port, "/readyz").status == 200
    assert sp.pod.stop("a") == 0  # a leaves without a successor: nobody serves
    reply = h.http_get(port, "/readyz")
    assert (reply.status, reply.body) == (503, "0 slots say active (want exactly 1)\n")
    state = h.state_json(port)
    assert state["lock_held"] is False and state["slots"]["a"]["state"]["role"] == "exited"


def read_line(proc: subprocess.Popen[bytes], timeout: float) -> str:
    """The first stdout line of ``proc``, or fail if it prints none within ``timeout``."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        data = b""
        deadline = time.monotonic() + timeout
        while b"\n" not in data:
            if not selector.select(max(0.0, deadline - time.monotonic())):
                pytest.fail(f"the sidecar printed nothing within {timeout}s", pytrace=False)
            chunk = proc.stdout.read1(256)
            if not chunk:
                pytest.fail(f"the sidecar exited with {proc.wait()} before printing",
                            pytrace=False)
            data += chunk
    return data.split(b"\n", 1)[0].decode()


def test_sidecar_cli_serves_and_stops_on_sigterm(tmp_path: Path, cli, h) -> None:
    proc = cli.start("sidecar", "--dir", str(tmp_path), "--address", "127.0.0.1", "--port", "0",
                     stdout=subprocess.PIPE)
    try:
        line = read_line(proc, h.LIVENESS_S)
        assert line.startswith(f"podkit sidecar: serving {tmp_path} on 127.0.0.1:"), line
        port = int(line.rsplit(":", 1)[1])
        assert port > 0
        assert h.http_get(port, "/healthz").status == 200
        assert h.http_get(port, "/readyz").status == 503
        assert json.loads(h.http_get(port, "/state").body)["ready"] is False
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


def test_sidecar_cli_port_in_use(tmp_path: Path, cli) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = cli.run("sidecar", "--dir", str(tmp_path), "--address", "127.0.0.1",
                       "--port", str(port))
    assert done.returncode != 0
    assert done.stderr.splitlines() == [done.stderr.strip()]
    assert done.stderr.startswith(f"podkit: cannot listen on 127.0.0.1:{port}")
    assert "--port" in done.stderr


def test_sidecar_reports_a_corrupt_file_and_recovers(tmp_path: Path, sidecar_for, h) -> None:
    shared = SharedDir(tmp_path)
    port = sidecar_for(shared).port
    shared.state_file("b").write_text('{"slot": "b", "role": "idle"')
    reply = h.http_get(port, "/readyz")
    assert reply.status == 503
    assert str(shared.state_file("b")) in reply.body and reply.body.count("\n") == 1
    state = h.state_json(port)
    assert str(shared.state_file("b")) in state["slots"]["b"]["error"]
    assert state["slots"]["a"]["error"] is None
    assert h.http_get(port, "/metrics").status == 200
    shared.state_file("b").unlink()
    assert h.http_get(port, "/readyz").body == "slot a has written no version yet\n"
