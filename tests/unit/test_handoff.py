"""Unit tests of podkit.handoff: specs, the wire description, matching, stale socket files.

No processes here: the hand-off server runs in a thread of the test process, which is enough
to exercise SCM_RIGHTS (a process may pass descriptors to itself).
"""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from podkit.errors import PodkitError
from podkit.handoff import (
    HEADER,
    MAGIC,
    MAX_JSON_BYTES,
    Acceptor,
    HandoffMessage,
    HandoffServer,
    ListenerInfo,
    ListenerSet,
    ListenerSpec,
    acquire_listeners,
    check_match,
    fetch_listeners,
    parse_specs,
)
from podkit.layout import SharedDir

SPECS = ["web=tcp://127.0.0.1:0", "rtp=udp://127.0.0.1:0"]


def descriptors_of(sock: socket.socket) -> int:
    """How many descriptors of this process refer to the same kernel socket as ``sock``."""
    target = os.readlink(f"/proc/self/fd/{sock.fileno()}")
    count = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{name}") == target
        except OSError:
            pass  # closed meanwhile
    return count


# --- specs ------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, name, kind, host, port, family", [
    ("web=tcp://0.0.0.0:8080", "web", "tcp", "0.0.0.0", 8080, "inet"),
    ("rtp=udp://127.0.0.1:5000", "rtp", "udp", "127.0.0.1", 5000, "inet"),
    ("web6=tcp://[::]:0", "web6", "tcp", "::", 0, "inet6"),
    ("media.v6_1=udp://[::1]:65535", "media.v6_1", "udp", "::1", 65535, "inet6"),
])
def test_spec_parses(text: str, name: str, kind: str, host: str, port: int,
                     family: str) -> None:
    spec = ListenerSpec.parse(text)
    assert (spec.name, spec.type, spec.host, spec.port, spec.family) == (
        name, kind, host, port, family)
    assert ListenerSpec.parse(str(spec)) == spec


@pytest.mark.parametrize("text, says", [
    ("tcp://0.0.0.0:80", "not valid"),
    ("-web=tcp://0.0.0.0:80", "name"),
    ("web=sctp://0.0.0.0:80", "tcp or udp"),
    ("web=tcp://localhost:80", "not an IP address"),
    ("web=tcp://::1:80", "not valid"),
    ("web=tcp://[127.0.0.1]:80", "brackets are for IPv6"),
    ("web=tcp://:80", "no host"),
    ("web=tcp://0.0.0.0:65536", "out of range"),
    ("web=tcp://0.0.0.0", "not valid"),
])
def test_bad_spec_says_what_to_fix(text: str, says: str) -> None:
    with pytest.raises(PodkitError, match=says):
        ListenerSpec.parse(text)


def test_duplicate_names_are_refused() -> None:
    with pytest.raises(PodkitError, match="'web' is given twice"):
        parse_specs(["web=tcp://0.0.0.0:80", "web=udp://0.0.0.0:80"])


# --- the wire description ---------------------------------------------------------------------

def test_description_round_trip() -> None:
    message = HandoffMessage(pid=42, listeners=(
        ListenerInfo("web", "inet", "tcp", "127.0.0.1", 8080),
        ListenerInfo("rtp", "inet6", "udp", "::", 5000)))
    data = message.encode()
    magic, length = HEADER.unpack_from(data)
    assert magic == MAGIC and length == len(data) - HEADER.size
    document = json.loads(data[HEADER.size:])
    assert document["protocol"] == 1
    assert document["listeners"][1] == {"name": "rtp", "family": "inet6", "type": "udp",
                                        "address": {"host": "::", "port": 5000}}
    assert HandoffMessage.decode(data) == message


def _framed(document: object) -> bytes:
    body = json.dumps(document).encode()
    return HEADER.pack(MAGIC, len(body)) + body


