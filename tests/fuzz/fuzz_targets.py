"""The fuzz targets: each wire format podkit parses from what another container can write.

A target is a hypothesis strategy of inputs and a check. The check calls the parser and
accepts exactly two outcomes: a value that is valid (checked here, independently of the
parser), or :class:`~podkit.errors.PodkitError` (its subclasses included) with a message.
Any other exception is a crash. Round-trip targets encode a valid value and parse it back.

``test_fuzz_parsers.py`` runs every target inside ``make test`` (a small fixed, derandomized
budget); ``run.py`` runs them for ``FUZZ_SECONDS`` in ``make fuzz``.
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import shlex
import signal
import struct
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from podkit import shm
from podkit.errors import PodkitError
from podkit.handoff import (
    HEADER,
    MAGIC,
    HandoffMessage,
    ListenerInfo,
    ListenerSpec,
    check_match,
    parse_listeners_env,
)
from podkit.layout import CONTROL_SIGNALS, SLOTS, SharedDir
from podkit.probes import KINDS, Probe, parse_probes
from podkit.reload import HOOK_KINDS, Hook
from podkit.runner import parse_control_request
from podkit.slot_records import (
    MODES,
    ROLES,
    SlotState,
    read_state,
    read_version,
    write_state,
    write_version,
)

# Examples per target in the suite (times the target's ``share``; PODKIT_FUZZ_EXAMPLES
# overrides): about 30 s of one core for all of them.
SUITE_EXAMPLES = int(os.environ.get("PODKIT_FUZZ_EXAMPLES", "200"))

NAME_RE = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}"
VERSION_RE = r"[A-Za-z0-9][A-Za-z0-9._+:@/-]{0,127}"


@dataclass(frozen=True)
class Target:
    """One fuzzed parser: ``check(example)`` for every ``strategy`` example."""

    name: str
    strategy: st.SearchStrategy[Any] = field(repr=False)
    check: Callable[[Any], None] = field(repr=False)
    # The target's share of the suite's examples: the round trips through files fsync each.
    share: float = 1.0


def expect_podkit_error(parse: Callable[[], Any]) -> Any:
    """The parser's value, or ``None`` when it raised :class:`PodkitError` with a message;
    any other exception propagates (a crash)."""
    try:
        return parse()
    except PodkitError as exc:
        assert str(exc).strip(), "a PodkitError without a message"
        return None


# --- strategies shared by the targets ------------------------------------------------------

def json_values(max_leaves: int = 20) -> st.SearchStrategy[Any]:
    scalars = (st.none() | st.booleans() | st.integers() | st.floats()
               | st.text(max_size=20))
    return st.recursive(scalars, lambda inner: st.lists(inner, max_size=5)
                        | st.dictionaries(st.text(max_size=10), inner, max_size=5),
                        max_leaves=max_leaves)


def json_text(values: st.SearchStrategy[Any]) -> st.SearchStrategy[str]:
    """JSON documents of ``values`` (non-finite floats as Python writes them), and now and
    then one nested deeper than any parser's stack (as much as 64 KiB of ``[``)."""
    deep = st.builds(lambda depth, opener: opener * depth, st.integers(500, 60000),
                     st.sampled_from(["[", '{"a":', '[{"listeners":']))
    return values.map(lambda value: json.dumps(value)) | deep


def hosts() -> st.SearchStrategy[str]:
    return (st.ip_addresses().map(str) | st.sampled_from(["0.0.0.0", "::", "localhost", ""])
            | st.text(max_size=12))


