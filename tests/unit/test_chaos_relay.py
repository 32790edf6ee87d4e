"""make chaos's partition: the relay carries bytes both ways, drops its connections when cut
and carries nothing while cut, and carries again once healed (real loopback sockets)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from chaos.partition import Relay


@pytest.fixture
def echo() -> Iterator[int]:
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=lambda c=conn: [c.sendall(d) for d in iter(
                lambda: c.recv(100), b"")], daemon=True).start()
    threading.Thread(target=serve, daemon=True).start()
    yield server.getsockname()[1]
    server.close()


def roundtrip(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(data)
        return conn.recv(100)


def test_cut_drops_and_holds_heal_carries_again(echo: int) -> None:
    relay = Relay(("127.0.0.1", echo))
    try:
        assert roundtrip(relay.port, b"before") == b"before"
        carried = socket.create_connection(("127.0.0.1", relay.port), timeout=5)
        carried.sendall(b"x")
        assert carried.recv(100) == b"x"
        relay.cut()
        assert carried.recv(100) == b""  # dropped
        held = socket.create_connection(("127.0.0.1", relay.port), timeout=0.5)
        held.sendall(b"lost")
        with pytest.raises(TimeoutError):
            held.recv(100)  # nothing comes back while cut
        relay.heal()
        held.settimeout(5)
        assert held.recv(100) == b""  # closed at the heal, so the client reconnects
        assert roundtrip(relay.port, b"after") == b"after"
    finally:
        relay.close()