@pytest.mark.parametrize("data, says", [
    (b"PKH", "shorter than its header"),
    (HEADER.pack(b"HTTP", 2) + b"{}", "something else answers"),
    (HEADER.pack(MAGIC, MAX_JSON_BYTES + 1), "over the limit"),
    (HEADER.pack(MAGIC, 10) + b"{}", "stopped half-way"),
    (HEADER.pack(MAGIC, 3) + b"{{{", "not JSON"),
    (_framed([]), "not a JSON object"),
    (_framed({"protocol": 2, "pid": 1, "listeners": []}), "protocol 2"),
    (_framed({"protocol": 1, "listeners": []}), "lacks"),
    (_framed({"protocol": 1, "pid": 1, "listeners": [{"name": "x"}]}), "malformed"),
    (_framed({"protocol": 1, "pid": 1, "listeners": [
        {"name": "x", "family": "unix", "type": "tcp", "address": {"host": "a", "port": 1}}]}),
     "invalid"),
])
def test_bad_description_is_refused(data: bytes, says: str) -> None:
    with pytest.raises(PodkitError, match=says):
        HandoffMessage.decode(data)


# --- matching ---------------------------------------------------------------------------------

def test_mismatched_names_name_both_sides() -> None:
    specs = parse_specs(["web=tcp://0.0.0.0:8080", "admin=tcp://0.0.0.0:9000"])
    infos = [ListenerInfo("web", "inet", "tcp", "0.0.0.0", 8080),
             ListenerInfo("metrics", "inet", "tcp", "0.0.0.0", 9000)]
    with pytest.raises(PodkitError) as caught:
        check_match(specs, infos)
    text = str(caught.value)
    assert "no listener 'admin'" in text and "'metrics'" in text
    assert "same listener names" in text


def test_port_zero_accepts_any_port_but_address_and_type_must_match() -> None:
    check_match(parse_specs(["web=tcp://127.0.0.1:0"]),
                [ListenerInfo("web", "inet", "tcp", "127.0.0.1", 40000)])
    with pytest.raises(PodkitError, match="port 40000, asked for port 8080"):
        check_match(parse_specs(["web=tcp://127.0.0.1:8080"]),
                    [ListenerInfo("web", "inet", "tcp", "127.0.0.1", 40000)])
    with pytest.raises(PodkitError, match="inet/udp, asked for inet/tcp"):
        check_match(parse_specs(["web=tcp://127.0.0.1:0"]),
                    [ListenerInfo("web", "inet", "udp", "127.0.0.1", 40000)])
    with pytest.raises(PodkitError, match="bound to 0.0.0.0, asked for 127.0.0.1"):
        check_match(parse_specs(["web=tcp://127.0.0.1:0"]),
                    [ListenerInfo("web", "inet", "tcp", "0.0.0.0", 40000)])


def test_received_listeners_that_do_not_match_are_refused_and_closed(tmp_path: Path) -> None:
    with ListenerSet.bind(SPECS) as listeners, HandoffServer(tmp_path, listeners):
        with pytest.raises(PodkitError, match="no listener 'admin'"):
            acquire_listeners(tmp_path, ["web=tcp://127.0.0.1:0", "admin=tcp://127.0.0.1:0"])
        assert descriptors_of(listeners["web"]) == 1
        assert descriptors_of(listeners["rtp"]) == 1


# --- serving and receiving in one process -----------------------------------------------------

def test_received_copies_are_the_same_sockets(tmp_path: Path) -> None:
    with ListenerSet.bind(["web=tcp://127.0.0.1:0", "rtp=udp://127.0.0.1:0",
                           "web6=tcp://[::1]:0"]) as listeners:
        with HandoffServer(tmp_path, listeners) as server:
            # asked in another order: the result follows the order asked for
            copies = acquire_listeners(tmp_path, ["web6=tcp://[::1]:0", "rtp=udp://127.0.0.1:0",
                                                  "web=tcp://127.0.0.1:0"])
        assert server.served == 1  # counted once the server thread has been joined
        with copies:
            assert copies.origin == "received" and copies.peer_pid == os.getpid()
            assert copies.names == ["web6", "rtp", "web"]
            for name in listeners.names:
                assert copies.address(name) == listeners.address(name)
                assert copies[name].fileno() != listeners[name].fileno()
            # a connection made to the original is accepted through the copy
            with socket.create_connection(listeners.address("web")) as client:
                with copies.acceptor() as acceptor:
                    got = acceptor.accept(copies["web"])
                    assert got is not None
                    with got[0] as conn:
                        client.sendall(b"hi")
                        assert conn.recv(2) == b"hi"
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
                sender.sendto(b"dgram", listeners.address("rtp"))
                with copies.acceptor() as acceptor:
                    received = acceptor.recvfrom(copies["rtp"], 64)
                    assert received is not None and received[0] == b"dgram"


