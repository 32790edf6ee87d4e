"""The open-loop prober (upgrade_demo.probe, the compiled tools/upgrade_demo/prober) as a process
against real sockets: it counts every request, loses none to a server that answers, counts refusals
and silences as lost, follows a new target, counts exactly the requests a target dropped, and keeps
running when its target holds more connections open than it may have descriptors."""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.swaps import demo_pod, free_port
from podkit.localpod import LocalPod
from testbed import host
from upgrade_demo.probe import (
    IN_FLIGHT_BOUND,
    TIMEOUT,
    ProbeProcess,
    ProbeRun,
    Stream,
    StreamRecords,
)
from upgrade_demo.probe_stats import figures
from upgrade_demo.prober.bench import responder

pytestmark = pytest.mark.integration
LOOPBACK = "127.0.0.1"
CLONE_NEWNET = 0x40000000


@pytest.fixture
def demo() -> Iterator[tuple[LocalPod, int, int]]:
    with tempfile.TemporaryDirectory() as root:
        pod, tcp_port, udp_port = demo_pod(Path(root), 1, f"probe-{time.monotonic_ns()}")
        pod.start("v1")
        try:
            yield pod, tcp_port, udp_port
        finally:
            pod.close()


def run_for(seconds: float, *probers: ProbeProcess) -> list[ProbeRun]:
    for prober in probers:
        prober.start()
    try:
        time.sleep(seconds)
        return [prober.stop() for prober in probers]
    finally:
        for prober in probers:
            prober.kill()


def reasons(rec: StreamRecords) -> set[str]:
    return {why for _, why in rec.failures}


def each_request_once(rec: StreamRecords) -> bool:
    """Every request is either answered or failed, and failed at most once."""
    failed = sorted(i for i, _ in rec.failures)
    answered = [i for i, lat in enumerate(rec.latency_ns) if lat >= 0]
    return sorted(failed + answered) == list(range(len(rec.due_ns)))


def test_a_serving_demo_answers_every_request(demo) -> None:
    _, tcp_port, udp_port = demo
    run, = run_for(1.0, ProbeProcess({"tcp": Stream("tcp", (LOOPBACK, tcp_port)),
                                      "udp": Stream("udp", (LOOPBACK, udp_port))}, rate_hz=500))
    for rec in run.streams.values():
        found = figures(rec)
        assert 300 < found.sent < 700, found  # about 500 in a second
        assert found.lost == 0 and rec.failures == [], rec.errors
        assert rec.versions == ["v1"]
        assert len(rec.lateness_ns) == found.sent and min(rec.lateness_ns) >= 0
    assert run.usage.requests == sum(len(r.due_ns) for r in run.streams.values())
    assert run.usage.cpu_ns > 0 and run.usage.wall_ns > 0
    assert run.usage.realtime is (os.geteuid() == 0)


def test_refusals_and_silence_are_lost_requests() -> None:
    closed_tcp, silent_udp = free_port(), free_port(socket.SOCK_DGRAM)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as bound:  # swallows datagrams
        bound.bind((LOOPBACK, silent_udp))
        run, = run_for(0.5, ProbeProcess({"tcp": Stream("tcp", (LOOPBACK, closed_tcp)),
                                          "udp": Stream("udp", (LOOPBACK, silent_udp))},
                                         rate_hz=200, timeout_s=0.2))
    tcp, udp = run.streams["tcp"], run.streams["udp"]
    assert tcp.errors == {"ECONNREFUSED": figures(tcp).sent} and figures(tcp).sent
    assert udp.errors == {TIMEOUT: figures(udp).sent} and figures(udp).sent
    assert {i for i, _ in udp.failures} == set(range(len(udp.due_ns)))


def test_retarget_moves_the_stream(demo) -> None:
    _, tcp_port, _ = demo
    prober = ProbeProcess({"tcp": Stream("tcp", (LOOPBACK, free_port()))}, rate_hz=200).start()
    try:
        time.sleep(0.3)
        prober.retarget("tcp", (LOOPBACK, tcp_port))
        time.sleep(0.5)
        rec = prober.stop().streams["tcp"]
    finally:
        prober.kill()
    lost_at = [i for i, _ in rec.failures]
    answered = [i for i, lat in enumerate(rec.latency_ns) if lat >= 0]
    assert lost_at and answered and max(lost_at) < min(answered), "lost only before the move"


# --- a target that drops, in a network namespace of the test's own --------------------------

