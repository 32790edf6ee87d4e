"""The business's own probes, run by the sidecar against the ACTIVE slot only.

A swap pod's slots cannot carry the business container's probes: the idle slot runs the pause
image and the standby does not serve yet, so a readiness or liveness probe there would fail
for the wrong reason. The operator gives them to the sidecar instead (env ``PODKIT_PROBES``,
JSON ``{"readiness": {...}, "liveness": {...}, "startup": {...}}`` in the Kubernetes probe form,
named ports already resolved), and the sidecar runs them against whichever slot is active: the
slots share the pod's network, so ``httpGet`` and ``tcpSocket`` reach the one that serves.

What a verdict means (:meth:`ProbeRunner.verdict`), for the active slot only (any other slot
is never failed by them):

- readiness failing ``failureThreshold`` times in a row makes the slot unready until it passes
  ``successThreshold`` times; the sidecar then answers 503 on ``/readyz/slot/<s>`` and
  ``/readyz``, so the kubelet reports the slot container and the pod not ready, the pod leaves
  its Services (podkit's EndpointSlices too), and the operator sees it;
- liveness failing ``failureThreshold`` times marks the slot unhealthy (unready, as above)
  until another process takes over the slot; the operator fails such a pod's update during a
  release and reports it in the StatefulSetPlus's status after one;
- startup: readiness and liveness start once it passed; failing ``failureThreshold`` times
  marks the slot unhealthy.

A slot that takes over starts ready: it told podkit it had initialised (READY) before it took
the lock, and starting unready would take every swapped pod out of its Services for a probe
period. ``initialDelaySeconds`` counts from the take-over. ``exec`` (and ``grpc``) probes are
not run here: the sidecar cannot run a command inside the slot's container.
"""

from __future__ import annotations

import http.client
import re
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import PodkitError
from .files import loads_json
from .layout import SharedDir
from .readiness import observe

KINDS = ("startup", "readiness", "liveness")
TICK_S = 0.1  # how often the runner looks at the slots and its probes' schedules


@dataclass(frozen=True)
class Probe:
    """One probe as given (Kubernetes defaults applied)."""

    kind: str
    action: str  # http or tcp
    port: int
    host: str = "127.0.0.1"
    path: str = "/"
    scheme: str = "HTTP"
    headers: tuple[tuple[str, str], ...] = ()
    initial_delay_s: float = 0.0
    period_s: float = 10.0
    timeout_s: float = 1.0
    success_threshold: int = 1
    failure_threshold: int = 3

    @classmethod
    def parse(cls, kind: str, raw: Any) -> Probe | None:
        """The probe of a Kubernetes probe object; None for an action the sidecar cannot run
        (exec, grpc). A port must be a number (the operator resolves names). Anything that is
        not a probe object of that form raises :class:`PodkitError` saying which field."""
        where = f"PODKIT_PROBES {kind}"
        raw = _object(raw, where)
        timing: dict[str, Any] = {
            "initial_delay_s": float(_count(raw, "initialDelaySeconds", 0, 0, where)),
            "period_s": float(_count(raw, "periodSeconds", 10, 1, where)),
            "timeout_s": float(_count(raw, "timeoutSeconds", 1, 1, where)),
            "success_threshold": _count(raw, "successThreshold", 1, 1, where),
            "failure_threshold": _count(raw, "failureThreshold", 3, 1, where)}
        if "httpGet" in raw:
            get = _object(raw["httpGet"], f"{where} httpGet")
            scheme = _text(get, "scheme", "HTTP", where).upper()
            if scheme not in ("HTTP", "HTTPS"):
                raise PodkitError(f"{where} httpGet scheme {scheme!r} is not HTTP or HTTPS")
            headers = get.get("httpHeaders") or []
            if not isinstance(headers, list):
                raise PodkitError(f"{where} httpGet httpHeaders is not a list")
            pairs = tuple(_header(_object(h, f"{where} httpHeaders entry"), where)
                          for h in headers)
            return cls(kind, "http", _port(get.get("port")), _host(get, where),
                       _text(get, "path", "/", where), scheme, pairs, **timing)
        if "tcpSocket" in raw:
            tcp = _object(raw["tcpSocket"], f"{where} tcpSocket")
            return cls(kind, "tcp", _port(tcp.get("port")), _host(tcp, where), **timing)
        return None

    def describe(self) -> str:
        target = (f"GET {self.scheme.lower()}://{self.host}:{self.port}{self.path}"
                  if self.action == "http" else f"tcp {self.host}:{self.port}")
        return f"{self.kind} probe {target}"


