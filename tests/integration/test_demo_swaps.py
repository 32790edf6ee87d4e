"""The demo service across real A/B swaps: state, connections and listeners survive."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.swaps import check_shm_room, demo_pod
from podkit import shm
from podkit.localpod import LocalPod
from podkit_demo.client import LoadLoop, tcp_get, tcp_state, tcp_who


@pytest.fixture
def segment_name() -> Iterator[str]:
    name = f"podkit-test-{os.getpid()}-{time.monotonic_ns()}"
    yield name
    shm.unlink(name)


def _pod(tmp_path: Path, state_mb: int, segment: str) -> tuple[LocalPod, tuple[str, int],
                                                                 tuple[str, int]]:
    pod, tcp_port, udp_port = demo_pod(tmp_path, state_mb, segment)
    return pod, ("127.0.0.1", tcp_port), ("127.0.0.1", udp_port)


def test_one_gib_of_state_survives_twenty_swaps(tmp_path: Path, segment_name: str) -> None:
    check_shm_room((1 << 30) + (64 << 20))
    pod, tcp, _ = _pod(tmp_path, 1024, segment_name)
    try:
        pod.start("v1")
        first = tcp_state(tcp)
        assert first["intact"] and first["blob_size"] == 1 << 30
        requests = 0
        for n in range(20):
            version = "v2" if n % 2 == 0 else "v1"
            pod.swap(version)
            reply = tcp_get(tcp, n).split()
            requests += 1
            assert reply[0].decode() == version
            assert int(reply[3]) == requests  # the counter in shared memory went on counting
        last = tcp_state(tcp)
    finally:
        pod.close()
    assert last["intact"], "the 1 GiB blob changed across the swaps"
    assert last["blob_crc"] == first["blob_crc_at_create"]
    assert last["generation"] == first["generation"] + 20  # one clean seal per hand-over
    assert last["served"] == 20


def test_who_names_the_answering_process(tmp_path: Path, segment_name: str) -> None:
    pod, tcp, _ = _pod(tmp_path, 1, segment_name)
    try:
        pod.start("v1")
        before = tcp_who(tcp)
        pod.swap("v2")
        after = tcp_who(tcp)
    finally:
        pod.close()
    assert before[:2] == ("v1", "a") and after[:2] == ("v2", "b")
    assert before[2] != after[2] and all("@" in who[2] for who in (before, after))


def test_no_request_lost_across_a_hundred_swaps(tmp_path: Path, segment_name: str) -> None:
    pod, tcp, udp = _pod(tmp_path, 1, segment_name)
    try:
        pod.start("v1")
        tcp_load = LoadLoop(tcp, "tcp").start()
        udp_load = LoadLoop(udp, "udp").start()
        for n in range(100):
            pod.swap("v2" if n % 2 == 0 else "v1")
        tcp_result, udp_result = tcp_load.stop(), udp_load.stop()
        served = tcp_state(tcp)["served"]
    finally:
        pod.close()
    print(f"tcp sent={tcp_result.sent} lost={tcp_result.lost}; "
          f"udp sent={udp_result.sent} lost={udp_result.lost}")
    assert tcp_result.failures == []
    assert tcp_result.lost == 0
    assert len(tcp_result.handover_gaps_ms()) == 100, "every swap changed the answering version"
    assert set(tcp_result.versions) == {"v1", "v2"}
    # UDP has no connection to keep: what was lost is reported, and the shared socket buffer
    # should keep it at zero.
    assert udp_result.sent == len(udp_result.replies) + udp_result.lost
    assert udp_result.lost == 0, udp_result.failures[:5]
    assert served >= len(tcp_result.replies) + len(udp_result.replies)


def test_killed_active_slot_hands_listeners_to_the_standby(tmp_path: Path,
                                                           segment_name: str) -> None:
    pod, tcp, _ = _pod(tmp_path, 1, segment_name)
    try:
        pod.start("v1", active="a")
        pod.stop("b")  # the idle pause gives way to a v2 standby, as in a swap
        pod.start_business("b", "v2")
        pod.wait_role("b", "standby", "v2")
        load = LoadLoop(tcp, "tcp").start()
        time.sleep(0.2)
        os.kill(pod.procs["a"].pid, signal.SIGKILL)
        pod.wait_role("b", "active", "v2")
        time.sleep(0.2)
        result = load.stop()
    finally:
        pod.close()
    # Nothing is refused: the listener never closed. The one request the killed process had
    # accepted (the client sends one at a time) dies with it, as any in-flight work of a
    # crashed process does.
    assert not [f for f in result.failures if "Refused" in f], result.failures
    assert len(result.failures) <= 1, result.failures
    assert result.reply_versions[0] == "v1" and result.reply_versions[-1] == "v2"
