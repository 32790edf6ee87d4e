"""The operator's own road to the apiserver, which a fault can cut: a TCP relay on loopback
that the operator's kubeconfig names instead of the apiserver. TLS passes through untouched
(the apiserver's certificate names the address, not the port).

While cut, the relay drops every connection it carries and holds new ones open without
carrying a byte, as a partition does: requests hang until the client's own timeout, and
watches end. Healed, it carries again."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import yaml

from testbed.apicluster import free_ports

CHUNK = 65536


class Relay:
    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = free_ports(1)[0]
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._cut = threading.Event()
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        threading.Thread(target=self._accept, daemon=True).start()

    def point(self, kubeconfig: Path) -> None:
        """Make ``kubeconfig``'s clusters reach the apiserver through this relay."""
        config = yaml.safe_load(kubeconfig.read_text())
        for cluster in config["clusters"]:
            cluster["cluster"]["server"] = f"https://127.0.0.1:{self.port}"
        kubeconfig.write_text(yaml.safe_dump(config))

    def cut(self) -> None:
        self._cut.set()
        with self._lock:
            for sock in self._open:
                _close(sock)
            self._open.clear()

    def heal(self) -> None:
        self._cut.clear()
        with self._lock:  # the connections held while cut: closed, so clients reconnect
            for sock in self._open:
                _close(sock)
            self._open.clear()

    def close(self) -> None:
        _close(self._listener)
        self.cut()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self._open.add(client)
            if self._cut.is_set():
                continue  # held: never carried, closed when healed
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                _close(client)
                continue
            server.settimeout(None)
            with self._lock:
                self._open.add(server)
            for src, dst in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(CHUNK):
                if self._cut.is_set():
                    break
                dst.sendall(data)
        except OSError:
            pass
        _close(src)
        _close(dst)
        with self._lock:
            self._open.discard(src)
            self._open.discard(dst)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
