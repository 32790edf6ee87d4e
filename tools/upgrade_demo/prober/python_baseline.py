"""podkit's first prober, one Python process per stream: kept as ``make bench-probe``'s
baseline, the design the compiled prober (``main.go``) replaced.

``python -m upgrade_demo.prober.python_baseline tcp|udp HOST:PORT [--rate HZ] [--timeout S]``:
it waits with ``select`` (whose timeout has microsecond resolution, but which cannot watch a
descriptor above 1023), takes ``SCHED_FIFO`` when it may, reads ``stop`` on stdin and prints its
:class:`~upgrade_demo.probe.StreamRecords` as JSON. It died with more than 1,000 requests in
flight; the benchmark never has that many.
"""

from __future__ import annotations

import errno
import json
import os
import selectors
import socket
import struct
import sys
import time

from upgrade_demo.probe import LOST, StreamRecords, parse_address

Address = tuple[str, int]
_RESET_ON_CLOSE = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close sends RST


class _Request:
    __slots__ = ("index", "deadline_ns", "sock", "buffer")

    def __init__(self, index: int, deadline_ns: int, sock: socket.socket | None) -> None:
        self.index, self.deadline_ns, self.sock, self.buffer = index, deadline_ns, sock, b""


class Probe:
    """One stream's event loop (run in its own process by ``main``)."""

    def __init__(self, protocol: str, target: Address, rate_hz: float,
                 timeout_s: float) -> None:
        if protocol not in ("tcp", "udp"):
            raise ValueError(f"protocol {protocol!r}: use tcp or udp")
        self.target = target
        self.records = StreamRecords(protocol, rate_hz)
        self.interval_ns = int(1e9 / rate_hz)
        self.timeout_ns = int(timeout_s * 1e9)
        self.selector = selectors.SelectSelector()
        self.pending: dict[int, _Request] = {}  # by request index, oldest first
        self.udp: socket.socket | None = None
        self.stopping = False

    # --- the loop ------------------------------------------------------------------------
    def run(self, commands: int | None = None) -> StreamRecords:
        """Send on schedule until ``stop`` arrives on ``commands`` (a file descriptor), then
        wait for the requests still out and return the records."""
        if commands is not None:
            os.set_blocking(commands, False)
            self.selector.register(commands, selectors.EVENT_READ, "commands")
        if self.records.protocol == "udp":
            self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.udp.setblocking(False)
            self.selector.register(self.udp, selectors.EVENT_READ, "udp")
        next_ns = time.monotonic_ns()
        while not self.stopping or self.pending:
            now = time.monotonic_ns()
            if not self.stopping and now >= next_ns:
                self._send(next_ns)
                next_ns += self.interval_ns
                continue
            self._expire(now)
            wake = min(next_ns if not self.stopping else now + self.timeout_ns,
                       self._oldest_deadline(now))
            for key, events in self.selector.select(max(0, wake - now) / 1e9):
                self._event(key, events)
        if self.udp is not None:
            self.udp.close()
        self.selector.close()
        return self.records

    def _oldest_deadline(self, now: int) -> int:
        oldest = next(iter(self.pending.values()), None)
        return oldest.deadline_ns if oldest else now + self.timeout_ns

    def _event(self, key: selectors.SelectorKey, events: int) -> None:
        if key.data == "commands":
            self._command(key.fd)
        elif key.data == "udp":
            self._udp_replies()
        else:
            self._tcp_event(key.data, events)

    def _command(self, fd: int) -> None:
        try:
            data = os.read(fd, 4096)
        except BlockingIOError:
            return
        if not data:
            self._stop_reading(fd)
            return
        for line in data.decode().splitlines():
            words = line.split()
            if words[:1] == ["target"] and len(words) == 2:
                self.target = parse_address(words[1])
            elif words == ["stop"]:
                self._stop_reading(fd)

    def _stop_reading(self, fd: int) -> None:
        self.stopping = True
        self.selector.unregister(fd)

    # --- requests ------------------------------------------------------------------------
    def _send(self, due_ns: int) -> None:
        rec = self.records
        index = len(rec.due_ns)
        rec.due_ns.append(due_ns)
        rec.latency_ns.append(LOST)
        rec.version.append(-1)
        rec.lateness_ns.append(time.monotonic_ns() - due_ns)
        payload = f"GET {index}\n".encode()
        if self.udp is not None:
            try:
                self.udp.sendto(payload, self.target)
            except OSError as exc:
                self._fail(index, exc)
                return
            self.pending[index] = _Request(index, due_ns + self.timeout_ns, None)
            return
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET_ON_CLOSE)
        code = sock.connect_ex(self.target)
        if code not in (0, errno.EINPROGRESS):
            sock.close()
            self._fail(index, OSError(code, os.strerror(code)))
            return
        request = _Request(index, due_ns + self.timeout_ns, sock)
        request.buffer = payload
        self.pending[index] = request
        self.selector.register(sock, selectors.EVENT_WRITE, request)

    def _tcp_event(self, request: _Request, events: int) -> None:
        sock = request.sock
        assert sock is not None
        try:
            if events & selectors.EVENT_WRITE:
                code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if code:
                    raise OSError(code, os.strerror(code))
                sock.send(request.buffer)  # a few bytes into an empty buffer: sent whole
                request.buffer = b""
                self.selector.modify(sock, selectors.EVENT_READ, request)
                return
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed without a reply")
        except OSError as exc:
            self._drop(request)
            self._fail(request.index, exc)
            return
        request.buffer += chunk
        if request.buffer.endswith(b"\n"):
            self._drop(request)
            self._answered(request.index, request.buffer)

    def _udp_replies(self) -> None:
        assert self.udp is not None
        while True:
            try:
                reply = self.udp.recv(2048)
            except BlockingIOError:
                return
            except OSError as exc:  # an ICMP error from an earlier datagram
                self._count_error(exc)
                continue
            fields = reply.split(b" ", 3)
            index = int(fields[2]) if len(fields) > 2 and fields[2].isdigit() else -1
            if self.pending.pop(index, None) is not None:
                self._answered(index, reply)

    def _answered(self, index: int, reply: bytes) -> None:
        rec = self.records
        rec.latency_ns[index] = time.monotonic_ns() - rec.due_ns[index]
        version = reply.split(b" ", 1)[0].decode(errors="replace")
        if version not in rec.versions:
            rec.versions.append(version)
        rec.version[index] = rec.versions.index(version)

    def _expire(self, now: int) -> None:
        while self.pending:
            request = next(iter(self.pending.values()))
            if request.deadline_ns > now:
                return
            self._drop(request)
            self._fail(request.index, TimeoutError("no reply within the timeout"))

    def _drop(self, request: _Request) -> None:
        self.pending.pop(request.index, None)
        if request.sock is not None:
            self.selector.unregister(request.sock)
            request.sock.close()

    def _fail(self, index: int, exc: BaseException) -> None:
        self.pending.pop(index, None)
        self.records.failures.append((index, type(exc).__name__))
        self._count_error(exc)

    def _count_error(self, exc: BaseException) -> None:
        name = type(exc).__name__
        self.records.errors[name] = self.records.errors.get(name, 0) + 1


def _take_realtime_priority() -> bool:
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
        return True
    except (PermissionError, AttributeError):
        return False


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m upgrade_demo.prober.python_baseline",
                                     description=__doc__.split("\n", 1)[0])
    parser.add_argument("protocol", choices=("tcp", "udp"))
    parser.add_argument("target", help="HOST:PORT")
    parser.add_argument("--rate", type=float, default=1000.0, help="requests/s")
    parser.add_argument("--timeout", type=float, default=1.0,
                        help="seconds after which an unanswered request counts as lost")
    args = parser.parse_args(argv)
    try:
        target = parse_address(args.target)
    except ValueError as err:
        parser.error(str(err))
    realtime = _take_realtime_priority()
    records = Probe(args.protocol, target, args.rate, args.timeout).run(sys.stdin.fileno())
    json.dump(records.to_json() | {"realtime": realtime}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
