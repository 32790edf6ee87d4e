"""The open-loop probe (e2e.probe) as a process against real sockets: it counts every
request, loses none to a server that answers, counts refusals and silences as lost, and
follows a new target."""

from __future__ import annotations

import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e.probe import ProbeProcess
from e2e.probe_stats import figures
from podkit.bench.state import demo_pod, free_port
from podkit.localpod import LocalPod

pytestmark = pytest.mark.integration


@pytest.fixture
def demo() -> Iterator[tuple[LocalPod, int, int]]:
    with tempfile.TemporaryDirectory() as root:
        pod, tcp_port, udp_port = demo_pod(Path(root), 1, f"probe-{time.monotonic_ns()}")
        pod.start("v1")
        try:
            yield pod, tcp_port, udp_port
        finally:
            pod.close()


def run_for(seconds: float, *probes: ProbeProcess) -> list:
    for probe in probes:
        probe.start()
    time.sleep(seconds)
    return [probe.stop() for probe in probes]


def test_a_serving_demo_answers_every_request(demo) -> None:
    _, tcp_port, udp_port = demo
    tcp, udp = run_for(1.0, ProbeProcess("tcp", ("127.0.0.1", tcp_port), rate_hz=500),
                       ProbeProcess("udp", ("127.0.0.1", udp_port), rate_hz=500))
    for rec in (tcp, udp):
        found = figures(rec)
        assert 300 < found.sent < 700, found  # about 500 in a second
        assert found.lost == 0 and rec.failures == [], rec.errors
        assert rec.versions == ["v1"]


def test_refusals_and_silence_are_lost_requests() -> None:
    closed_tcp, silent_udp = free_port(), free_port(socket.SOCK_DGRAM)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as bound:  # swallows datagrams
        bound.bind(("127.0.0.1", silent_udp))
        tcp, udp = run_for(0.5, ProbeProcess("tcp", ("127.0.0.1", closed_tcp), rate_hz=200),
                           ProbeProcess("udp", ("127.0.0.1", silent_udp), rate_hz=200,
                                        timeout_s=0.2))
    assert tcp.errors == {"ConnectionRefusedError": figures(tcp).sent} and figures(tcp).sent
    assert udp.errors == {"TimeoutError": figures(udp).sent} and figures(udp).sent
    assert {i for i, _ in udp.failures} == set(range(len(udp.due_ns)))


def test_retarget_moves_the_stream(demo) -> None:
    _, tcp_port, _ = demo
    probe = ProbeProcess("tcp", ("127.0.0.1", free_port()), rate_hz=200).start()
    time.sleep(0.3)
    probe.retarget(("127.0.0.1", tcp_port))
    time.sleep(0.5)
    rec = probe.stop()
    lost_at = [i for i, _ in rec.failures]
    answered = [i for i, lat in enumerate(rec.latency_ns) if lat >= 0]
    assert lost_at and answered and max(lost_at) < min(answered), "lost only before the move"
