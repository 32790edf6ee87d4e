"""Every crash the fuzzer found, as an explicit example named for what it is.

Each input made its parser raise something other than :class:`PodkitError` (or accept
something invalid) before the fix; now each is refused with a message that says what is
wrong. The fuzz targets' checks are reused, so these examples hold to the same property.
"""

from __future__ import annotations

import json
import signal
import struct

import pytest
from fuzz_targets import (
    check_control,
    check_handoff,
    check_hook,
    check_listeners_env,
    check_probes,
    check_state,
)

from podkit.errors import PodkitError
from podkit.files import MAX_FILE_BYTES, read_json
from podkit.handoff import HEADER, MAGIC, HandoffMessage, parse_listeners_env
from podkit.layout import SharedDir
from podkit.probes import parse_probes
from podkit.reload import Hook
from podkit.runner import parse_control_request
from podkit.slot import CONTROL_FD_ENV, Slot
from podkit.slot_records import read_state, read_version


def framed(document: object) -> bytes:
    body = document.encode() if isinstance(document, str) else json.dumps(document).encode()
    return HEADER.pack(MAGIC, len(body)) + body


def entry(**fields: object) -> dict[str, object]:
    item: dict[str, object] = {"name": "web", "family": "inet", "type": "tcp",
                               "address": {"host": "0.0.0.0", "port": 8080}}
    item.update(fields)
    return item


def message(*listeners: object, pid: object = 42, protocol: object = 1) -> bytes:
    return framed({"protocol": protocol, "pid": pid, "listeners": list(listeners)})


def refused(parse: object, *words: str) -> str:
    assert callable(parse)
    with pytest.raises(PodkitError) as caught:
        parse()
    text = str(caught.value)
    for word in words:
        assert word in text, text
    return text


# --- the hand-off message --------------------------------------------------------------------

HANDOFF = {
    "pid-zero": (message(pid=0), "pid 0"),
    "pid-negative": (message(pid=-7), "pid -7"),
    "pid-true": (message(pid=True), "'pid'"),
    "protocol-true": (message(protocol=True), "protocol True"),
    "family-a-list": (message(entry(family=[])), "family []"),
    "type-a-list": (message(entry(type=[])), "type []"),
    "name-a-number": (message(entry(name=5)), "name 5"),
    "host-not-an-address": (message(entry(address={"host": "localhost", "port": 1})),
                            "'localhost' is not an inet address"),
    "host-of-the-other-family": (message(entry(address={"host": "::", "port": 1})),
                                 "'::' is not an inet address"),
    "port-true": (message(entry(address={"host": "0.0.0.0", "port": True})), "port True"),
    "name-twice": (message(entry(), entry()), "'web' twice"),
    "too-many-listeners": (message(*(entry(name=f"l{i}") for i in range(65))), "over the limit"),
    "nested-65536-deep": (framed("[" * 65536), "nested too deeply"),
}


@pytest.mark.parametrize("data,words", HANDOFF.values(), ids=HANDOFF.keys())
def test_handoff_message_refused(data: bytes, words: str) -> None:
    refused(lambda: HandoffMessage.decode(data), words)
    check_handoff(data)


def test_handoff_header_announcing_4_gib_is_refused_before_reading() -> None:
    refused(lambda: HandoffMessage.decode(struct.pack(">4sI", MAGIC, 2**32 - 1)),
            "over the limit")


# --- PODKIT_LISTENERS --------------------------------------------------------------------------

LISTENERS_ENV = {
    "an-object-not-a-list": ('{"fd": 3}', "not the JSON list"),
    "fd-a-string": (json.dumps([entry(fd="3")]), "descriptor '3'"),
    "fd-negative": (json.dumps([entry(fd=-1)]), "descriptor -1"),
    "family-a-list": (json.dumps([entry(family=[], fd=3)]), "family []"),
    "host-not-an-address": (json.dumps([entry(address={"host": "x", "port": 1}, fd=3)]),
                            "'x' is not an inet address"),
    "nested-60000-deep": ("[" * 60000, "not the JSON list"),
}


@pytest.mark.parametrize("raw,words", LISTENERS_ENV.values(), ids=LISTENERS_ENV.keys())
def test_listeners_env_refused(raw: str, words: str) -> None:
    refused(lambda: parse_listeners_env(raw), words)
    check_listeners_env(raw)


# --- the state and version files ----------------------------------------------------------------

RECORD = {"slot": "a", "role": "active", "version": "v1", "pid": 7, "since": 1.0, "mode": "warm"}

STATE = {
    "pid-zero": (dict(RECORD, pid=0), "pid 0"),
    "pid-infinite": ('{"slot":"a","role":"active","version":"v1","pid":Infinity,"since":1,'
                     '"mode":"warm"}', "pid inf"),
    "pid-a-string": (dict(RECORD, pid="7"), "pid '7'"),
    "pid-true": (dict(RECORD, pid=True), "pid True"),
    "pid-a-fraction": (dict(RECORD, pid=7.5), "pid 7.5"),
    "since-nan": ('{"slot":"a","role":"active","version":"v1","pid":7,"since":NaN,'
                  '"mode":"warm"}', "since nan"),
    "version-a-number": (dict(RECORD, version=3), "version 3"),
    "mode-unknown": (dict(RECORD, mode=""), "mode ''"),
    "nested-60000-deep": ("[" * 60000, "nested too deeply"),
}


