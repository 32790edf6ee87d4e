"""The demo service's process: podkit's reference service for adopters.

It follows :class:`podkit.upgrader.Upgrader`'s order and adds only what is its own: the request
protocol (:mod:`podkit_demo.protocol`), its state (:mod:`podkit_demo.shared_state`) and the handling
of clients. No client can end the process: any error on one connection (a reset, a broken
pipe, an idle timeout, a client that sends without reading) closes that connection and is
counted (``client_errors`` in the ``STATE`` reply); the process serves on.
"""

from __future__ import annotations

import errno
import json
import math
import os
import selectors
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

from podkit.errors import PodkitError
from podkit.layout import SlotEnv
from podkit.upgrader import Upgrader

from .shared_state import DemoState

DEFAULT_LISTEN = "tcp=tcp://0.0.0.0:7000,udp=udp://0.0.0.0:7001"
MAX_GREETING = 200
UDP_RCVBUF = 4 << 20
MAX_REQUEST = 4096  # a line longer than this is not a request of the protocol
MAX_UNSENT = 64 << 10  # replies queued for a client that does not read; past this it is cut off
IDLE_TIMEOUT_S = 60.0  # a connection without a request for this long is closed
SWEEP_S = 1.0  # how often idle connections are looked for
ACCEPT_PAUSE_S = 0.05  # out of descriptors: the accept queue holds new clients meanwhile
# At the stop, a connection whose request has begun (accepted, or part of a line read) gets
# this long for the rest before the seal: the client is mid-request, and a new client's first
# request arrives microseconds after its connection. An idle keep-alive connection is not
# waited for.
STARTED_REQUEST_WAIT_S = 0.05


class _Connection:
    """One accepted client: bytes read but not yet a whole request, replies not yet sent."""

    __slots__ = ("sock", "unread", "unsent", "last_seen", "eof", "answered")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.unread = b""
        self.unsent = b""
        self.last_seen = time.monotonic()
        self.eof = False  # the client half-closed: answer what it sent, then close
        self.answered = 0  # requests answered

    @property
    def mid_request(self) -> bool:
        """A request has begun and not been answered: a new client's first, or a part."""
        return not self.eof and (self.answered == 0 or bool(self.unread))