def mostly(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A field's valid values, now and then anything at all."""
    return st.one_of(valid, valid, valid, json_values(4))


def listener_entries() -> st.SearchStrategy[dict[str, Any]]:
    address = st.fixed_dictionaries({"host": mostly(hosts()),
                                     "port": mostly(st.integers(-1, 70000))})
    return st.fixed_dictionaries(
        {"name": mostly(st.from_regex(NAME_RE, fullmatch=True)),
         "family": mostly(st.sampled_from(["inet", "inet6", "unix"])),
         "type": mostly(st.sampled_from(["tcp", "udp", "sctp"])),
         "address": mostly(address)},
        optional={"fd": mostly(st.integers(-1, 2000))})


def valid_infos() -> st.SearchStrategy[ListenerInfo]:
    def info(name: str, kind: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address,
             port: int) -> ListenerInfo:
        family = "inet6" if address.version == 6 else "inet"
        return ListenerInfo(name=name, family=family, type=kind, host=str(address), port=port)
    return st.builds(info, st.from_regex(NAME_RE, fullmatch=True), st.sampled_from(["tcp", "udp"]),
                     st.ip_addresses(), st.integers(0, 65535))


# --- the hand-off message ------------------------------------------------------------------

def _framed(body: bytes) -> bytes:
    return HEADER.pack(MAGIC, len(body)) + body


def handoff_documents() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"protocol": mostly(st.just(1)), "pid": mostly(st.integers(-5, 2**31)),
         "listeners": mostly(st.lists(mostly(listener_entries()), max_size=4))})


def handoff_inputs() -> st.SearchStrategy[bytes]:
    header_only = st.builds(lambda magic, length, body: struct.pack(">4sI", magic, length) + body,
                            st.sampled_from([MAGIC, b"PKHX", b"\0\0\0\0"]),
                            st.integers(0, 2**32 - 1), st.binary(max_size=64))
    return st.one_of(
        st.binary(max_size=256),
        header_only,
        st.binary(max_size=256).map(_framed),
        json_text(json_values()).map(lambda text: _framed(text.encode())),
        handoff_documents().map(lambda doc: _framed(json.dumps(doc).encode())),
    )


def _check_info(info: ListenerInfo) -> None:
    assert isinstance(info.name, str) and info.name
    assert info.type in ("tcp", "udp") and info.family in ("inet", "inet6")
    assert isinstance(info.port, int) and not isinstance(info.port, bool)
    assert 0 <= info.port <= 65535
    address = ipaddress.ip_address(info.host)  # must be an address literal
    assert info.family == ("inet6" if address.version == 6 else "inet")


_SPECS = [ListenerSpec.parse("web=tcp://0.0.0.0:8080"), ListenerSpec.parse("rtp=udp://[::]:0")]


def check_handoff(data: bytes) -> None:
    message = expect_podkit_error(lambda: HandoffMessage.decode(data))
    if message is None:
        return
    assert isinstance(message.pid, int) and not isinstance(message.pid, bool)
    assert message.pid > 0
    names = [info.name for info in message.listeners]
    assert len(names) == len(set(names)), "duplicate listener names accepted"
    for info in message.listeners:
        _check_info(info)
    # What the receiver does next with a decoded message: match it against its own specs.
    expect_podkit_error(lambda: check_match(_SPECS, message.listeners))


def check_handoff_round_trip(message: HandoffMessage) -> None:
    assert HandoffMessage.decode(message.encode()) == message


def handoff_messages() -> st.SearchStrategy[HandoffMessage]:
    return st.builds(HandoffMessage, st.integers(1, 2**31 - 1),
                     st.lists(valid_infos(), max_size=8, unique_by=lambda info: info.name)
                     .map(tuple))


# --- PODKIT_LISTENERS (the listeners a parent passes to its child) -------------------------

def listeners_env_inputs() -> st.SearchStrategy[str]:
    return st.one_of(st.text(max_size=64), json_text(json_values()),
                     st.lists(mostly(listener_entries()), max_size=4).map(json.dumps))


def check_listeners_env(raw: str) -> None:
    parsed = expect_podkit_error(lambda: parse_listeners_env(raw))
    if parsed is None:
        return
    infos, fds = parsed
    assert len(infos) == len(fds)
    for info in infos:
        _check_info(info)
    for fd in fds:
        assert isinstance(fd, int) and not isinstance(fd, bool) and fd >= 0


