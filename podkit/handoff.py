"""Listening-socket hand-off: the listeners outlive every process that serves them.

A listening socket is a kernel object; a file descriptor is only a reference to it. The active
slot process serves a Unix stream socket at ``<PODKIT_DIR>/handoff.sock``: whoever connects
receives, in one message, a JSON description of the listeners with their descriptors attached
(``SCM_RIGHTS``). A standby fetches these copies as soon as it starts, so from then on the kernel
socket, its accept queue and its datagram buffer live as long as *either* process holds them. A
hand-over then needs no close and no re-bind (closing and re-binding, or ``SO_REUSEPORT``, drops
connections): the old process stops accepting, the new one starts, and whatever arrived in
between waits in the shared queue. A crash of the active process loses nothing that is still
queued either.

Who calls what (see ``docs/handoff-protocol.md`` for the wire format):

* at start, active or standby: :func:`acquire_listeners` (copies from the active process, or
  fresh sockets on the pod's first start);
* on becoming active: :meth:`HandoffServer.start`, then serve with an :class:`Acceptor`;
* on handing over: :meth:`Acceptor.stop_accepting`, :meth:`HandoffServer.stop`, release the
  hand-over lock, finish in-flight work, exit.

The listeners are non-blocking, and that flag lives in the shared open file description: both
processes see it. Never make them blocking (a process blocked in ``accept`` would hang when the
peer takes the connection first) and never ``shutdown()`` them (that stops the socket for every
holder); closing a copy is always safe.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import json
import os
import re
import secrets
import select
import socket
import struct
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import PodkitError
from .files import loads_json
from .layout import SharedDir

PROTOCOL_VERSION = 1
MAGIC = b"PKHO"
# magic, then the length of the JSON document (big-endian uint32)
HEADER = struct.Struct(">4sI")
MAX_JSON_BYTES = 64 * 1024
MAX_LISTENERS = 64  # well under the kernel's SCM_MAX_FD (253)
LISTENERS_ENV = "PODKIT_LISTENERS"

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_SPEC_RE = re.compile(r"^(?P<name>[^=]+)=(?P<type>[a-z0-9]+)://"
                      r"(?:\[(?P<host6>[^\]]+)\]|(?P<host>[^:/\[\]]*)):(?P<port>[0-9]+)$")
_SUN_PATH_MAX = 108  # sizeof(sockaddr_un.sun_path), NUL included
_TYPES = {"tcp": socket.SOCK_STREAM, "udp": socket.SOCK_DGRAM}
_FAMILIES = {"inet": socket.AF_INET, "inet6": socket.AF_INET6}
_RETRY_BIND_S = 0.02


# --- what a listener is --------------------------------------------------------------------

def _check_name(name: str, source: str) -> None:
    if not _NAME_RE.match(name):
        raise PodkitError(f"{source}: listener name {name!r} is not valid; use 1-63 letters, "
                          "digits and . _ - starting with a letter or digit")


def _parse_host(host: str, source: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        raise PodkitError(f"{source}: {host!r} is not an IP address; listen on an address "
                          "such as 0.0.0.0, 127.0.0.1 or [::] (host names are not resolved)"
                          ) from None


def _is_port(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 65535


def _address_version(host: str) -> int | None:
    """4 or 6 for an IP address literal, ``None`` for anything else."""
    try:
        return ipaddress.ip_address(host).version
    except ValueError:
        return None


@dataclass(frozen=True)
class ListenerSpec:
    """A listener a process asks for: ``name=tcp://HOST:PORT`` or ``name=udp://[HOST6]:PORT``.

    The family follows from the address literal, so a spec is one socket; a service that wants
    IPv4 and IPv6 declares two listeners (IPv6 sockets are ``IPV6_V6ONLY``). Port 0 binds any
    free port, and accepts whatever port a received listener has.
    """

    name: str
    type: str
    host: str
    port: int
    backlog: int = socket.SOMAXCONN

    def __post_init__(self) -> None:
        source = f"listener {self.name!r}"
        _check_name(self.name, source)
        if self.type not in _TYPES:
            raise PodkitError(f"{source}: type {self.type!r} is not supported; use tcp or udp")
        _parse_host(self.host, source)
        if not 0 <= self.port <= 65535:
            raise PodkitError(f"{source}: port {self.port} is out of range; use 0-65535")
        if self.backlog < 1:
            raise PodkitError(f"{source}: backlog {self.backlog} must be at least 1")

    @classmethod
    def parse(cls, text: str) -> ListenerSpec:
        """Parse ``name=tcp://127.0.0.1:8080`` or ``name=udp://[::]:5000``."""
        match = _SPEC_RE.match(text.strip())
        if match is None:
            raise PodkitError(f"listener spec {text!r} is not valid; write NAME=tcp://HOST:PORT "
                              "or NAME=udp://HOST:PORT, with IPv6 hosts in brackets "
                              "(web=tcp://0.0.0.0:8080, rtp=udp://[::]:5000)")
        host6, host = match["host6"], match["host"]
        if host6 is not None:
            if _parse_host(host6, f"listener spec {text!r}").version != 6:
                raise PodkitError(f"listener spec {text!r}: brackets are for IPv6 addresses; "
                                  "write an IPv4 address without them")
            host = host6
        elif not host:
            raise PodkitError(f"listener spec {text!r} has no host; write 0.0.0.0 for every "
                              "IPv4 address or [::] for every IPv6 address")
        elif ":" in host:
            raise PodkitError(f"listener spec {text!r}: put an IPv6 address in brackets")
        return cls(name=match["name"], type=match["type"], host=host, port=int(match["port"]))

    @property
    def family(self) -> str:
        """``inet`` or ``inet6``."""
        return "inet6" if ipaddress.ip_address(self.host).version == 6 else "inet"

    def __str__(self) -> str:
        host = f"[{self.host}]" if self.family == "inet6" else self.host
        return f"{self.name}={self.type}://{host}:{self.port}"


