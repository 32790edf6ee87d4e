"""The demo service's process: warm start, serve while active, hand over on SIGTERM."""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import sys
import threading
import time
from pathlib import Path

from ..errors import PodkitError
from ..handoff import HandoffServer, ListenerSet, acquire_listeners
from ..layout import SlotEnv
from ..slot import Slot, SlotStopping
from .state import DemoState

DEFAULT_LISTEN = "tcp=tcp://0.0.0.0:7000,udp=udp://0.0.0.0:7001"
MAX_GREETING = 200
UDP_RCVBUF = 4 << 20
DRAIN_S = 2.0  # accepted connections get this long to finish after the hand-over starts


class DemoService:
    """One process of the service. It serves from a single thread with a selector: a
    latency-critical Python service hands no request to another thread, since waking one
    costs a GIL hand-over on the path of every request."""

    def __init__(self, env: SlotEnv, slot: Slot, listeners: ListenerSet, state: DemoState,
                 config_path: Path) -> None:
        self.env = env
        self.slot = slot
        self.listeners = listeners
        self.state = state
        self.config_path = config_path
        self.greeting = self._read_greeting()
        self._stop_r, self._stop_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._buffers: dict[socket.socket, bytes] = {}
        slot.on_stop(self._wake_to_stop)
        signal.signal(signal.SIGHUP, lambda *_: self.reload_config())

    def _wake_to_stop(self) -> None:
        try:
            os.write(self._stop_w, b"!")  # from the SIGTERM handler: async-signal-safe
        except BlockingIOError:
            pass

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
        if words == [b"STATE"]:  # reads the whole blob: for tests, not for load
            report = dict(self.state.report(), version=self.env.version, slot=self.env.slot,
                          greeting=self.greeting)
            return (json.dumps(report) + "\n").encode()
        return b"ERR use GET <seq> or STATE\n"

    # --- the slot's life -----------------------------------------------------------------
    def run(self) -> int:
        try:
            self.slot.wait_active()
        except SlotStopping:
            return 0
        self.state.promote()
        # Serve first; the hand-off socket is for the next standby, so it starts aside.
        server = HandoffServer(self.env.shared, self.listeners)
        starting = threading.Thread(target=server.start, name="handoff-start")
        starting.start()
        with selectors.DefaultSelector() as selector:
            self._serve(selector)
            starting.join()
            server.stop()
            self._drain(selector)
        self.state.seal()
        self.slot.release()
        return 0

    def _serve(self, selector: selectors.BaseSelector) -> None:
        """Accept and answer until SIGTERM; then stop accepting (the listeners stay open for
        the successor, which shares them)."""
        tcp, udp = self.listeners["tcp"], self.listeners["udp"]
        selector.register(self._stop_r, selectors.EVENT_READ, "stop")
        selector.register(tcp, selectors.EVENT_READ, "accept")
        selector.register(udp, selectors.EVENT_READ, "datagram")
        while True:
            for key, _ in selector.select():
                if key.data == "stop":
                    for fileobj in (self._stop_r, tcp, udp):
                        selector.unregister(fileobj)
                    return
                if key.data == "accept":
                    self._accept(selector, tcp)
                elif key.data == "datagram":
                    self._datagram(udp)
                else:
                    self._read(selector, key.fileobj)

    def _drain(self, selector: selectors.BaseSelector) -> None:
        """Finish the requests of connections already accepted, within DRAIN_S."""
        deadline = time.monotonic() + DRAIN_S
        while self._buffers and time.monotonic() < deadline:
            for key, _ in selector.select(deadline - time.monotonic()):
                self._read(selector, key.fileobj, closing=True)
        for conn in list(self._buffers):
            self._close(selector, conn)

    def _accept(self, selector: selectors.BaseSelector, tcp: socket.socket) -> None:
        try:
            conn, _ = tcp.accept()
        except BlockingIOError:
            return  # the peer slot took it first (both hold the listener)
        conn.setblocking(False)
        self._buffers[conn] = b""
        selector.register(conn, selectors.EVENT_READ, "read")

    def _datagram(self, udp: socket.socket) -> None:
        try:
            data, peer = udp.recvfrom(2048)
        except BlockingIOError:
            return
        udp.sendto(self.answer(data), peer)

    def _read(self, selector: selectors.BaseSelector, conn: socket.socket,
              closing: bool = False) -> None:
        try:
            data = conn.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._close(selector, conn)
            return
        buffer = self._buffers[conn] + data
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            conn.setblocking(True)  # replies are small; a slow client only slows itself
            conn.sendall(self.answer(line))
            conn.setblocking(False)
        self._buffers[conn] = buffer
        if closing and not buffer:
            self._close(selector, conn)  # answered: the client reconnects to the successor

    def _close(self, selector: selectors.BaseSelector, conn: socket.socket) -> None:
        selector.unregister(conn)
        del self._buffers[conn]
        conn.close()


def main() -> int:
    # The default GIL switch interval (5 ms) lets a busy thread delay the serving loop by
    # that much; a latency-critical Python service shortens it.
    sys.setswitchinterval(0.0005)
    # A config hook may signal us while we initialise: take SIGHUP as "read the config",
    # which the service does once it is built anyway, instead of dying of it.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        env = SlotEnv.from_environ()
        slot = Slot.from_environ()
        specs = os.environ.get("PODKIT_DEMO_LISTEN", DEFAULT_LISTEN).split(",")
        listeners = acquire_listeners(env.shared, specs)
        # Datagrams wait in the shared socket while no process reads it (a hand-over, a
        # stall of the node): the buffer must hold them at the peak rate. The kernel caps
        # the size at net.core.rmem_max.
        listeners["udp"].setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RCVBUF)
        blob_mb = int(os.environ.get("PODKIT_DEMO_STATE_MB", "16"))
        state = DemoState.open(os.environ.get("PODKIT_DEMO_SEGMENT", "podkit-demo"),
                               blob_mb << 20)
        config = Path(os.environ.get("PODKIT_DEMO_CONFIG", "/etc/podkit-demo/greeting"))
        return DemoService(env, slot, listeners, state, config).run()
    except PodkitError as exc:
        print(f"podkit-demo: {exc}", file=sys.stderr)
        return exc.exit_code
