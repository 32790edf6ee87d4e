"""The reference service never dies from a client: hostile and lazy clients across swaps."""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.swaps import demo_pod
from podkit import shm
from podkit.localpod import LocalPod
from podkit_demo.client import LoadLoop, tcp_get, tcp_state
from podkit_demo.service import MAX_REQUEST

Address = tuple[str, int]
SWAPS = 10
_RESET_ON_CLOSE = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close sends RST


@pytest.fixture
def pod(tmp_path: Path) -> Iterator[tuple[LocalPod, Address]]:
    segment = f"podkit-test-{os.getpid()}-{time.monotonic_ns()}"
    local, tcp_port, _ = demo_pod(tmp_path, 1, segment)
    try:
        yield local, ("127.0.0.1", tcp_port)
    finally:
        local.close()
        shm.unlink(segment)


def _reset_mid_request(address: Address) -> None:
    """Half a request, then a reset: the service reads the part, then ECONNRESET."""
    sock = socket.create_connection(address, timeout=2)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET_ON_CLOSE)
    sock.sendall(b"GET")
    sock.close()


def _reset_after_request(address: Address) -> None:
    """A whole request, then a reset before the reply is read."""
    sock = socket.create_connection(address, timeout=2)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET_ON_CLOSE)
    sock.sendall(b"GET 1\n")
    sock.close()


def _half_closed(address: Address) -> bytes:
    """A request and a half-close: the reply must still come, then EOF."""
    with socket.create_connection(address, timeout=5) as sock:
        sock.sendall(b"GET 2\n")
        sock.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := sock.recv(4096):
            reply += chunk
        return reply


def _too_long(address: Address) -> bytes:
    with socket.create_connection(address, timeout=5) as sock:
        sock.sendall(b"G" * (MAX_REQUEST + 10))
        reply = b""
        while chunk := sock.recv(4096):
            reply += chunk
        return reply


class Hostile:
    """Clients that reset, half-close and overflow, in a loop until stopped."""

    def __init__(self, address: Address) -> None:
        self.address = address
        self.rounds = 0
        self.half_closed_replies: list[bytes] = []
        self.too_long_replies: list[bytes] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                _reset_mid_request(self.address)
                _reset_after_request(self.address)
                self.half_closed_replies.append(_half_closed(self.address))
                self.too_long_replies.append(_too_long(self.address))
            except OSError as exc:
                self.errors.append(f"{type(exc).__name__}: {exc}")
            self.rounds += 1
            time.sleep(0.002)

    def __enter__(self) -> Hostile:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()


def _idle_connections(address: Address, count: int) -> list[socket.socket]:
    conns = [socket.create_connection(address, timeout=10) for _ in range(count)]
    for conn in conns:  # one request each: a keep-alive client between requests
        conn.sendall(b"GET 0\n")
        assert conn.recv(4096).startswith(b"v")
    return conns


def test_no_client_ends_the_service_across_swaps(pod: tuple[LocalPod, Address]) -> None:
    local, address = pod
    local.start("v1")
    keepalive = LoadLoop(address, "keepalive").start()
    new_connections = LoadLoop(address, "tcp").start()
    idle_by_swap: list[list[socket.socket]] = []
    resets = 0
    with Hostile(address) as hostile:
        for n in range(SWAPS):
            idle_by_swap.append(_idle_connections(address, 3))
            before = local.active_slot()
            assert local.procs[before].poll() is None, f"slot {before} died before its swap"
            resets += tcp_state(address)["client_errors"].get("reset", 0)
            local.swap("v2" if n % 2 == 0 else "v1")
    kept, fresh = keepalive.stop(), new_connections.stop()
    final = tcp_state(address)
    # Every process stopped was stopped by its swap, and exited cleanly after handing over.
    assert [code for _, code in local.exits if code != 0] == [], local.exits
    assert local.procs[local.active_slot()].poll() is None
    # The idle keep-alive connections of each swap were closed by the process that handed
    # over (EOF, not left hanging): the client reconnects to the successor.
    for conns in idle_by_swap[:-1]:
        for conn in conns:
            assert conn.recv(4096) == b""
            conn.close()
    for conn in idle_by_swap[-1]:
        conn.close()
    assert hostile.rounds > SWAPS and hostile.errors == []
    assert all(r.startswith((b"v1 ", b"v2 ")) and r.endswith(b"\n")
               for r in hostile.half_closed_replies)
    assert set(hostile.too_long_replies) == {b"ERR request too long\n"}
    # No request of a well-behaved client was lost; the keep-alive one moved with every swap.
    assert fresh.failures == [] and fresh.lost == 0
    assert kept.failures == [] and kept.lost == 0
    assert len(kept.handover_gaps_ms()) == SWAPS
    assert kept.retries <= SWAPS  # at most one request re-sent per graceful close
    assert final["version"] == ("v1" if SWAPS % 2 == 0 else "v2")
    assert resets >= 1, "no reset reached the service: the test drove none"
    assert tcp_get(address, 99).startswith(final["version"].encode())