class DemoService:
    """One process of the service, a :class:`podkit.upgrader.Service`. It serves from a single
    thread with a selector: a latency-critical Python service hands no request to another
    thread, since waking one costs a GIL hand-over on the path of every request."""

    def __init__(self, env: SlotEnv, upgrader: Upgrader, state: DemoState,
                 config_path: Path) -> None:
        self.env = env
        self.tcp = upgrader.listeners["tcp"]
        self.udp = upgrader.listeners["udp"]
        self.state = state
        self.config_path = config_path
        self.greeting = self._read_greeting()
        self.client_errors: dict[str, int] = {}
        self._selector = selectors.DefaultSelector()
        self._connections: dict[socket.socket, _Connection] = {}
        self._accept_paused_until = 0.0
        self._writes_state = True
        signal.signal(signal.SIGHUP, lambda *_: self.reload_config())

    def _read_greeting(self) -> str:
        """The greeting file: one line of at most MAX_GREETING printable characters; anything
        else is a bad config, refused (a process starting with it exits: a restart hook then
        fails and the running process keeps serving)."""
        try:
            greeting = self.config_path.read_text().strip().replace("\n", " ") or "hello"
        except FileNotFoundError:
            return "hello"
        if len(greeting) > MAX_GREETING or not greeting.isprintable():
            raise PodkitError(f"bad config {self.config_path}: the greeting must be at most "
                              f"{MAX_GREETING} printable characters")
        return greeting

    def reload_config(self) -> None:
        try:
            self.greeting = self._read_greeting()
        except PodkitError as exc:  # keep serving the greeting we have
            print(f"podkit-demo: {exc}; keeping {self.greeting!r}", file=sys.stderr, flush=True)

    # --- requests ------------------------------------------------------------------------
    def answer(self, request: bytes) -> bytes:
        words = request.split()
        if words[:1] == [b"GET"] and len(words) == 2:
            served = self.state.count_request()
            return (f"{self.env.version} {self.env.slot} {words[1].decode(errors='replace')} "
                    f"{served} {self.greeting}\n").encode()
        if len(words) == 3 and words[0] == b"GET" and words[2].startswith(b"HTTP/"):
            return b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nok\n"
        if words == [b"HANG"] and os.environ.get("PODKIT_DEMO_HANG_COMMAND") == "1":
            print("podkit-demo: HANG: the serving loop stops for good", file=sys.stderr,
                  flush=True)
            while True:
                time.sleep(3600)
        if words == [b"WHO"]:  # which process answers: a checker tells processes apart
            return f"{self.env.version} {self.env.slot} {os.getpid()} {STARTED_NS}\n".encode()
        if words == [b"STATE"]:  # reads the whole blob: for tests, not for load
            report = dict(self.state.report(), version=self.env.version, slot=self.env.slot,
                          greeting=self.greeting, client_errors=self.client_errors)
            return (json.dumps(report) + "\n").encode()
        return b"ERR use GET <seq>, WHO or STATE\n"

    def _count(self, kind: str) -> None:
        self.client_errors[kind] = self.client_errors.get(kind, 0) + 1

    # --- the Service steps ---------------------------------------------------------------
    def promote(self) -> None:
        self.state.promote()

    def serve(self, stop_fd: int) -> None:
        """Accept and answer until ``stop_fd`` is readable; then stop accepting (the
        listeners stay open for the successor, which shares them) and answer the requests
        that have already arrived on accepted connections."""
        selector = self._selector
        selector.register(stop_fd, selectors.EVENT_READ, "stop")
        selector.register(self.tcp, selectors.EVENT_READ, "accept")
        selector.register(self.udp, selectors.EVENT_READ, "datagram")
        next_sweep = time.monotonic() + SWEEP_S
        crash_at = _crash_at(self.env.version)
        while True:
            now = time.monotonic()
            if now >= crash_at:
                print(f"podkit-demo: PODKIT_DEMO_CRASH_AFTER_S: {self.env.version} crashes "
                      "as asked", file=sys.stderr, flush=True)
                os._exit(70)
            if self._accept_paused_until and now >= self._accept_paused_until:
                self._accept_paused_until = 0.0
                selector.register(self.tcp, selectors.EVENT_READ, "accept")
            if now >= next_sweep:
                self._close_idle(now)
                next_sweep = now + SWEEP_S
            wake = min(next_sweep, self._accept_paused_until or next_sweep, crash_at)
            for key, events in selector.select(max(0.0, wake - now)):
                if key.data == "stop":
                    selector.unregister(stop_fd)
                    if not self._accept_paused_until:
                        selector.unregister(self.tcp)
                    selector.unregister(self.udp)
                    self._answer_arrived()
                    return
                if key.data == "accept":
                    self._accept()
                elif key.data == "datagram":
                    self._datagram()
                else:
                    self._connection_event(key.data, events)

    def seal(self) -> None:
        self._writes_state = False
        self.state.seal()

    def drain(self, deadline: float) -> None:
        """Send what is queued, half-close every connection (a keep-alive client reads EOF
        after its last reply and reconnects, to the successor), discard what clients still
        send, and close each on its client's EOF, or all at ``deadline``."""
        for conn in list(self._connections.values()):
            conn.unread = b""
            if not conn.unsent:
                self._half_close(conn)
        self._serve_connections_until(deadline, lambda: bool(self._connections))
        for conn in list(self._connections.values()):
            self._close(conn)
        self._selector.close()

    # --- connections ---------------------------------------------------------------------
    def _accept(self) -> None:
        try:
            sock, _ = self.tcp.accept()
        except BlockingIOError:
            return  # the peer slot took it first (both hold the listener)
        except OSError as exc:  # accept(2) reports a client's network errors too: skip it
            if exc.errno not in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                self._count("accept-" + errno.errorcode.get(exc.errno or 0, "other").lower())
                return
            self._count("accept-no-descriptors")
            self._selector.unregister(self.tcp)  # the client waits in the accept queue
            self._accept_paused_until = time.monotonic() + ACCEPT_PAUSE_S
            return
        sock.setblocking(False)
        conn = _Connection(sock)
        self._connections[sock] = conn
        self._selector.register(sock, selectors.EVENT_READ, conn)

    def _datagram(self) -> None:
        try:
            data, peer = self.udp.recvfrom(2048)
        except BlockingIOError:
            return
        except OSError:  # an ICMP error about an earlier reply
            self._count("udp-receive")
            return
        try:
            self.udp.sendto(self.answer(data), peer)
        except OSError:  # a full send buffer or an unreachable peer: that datagram is lost
            self._count("udp-send")

    def _connection_event(self, conn: _Connection, events: int) -> None:
        if events & selectors.EVENT_WRITE:
            self._flush(conn)
        if events & selectors.EVENT_READ and conn.sock in self._connections:
            self._read(conn)

    def _read(self, conn: _Connection) -> None:
        try:
            data = conn.sock.recv(4096)
        except BlockingIOError:
            return
        except OSError as exc:
            self._fail(conn, exc)
            return
        if not data:
            conn.eof = True
            if not conn.unsent:
                self._close(conn)
            return
        if not self._writes_state:
            return  # draining: nothing more is answered
        conn.last_seen = time.monotonic()
        conn.unread += data
        self._answer_lines(conn)

    def _answer_lines(self, conn: _Connection) -> None:
        replies = []
        while b"\n" in conn.unread:
            line, conn.unread = conn.unread.split(b"\n", 1)
            replies.append(self.answer(line))
            conn.answered += 1
        if len(conn.unread) > MAX_REQUEST:
            replies.append(b"ERR request too long\n")
            conn.unread = b""
            conn.eof = True
            self._count("request-too-long")
        if replies:
            conn.unsent += b"".join(replies)
            self._flush(conn)

    def _answer_arrived(self) -> None:
        """The last reads before the seal: requests already in the connections' buffers are
        answered now, with their writes to shared state, and a request that has begun gets
        ``STARTED_REQUEST_WAIT_S`` for the rest; idle connections are not waited for. The
        buffers are read once more at the end: a process the node did not schedule for the
        whole bound still answers what arrived meanwhile."""
        self._read_all()
        self._serve_connections_until(
            time.monotonic() + STARTED_REQUEST_WAIT_S,
            lambda: any(conn.mid_request for conn in self._connections.values()))
        self._read_all()

    def _serve_connections_until(self, deadline: float, waiting: Callable[[], bool]) -> None:
        """Handle the accepted connections' events while ``waiting()``, until ``deadline``."""
        while waiting() and time.monotonic() < deadline:
            for key, events in self._selector.select(max(0.0, deadline - time.monotonic())):
                self._connection_event(key.data, events)

    def _read_all(self) -> None:
        for conn in list(self._connections.values()):
            if not conn.eof:
                self._read(conn)

    def _flush(self, conn: _Connection) -> None:
        try:
            sent = conn.sock.send(conn.unsent)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self._fail(conn, exc)
            return
        conn.unsent = conn.unsent[sent:]
        if len(conn.unsent) > MAX_UNSENT:
            self._count("not-reading")
            self._close(conn)
        elif conn.unsent:
            self._selector.modify(conn.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, conn)
        else:
            self._selector.modify(conn.sock, selectors.EVENT_READ, conn)
            if conn.eof:
                self._close(conn)
            elif not self._writes_state:
                self._half_close(conn)

    def _half_close(self, conn: _Connection) -> None:
        try:
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError as exc:
            self._fail(conn, exc)

    def _close_idle(self, now: float) -> None:
        for conn in list(self._connections.values()):
            if now - conn.last_seen > IDLE_TIMEOUT_S:
                self._count("idle-timeout")
                self._close(conn)

    def _fail(self, conn: _Connection, exc: OSError) -> None:
        kinds = {errno.ECONNRESET: "reset", errno.EPIPE: "broken-pipe",
                 errno.ETIMEDOUT: "timeout"}
        self._count(kinds.get(exc.errno or 0, "other"))
        self._close(conn)

    def _close(self, conn: _Connection) -> None:
        if self._connections.pop(conn.sock, None) is not None:
            self._selector.unregister(conn.sock)
            conn.sock.close()


