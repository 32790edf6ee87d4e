"""The demo service's process: warm start, serve while active, hand over on SIGTERM."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

from ..errors import PodkitError
from ..handoff import Acceptor, HandoffServer, ListenerSet, acquire_listeners
from ..layout import SlotEnv
from ..slot import Slot, SlotStopping
from .state import DemoState

DEFAULT_LISTEN = "tcp=tcp://0.0.0.0:7000,udp=udp://0.0.0.0:7001"
DRAIN_S = 2.0  # in-flight connections get this long to finish after the hand-over starts


class DemoService:
    def __init__(self, env: SlotEnv, slot: Slot, listeners: ListenerSet, state: DemoState,
                 config_path: Path) -> None:
        self.env = env
        self.slot = slot
        self.listeners = listeners
        self.state = state
        self.config_path = config_path
        self.greeting = self._read_greeting()
        self.acceptor: Acceptor = listeners.acceptor()
        self._connections = 0
        self._connections_lock = threading.Condition()
        slot.on_stop(self.acceptor.stop_accepting)
        signal.signal(signal.SIGHUP, lambda *_: self.reload_config())

    def _read_greeting(self) -> str:
        try:
            return self.config_path.read_text().strip().replace("\n", " ") or "hello"
        except FileNotFoundError:
            return "hello"

    def reload_config(self) -> None:
        self.greeting = self._read_greeting()

    # --- requests ------------------------------------------------------------------------
    def answer(self, request: bytes) -> bytes:
        words = request.split()
        if words[:1] == [b"GET"] and len(words) == 2:
            served = self.state.count_request()
            return (f"{self.env.version} {self.env.slot} {words[1].decode(errors='replace')} "
                    f"{served} {self.greeting}\n").encode()
        if words == [b"STATE"]:
            report = dict(self.state.report(), version=self.env.version, slot=self.env.slot,
                          greeting=self.greeting)
            return (json.dumps(report) + "\n").encode()
        return b"ERR use GET <seq> or STATE\n"

    def _serve_connection(self, conn: socket.socket) -> None:
        with conn, self._tracked():
            conn.setblocking(True)
            conn.settimeout(0.05)
            buffer = b""
            while True:
                try:
                    data = conn.recv(4096)
                except socket.timeout:
                    if self.acceptor.stopping:
                        return  # idle at hand-over: the client reconnects to the new process
                    continue
                except OSError:
                    return
                if not data:
                    return
                buffer += data
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    conn.sendall(self.answer(line))
                if self.acceptor.stopping and not buffer:
                    return

    @contextlib.contextmanager
    def _tracked(self) -> Iterator[None]:
        with self._connections_lock:
            self._connections += 1
        try:
            yield
        finally:
            with self._connections_lock:
                self._connections -= 1
                self._connections_lock.notify_all()

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
        tcp, udp = self.listeners["tcp"], self.listeners["udp"]
        with ThreadPoolExecutor(max_workers=32, thread_name_prefix="conn") as pool:
            while True:
                ready = self.acceptor.ready()
                if not ready:
                    break  # stopping
                if tcp in ready:
                    try:
                        conn, _ = tcp.accept()
                    except BlockingIOError:
                        pass
                    else:
                        pool.submit(self._serve_connection, conn)
                if udp in ready:
                    try:
                        data, peer = udp.recvfrom(2048)
                    except BlockingIOError:
                        pass
                    else:
                        udp.sendto(self.answer(data), peer)
            starting.join()
            server.stop()
            self._drain()
            self.state.seal()
            self.slot.release()
        return 0

    def _drain(self) -> None:
        deadline = time.monotonic() + DRAIN_S
        with self._connections_lock:
            while self._connections and time.monotonic() < deadline:
                self._connections_lock.wait(deadline - time.monotonic())


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
        blob_mb = int(os.environ.get("PODKIT_DEMO_STATE_MB", "16"))
        state = DemoState.open(os.environ.get("PODKIT_DEMO_SEGMENT", "podkit-demo"),
                               blob_mb << 20)
        config = Path(os.environ.get("PODKIT_DEMO_CONFIG", "/etc/podkit-demo/greeting"))
        return DemoService(env, slot, listeners, state, config).run()
    except PodkitError as exc:
        print(f"podkit-demo: {exc}", file=sys.stderr)
        return exc.exit_code
