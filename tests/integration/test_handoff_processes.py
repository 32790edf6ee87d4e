"""Listening-socket hand-off between real processes.

Each worker is this file run as a script: it acquires its listeners (fresh, or copies from
whoever serves ``handoff.sock``), waits on the hand-over lock, and once it holds the lock it
serves the hand-off socket and its listeners until told ``yield`` on stdin; then it stops
accepting, stops the hand-off server, releases the lock, and on ``wait`` waits for it again.
It reports every step as a JSON line on stdout. Replies carry the worker's tag, so the test
knows who answered.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from podkit.handoff import Acceptor, HandoffServer, ListenerSet, acquire_listeners, fetch_listeners
from podkit.layout import SharedDir
from podkit.lock import OfdLock

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

WAIT_S = 30.0  # a bound on waiting for a worker, so a broken hand-off fails instead of hanging


# --- the worker process -----------------------------------------------------------------------

def _emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def _serve(listeners: ListenerSet, acceptor: Acceptor, tag: bytes, counts: Counter[str]) -> None:
    while True:
        ready = acceptor.ready()
        if not ready:
            return  # stop_accepting() was called
        for sock in ready:
            if sock.type == socket.SOCK_STREAM:
                try:
                    conn, _ = sock.accept()
                except BlockingIOError:
                    continue  # the peer process took it
                with conn:
                    conn.setblocking(True)
                    conn.settimeout(WAIT_S)
                    request = b""
                    while not request.endswith(b"\n"):
                        chunk = conn.recv(256)
                        if not chunk:
                            break
                        request += chunk
                    conn.sendall(tag + b" " + request)
                counts["tcp"] += 1
            else:
                while not acceptor.stopping:
                    try:
                        data, peer = sock.recvfrom(2048)
                    except BlockingIOError:
                        break
                    sock.sendto(tag + b":" + data, peer)
                    counts["udp"] += 1


def worker_main(argv: list[str]) -> int:
    directory, tag, *specs = argv
    shared = SharedDir(Path(directory))
    listeners = acquire_listeners(shared, specs, timeout=WAIT_S)
    _emit("listeners", origin=listeners.origin,
          addresses={info.name: [info.host, info.port] for info in listeners.infos})
    commands: queue.Queue[str] = queue.Queue()

    def read_commands() -> None:
        for line in sys.stdin:
            commands.put(line.strip())
        commands.put("exit")

    threading.Thread(target=read_commands, daemon=True).start()
    lock = OfdLock(shared.lock_file)
    while True:
        _emit("waiting")
        lock.acquire()
        server = HandoffServer(shared, listeners).start()
        acceptor = listeners.acceptor()
        counts: Counter[str] = Counter()
        serving = threading.Thread(target=_serve,
                                   args=(listeners, acceptor, tag.encode(), counts))
        serving.start()
        _emit("active")
        command = commands.get()
        acceptor.stop_accepting()
        serving.join()  # the connection in hand is finished first
        server.stop()  # before the lock goes: the successor then owns handoff.sock
        lock.release()
        acceptor.close()
        _emit("released", served=dict(counts))
        if command == "exit" or commands.get() == "exit":
            listeners.close()
            return 0
        # "wait": the test says so once the peer is active, as a slot that leaves exits and
        # comes back later (a lock has no queue: re-waiting at once could win it back)


# --- the test side ----------------------------------------------------------------------------

class Worker:
    """A worker process and the events it reports."""

    def __init__(self, directory: Path, tag: str, specs: list[str]) -> None:
        self.tag = tag
        self.proc = subprocess.Popen([sys.executable, __file__, str(directory), tag, *specs],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.events.put(json.loads(line))
        self.events.put(None)

    def expect(self, event: str) -> dict[str, Any]:
        """The next event, which must be ``event``."""
        try:
            got = self.events.get(timeout=WAIT_S)
        except queue.Empty:
            pytest.fail(f"worker {self.tag} did not report {event!r} within {WAIT_S} s")
        if got is None:
            pytest.fail(f"worker {self.tag} exited (code {self.proc.wait()}) before {event!r}")
        assert got["event"] == event, f"worker {self.tag}: expected {event!r}, got {got}"
        return got

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


@pytest.fixture
def workers() -> Any:
    started: list[Worker] = []
    yield started
    for worker in started:
        worker.kill()


def tcp_request(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT_S) as client:
        client.sendall(payload)
        return read_to_eof(client)


def read_to_eof(client: socket.socket) -> bytes:
    reply = b""
    while chunk := client.recv(256):
        reply += chunk
    return reply


class UdpClient:
    """Sends numbered datagrams and collects the replies in a thread (so none overflow)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.replies: dict[int, str] = {}
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while True:
            try:
                data = self.sock.recv(2048)
            except OSError:
                return
            if not data:
                return
            tag, seq = data.decode().split(":")
            with self._changed:
                self.replies[int(seq)] = tag
                self._changed.notify_all()

    def send(self, seqs: range) -> None:
        for seq in seqs:
            self.sock.sendto(str(seq).encode(), ("127.0.0.1", self.port))

    def wait_for(self, seqs: range) -> dict[int, str]:
        """Replies to ``seqs``; stops waiting after WAIT_S with no new reply (then some
        are missing, and the caller's assertion reports them)."""
        wanted = set(seqs)
        with self._changed:
            while not wanted <= self.replies.keys():
                if not self._changed.wait(timeout=WAIT_S):
                    break
            return {seq: self.replies[seq] for seq in wanted if seq in self.replies}

    def close(self) -> None:
        self.sock.sendto(b"", self.sock.getsockname())  # an empty datagram ends the receiver
        self._thread.join()
        self.sock.close()