@pytest.mark.parametrize("record,words", STATE.values(), ids=STATE.keys())
def test_state_record_refused(tmp_path, record: object, words: str) -> None:
    raw = (record if isinstance(record, str) else json.dumps(record)).encode()
    shared = SharedDir(tmp_path)
    shared.state_file("a").write_bytes(raw)
    refused(lambda: read_state(shared, "a"), str(shared.state_file("a")), "corrupt", words)
    check_state(raw)


def test_state_file_of_a_gigabyte_is_refused_without_reading_it(tmp_path) -> None:
    shared = SharedDir(tmp_path)
    with shared.state_file("a").open("wb") as handle:
        handle.truncate(1 << 30)  # sparse: no gigabyte is written, none may be read
    refused(lambda: read_state(shared, "a"), f"over {MAX_FILE_BYTES} bytes")
    refused(lambda: read_json(shared.state_file("a")), f"over {MAX_FILE_BYTES} bytes")


def test_version_file_over_the_limit_is_refused(tmp_path) -> None:
    shared = SharedDir(tmp_path)
    shared.version_file("b").write_bytes(b"v" * (MAX_FILE_BYTES + 1))
    refused(lambda: read_version(shared, "b"), "corrupt", f"over {MAX_FILE_BYTES} bytes")


# --- the slot control socket ----------------------------------------------------------------

CONTROL = {
    "restart-then-a-file-separator": b"RESTART\x1c",
    "signal-unit-separator-hup": b"SIGNAL\x1fHUP",
    "restart-not-ascii": b"RESTART\xff",
}


@pytest.mark.parametrize("data", CONTROL.values(), ids=CONTROL.keys())
def test_control_request_with_control_characters_is_unknown(data: bytes) -> None:
    # \x1c-\x1f are whitespace to str.split(), not to the protocol (ASCII whitespace only).
    refused(lambda: parse_control_request(data), "unknown request")
    check_control(data)


def test_control_request_with_ascii_whitespace_around_it_is_understood() -> None:
    assert parse_control_request(b"\t SIGNAL \x0bsighup\r\n") == signal.SIGHUP
    assert parse_control_request(b"RESTART\n") is None


# --- the config hook --------------------------------------------------------------------------

HOOKS = {
    "command-a-nul": ("command:\0", "NUL"),
    "command-with-a-nul-inside": ("command:/app/reload.sh a\0b", "NUL"),
    "command-an-empty-program": ('command:""', "program is empty"),
}


@pytest.mark.parametrize("text,words", HOOKS.values(), ids=HOOKS.keys())
def test_config_hook_refused(text: str, words: str) -> None:
    refused(lambda: Hook.parse(text), words)
    check_hook(text)


# --- PODKIT_PROBES ----------------------------------------------------------------------------

PROBES = {
    "probe-a-number": ('{"startup": 1}', "startup is 1, not a JSON object"),
    "http-get-null": ('{"startup": {"httpGet": null}}', "httpGet is None"),
    "tcp-socket-null": ('{"readiness": {"tcpSocket": null}}', "tcpSocket is None"),
    "initial-delay-null": ('{"startup": {"initialDelaySeconds": null, "tcpSocket": {"port": 1}}}',
                           "initialDelaySeconds None"),
    "period-null": ('{"liveness": {"periodSeconds": null}}', "periodSeconds None"),
    "timeout-null": ('{"liveness": {"timeoutSeconds": null}}', "timeoutSeconds None"),
    "success-threshold-null": ('{"startup": {"successThreshold": null}}', "successThreshold"),
    "period-zero": ('{"readiness": {"periodSeconds": 0, "tcpSocket": {"port": 1}}}',
                    "periodSeconds 0"),
    "failure-threshold-a-string": ('{"readiness": {"failureThreshold": "3"}}',
                                   "failureThreshold '3'"),
    "headers-an-object": ('{"readiness": {"httpGet": {"port": 1, "httpHeaders": {"X": "1"}}}}',
                          "httpHeaders"),
    "header-a-string": ('{"readiness": {"httpGet": {"port": 1, "httpHeaders": ["x"]}}}',
                        "httpHeaders entry is 'x'"),
    "header-name-missing": ('{"readiness": {"httpGet": {"port": 1, "httpHeaders": '
                            '[{"value": "v"}]}}}', "name None"),
    "header-value-a-newline": ('{"readiness": {"httpGet": {"port": 1, "httpHeaders": '
                               '[{"name": "X", "value": "a\\r\\nHost: evil"}]}}}',
                               "not a valid HTTP header"),
    "host-a-number": ('{"readiness": {"httpGet": {"port": 1, "host": 5}}}', "host 5"),
    "host-with-a-space": ('{"readiness": {"tcpSocket": {"port": 1, "host": "a b"}}}',
                          "host 'a b'"),
    "scheme-ftp": ('{"readiness": {"httpGet": {"port": 1, "scheme": "ftp"}}}', "'FTP'"),
    "nested-60000-deep": ("[" * 60000, "not JSON"),
}


@pytest.mark.parametrize("text,words", PROBES.values(), ids=PROBES.keys())
def test_probes_env_refused(text: str, words: str) -> None:
    refused(lambda: parse_probes(text), words)
    check_probes(text)


# --- PODKIT_CONTROL_FD (the warm channel's descriptor) -----------------------------------------

@pytest.mark.parametrize("raw", ["9223372036854775808", "1" * 30, "-3", "x"])
def test_control_fd_beyond_any_descriptor_is_refused(monkeypatch, raw: str) -> None:
    # 2**63 and above made socket.socket(fileno=...) raise OverflowError.
    monkeypatch.setenv(CONTROL_FD_ENV, raw)
    refused(lambda: Slot.from_environ(handle_sigterm=False), CONTROL_FD_ENV, "not an open socket")