# when this process started (CLOCK_REALTIME ns): with the pid, which a restarted container's
# new PID namespace gives again, it names one process for good
STARTED_NS = time.time_ns()


def _crash_at(version: str | None) -> float:
    """When this process crashes by the test switch (``math.inf``: never)."""
    after = os.environ.get("PODKIT_DEMO_CRASH_AFTER_S")
    if not after or os.environ.get("PODKIT_DEMO_CRASH_VERSION") != version:
        return math.inf
    return time.monotonic() + float(after)


def main() -> int:
    # The default GIL switch interval (5 ms) lets a busy thread delay the serving loop by
    # that much; a latency-critical Python service shortens it.
    sys.setswitchinterval(0.0005)
    # A config hook may signal us while we initialise: take SIGHUP as "read the config",
    # which the service does once it is built anyway, instead of dying of it.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        env = SlotEnv.from_environ()
        upgrader = Upgrader.from_environ(
            os.environ.get("PODKIT_DEMO_LISTEN", DEFAULT_LISTEN).split(","))
        # Datagrams wait in the shared socket while no process reads it (a hand-over, a
        # stall of the node): the buffer must hold them at the peak rate. The kernel caps
        # the size at net.core.rmem_max.
        upgrader.listeners["udp"].setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RCVBUF)
        blob_mb = int(os.environ.get("PODKIT_DEMO_STATE_MB", "16"))
        state = DemoState.open(os.environ.get("PODKIT_DEMO_SEGMENT", "podkit-demo"),
                               blob_mb << 20)
        config = Path(os.environ.get("PODKIT_DEMO_CONFIG", "/etc/podkit-demo/greeting"))
        return upgrader.run(DemoService(env, upgrader, state, config))
    except PodkitError as exc:
        print(f"podkit-demo: {exc}", file=sys.stderr)
        return exc.exit_code