def parse_specs(items: Iterable[ListenerSpec | str]) -> list[ListenerSpec]:
    """Specs from strings (or specs); names must be unique."""
    specs = [item if isinstance(item, ListenerSpec) else ListenerSpec.parse(item)
             for item in items]
    seen: set[str] = set()
    for spec in specs:
        if spec.name in seen:
            raise PodkitError(f"listener name {spec.name!r} is given twice; give each "
                              "listener its own name")
        seen.add(spec.name)
    if len(specs) > MAX_LISTENERS:
        raise PodkitError(f"{len(specs)} listeners asked for; at most {MAX_LISTENERS} can be "
                          "handed over")
    return specs


@dataclass(frozen=True)
class ListenerInfo:
    """A listener as it is bound: the wire description of one handed-over descriptor."""

    name: str
    family: str
    type: str
    host: str
    port: int

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "family": self.family, "type": self.type,
                "address": {"host": self.host, "port": self.port}}

    @classmethod
    def from_json(cls, item: Any) -> ListenerInfo:
        """A listener entry of the wire description; :class:`PodkitError` saying what is
        wrong with a malformed one (a missing field, a wrong type, a host that is not an
        address literal of its family)."""
        try:
            address = item["address"]
            name, family, kind = item["name"], item["family"], item["type"]
            host, port = address["host"], address["port"]
        except (TypeError, KeyError) as exc:
            raise PodkitError(f"hand-off description has a malformed listener entry {item!r} "
                              f"(missing {exc}); both processes must speak hand-off protocol "
                              f"{PROTOCOL_VERSION}") from None
        problem = None
        if not isinstance(name, str) or not _NAME_RE.match(name):
            problem = f"name {name!r} is not a listener name"
        elif not isinstance(family, str) or family not in _FAMILIES:
            problem = f"family {family!r} is not one of {', '.join(_FAMILIES)}"
        elif not isinstance(kind, str) or kind not in _TYPES:
            problem = f"type {kind!r} is not one of {', '.join(_TYPES)}"
        elif not _is_port(port):
            problem = f"port {port!r} is not a port number (0-65535)"
        elif not isinstance(host, str) or _address_version(host) != (6 if family == "inet6" else 4):
            problem = f"host {host!r} is not an {family} address"
        if problem:
            raise PodkitError(f"hand-off description has an invalid listener entry {item!r}: "
                              f"{problem}")
        return cls(name=name, family=family, type=kind, host=host, port=port)

    @classmethod
    def of_socket(cls, name: str, sock: socket.socket) -> ListenerInfo:
        family = "inet6" if sock.family == socket.AF_INET6 else "inet"
        kind = "tcp" if sock.type == socket.SOCK_STREAM else "udp"
        host, port = sock.getsockname()[:2]
        return cls(name=name, family=family, type=kind, host=host, port=port)

    def mismatch(self, spec: ListenerSpec) -> str | None:
        """Why this bound listener cannot serve ``spec``, or ``None`` when it can."""
        if self.type != spec.type or self.family != spec.family:
            return f"it is {self.family}/{self.type}, asked for {spec.family}/{spec.type}"
        if ipaddress.ip_address(self.host) != ipaddress.ip_address(spec.host):
            return f"it is bound to {self.host}, asked for {spec.host}"
        if spec.port and spec.port != self.port:
            return f"it is bound to port {self.port}, asked for port {spec.port}"
        return None


