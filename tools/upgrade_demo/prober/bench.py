"""``make bench-probe``: what the prober costs and how much delay it adds, per design.

Each candidate probes a trivial responder on loopback (a separate process answering the demo
protocol's ``GET``) with the demo's streams (TCP and UDP, 1 kHz each) for a few seconds, on an
idle machine and with every core busy (one spinning process per CPU, normal priority):

- ``python-select``: podkit's first prober, one Python process per stream
  (:mod:`upgrade_demo.prober.python_baseline`), ``select`` and ``SCHED_FIFO``;
- ``go-timerfd``: the compiled prober as shipped, one process for every stream, waiting in
  ``epoll_wait`` for sockets and a timerfd, ``SCHED_FIFO``; ``go-timerfd-normal`` the same
  without real-time priority;
- ``go-epoll-ms``, ``go-spin``, ``go-gotimer``: the compiled prober waiting with epoll's
  millisecond timeout, with that timeout plus a busy-wait for the rest, or with Go's timers.

Per candidate: ``cpu_us_per_request`` (user+sys from ``wait4``, less the CPU of the same
process started and stopped at once), ``cpu_percent`` of one core, send lateness (how long
after it was due a request left) and latency (from when it was due to its reply: the responder
is the same for all, so the differences are the prober's) as p50/p99/max in microseconds, and
requests sent and lost; ``died`` instead, with its last words, for a candidate that did not
survive the run. The last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import selectors
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

from benchmarks.intervals import percentile
from upgrade_demo import prober
from upgrade_demo.probe import LOST, StreamRecords, parse_run

Command = list[str]
GO_CANDIDATES = {"go-timerfd": ["-wake=timerfd"], "go-timerfd-normal": ["-wake=timerfd",
                                                                          "-realtime=false"],
                 "go-epoll-ms": ["-wake=epoll-ms"], "go-spin": ["-wake=spin"],
                 "go-gotimer": ["-wake=gotimer"]}
CANDIDATES = ("python-select", *GO_CANDIDATES)


# --- the responder -----------------------------------------------------------------------

def serve() -> None:
    """Answer ``GET <seq>`` on a TCP and a UDP port of 127.0.0.1 (printed as ``TCP UDP``)
    until stdin closes; one reply per request, TCP connections closed by the client."""
    sel = selectors.EpollSelector()
    listener = socket.create_server(("127.0.0.1", 0), backlog=4096)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    for sock in (listener, udp):
        sock.setblocking(False)
        sel.register(sock, selectors.EVENT_READ)
    sel.register(sys.stdin.fileno(), selectors.EVENT_READ)
    print(listener.getsockname()[1], udp.getsockname()[1], flush=True)
    while True:
        for key, _ in sel.select():
            if key.fileobj is listener:
                try:
                    conn, _ = listener.accept()
                except BlockingIOError:
                    continue
                conn.setblocking(False)
                sel.register(conn, selectors.EVENT_READ)
            elif key.fileobj is udp:
                try:
                    data, peer = udp.recvfrom(2048)
                    udp.sendto(_reply(data), peer)
                except OSError:
                    continue
            elif key.fileobj == sys.stdin.fileno():
                return
            elif isinstance(key.fileobj, socket.socket):
                conn = key.fileobj
                try:
                    data = conn.recv(4096)
                    if data:
                        conn.send(_reply(data))
                        continue
                except OSError:
                    pass
                sel.unregister(conn)
                conn.close()


def _reply(request: bytes) -> bytes:
    seq = request.split()[1] if len(request.split()) > 1 else b"0"
    return b"bench a " + seq + b" 0 hello\n"


@contextlib.contextmanager
def responder() -> Iterator[tuple[int, int]]:
    proc = subprocess.Popen([sys.executable, "-m", "upgrade_demo.prober.bench", "--serve"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        tcp, udp = (int(p) for p in proc.stdout.readline().split())
        yield tcp, udp
    finally:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def busy_cores(on: bool) -> Iterator[None]:
    """One process spinning at normal priority per CPU (when ``on``)."""
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
               for _ in range(os.cpu_count() or 1)] if on else []
    try:
        yield
    finally:
        for proc in burners:
            proc.kill()
            proc.wait()


# --- one candidate -----------------------------------------------------------------------

def _commands(candidate: str, targets: dict[str, tuple[str, tuple[str, int]]],
              rate_hz: float) -> list[Command]:
    if candidate == "python-select":
        return [[sys.executable, "-m", "upgrade_demo.prober.python_baseline", proto,
                 f"{host}:{port}", "--rate", str(rate_hz)]
                for proto, (host, port) in targets.values()]
    return [[str(prober.binary()), f"-rate={rate_hz}", *GO_CANDIDATES[candidate],
             *(f"{name}={proto}:{host}:{port}" for name, (proto, (host, port)) in
               targets.items())]]


def _run(commands: list[Command], seconds: float) -> tuple[list[StreamRecords], int, int, str]:
    """Run the processes for ``seconds``: their records, their user and system CPU (ns), and
    the last words of any that died ("" if none did)."""
    procs = [subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) for cmd in commands]
    time.sleep(seconds)
    for proc in procs:  # all at once: a process still probing would go on counting
        assert proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):  # it died already
            proc.stdin.write(b"stop\n")
            proc.stdin.close()
    streams: list[StreamRecords] = []
    user_ns = sys_ns = 0
    died = ""
    for proc in procs:
        assert proc.stdout is not None and proc.stderr is not None
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        user_ns += int(usage.ru_utime * 1e9)
        sys_ns += int(usage.ru_stime * 1e9)
        if proc.returncode != 0:
            died = died or (proc.stderr.read().decode(errors="replace").strip().splitlines()
                            or [f"exit {proc.returncode}"])[-1]
            continue
        data = json.loads(out)
        if "streams" in data:
            streams += parse_run(data).streams.values()
        else:
            data.pop("realtime")
            streams.append(StreamRecords.from_json(data))
    return streams, user_ns, sys_ns, died


def _us(values: list[int]) -> dict[str, float]:
    micro = [v / 1e3 for v in values]
    return {"p50": round(percentile(micro, 50), 1), "p99": round(percentile(micro, 99), 1),
            "max": round(max(micro, default=0.0), 1)}


def measure(candidate: str, targets: dict[str, tuple[str, tuple[str, int]]], rate_hz: float,
            seconds: float) -> dict[str, Any]:
    commands = _commands(candidate, targets, rate_hz)
    _, startup_user, startup_sys, _ = _run(commands, 0.0)
    streams, user_ns, sys_ns, died = _run(commands, seconds)
    if died:
        return {"died": died}
    sent = sum(len(rec.due_ns) for rec in streams)
    latencies = [lat for rec in streams for lat in rec.latency_ns if lat != LOST]
    user_ns, sys_ns = max(0, user_ns - startup_user), max(0, sys_ns - startup_sys)
    per_request = {"cpu_us_per_request": round((user_ns + sys_ns) / 1e3 / sent, 2),
                   "user_us_per_request": round(user_ns / 1e3 / sent, 2),
                   "sys_us_per_request": round(sys_ns / 1e3 / sent, 2)} if sent else {}
    return {**per_request, "cpu_percent": round(100 * (user_ns + sys_ns) / (seconds * 1e9), 2),
            "send_lateness_us": _us([v for rec in streams for v in rec.lateness_ns]),
            "latency_us": _us(latencies), "sent": sent, "lost": sent - len(latencies)}


def run(seconds: float, rate_hz: float, paths: int,
        candidates: list[str]) -> dict[str, Any]:
    prober.binary()  # built before anything is timed
    results: dict[str, Any] = {}
    with responder() as (tcp, udp):
        targets = {f"p{i}-{proto}": (proto, ("127.0.0.1", tcp if proto == "tcp" else udp))
                   for i in range(paths) for proto in ("tcp", "udp")}
        for load in ("idle", "loaded"):
            with busy_cores(load == "loaded"):
                for candidate in candidates:
                    print(f"bench-probe: {load} {candidate}", file=sys.stderr, flush=True)
                    results.setdefault(load, {})[candidate] = measure(
                        candidate, targets, rate_hz, seconds)
    return {"seconds": seconds, "rate_hz_per_stream": rate_hz, "streams": 2 * paths,
            "cpus": os.cpu_count(), "root": os.geteuid() == 0, "results": results}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m upgrade_demo.prober.bench",
                                     description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per candidate and load")
    parser.add_argument("--rate", type=float, default=1000.0, help="requests/s per stream")
    parser.add_argument("--paths", type=int, default=3,
                        help="TCP+UDP stream pairs (the demo probes 3 paths)")
    parser.add_argument("--candidates", default=",".join(CANDIDATES))
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve()
        return 0
    chosen = [c.strip() for c in args.candidates.split(",") if c.strip()]
    unknown = set(chosen) - set(CANDIDATES)
    if unknown or not 0 < args.seconds <= 60:
        parser.error(f"unknown candidates {sorted(unknown)} or --seconds outside (0, 60]")
    print(json.dumps(run(args.seconds, args.rate, args.paths, chosen)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