def test_no_server_binds_fresh(tmp_path: Path) -> None:
    with acquire_listeners(tmp_path, SPECS) as listeners:
        assert listeners.origin == "bound"
        assert listeners["web"].getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
        assert not listeners["web"].getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
        assert listeners["rtp"].type == socket.SOCK_DGRAM
        with pytest.raises(PodkitError, match="no listener named 'admin'; the listeners are "
                                              "web, rtp"):
            listeners.address("admin")


def test_address_in_use_without_a_server_is_a_clear_error(tmp_path: Path) -> None:
    with ListenerSet.bind(["web=tcp://127.0.0.1:0"]) as holder:
        host, port = holder.address("web")
        with pytest.raises(PodkitError, match="in use.*no process answered"):
            acquire_listeners(tmp_path, [f"web=tcp://{host}:{port}"], timeout=0.1)
        with pytest.raises(PodkitError, match="in use"):
            ListenerSet.bind([f"web=tcp://{host}:{port}"])


def _stale_socket(path: Path) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.close()  # the file stays, nobody listens: what a SIGKILLed server leaves


def test_stale_socket_file_means_nobody_serves(tmp_path: Path) -> None:
    path = SharedDir(tmp_path).handoff_socket
    _stale_socket(path)
    assert fetch_listeners(tmp_path) is None
    with acquire_listeners(tmp_path, SPECS) as listeners:
        assert listeners.origin == "bound"


def test_server_replaces_stale_file_and_removes_only_its_own(tmp_path: Path) -> None:
    path = SharedDir(tmp_path).handoff_socket
    _stale_socket(path)
    with ListenerSet.bind(SPECS) as listeners:
        first = HandoffServer(tmp_path, listeners).start()
        with fetch_listeners(tmp_path) as copies:  # type: ignore[union-attr]
            assert copies.infos == listeners.infos
        second = HandoffServer(tmp_path, listeners).start()  # a successor renames over it
        first.stop()
        assert path.exists()
        with fetch_listeners(tmp_path) as copies:  # type: ignore[union-attr]
            assert copies.infos == listeners.infos
        second.stop()
        assert (first.served, second.served) == (1, 1)
        assert not path.exists()
        assert [p.name for p in tmp_path.iterdir()] == []  # no temporary names left