@dataclass(frozen=True)
class HandoffMessage:
    """The JSON document of one hand-off: who sends it and what each descriptor is."""

    pid: int
    listeners: tuple[ListenerInfo, ...]

    def encode(self) -> bytes:
        """Header and JSON, ready for one ``sendmsg`` with the descriptors."""
        body = json.dumps({"protocol": PROTOCOL_VERSION, "pid": self.pid,
                           "listeners": [info.to_json() for info in self.listeners]},
                          separators=(",", ":")).encode()
        if len(body) > MAX_JSON_BYTES:
            raise PodkitError(f"hand-off description is {len(body)} bytes, over the limit of "
                              f"{MAX_JSON_BYTES}; use fewer or shorter-named listeners")
        if len(self.listeners) > MAX_LISTENERS:
            raise PodkitError(f"{len(self.listeners)} listeners cannot be handed over; at most "
                              f"{MAX_LISTENERS}")
        return HEADER.pack(MAGIC, len(body)) + body

    @classmethod
    def decode(cls, data: bytes) -> HandoffMessage:
        """Parse header and JSON; raise :class:`PodkitError` saying what is wrong."""
        if len(data) < HEADER.size:
            raise PodkitError(f"hand-off message is {len(data)} bytes, shorter than its header")
        magic, length = HEADER.unpack_from(data)
        if magic != MAGIC:
            raise PodkitError(f"hand-off message starts with {magic!r}, not {MAGIC!r}; "
                              "something else answers on handoff.sock")
        if length > MAX_JSON_BYTES:
            raise PodkitError(f"hand-off description announces {length} bytes, over the limit "
                              f"of {MAX_JSON_BYTES}")
        body = data[HEADER.size:]
        if len(body) != length:
            raise PodkitError(f"hand-off description is {len(body)} bytes, its header says "
                              f"{length}; the sender stopped half-way")
        try:
            document = loads_json(body)
        except ValueError as exc:
            raise PodkitError(f"hand-off description is not JSON ({exc})") from None
        if not isinstance(document, dict):
            raise PodkitError("hand-off description is not a JSON object")
        protocol = document.get("protocol")
        if type(protocol) is not int or protocol != PROTOCOL_VERSION:
            raise PodkitError(f"the active process speaks hand-off protocol "
                              f"{protocol!r}, this one {PROTOCOL_VERSION}; "
                              "use podkit versions with the same protocol in both slots")
        items = document.get("listeners")
        pid = document.get("pid")
        if not isinstance(items, list) or type(pid) is not int:
            raise PodkitError("hand-off description lacks its 'pid' or 'listeners' field")
        if pid < 1:
            raise PodkitError(f"hand-off description gives pid {pid}, not a process id")
        return cls(pid=pid, listeners=_infos(items, "hand-off description"))


