"""The open-loop prober of the demo service: requests at a fixed rate over TCP and UDP.

Every request leaves on its schedule whether or not earlier ones were answered, so an outage
shows up as lost requests and late replies instead of as a probe that waited (the trap called
coordinated omission). A request's latency is counted from when it was *due*, so the prober's own
lateness is never hidden; how late each request actually left is recorded too (``lateness_ns``).

All streams of a run live in one process, the compiled prober of :mod:`upgrade_demo.prober` (one
thread, epoll and a timerfd, see its ``main.go``): measured by ``make bench-probe`` (6 streams at 1
kHz on the 2-core VM), it costs about 35-40 µs of CPU per request, most of it the kernel's loopback
handshake done in its context, a fifth of one core in all, and sends 22 µs after the schedule at
the median, 35-50 µs at p99; a Python process per stream cost 130-270 µs per request and, at
real-time priority, starved the machine. :class:`ProbeProcess` drives it: ``start``, ``retarget`` a
stream as often as needed (a pod recreated with a new IP), then ``stop`` for a :class:`ProbeRun`,
the records of every stream and the prober's own CPU time.

Design points:
- TCP opens one connection per request, as a new client would, and closes it with a reset so
  that 1,000 requests a second do not fill the port range with TIME_WAIT sockets;
- UDP sends every request of a stream from one socket, as a game client would, and matches
  replies by their sequence number;
- the prober never dies from its target: TCP connections in flight are bounded
  (``max_in_flight``, by default the prober's open-file limit less a reserve), shared out evenly
  among the TCP streams, so an outage that holds one stream's connections never costs another
  stream a request (UDP requests take no descriptor); a request that cannot be sent, for its
  stream's share, a full descriptor table (``EMFILE``, ``ENFILE``) or any socket error, is lost
  with that reason in ``failures``;
- run as root it gives its one loop thread a real-time priority (``SCHED_FIFO``): it stands in
  for clients on other machines, so its own scheduling delays on this shared machine must not be
  counted as the service's jitter, and at a few percent of one core it cannot starve the node.
"""

from __future__ import annotations

import json
import resource
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from upgrade_demo import prober

Address = tuple[str, int]
DEFAULT_RATE_HZ = 1000.0
DEFAULT_TIMEOUT_S = 1.0
LOST = -1
TIMEOUT = "timeout"  # failure reason: no reply within the timeout
IN_FLIGHT_BOUND = "in-flight-bound"  # failure reason: not sent, too many requests in flight


def parse_address(text: str) -> Address:
    host, sep, port = text.strip().rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"{text!r} is not HOST:PORT")
    return host, int(port)


@dataclass
class StreamRecords:
    """What one stream saw: per request, when it was due, how late it left, its latency
    (``LOST`` if no reply came within the timeout), and which version answered it."""

    protocol: str
    rate_hz: float
    due_ns: list[int] = field(default_factory=list)  # CLOCK_MONOTONIC, shared by all processes
    latency_ns: list[int] = field(default_factory=list)
    lateness_ns: list[int] = field(default_factory=list)  # sent this long after it was due
    version: list[int] = field(default_factory=list)  # index into versions, -1 when lost
    versions: list[str] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)  # by reason (errno name, "timeout")
    failures: list[tuple[int, str]] = field(default_factory=list)  # (request, reason)

    def to_json(self) -> dict[str, Any]:
        return self.__dict__.copy()

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StreamRecords:
        return cls(**data)


@dataclass(frozen=True)
class ProberUsage:
    """What the prober itself cost and did, over its whole run (every stream together)."""

    cpu_user_ns: int  # getrusage(RUSAGE_SELF) of the prober's process
    cpu_sys_ns: int
    wall_ns: int
    requests: int  # sent or attempted, all streams
    realtime: bool
    max_in_flight: int
    peak_in_flight: int

    @property
    def cpu_ns(self) -> int:
        return self.cpu_user_ns + self.cpu_sys_ns

    @property
    def cpu_percent(self) -> float:
        """Of one core, over the run."""
        return round(100 * self.cpu_ns / self.wall_ns, 2) if self.wall_ns else 0.0

    @property
    def cpu_us_per_request(self) -> float:
        return round(self.cpu_ns / 1e3 / self.requests, 2) if self.requests else 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"cpu_percent": self.cpu_percent,
                               "cpu_us_per_request": self.cpu_us_per_request}


@dataclass
class ProbeRun:
    """What a :class:`ProbeProcess` gave: every stream's records, by name, and its usage."""

    streams: dict[str, StreamRecords]
    usage: ProberUsage


@dataclass(frozen=True)
class Stream:
    protocol: str  # tcp or udp
    target: Address


class ProbeProcess:
    """Every stream of a run in one prober process: ``start``, ``retarget`` streams as often as
    needed, then ``stop`` for the :class:`ProbeRun`; ``kill`` ends it without records.

    ``nofile`` limits the process's open files (soft and hard, like ``ulimit -n``).
    """

    def __init__(self, streams: Mapping[str, Stream], rate_hz: float = DEFAULT_RATE_HZ,
                 timeout_s: float = DEFAULT_TIMEOUT_S, max_in_flight: int | None = None,
                 nofile: int | None = None) -> None:
        for name, stream in streams.items():
            if stream.protocol not in ("tcp", "udp") or not name or " " in name or "=" in name:
                raise ValueError(f"stream {name!r}: {stream}")
        self.streams = dict(streams)
        self.targets = {name: s.target for name, s in streams.items()}
        self.options = [f"-rate={rate_hz}", f"-timeout={timeout_s}",
                        f"-max-in-flight={max_in_flight or 0}"]
        self.nofile = nofile
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ProbeProcess:
        argv = [str(prober.binary()), *self.options,
                *(f"{name}={s.protocol}:{s.target[0]}:{s.target[1]}"
                  for name, s in self.streams.items())]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     preexec_fn=self._limits())
        return self

    def _limits(self) -> Callable[[], None] | None:
        limit = self.nofile
        if limit is None:
            return None
        return lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    def retarget(self, name: str, target: Address) -> None:
        """Aim stream ``name`` at ``target`` from its next request on."""
        if name not in self.targets:
            raise KeyError(name)
        if target != self.targets[name] and self.proc is not None and self.proc.stdin:
            self.proc.stdin.write(f"target {name} {target[0]}:{target[1]}\n".encode())
            self.proc.stdin.flush()
            self.targets[name] = target

    def stop(self, timeout: float = 60.0) -> ProbeRun:
        if self.proc is None:
            raise RuntimeError("the prober was not started")
        out, _ = self.proc.communicate(b"stop\n", timeout=timeout)
        if self.proc.returncode != 0:
            raise RuntimeError(f"the prober exited with {self.proc.returncode} (its stderr "
                               "above says why)")
        return parse_run(json.loads(out))

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def parse_run(data: dict[str, Any]) -> ProbeRun:
    """A :class:`ProbeRun` from the prober's JSON output."""
    streams = {name: StreamRecords.from_json(rec) for name, rec in data["streams"].items()}
    usage = ProberUsage(cpu_user_ns=data["cpu_user_ns"], cpu_sys_ns=data["cpu_sys_ns"],
                        wall_ns=data["wall_ns"],
                        requests=sum(len(rec.due_ns) for rec in streams.values()),
                        realtime=data["realtime"], max_in_flight=data["max_in_flight"],
                        peak_in_flight=data["peak_in_flight"])
    return ProbeRun(streams, usage)