def test_socket_path_longer_than_sun_path(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    assert len(str(SharedDir(deep).handoff_socket)) > 108
    with ListenerSet.bind(SPECS) as listeners, HandoffServer(deep, listeners):
        with fetch_listeners(deep) as copies:  # type: ignore[union-attr]
            assert copies.infos == listeners.infos


def test_inherited_listeners_round_trip() -> None:
    with ListenerSet.bind(SPECS) as listeners:
        env, fds = listeners.child_env()
        assert fds == [listeners["web"].fileno(), listeners["rtp"].fileno()]
        entries = json.loads(env["PODKIT_LISTENERS"])
        for entry in entries:  # what a child sees after exec: its own descriptors
            entry["fd"] = os.dup(entry["fd"])
        with ListenerSet.from_environ({"PODKIT_LISTENERS": json.dumps(entries)}) as inherited:
            assert inherited.origin == "inherited"
            assert inherited.infos == listeners.infos
    assert ListenerSet.from_environ({}) is None


def test_descriptor_that_is_not_a_socket_is_refused() -> None:
    read_end, write_end = os.pipe()
    os.close(write_end)
    entry = dict(ListenerInfo("web", "inet", "tcp", "127.0.0.1", 1).to_json(), fd=read_end)
    with pytest.raises(PodkitError, match="not a socket"):
        ListenerSet.from_environ({"PODKIT_LISTENERS": json.dumps([entry])})
    with pytest.raises(OSError):
        os.fstat(read_end)  # closed, not leaked


# --- stop accepting ----------------------------------------------------------------------------

def test_stop_accepting_wakes_a_blocked_waiter_and_keeps_the_listener() -> None:
    with ListenerSet.bind(SPECS) as listeners:
        acceptor = listeners.acceptor()
        results: list[object] = []
        started = threading.Event()

        def wait() -> None:
            started.set()
            results.append(acceptor.accept(listeners["web"]))
            results.append(acceptor.ready())

        waiter = threading.Thread(target=wait)
        waiter.start()
        started.wait()
        acceptor.stop_accepting()
        waiter.join(timeout=30)
        assert not waiter.is_alive()
        assert results == [None, []]
        assert acceptor.recvfrom(listeners["rtp"], 64) is None
        acceptor.close()
        # the listener still works for whoever accepts next
        with socket.create_connection(listeners.address("web")):
            with Acceptor([listeners["web"]]) as fresh:
                got = fresh.accept(listeners["web"])
                assert got is not None
                got[0].close()


# --- what a client meets on the wire ----------------------------------------------------------

class RawServer:
    """A hand-written hand-off server running ``answer(conn)`` for one client, in a thread."""

    def __init__(self, directory: Path, answer: Callable[[socket.socket], None]) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(SharedDir(directory).handoff_socket))
        self.sock.listen(1)
        self.answer = answer
        self.thread = threading.Thread(target=self._serve)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            self.answer(conn)

    def __enter__(self) -> RawServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.thread.join()
        self.sock.close()


def test_message_sent_in_pieces_is_reassembled(tmp_path: Path) -> None:
    with ListenerSet.bind(SPECS) as listeners:
        data = listeners.message().encode()
        fds = [item.sock.fileno() for item in listeners]

        def in_pieces(conn: socket.socket) -> None:
            socket.send_fds(conn, [data[:3]], fds)  # descriptors ride with the first byte
            for start in range(3, len(data), 7):
                conn.sendall(data[start:start + 7])

        with RawServer(tmp_path, in_pieces):
            copies = fetch_listeners(tmp_path)
        assert copies is not None
        with copies:
            assert copies.infos == listeners.infos


def test_something_else_on_the_socket_is_a_clear_error(tmp_path: Path) -> None:
    with RawServer(tmp_path, lambda conn: conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")):
        with pytest.raises(PodkitError, match="something else answers"):
            fetch_listeners(tmp_path)


def test_descriptor_count_must_match_the_description(tmp_path: Path) -> None:
    with ListenerSet.bind(SPECS) as listeners:
        data = listeners.message().encode()
        one_fd = [listeners["web"].fileno()]
        with RawServer(tmp_path, lambda conn: socket.send_fds(conn, [data], one_fd)):
            with pytest.raises(PodkitError, match="described 2 listeners but passed 1"):
                fetch_listeners(tmp_path)
        assert descriptors_of(listeners["web"]) == 1  # the received copy was closed


def test_silent_server_is_reported_not_waited_for_forever(tmp_path: Path) -> None:
    release = threading.Event()
    with RawServer(tmp_path, lambda conn: release.wait()):
        try:
            with pytest.raises(PodkitError, match="sent nothing within"):
                fetch_listeners(tmp_path, timeout=0.2)
        finally:
            release.set()


def test_server_that_hangs_up_counts_as_nobody(tmp_path: Path) -> None:
    with RawServer(tmp_path, lambda conn: None):
        assert fetch_listeners(tmp_path) is None