# --- listener specs (--listen) ---------------------------------------------------------------

def spec_inputs() -> st.SearchStrategy[str]:
    structured = st.builds(lambda name, kind, host, port: f"{name}={kind}://{host}:{port}",
                           mostly(st.from_regex(NAME_RE, fullmatch=True)),
                           st.sampled_from(["tcp", "udp", "sctp", ""]),
                           hosts() | hosts().map(lambda h: f"[{h}]"),
                           st.integers(-1, 10**6))
    return st.one_of(st.text(max_size=40), structured.map(str))


def check_spec(text: str) -> None:
    spec = expect_podkit_error(lambda: ListenerSpec.parse(text))
    if spec is not None:
        assert ListenerSpec.parse(str(spec)) == spec


# --- the shared-memory header ----------------------------------------------------------------

_FIELDS = struct.Struct("<8sIIIIQQQII")


def _sealed(fields: bytes) -> bytes:
    return fields + struct.pack("<I", zlib.crc32(fields))


def sealed_headers() -> st.SearchStrategy[bytes]:
    """Headers whose crc is right, so the fields behind it are parsed: mostly well-formed."""
    u32, u64 = st.integers(0, 2**32 - 1), st.integers(0, 2**64 - 1)
    small = st.integers(0, 256) | u64
    return st.builds(
        lambda *values: _sealed(_FIELDS.pack(*values)),
        mostly_one(shm.MAGIC, st.just(b"PODKITSX")), mostly_one(1, u32),
        mostly_one(shm.HEADER_SIZE, u32), mostly_one(1, u32), u32, u64, small, u64, u32, u32)


def mostly_one(value: Any, other: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.just(value), st.just(value), st.just(value), other)


def header_inputs() -> st.SearchStrategy[bytes]:
    consistent = sealed_headers()
    valid = shm.Header(layout_version=1, payload_size=4096).encode()
    flipped = st.builds(lambda at, value: valid[:at] + bytes([value]) + valid[at + 1:],
                        st.integers(0, len(valid) - 1), st.integers(0, 255))
    return st.one_of(st.binary(max_size=80), consistent, flipped,
                     st.binary(min_size=60, max_size=60).map(lambda raw: shm.MAGIC + raw[8:]))


def check_header(data: bytes) -> None:
    header = expect_podkit_error(lambda: shm.Header.decode(data, "fuzzed header"))
    if header is not None:
        assert header.header_version == shm.HEADER_VERSION
        assert header.header_size == shm.HEADER_SIZE
        assert header.encode() == bytes(data[:len(header.encode())])


def headers() -> st.SearchStrategy[shm.Header]:
    u32, u64 = st.integers(0, 2**32 - 1), st.integers(0, 2**64 - 1)
    return st.builds(shm.Header, layout_version=u32, payload_size=u64, generation=u64,
                     flags=u32, sealed_at_ns=u64, checksum=u32, writer_pid=u32)


def check_header_round_trip(header: shm.Header) -> None:
    assert shm.Header.decode(header.encode()) == header


def segment_files() -> st.SearchStrategy[bytes]:
    """A whole segment file: a header with a right crc (``shm_header`` fuzzes the others; each
    one costs the reader's retries, 10 ms), the page's padding, a short payload."""
    return st.builds(lambda head, payload: head.ljust(shm.HEADER_SIZE, b"\0") + payload,
                     sealed_headers(), st.binary(max_size=300))


class _Dirs:
    """Scratch directories made once per process (a file per example would be slow)."""

    _made: dict[str, Path] = {}

    @classmethod
    def get(cls, kind: str) -> Path:
        if kind not in cls._made:
            cls._made[kind] = Path(tempfile.mkdtemp(prefix=f"podkit-fuzz-{kind}-"))
        return cls._made[kind]


