"""Clients of the demo service: single requests and a load loop that records every reply."""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from .protocol import get_request

Address = tuple[str, int]


def tcp_get(address: Address, seq: int, timeout: float = 2.0) -> bytes:
    """One request on a new connection (as a prober does); raises OSError on failure."""
    with socket.create_connection(address, timeout=timeout) as conn:
        conn.sendall(get_request(seq))
        return _read_line(conn)


def udp_get(address: Address, seq: int, timeout: float = 2.0) -> bytes:
    """One request in one datagram from a new socket; raises OSError (a timeout) on failure."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.settimeout(timeout)
        udp.sendto(get_request(seq), address)
        return _udp_reply(udp, seq)


def tcp_who(address: Address, timeout: float = 2.0) -> tuple[str, str, str]:
    """(version, slot, process) of the process that answers, on a new connection; the
    process is ``<pid>@<started-ns>``, unique across container restarts."""
    with socket.create_connection(address, timeout=timeout) as conn:
        conn.sendall(b"WHO\n")
        version, slot, pid, started = _read_line(conn).decode().split()
        return version, slot, f"{pid}@{started}"


def tcp_state(address: Address, timeout: float = 30.0) -> dict[str, Any]:
    with socket.create_connection(address, timeout=timeout) as conn:
        conn.sendall(b"STATE\n")
        return json.loads(_read_line(conn))


def _read_line(conn: socket.socket) -> bytes:
    reply = b""
    while not reply.endswith(b"\n"):
        chunk = conn.recv(4096)
        if not chunk:
            raise ConnectionError(f"connection closed after {reply!r}")
        reply += chunk
    return reply


@dataclass
class LoadResult:
    """What a load loop saw: reply times (CLOCK_MONOTONIC ns) and failures."""

    protocol: str
    sent: int = 0
    replies: list[int] = field(default_factory=list)
    reply_versions: list[str] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    retries: int = 0  # keep-alive requests sent again after the service closed the connection

    @property
    def versions(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for version in self.reply_versions:
            counts[version] = counts.get(version, 0) + 1
        return counts

    @property
    def lost(self) -> int:
        return self.sent - len(self.replies)

    def max_gap_ms(self, start_ns: int = 0, end_ns: int | None = None) -> float:
        """The longest time without a reply between ``start_ns`` and ``end_ns``."""
        times = [t for t in self.replies if t >= start_ns and (end_ns is None or t <= end_ns)]
        return max(((b - a) / 1e6 for a, b in zip(times, times[1:])), default=0.0)

    def handover_gaps_ms(self) -> list[float]:
        """For each change of the answering version: the time from the old version's last
        reply to the new version's first, as a client sees a hand-over."""
        return [(self.replies[i] - self.replies[i - 1]) / 1e6
                for i in range(1, len(self.replies))
                if self.reply_versions[i] != self.reply_versions[i - 1]]


class LoadLoop:
    """Sends requests in a thread until stopped: at full speed, or at ``rate_hz``.

    ``tcp`` uses one connection per request (a lost request is one that fails or gets no
    reply); ``keepalive`` sends every request on one connection, as a long-lived client does,
    and when the service closes it without a reply (a hand-over's graceful close) sends that
    request again on a new one, counted in ``retries``; ``udp`` waits ``udp_timeout`` for each
    reply and counts a missing one as lost.
    """

    def __init__(self, address: Address, protocol: str = "tcp", rate_hz: float | None = None,
                 udp_timeout: float = 0.5) -> None:
        if protocol not in ("tcp", "keepalive", "udp"):
            raise ValueError(f"protocol {protocol!r}: use tcp, keepalive or udp")
        self.address = address
        self.result = LoadResult(protocol)
        self.rate_hz = rate_hz
        self.udp_timeout = udp_timeout
        self._conn: socket.socket | None = None  # the keep-alive connection
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"load-{protocol}", daemon=True)

    def start(self) -> LoadLoop:
        self._thread.start()
        return self

    def stop(self) -> LoadResult:
        self._stop.set()
        self._thread.join()
        return self.result

    def _run(self) -> None:
        udp = None
        if self.result.protocol == "udp":
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.settimeout(self.udp_timeout)
        interval_ns = int(1e9 / self.rate_hz) if self.rate_hz else 0
        next_ns = time.monotonic_ns()
        seq = 0
        while not self._stop.is_set():
            if interval_ns:
                delay = (next_ns - time.monotonic_ns()) / 1e9
                if delay > 0:
                    time.sleep(delay)
                next_ns += interval_ns
            seq += 1
            self._one(seq, udp)
        if udp is not None:
            udp.close()
        if self._conn is not None:
            self._conn.close()

    def _keepalive_get(self, seq: int) -> bytes:
        """One request on the kept connection; once more on a new connection if the service
        closed the kept one without replying (then it never read that request)."""
        try:
            return self._kept_get(seq)
        except ConnectionError:  # reset, broken pipe, or EOF before the reply
            self.result.retries += 1
            return self._kept_get(seq)

    def _kept_get(self, seq: int) -> bytes:
        if self._conn is None:
            self._conn = socket.create_connection(self.address, timeout=2.0)
        try:
            self._conn.sendall(get_request(seq))
            return _read_line(self._conn)
        except OSError:
            self._conn.close()
            self._conn = None
            raise

    def _one(self, seq: int, udp: socket.socket | None) -> None:
        result = self.result
        result.sent += 1
        started = time.monotonic_ns()
        try:
            if result.protocol == "keepalive":
                reply = self._keepalive_get(seq)
            elif udp is None:
                reply = tcp_get(self.address, seq)
            else:
                udp.sendto(get_request(seq), self.address)
                reply = _udp_reply(udp, seq)
        except OSError as exc:
            result.failures.append(f"{seq}: {type(exc).__name__}: {exc}")
            return
        done = time.monotonic_ns()
        result.replies.append(done)
        result.latencies_ms.append((done - started) / 1e6)
        result.reply_versions.append(reply.split(b" ", 1)[0].decode())


def _udp_reply(udp: socket.socket, seq: int) -> bytes:
    """The reply to ``seq``, skipping late replies to earlier requests."""
    while True:
        reply = udp.recv(2048)
        if reply.split(b" ", 3)[2:3] == [str(seq).encode()]:
            return reply