def check_match(specs: Sequence[ListenerSpec], infos: Sequence[ListenerInfo],
                peer: str = "the active process") -> None:
    """Raise unless ``infos`` are exactly the listeners ``specs`` ask for (matched by name)."""
    wanted = {spec.name: spec for spec in specs}
    have = {info.name: info for info in infos}
    problems = []
    missing = [name for name in wanted if name not in have]
    extra = [name for name in have if name not in wanted]
    if missing:
        problems.append(f"it has no listener {', '.join(map(repr, missing))}")
    if extra:
        problems.append(f"it has listener {', '.join(map(repr, extra))} that this process "
                        "does not ask for")
    for name, spec in wanted.items():
        info = have.get(name)
        reason = info.mismatch(spec) if info is not None else None
        if reason:
            problems.append(f"listener {name!r}: {reason}")
    if problems:
        raise PodkitError(f"{peer} hands over listeners that do not match this process's "
                          f"({'; '.join(problems)}); a swap keeps the listeners as they are: "
                          "give both versions the same listener names and addresses, or "
                          "restart the pod to change them")


# --- a set of listening sockets -------------------------------------------------------------

class _AddressInUse(Exception):
    def __init__(self, spec: ListenerSpec) -> None:
        super().__init__(str(spec))
        self.spec = spec