def check_segment_file(content: bytes) -> None:
    directory = _Dirs.get("shm")
    (directory / "seg").write_bytes(content)
    segment = expect_podkit_error(lambda: shm.Segment.attach("seg", 1, writable=False,
                                                              shm_dir=directory))
    if segment is not None:
        with segment:
            assert len(segment.payload) == segment.payload_size <= len(content) - shm.HEADER_SIZE


# --- the state and version files --------------------------------------------------------------

def state_records() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"slot": mostly(st.sampled_from(SLOTS)), "role": mostly(st.sampled_from(ROLES)),
         "version": mostly(st.from_regex(VERSION_RE, fullmatch=True)),
         "pid": mostly(st.integers(-2, 2**40)),
         "since": mostly(st.floats(allow_nan=True, allow_infinity=True)),
         "mode": mostly(st.sampled_from(MODES))})


def state_inputs() -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=128), json_text(json_values()).map(str.encode),
                     state_records().map(lambda rec: json.dumps(rec).encode()))


def check_state(content: bytes) -> None:
    shared = SharedDir(_Dirs.get("state"))
    shared.state_file("a").write_bytes(content)
    state = expect_podkit_error(lambda: read_state(shared, "a"))
    if state is not None:
        assert state.slot == "a" and state.role in ROLES and state.mode in MODES
        assert isinstance(state.pid, int) and not isinstance(state.pid, bool) and state.pid > 0
        assert isinstance(state.since, float) and math.isfinite(state.since)


def slot_states() -> st.SearchStrategy[SlotState]:
    return st.builds(SlotState, slot=st.sampled_from(SLOTS), role=st.sampled_from(ROLES),
                     version=st.from_regex(VERSION_RE, fullmatch=True),
                     pid=st.integers(1, 2**22), since=st.floats(0, 2e9),
                     mode=st.sampled_from(MODES))


def check_state_round_trip(state: SlotState) -> None:
    shared = SharedDir(_Dirs.get("state-rt"))
    write_state(shared, state)
    assert read_state(shared, state.slot) == state


def version_inputs() -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=160), st.text(max_size=140).map(str.encode),
                     st.from_regex(VERSION_RE, fullmatch=True).map(lambda v: f"{v}\n".encode()))


def check_version(content: bytes) -> None:
    shared = SharedDir(_Dirs.get("version"))
    shared.version_file("a").write_bytes(content)
    version = expect_podkit_error(lambda: read_version(shared, "a"))
    if version is not None:
        assert version == content.decode("ascii").strip()
        assert 1 <= len(version) <= 128 and version.isprintable() and " " not in version


def check_version_round_trip(version: str) -> None:
    shared = SharedDir(_Dirs.get("version-rt"))
    write_version(shared, "b", version)
    assert read_version(shared, "b") == version


# --- the slot control socket ---------------------------------------------------------------

def control_inputs() -> st.SearchStrategy[bytes]:
    words = st.sampled_from(["SIGNAL", "RESTART", "signal", "HUP", "SIGHUP", "usr1", "KILL",
                             "TERM", "RTMIN", "SIG", ""])
    return st.one_of(st.binary(max_size=256),
                     st.lists(words | st.text(max_size=8), max_size=4)
                     .map(lambda parts: " ".join(parts).encode("utf-8", "replace")))


def check_control(data: bytes) -> None:
    try:
        signum = parse_control_request(data)
    except PodkitError as exc:
        assert str(exc).strip()
        return
    if signum is None:
        assert data.split() == [b"RESTART"]
    else:
        assert signum.name.removeprefix("SIG") in CONTROL_SIGNALS


def control_round_trip(name: str) -> None:
    request = f"SIGNAL {name}\n".encode()
    assert parse_control_request(request) == signal.Signals[f"SIG{name}"]


# --- the config hook (--config-hook) ---------------------------------------------------------