@contextlib.contextmanager
def own_network_namespace() -> Iterator[str]:
    """This thread (and the processes it starts) inside a new network namespace with only a
    loopback interface; its name, for ``ip netns exec``."""
    host.ensure_packages(["iproute2", "iptables"])
    name = f"podkit-probe-test-{os.getpid()}"
    host.run(["ip", "netns", "add", name])
    try:
        host.run(["ip", "-n", name, "link", "set", "lo", "up"])
        libc = ctypes.CDLL(None, use_errno=True)
        with open("/proc/thread-self/ns/net") as home, open(f"/run/netns/{name}") as ns:
            if libc.setns(ns.fileno(), CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns into {name}")
            try:
                yield name
            finally:
                if libc.setns(home.fileno(), CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns back to the test's namespace")
    finally:
        host.run(["ip", "netns", "delete", name], check=False)


def iptables(netns: str, *rule: str) -> str:
    return host.run(["ip", "netns", "exec", netns, "iptables", *rule]).stdout


def dropped(netns: str) -> dict[str, int]:
    """Packets the namespace's DROP rules dropped, by protocol."""
    listing = iptables(netns, "-L", "INPUT", "-v", "-x", "-n")
    names = {"6": "tcp", "17": "udp"}  # -n prints protocol numbers
    return {names.get(proto, proto): int(packets) for packets, proto in
            re.findall(r"^\s*(\d+)\s+\d+\s+DROP\s+(\w+)", listing, re.M)}


def syn_retransmits(netns: str) -> int:
    lines = host.run(["ip", "netns", "exec", netns, "cat", "/proc/net/netstat"]).stdout.split("\n")
    names, values = next((a.split(), b.split()) for a, b in zip(lines, lines[1:])
                         if a.startswith("TcpExt:") and b.startswith("TcpExt:"))
    return int(dict(zip(names, values))["TCPSynRetrans"])


def test_a_target_dropping_for_3_s_costs_exactly_the_dropped_requests() -> None:
    """For 3 s the namespace drops every SYN to the TCP port and every datagram to the UDP
    port; the prober runs on, and its lost requests are exactly the packets the rules dropped:
    one contiguous run per stream, answered requests before and after. Exact, not timed: a
    request's SYN goes once (the 0.3 s timeout closes it before TCP would resend at 1 s, which
    the namespace's TCPSynRetrans counter confirms), a datagram once."""
    with own_network_namespace() as netns, responder() as (tcp_port, udp_port):
        prober = ProbeProcess({"tcp": Stream("tcp", (LOOPBACK, tcp_port)),
                               "udp": Stream("udp", (LOOPBACK, udp_port))},
                              rate_hz=200, timeout_s=0.3).start()
        try:
            time.sleep(1.0)
            rules = [("-p", "tcp", "--syn", "--dport", str(tcp_port)),
                     ("-p", "udp", "--dport", str(udp_port))]
            for rule in rules:
                iptables(netns, "-I", "INPUT", *rule, "-j", "DROP")
            time.sleep(3.0)
            for rule in rules:  # let packets pass above the DROPs: their counts stand still
                iptables(netns, "-I", "INPUT", "1", *rule, "-j", "ACCEPT")
            counts = dropped(netns)
            time.sleep(1.0)
            run = prober.stop()
        finally:
            prober.kill()
        retransmits = syn_retransmits(netns)
    assert retransmits == 0, "a SYN was resent: the count below would not be one per request"
    assert set(counts) == {"tcp", "udp"} and min(counts.values()) > 0, counts
    for proto, rec in run.streams.items():
        lost_at = sorted(i for i, _ in rec.failures)
        answered = [i for i, lat in enumerate(rec.latency_ns) if lat >= 0]
        assert figures(rec).lost == counts[proto], (proto, rec.errors, counts)
        assert reasons(rec) == {TIMEOUT}, rec.errors
        assert lost_at == list(range(lost_at[0], lost_at[-1] + 1)), "one run of losses"
        assert min(answered) < lost_at[0] and max(answered) > lost_at[-1], "answered around it"
        assert each_request_once(rec)


def test_a_silent_target_beyond_the_open_file_limit_costs_requests_not_the_prober() -> None:
    """Under ``ulimit -n 1024`` a TCP target that accepts connections but never answers holds
    about 2,000 of them at 1 kHz and a 2 s timeout. With a bound above the limit the prober
    runs out of descriptors (EMFILE: that request lost); with the default bound (the limit less
    a reserve) it never does, and sends nothing past the bound. Both run to the end."""
    with socket.create_server((LOOPBACK, 0), backlog=4096) as listener, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind((LOOPBACK, 0))
        streams = {"tcp": Stream("tcp", listener.getsockname()),
                   "udp": Stream("udp", silent.getsockname())}
        past_the_limit, bounded = run_for(
            3.0, ProbeProcess(streams, timeout_s=2.0, max_in_flight=10_000, nofile=1024),
            ProbeProcess(streams, timeout_s=2.0, nofile=1024))
    tcp = past_the_limit.streams["tcp"]
    assert tcp.errors.get("EMFILE", 0) > 0 and reasons(tcp) == {TIMEOUT, "EMFILE"}, tcp.errors
    assert bounded.usage.max_in_flight == 1024 - 64
    assert bounded.usage.peak_in_flight == bounded.usage.max_in_flight
    for run in (past_the_limit, bounded):
        for rec in run.streams.values():
            assert figures(rec).lost == figures(rec).sent > 0 and each_request_once(rec)
    for rec in bounded.streams.values():
        assert reasons(rec) <= {TIMEOUT, IN_FLIGHT_BOUND} and "EMFILE" not in rec.errors
    assert any(IN_FLIGHT_BOUND in reasons(rec) for rec in bounded.streams.values())


def test_one_streams_outage_costs_no_other_stream_a_request(demo) -> None:
    """Under ``ulimit -n 1024``, a TCP target that holds every connection without a reply
    beside the demo: the silent stream reaches its share of the bound (half the descriptors,
    two TCP streams), and the demo's stream loses nothing to it."""
    _, tcp_port, _ = demo
    with socket.create_server((LOOPBACK, 0), backlog=4096) as silent:
        run, = run_for(3.0, ProbeProcess({"silent": Stream("tcp", silent.getsockname()),
                                          "demo": Stream("tcp", (LOOPBACK, tcp_port))},
                                         timeout_s=2.0, nofile=1024))
    assert run.usage.max_in_flight == 1024 - 64
    held, served = run.streams["silent"], run.streams["demo"]
    assert IN_FLIGHT_BOUND in reasons(held) and "EMFILE" not in held.errors, held.errors
    assert figures(served).lost == 0 and served.failures == [], served.errors
    assert each_request_once(held) and each_request_once(served)