def _bind(spec: ListenerSpec) -> socket.socket:
    family = _FAMILIES[spec.family]
    sock = socket.socket(family, _TYPES[spec.type])
    try:
        if spec.type == "tcp":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        try:
            sock.bind((spec.host, spec.port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise _AddressInUse(spec) from None
            hint = {errno.EACCES: "ports below 1024 need root or CAP_NET_BIND_SERVICE",
                    errno.EADDRNOTAVAIL: "no interface of this host has that address"}
            raise PodkitError(f"cannot bind listener {str(spec)!r}: {exc.strerror}; "
                              f"{hint.get(exc.errno or 0, 'check the address and port')}"
                              ) from exc
        if spec.type == "tcp":
            sock.listen(spec.backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


@dataclass(frozen=True)
class Listener:
    """One named listening socket."""

    info: ListenerInfo
    sock: socket.socket

    @property
    def name(self) -> str:
        return self.info.name


class ListenerSet:
    """Named listening sockets, in a fixed order (the order of the specs asked for).

    ``origin`` is ``"bound"`` when this process bound them, ``"received"`` when they came over
    the hand-off socket (then ``peer_pid`` is the sender) and ``"inherited"`` from a parent.
    """

    def __init__(self, listeners: Sequence[Listener], origin: str,
                 peer_pid: int | None = None) -> None:
        self._listeners = tuple(listeners)
        self._by_name = {item.name: item for item in self._listeners}
        self.origin = origin
        self.peer_pid = peer_pid

    @classmethod
    def bind(cls, specs: Iterable[ListenerSpec | str]) -> ListenerSet:
        """Bind fresh sockets; :class:`PodkitError` if one cannot be bound."""
        try:
            return cls._bind_all(parse_specs(specs))
        except _AddressInUse as exc:
            raise PodkitError(f"cannot bind listener {str(exc.spec)!r}: the address is in use; "
                              "stop the process that holds it or choose another port") from None

    @classmethod
    def _bind_all(cls, specs: Sequence[ListenerSpec]) -> ListenerSet:
        bound: list[Listener] = []
        try:
            for spec in specs:
                sock = _bind(spec)
                bound.append(Listener(ListenerInfo.of_socket(spec.name, sock), sock))
        except BaseException:
            for item in bound:
                item.sock.close()
            raise
        return cls(bound, origin="bound")

    def listener(self, name: str) -> Listener:
        try:
            return self._by_name[name]
        except KeyError:
            raise PodkitError(f"no listener named {name!r}; the listeners are "
                              f"{', '.join(self.names) or '(none)'}") from None

    def __getitem__(self, name: str) -> socket.socket:
        return self.listener(name).sock

    def __iter__(self) -> Iterator[Listener]:
        return iter(self._listeners)

    def __len__(self) -> int:
        return len(self._listeners)

    @property
    def names(self) -> list[str]:
        return [item.name for item in self._listeners]

    @property
    def infos(self) -> list[ListenerInfo]:
        return [item.info for item in self._listeners]

    def address(self, name: str) -> tuple[str, int]:
        """The bound (host, port) of a listener."""
        info = self.listener(name).info
        return info.host, info.port

    def message(self) -> HandoffMessage:
        return HandoffMessage(pid=os.getpid(), listeners=tuple(self.infos))

    def acceptor(self) -> Acceptor:
        """An :class:`Acceptor` over all these listeners."""
        return Acceptor(item.sock for item in self._listeners)

    def child_env(self, first_fd: int | None = None) -> tuple[dict[str, str], list[int]]:
        """Environment entry and descriptors to give a child process these listeners.

        Start the child with ``subprocess.Popen(..., env={**os.environ, **env}, pass_fds=fds)``;
        the child calls :meth:`from_environ`. The value of ``PODKIT_LISTENERS`` is the JSON
        array of the wire description with an ``fd`` field added to each entry. With
        ``first_fd`` the entries name the descriptors ``first_fd``, ``first_fd + 1``, ... in
        order, for a parent that places them there in the child (:mod:`podkit.inherit`).
        """
        fds = [item.sock.fileno() for item in self._listeners]
        numbers = fds if first_fd is None else list(range(first_fd, first_fd + len(fds)))
        entries = [dict(item.info.to_json(), fd=fd)
                   for item, fd in zip(self._listeners, numbers)]
        return {LISTENERS_ENV: json.dumps(entries, separators=(",", ":"))}, fds

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> ListenerSet | None:
        """The listeners a parent passed with :meth:`child_env`; ``None`` when it passed none.

        Reading ``os.environ`` (the default) removes the variable and makes the descriptors
        close-on-exec, so this process's own children do not see a description of
        descriptors they do not have. Call it once.
        """
        if environ is None:
            raw = os.environ.pop(LISTENERS_ENV, None)
        else:
            raw = environ.get(LISTENERS_ENV)
        if not raw:
            return None
        infos, fds = parse_listeners_env(raw)
        return _adopt(infos, fds, origin="inherited", peer_pid=os.getppid(),
                      peer=f"{LISTENERS_ENV}")

    def close(self) -> None:
        """Close this process's copies; the kernel sockets live on in any other holder."""
        for item in self._listeners:
            item.sock.close()

    def __enter__(self) -> ListenerSet:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def parse_listeners_env(raw: str) -> tuple[list[ListenerInfo], list[int]]:
    """The listeners and descriptor numbers of a ``PODKIT_LISTENERS`` value
    (:meth:`ListenerSet.child_env` writes it); :class:`PodkitError` if it is malformed."""
    try:
        entries = loads_json(raw)
        if not isinstance(entries, list):
            raise TypeError("not a list")
        fds = [entry["fd"] for entry in entries]
    except (ValueError, TypeError, KeyError):
        raise PodkitError(f"{LISTENERS_ENV} is not the JSON list podkit writes; start the "
                          "service under `podkit run`") from None
    for fd in fds:
        if type(fd) is not int or fd < 0:
            raise PodkitError(f"{LISTENERS_ENV} gives descriptor {fd!r}, not a descriptor "
                              "number; start the service under `podkit run`")
    return list(_infos(entries, LISTENERS_ENV)), fds


def _infos(items: list[Any], source: str) -> tuple[ListenerInfo, ...]:
    """The listener entries of a description: at most :data:`MAX_LISTENERS`, names unique."""
    if len(items) > MAX_LISTENERS:
        raise PodkitError(f"{source} describes {len(items)} listeners, over the limit of "
                          f"{MAX_LISTENERS}")
    infos = tuple(ListenerInfo.from_json(item) for item in items)
    names = [info.name for info in infos]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise PodkitError(f"{source} describes listener {', '.join(map(repr, twice))} twice")
    return infos


def _adopt(infos: Sequence[ListenerInfo], fds: Sequence[int], origin: str,
           peer_pid: int | None, peer: str) -> ListenerSet:
    """Wrap received descriptors as sockets, checking each is what its description says.

    On any error every descriptor is closed, so a failed hand-off leaks nothing.
    """
    adopted: list[Listener] = []
    pending = list(fds)
    try:
        if len(infos) != len(fds):
            raise PodkitError(f"{peer} described {len(infos)} listeners but passed "
                              f"{len(fds)} descriptors")
        for info in infos:
            fd = pending.pop(0)
            try:
                sock = socket.socket(fileno=fd)
            except OSError:
                os.close(fd)
                raise PodkitError(f"{peer} passed descriptor for listener {info.name!r} that "
                                  "is not a socket") from None
            actual = ListenerInfo.of_socket(info.name, sock)
            adopted.append(Listener(actual, sock))
            if actual != info:
                raise PodkitError(f"{peer} described listener {info.name!r} as {info}, but "
                                  f"the descriptor is {actual}")
            if info.type == "tcp" and not sock.getsockopt(socket.SOL_SOCKET,
                                                          socket.SO_ACCEPTCONN):
                raise PodkitError(f"{peer} passed listener {info.name!r} that is not listening")
            sock.setblocking(False)  # already so in the shared file description
            sock.set_inheritable(False)  # an inherited descriptor may arrive inheritable
    except BaseException:
        for item in adopted:
            item.sock.close()
        for fd in pending:
            os.close(fd)
        raise
    return ListenerSet(adopted, origin=origin, peer_pid=peer_pid)


# --- waiting for traffic, and stopping at once ---------------------------------------------

class Acceptor:
    """Waits for connections and datagrams on shared listeners; :meth:`stop_accepting` ends
    every wait at once without touching the listeners, which the peer process goes on using.

    The wake-up is a pipe that is written once and never drained, so every waiting thread
    sees it and every later call returns at once. :meth:`stop_accepting` is safe to call from
    any thread and from a signal handler.
    """

    def __init__(self, sockets: Iterable[socket.socket]) -> None:
        self._sockets = list(sockets)
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._stopped = False

    @property
    def stopping(self) -> bool:
        return self._stopped

    def stop_accepting(self) -> None:
        """Make every current and future wait return: no more connections or datagrams."""
        self._stopped = True
        try:
            os.write(self._wake_w, b"!")
        except OSError:
            pass  # already written (pipe full) or closed: the waiters have been woken

    def _wait(self, sockets: Sequence[socket.socket],
              timeout: float | None) -> list[socket.socket]:
        if self._stopped:
            return []
        poller = select.poll()
        poller.register(self._wake_r, select.POLLIN)
        for sock in sockets:
            poller.register(sock, select.POLLIN)
        events = poller.poll(None if timeout is None else max(0.0, timeout) * 1000)
        if self._stopped:
            return []
        ready = {fd for fd, _ in events}
        return [sock for sock in sockets if sock.fileno() in ready]

    def ready(self, timeout: float | None = None) -> list[socket.socket]:
        """The listeners with something waiting; ``[]`` on timeout or once stopping.

        A ready listener may be empty by the time this process reads it (the peer process
        may take the connection or datagram first): ``accept``/``recvfrom`` then raise
        :class:`BlockingIOError`, which means "nothing for us, wait again".
        """
        return self._wait(self._sockets, timeout)

    def accept(self, sock: socket.socket,
               timeout: float | None = None) -> tuple[socket.socket, Any] | None:
        """The next connection on ``sock`` (a blocking socket), or ``None`` when stopping
        (or after ``timeout`` seconds)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._stopped:
            try:
                conn, peer = sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                pass
            else:
                conn.setblocking(True)
                return conn, peer
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return None
            self._wait([sock], remaining)
        return None

    def recvfrom(self, sock: socket.socket, bufsize: int,
                 timeout: float | None = None) -> tuple[bytes, Any] | None:
        """The next datagram on ``sock`` and its sender, or ``None`` when stopping (or after
        ``timeout`` seconds)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._stopped:
            try:
                return sock.recvfrom(bufsize)
            except (BlockingIOError, InterruptedError):
                pass
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return None
            self._wait([sock], remaining)
        return None

    def close(self) -> None:
        """Release the wake-up pipe (stops first, so no wait is left hanging)."""
        self.stop_accepting()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._wake_r = self._wake_w = -1

    def __enter__(self) -> Acceptor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# --- the hand-off socket ----------------------------------------------------------------------

def _shared(shared_dir: SharedDir | Path | str) -> SharedDir:
    return shared_dir if isinstance(shared_dir, SharedDir) else SharedDir(Path(shared_dir))


@contextlib.contextmanager
def _sun_path(path: Path) -> Iterator[str]:
    """A name for ``path`` that fits ``sockaddr_un`` (108 bytes).

    A longer path is reached through ``/proc/self/fd/<dir>/<name>``, which resolves to the
    same directory entry; ``/podkit/handoff.sock`` never needs it, deep test directories do.
    """
    if len(os.fsencode(path)) < _SUN_PATH_MAX:
        yield str(path)
        return
    dir_fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        short = f"/proc/self/fd/{dir_fd}/{path.name}"
        if len(os.fsencode(short)) >= _SUN_PATH_MAX:
            raise PodkitError(f"socket file name {path.name!r} is too long; shorten it")
        yield short
    finally:
        os.close(dir_fd)


class HandoffServer:
    """The active process's hand-off socket, served from a daemon thread.

    :meth:`start` binds a temporary name in the shared directory and renames it over
    ``handoff.sock``, so the path always names a live server or, after a crash, a stale file
    the next active process replaces in one step. Each client gets the listeners and is
    disconnected; one client at a time.
    """

    def __init__(self, shared_dir: SharedDir | Path | str, listeners: ListenerSet,
                 mode: int = 0o600, send_timeout: float = 2.0) -> None:
        self.path = _shared(shared_dir).handoff_socket
        self.listeners = listeners
        self.mode = mode
        self.send_timeout = send_timeout
        self.served = 0
        self.errors = 0
        self._payload = listeners.message().encode()
        self._fds = [item.sock.fileno() for item in listeners]
        self._sock: socket.socket | None = None
        self._acceptor: Acceptor | None = None
        self._thread: threading.Thread | None = None
        self._identity: tuple[int, int] | None = None

    def start(self) -> HandoffServer:
        """Serve the listeners at ``handoff.sock`` (replacing whatever is there)."""
        if self._thread is not None:
            return self
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            try:
                with _sun_path(tmp) as name:
                    sock.bind(name)
                os.chmod(tmp, self.mode)
                sock.listen(16)
                stat = os.stat(tmp)
                os.rename(tmp, self.path)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise PodkitError(f"cannot serve the hand-off socket {self.path}: "
                                  f"{exc.strerror}; make PODKIT_DIR writable and make sure "
                                  f"{self.path.name} is not a directory") from exc
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self._identity = (stat.st_dev, stat.st_ino)
        self._sock = sock
        self._acceptor = Acceptor([sock])
        self._thread = threading.Thread(target=self._serve, name="podkit-handoff", daemon=True)
        self._thread.start()
        return self

    def _serve(self) -> None:
        assert self._sock is not None and self._acceptor is not None
        while True:
            got = self._acceptor.accept(self._sock)
            if got is None:
                return
            conn = got[0]
            try:
                conn.settimeout(self.send_timeout)
                socket.send_fds(conn, [self._payload], self._fds, socket.MSG_NOSIGNAL)
                self.served += 1
            except OSError:
                self.errors += 1  # the client went away: its loss, the next one is served
            finally:
                conn.close()

    def stop(self) -> None:
        """Stop serving and remove ``handoff.sock`` if it is still ours.

        Call it before releasing the hand-over lock: the next active process replaces the path
        only once it holds the lock, so the file removed here is never the successor's.
        """
        if self._thread is None:
            return
        assert self._acceptor is not None and self._sock is not None
        self._acceptor.stop_accepting()
        self._thread.join()
        try:
            stat = os.stat(self.path)
            if (stat.st_dev, stat.st_ino) == self._identity:
                os.unlink(self.path)
        except FileNotFoundError:
            pass
        self._sock.close()
        self._acceptor.close()
        self._thread = None

    def __enter__(self) -> HandoffServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _message_size(data: bytes) -> int:
    """How many bytes the message starting with ``data`` has (header, then JSON)."""
    if len(data) < HEADER.size:
        return HEADER.size
    return HEADER.size + min(HEADER.unpack_from(data)[1], MAX_JSON_BYTES)


def fetch_listeners(shared_dir: SharedDir | Path | str,
                    timeout: float = 5.0) -> ListenerSet | None:
    """Receive copies of the active process's listeners; ``None`` when nobody serves them.

    "Nobody" is: no socket file, a stale one (connection refused), or a server that closed
    the connection without a word (it was stopping). Anything else that goes wrong is a
    :class:`PodkitError`.
    """
    path = _shared(shared_dir).handoff_socket
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    received: list[int] = []
    try:
        client.settimeout(timeout)
        try:
            with _sun_path(path) as name:
                client.connect(name)
        except (FileNotFoundError, ConnectionRefusedError):
            return None
        except BlockingIOError:
            raise PodkitError(f"the hand-off socket {path} has a full backlog; the active "
                              "process is not answering, check that it is not stuck") from None
        except OSError as exc:
            raise PodkitError(f"cannot connect to the hand-off socket {path}: {exc.strerror}; "
                              "run both slots as the same user, with PODKIT_DIR writable"
                              ) from exc
        try:
            data, received, flags, _ = socket.recv_fds(
                client, HEADER.size + MAX_JSON_BYTES, MAX_LISTENERS, socket.MSG_CMSG_CLOEXEC)
            if flags & socket.MSG_CTRUNC:
                raise PodkitError(f"the process serving {path} passed more than "
                                  f"{MAX_LISTENERS} descriptors")
            if not data:
                return None
            while len(data) < _message_size(data):
                more = client.recv(_message_size(data) - len(data))
                if not more:
                    break  # decode() below says what is missing
                data += more
        except ConnectionResetError:
            return None
        except TimeoutError:
            raise PodkitError(f"the process serving {path} accepted but sent nothing within "
                              f"{timeout:g} s; is the active process stuck?") from None
        message = HandoffMessage.decode(data)
        fds, received = received, []
        return _adopt(message.listeners, fds, origin="received", peer_pid=message.pid,
                      peer=f"the active process (pid {message.pid})")
    finally:
        client.close()
        for fd in received:
            os.close(fd)


def acquire_listeners(shared_dir: SharedDir | Path | str,
                      specs: Iterable[ListenerSpec | str],
                      timeout: float = 10.0) -> ListenerSet:
    """The listeners for a starting slot process: copies from the active one, else fresh.

    If the hand-off socket answers, its listeners must be exactly the ``specs`` (by name,
    type, family, address) or this raises :class:`PodkitError`. If nothing answers (the pod's
    first start, or the active process crashed), fresh sockets are bound. A bind that finds
    the address in use means some process holds the listeners without serving them yet (an
    active process still starting, or one between hand-overs): ask again until ``timeout``.
    The result is in the order of ``specs``.
    """
    wanted = parse_specs(specs)
    deadline = time.monotonic() + timeout
    while True:
        remaining = max(deadline - time.monotonic(), 0.05)
        got = fetch_listeners(shared_dir, timeout=remaining)
        if got is not None:
            try:
                check_match(wanted, got.infos, peer=f"the active process (pid {got.peer_pid})")
            except PodkitError:
                got.close()
                raise
            by_name = {item.name: item for item in got}
            return ListenerSet([by_name[spec.name] for spec in wanted], origin=got.origin,
                               peer_pid=got.peer_pid)
        try:
            return ListenerSet._bind_all(wanted)
        except _AddressInUse as exc:
            if time.monotonic() >= deadline:
                raise PodkitError(
                    f"cannot bind listener {str(exc.spec)!r}: the address is in use, and no "
                    f"process answered on {_shared(shared_dir).handoff_socket} within "
                    f"{timeout:g} s; stop whatever else holds the port, or check that the "
                    "active slot serves the hand-off socket") from None
        time.sleep(_RETRY_BIND_S)