def hook_inputs() -> st.SearchStrategy[str]:
    return st.one_of(st.text(max_size=40),
                     st.builds(lambda kind, arg: f"{kind}:{arg}",
                               st.sampled_from(HOOK_KINDS), st.text(max_size=30)),
                     st.sampled_from(HOOK_KINDS))


def check_hook(text: str) -> None:
    hook = expect_podkit_error(lambda: Hook.parse(text))
    if hook is None:
        return
    assert hook.kind in HOOK_KINDS
    assert Hook.parse(str(hook)) == hook
    if hook.kind == "command":
        argv = shlex.split(hook.argument)
        assert argv and argv[0] and all("\0" not in arg for arg in argv)


# --- PODKIT_PROBES ---------------------------------------------------------------------------

def probe_objects() -> st.SearchStrategy[dict[str, Any]]:
    port = mostly(st.integers(-1, 70000))
    header = mostly(st.fixed_dictionaries({"name": mostly(st.text(max_size=8)),
                                           "value": mostly(st.text(max_size=8))}))
    http_get = st.fixed_dictionaries({"port": port}, optional={
        "path": mostly(st.text(max_size=10)), "host": mostly(st.text(max_size=10)),
        "scheme": mostly(st.sampled_from(["HTTP", "HTTPS", "http", "FTP"])),
        "httpHeaders": mostly(st.lists(header, max_size=3))})
    number = mostly(st.integers(-2, 100))
    return st.fixed_dictionaries({}, optional={
        "httpGet": mostly(http_get), "tcpSocket": mostly(st.fixed_dictionaries({"port": port})),
        "exec": st.just({"command": ["true"]}), "initialDelaySeconds": number,
        "periodSeconds": number, "timeoutSeconds": number, "successThreshold": number,
        "failureThreshold": number})


def probes_inputs() -> st.SearchStrategy[str]:
    return st.one_of(st.text(max_size=40), json_text(json_values()),
                     st.dictionaries(st.sampled_from(KINDS) | st.text(max_size=8),
                                     mostly(probe_objects()),
                                     max_size=3).map(json.dumps))


def check_probes(text: str) -> None:
    probes = expect_podkit_error(lambda: parse_probes(text))
    if probes is None:
        return
    for probe in probes:
        assert isinstance(probe, Probe) and probe.kind in KINDS
        assert probe.action in ("http", "tcp") and 0 < probe.port < 65536
        assert isinstance(probe.host, str) and isinstance(probe.path, str)
        assert probe.host and probe.host.isprintable() and " " not in probe.host
        assert probe.scheme in ("HTTP", "HTTPS")
        for name, value in probe.headers:
            assert name and not set(name) & set(" :\r\n\0") and name.isprintable()
            assert not set(value) & set("\r\n\0")
        assert probe.initial_delay_s >= 0 and probe.period_s > 0 and probe.timeout_s > 0
        assert probe.success_threshold >= 1 and probe.failure_threshold >= 1


TARGETS = (
    Target("handoff_message", handoff_inputs(), check_handoff),
    Target("handoff_round_trip", handoff_messages(), check_handoff_round_trip),
    Target("listeners_env", listeners_env_inputs(), check_listeners_env),
    Target("listener_spec", spec_inputs(), check_spec),
    Target("shm_header", header_inputs(), check_header),
    Target("shm_header_round_trip", headers(), check_header_round_trip),
    Target("shm_segment_file", segment_files(), check_segment_file),
    Target("state_file", state_inputs(), check_state),
    Target("state_round_trip", slot_states(), check_state_round_trip, share=0.25),
    Target("version_file", version_inputs(), check_version),
    Target("version_round_trip", st.from_regex(VERSION_RE, fullmatch=True),
           check_version_round_trip, share=0.25),
    Target("control_request", control_inputs(), check_control),
    Target("control_round_trip", st.sampled_from(CONTROL_SIGNALS), control_round_trip,
           share=0.1),
    Target("config_hook", hook_inputs(), check_hook),
    Target("probes_env", probes_inputs(), check_probes),
)