def test_sigkilled_active_process_loses_nothing_queued(tmp_path: Path, workers: Any) -> None:
    specs = ["web=tcp://127.0.0.1:0", "rtp=udp://127.0.0.1:0"]
    a = Worker(tmp_path, "A", specs)
    workers.append(a)
    a_addresses = a.expect("listeners")
    assert a_addresses["origin"] == "bound"
    a.expect("waiting")
    a.expect("active")

    b = Worker(tmp_path, "B", specs)
    workers.append(b)
    b_addresses = b.expect("listeners")
    assert b_addresses["origin"] == "received"
    assert b_addresses["addresses"] == a_addresses["addresses"]
    b.expect("waiting")  # the standby: blocked on the lock, holding copies
    tcp_port = a_addresses["addresses"]["web"][1]
    udp = UdpClient(a_addresses["addresses"]["rtp"][1])
    try:
        assert tcp_request(tcp_port, b"before\n") == b"A before\n"
        udp.send(range(0, 20))
        assert set(udp.wait_for(range(0, 20)).values()) == {"A"}

        # A hangs (SIGSTOP: it reads nothing more) and then crashes (SIGKILL). Everything
        # sent meanwhile waits in the kernel socket that B holds a copy of.
        os.kill(a.proc.pid, signal.SIGSTOP)
        os.waitpid(a.proc.pid, os.WUNTRACED)  # returns once every thread of A has stopped
        queued = socket.create_connection(("127.0.0.1", tcp_port), timeout=WAIT_S)
        queued.sendall(b"queued\n")
        udp.send(range(20, 120))
        os.kill(a.proc.pid, signal.SIGKILL)
        assert a.proc.wait() == -signal.SIGKILL
        assert SharedDir(tmp_path).handoff_socket.exists()  # A left a stale socket file

        udp.send(range(120, 170))  # while B takes over
        b.expect("active")
        udp.send(range(170, 220))
        with queued:
            assert read_to_eof(queued) == b"B queued\n"
        for n in range(20):
            assert tcp_request(tcp_port, b"after %d\n" % n) == b"B after %d\n" % n
        replies = udp.wait_for(range(20, 220))
    finally:
        udp.close()
    lost = sorted(set(range(20, 220)) - replies.keys())
    assert lost == []  # the datagram buffer is shared: nothing queued dies with A
    assert set(replies.values()) == {"B"}

    # B replaced A's stale socket file: a newcomer gets copies from B
    with fetch_listeners(tmp_path) as copies:  # type: ignore[union-attr]
        assert copies.peer_pid == b.proc.pid
        assert {i.name: [i.host, i.port] for i in copies.infos} == a_addresses["addresses"]


def test_full_speed_tcp_client_across_twenty_hand_overs(tmp_path: Path, workers: Any) -> None:
    swaps, per_swap = 20, 100
    first = Worker(tmp_path, "P", ["web=tcp://127.0.0.1:0"])
    workers.append(first)
    address = first.expect("listeners")["addresses"]["web"]
    first.expect("waiting")
    first.expect("active")
    second = Worker(tmp_path, "Q", ["web=tcp://127.0.0.1:0"])
    workers.append(second)
    assert second.expect("listeners")["addresses"]["web"] == address
    second.expect("waiting")

    port = address[1]
    answered: Counter[str] = Counter()
    failures: list[str] = []
    done = threading.Event()
    progress = threading.Condition()
    total = [0]

    def client() -> None:
        while not done.is_set() and total[0] < (swaps + 2) * per_swap * 3:
            try:
                reply = tcp_request(port, b"ping\n")
                if reply.endswith(b" ping\n"):
                    answered[reply.split()[0].decode()] += 1
                else:
                    failures.append(f"bad reply {reply!r}")
            except OSError as exc:  # refused, reset, or a connection nobody answered
                failures.append(repr(exc))
            with progress:
                total[0] += 1
                progress.notify_all()

    def wait_for_requests(count: int) -> None:
        with progress:
            assert progress.wait_for(lambda: total[0] >= count, timeout=WAIT_S), \
                f"the client is stuck at {total[0]} requests"

    thread = threading.Thread(target=client)
    thread.start()
    served: Counter[str] = Counter()
    try:
        active, standby = first, second
        for swap in range(swaps):
            wait_for_requests((swap + 1) * per_swap)
            active.send("yield")
            served[active.tag] += active.expect("released")["served"].get("tcp", 0)
            standby.expect("active")
            active.send("wait")
            active.expect("waiting")
            active, standby = standby, active
        wait_for_requests((swaps + 1) * per_swap)
    finally:
        done.set()
        thread.join()
    active.send("yield")
    served[active.tag] += active.expect("released")["served"].get("tcp", 0)

    assert failures == []
    assert total[0] >= (swaps + 1) * per_swap
    assert sum(answered.values()) == total[0]
    assert answered == served  # every request answered, by the process that says it served it
    assert set(answered) == {"P", "Q"}


def test_child_inherits_listeners_through_the_environment() -> None:
    """The way ``podkit run`` can give held listeners to a program it starts."""
    child_code = ("import json; from podkit.handoff import ListenerSet; "
                  "ls = ListenerSet.from_environ(); conn, _ = ls.acceptor().accept(ls['web']); "
                  "conn.sendall(json.dumps([ls.origin, ls.address('web')]).encode()); "
                  "conn.close()")
    with ListenerSet.bind(["web=tcp://127.0.0.1:0"]) as listeners:
        env, fds = listeners.child_env()
        child = subprocess.Popen([sys.executable, "-c", child_code],
                                 env={**os.environ, **env}, pass_fds=fds)
        try:
            reply = tcp_request(listeners.address("web")[1], b"")
        finally:
            assert child.wait(timeout=WAIT_S) == 0
        assert json.loads(reply) == ["inherited", list(listeners.address("web"))]


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1:]))