def _port(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 65536:
        return value
    raise PodkitError(f"probe port {value!r} is not a port number; name ports only in the pod "
                      "spec (the operator resolves them)")


def _object(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise PodkitError(f"{where} is {value!r}, not a JSON object")
    return value


def _count(raw: Mapping[str, Any], key: str, default: int, least: int, where: str) -> int:
    """A whole number of seconds or times, at least ``least`` (as the Kubernetes API says)."""
    value = raw.get(key, default)
    if type(value) is not int or value < least:
        raise PodkitError(f"{where} {key} {value!r} is not a whole number of at least {least}")
    return value


def _text(raw: Mapping[str, Any], key: str, default: str | None, where: str) -> str:
    """A string field; empty or absent gives ``default`` (``None``: the field is required)."""
    value = raw.get(key) or default
    if not isinstance(value, str):
        raise PodkitError(f"{where} {key} {value!r} is not a string")
    return value


_TOKEN_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP header name (RFC 9110)
_HOST_RE = re.compile(r"[^\s\x00-\x1f\x7f/?#@]+")  # what http.client takes as a host


def _host(raw: Mapping[str, Any], where: str) -> str:
    host = _text(raw, "host", "127.0.0.1", where)
    if not _HOST_RE.fullmatch(host):
        raise PodkitError(f"{where} host {host!r} is not a host name or address")
    return host


def _header(raw: Mapping[str, Any], where: str) -> tuple[str, str]:
    """One ``httpHeaders`` entry; http.client would refuse (ValueError) what this refuses."""
    name, value = _text(raw, "name", None, where), _text(raw, "value", "", where)
    if not _TOKEN_RE.fullmatch(name) or any(c in value for c in "\r\n\0"):
        raise PodkitError(f"{where} httpHeaders entry {name!r}: {value!r} is not a valid "
                          "HTTP header")
    return name, value


def parse_probes(text: str | None) -> list[Probe]:
    """The probes of ``PODKIT_PROBES`` (JSON); an empty or missing value gives none."""
    if not text or not text.strip():
        return []
    try:
        raw = loads_json(text)
    except ValueError as exc:
        raise PodkitError(f"PODKIT_PROBES is not JSON: {exc}") from None
    if not isinstance(raw, dict) or not set(raw) <= set(KINDS):
        raise PodkitError(f"PODKIT_PROBES must be an object with keys among {', '.join(KINDS)}")
    probes = [Probe.parse(kind, raw[kind]) for kind in KINDS if raw.get(kind)]
    return [p for p in probes if p is not None]


def attempt(probe: Probe) -> tuple[bool, str]:
    """Run ``probe`` once: (passed, what happened). HTTP passes with a status 200-399, as the
    kubelet's does; TCP when a connection is established."""
    try:
        if probe.action == "tcp":
            with socket.create_connection((probe.host, probe.port), timeout=probe.timeout_s):
                return True, "connected"
        connection_class = (http.client.HTTPSConnection if probe.scheme == "HTTPS"
                            else http.client.HTTPConnection)
        conn = connection_class(probe.host, probe.port, timeout=probe.timeout_s)
        try:
            conn.request("GET", probe.path, headers=dict(probe.headers))
            reply = conn.getresponse()
            reply.read(1024)
        finally:
            conn.close()
        return 200 <= reply.status < 400, f"HTTP {reply.status}"
    except (OSError, http.client.HTTPException) as exc:
        return False, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


@dataclass
class _Track:
    """One probe's results since the active slot took over."""

    probe: Probe
    next_at: float
    ok: bool = True  # a slot that takes over starts ready (see the module's docstring)
    passed: bool = False  # startup: it passed once
    successes: int = 0
    failures: int = 0
    last: str = "not run yet"

    def record(self, ok: bool, what: str) -> None:
        self.last = what
        if ok:
            self.successes, self.failures = self.successes + 1, 0
            if self.successes >= self.probe.success_threshold:
                self.ok = self.passed = True
        else:
            self.successes, self.failures = 0, self.failures + 1
            if self.failures >= self.probe.failure_threshold:
                self.ok = False


@dataclass
class _Active:
    """The process that serves now: its slot, pid and when it took over."""

    slot: str
    pid: int
    since: float
    tracks: dict[str, _Track] = field(default_factory=dict)
    unhealthy: str | None = None  # liveness or startup failed: sticky until a new process


class ProbeRunner:
    """Runs the probes in a thread against the active slot and keeps their verdict."""

    def __init__(self, shared: SharedDir, probes: list[Probe],
                 run: Callable[[Probe], tuple[bool, str]] = attempt,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.shared = shared
        self.probes = {p.kind: p for p in probes}
        self._run = run
        self._clock = clock
        self._lock = threading.Lock()
        self._active: _Active | None = None
        self._stopped = threading.Event()

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self._loop, name="business-probes", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stopped.set()

    def _loop(self) -> None:
        while not self._stopped.wait(TICK_S):
            self.tick()

    def tick(self) -> None:
        """Follow the active slot and run the probes that are due (one pass)."""
        view = observe(self.shared)
        active = view.active_slots
        state = view.slots[active[0]].state if len(active) == 1 else None
        now = self._clock()
        with self._lock:
            current = self._active
            if state is None:
                self._active = None
                return
            if current is None or (current.slot, current.pid) != (state.slot, state.pid):
                current = self._active = _Active(state.slot, state.pid, now, {
                    kind: _Track(p, now + p.initial_delay_s) for kind, p in self.probes.items()})
        for track in self._due(current, now):
            ok, what = self._run(track.probe)
            with self._lock:
                if self._active is not current:
                    return  # another process took over meanwhile: its results start afresh
                track.record(ok, what)
                if not track.ok and track.probe.kind in ("liveness", "startup"):
                    current.unhealthy = current.unhealthy or (
                        f"{track.probe.describe()} failed {track.failures} times: {what}")

    def _due(self, active: _Active, now: float) -> list[_Track]:
        with self._lock:
            startup = active.tracks.get("startup")
            started = startup is None or startup.passed
            due = []
            for kind, track in active.tracks.items():
                if kind != "startup" and not started:
                    continue
                if kind == "startup" and track.passed:
                    continue
                if now >= track.next_at:
                    track.next_at = now + track.probe.period_s
                    due.append(track)
            return due

    def verdict(self, slot: str) -> tuple[bool, str]:
        """(ok, reason) of ``slot`` by the business's probes: only the active slot can fail."""
        with self._lock:
            active = self._active
            if active is None or active.slot != slot:
                return True, "not the active slot: the business's probes do not apply"
            if active.unhealthy:
                return False, f"slot {slot} unhealthy: {active.unhealthy}"
            readiness = active.tracks.get("readiness")
            if readiness is not None and not readiness.ok:
                return False, (f"slot {slot}: {readiness.probe.describe()} failed "
                               f"{readiness.failures} times: {readiness.last}")
            return True, f"slot {slot}: the business's probes pass"

    def status(self) -> dict[str, Any]:
        """The probes' state for ``/state``."""
        with self._lock:
            active = self._active
            if active is None:
                return {"active": None, "probes": sorted(self.probes)}
            return {"active": active.slot, "pid": active.pid, "unhealthy": active.unhealthy,
                    "probes": {kind: {"ok": t.ok, "failures": t.failures,
                                      "successes": t.successes, "last": t.last,
                                      "probe": t.probe.describe()}
                               for kind, t in active.tracks.items()}}
