"""The shared directory's names, the slot environment, atomic files and state records."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from podkit.errors import PodkitError
from podkit.files import atomic_write, atomic_write_json, read_json
from podkit.layout import DEFAULT_DIR, SLOTS, SharedDir, SlotEnv, other_slot, validate_version
from podkit.slot_records import SlotState, read_state, read_version, write_state, write_version


def no_temp_files(directory: Path) -> bool:
    return not [p for p in directory.iterdir() if p.name.endswith(".tmp")]


# --- layout ------------------------------------------------------------------------------------

def test_shared_dir_paths(tmp_path: Path) -> None:
    shared = SharedDir(tmp_path)
    assert shared.version_file("a") == tmp_path / "slot-a.version"
    assert shared.version_file("b") == tmp_path / "slot-b.version"
    assert shared.state_file("a") == tmp_path / "slot-a.state.json"
    assert shared.state_file("b") == tmp_path / "slot-b.state.json"
    assert shared.lock_file == tmp_path / "handover.lock"
    assert shared.handoff_socket == tmp_path / "handoff.sock"
    assert len({shared.version_file(s) for s in SLOTS} | {shared.state_file(s) for s in SLOTS}
               | {shared.lock_file, shared.handoff_socket}) == 6


def test_slots_and_peers() -> None:
    assert SLOTS == ("a", "b")
    assert (other_slot("a"), other_slot("b")) == ("b", "a")


def test_check_writable(tmp_path: Path) -> None:
    SharedDir(tmp_path).check_writable()
    with pytest.raises(PodkitError, match="does not exist"):
        SharedDir(tmp_path / "missing").check_writable()
    (tmp_path / "file").write_text("")
    with pytest.raises(PodkitError, match=str(tmp_path / "file")):
        SharedDir(tmp_path / "file").check_writable()


@pytest.mark.parametrize("version", ["v1", "1", "1.2.3", "v1.0.0-rc.1", "2024_01_01",
                                     "v1+build.7", "repo/app:1.0", "app@sha256:abc", "x" * 128])
def test_valid_versions(version: str) -> None:
    assert validate_version(version, "PODKIT_VERSION") == version


@pytest.mark.parametrize("version", ["", " ", "v 1", " v1", "v1 ", "-v1", ".v1", "_v1",
                                     "v1\n", "v1\nv2", "v1\t", "v1;x", "v1$", "v1*", "väter",
                                     "x" * 129])
def test_invalid_versions(version: str) -> None:
    with pytest.raises(PodkitError) as err:
        validate_version(version, "PODKIT_VERSION")
    message = str(err.value)
    assert message.startswith("PODKIT_VERSION ") and "not a valid version" in message
    assert "\n" not in message  # repr() keeps a bad version on the one line


# --- SlotEnv -----------------------------------------------------------------------------------

def test_slot_env_reads_the_environment(tmp_path: Path) -> None:
    env = SlotEnv.from_environ({"PODKIT_SLOT": "b", "PODKIT_VERSION": " v7\n",
                                "PODKIT_DIR": str(tmp_path)})
    assert (env.slot, env.version, env.shared) == ("b", "v7", SharedDir(tmp_path))


@pytest.mark.parametrize("raw_dir", [None, ""])
def test_slot_env_default_dir(raw_dir: str | None) -> None:
    environ = {"PODKIT_SLOT": "a", "PODKIT_VERSION": "v1"}
    if raw_dir is not None:
        environ["PODKIT_DIR"] = raw_dir
    assert SlotEnv.from_environ(environ).shared.root == Path(DEFAULT_DIR) == Path("/podkit")


@pytest.mark.parametrize("slot", [None, "", "c", "A", "a ", "ab", "slot-a"])
def test_slot_env_bad_slot(slot: str | None) -> None:
    environ = {"PODKIT_VERSION": "v1"}
    if slot is not None:
        environ["PODKIT_SLOT"] = slot
    with pytest.raises(PodkitError, match="PODKIT_SLOT .*set it to 'a' or 'b'") as err:
        SlotEnv.from_environ(environ)
    assert err.value.exit_code != 0


@pytest.mark.parametrize("version", [None, "", "   "])
def test_slot_env_missing_version(version: str | None) -> None:
    environ = {"PODKIT_SLOT": "a"}
    if version is not None:
        environ["PODKIT_VERSION"] = version
    with pytest.raises(PodkitError, match="PODKIT_VERSION is not set"):
        SlotEnv.from_environ(environ)
    assert SlotEnv.from_environ(environ, require_version=False).version is None


def test_slot_env_invalid_version_even_when_optional() -> None:
    for require in (True, False):
        with pytest.raises(PodkitError, match="PODKIT_VERSION 'v 1' is not a valid version"):
            SlotEnv.from_environ({"PODKIT_SLOT": "a", "PODKIT_VERSION": "v 1"},
                                 require_version=require)


def test_slot_env_uses_os_environ(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PODKIT_SLOT", "b")
    monkeypatch.setenv("PODKIT_VERSION", "v3")
    monkeypatch.setenv("PODKIT_DIR", str(tmp_path))
    assert SlotEnv.from_environ() == SlotEnv("b", "v3", SharedDir(tmp_path))


# --- atomic files ------------------------------------------------------------------------------

def test_atomic_write_creates_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "file"
    atomic_write(target, b"one\n")
    assert target.read_bytes() == b"one\n"
    inode = target.stat().st_ino
    atomic_write(target, b"two\n")
    assert target.read_bytes() == b"two\n"
    assert target.stat().st_ino != inode  # replaced by rename, never rewritten in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]
    assert target.stat().st_mode & 0o777 == 0o644  # other containers read it


def test_atomic_write_failure_names_the_file_and_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "slot-a.version"
    target.mkdir()  # something in the file's place: rename fails
    with pytest.raises(PodkitError, match=f"cannot write {target}"):
        atomic_write(target, b"v1\n")
    assert no_temp_files(tmp_path)
    assert target.is_dir()


def test_atomic_write_into_a_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(PodkitError, match="cannot write in .*missing"):
        atomic_write(tmp_path / "missing" / "file", b"x")


def test_json_round_trip(tmp_path: Path) -> None:
    record = {"b": [1, 2], "a": "x", "n": None, "f": 1.5}
    atomic_write_json(tmp_path / "r.json", record)
    assert read_json(tmp_path / "r.json") == record
    raw = (tmp_path / "r.json").read_text()
    assert raw.endswith("\n") and raw.count("\n") == 1
    assert json.loads(raw) == record
    assert no_temp_files(tmp_path)


def test_read_json_missing_is_none(tmp_path: Path) -> None:
    assert read_json(tmp_path / "absent.json") is None


@pytest.mark.parametrize("content, why", [
    (b"", "corrupt"), (b'{"role": "act', "corrupt"), (b"[1, 2]", "not a JSON object"),
    (b'"text"', "not a JSON object"), (b"\xff\xfe", "corrupt"), (b"null", "not a JSON object"),
])
def test_read_json_corrupt(tmp_path: Path, content: bytes, why: str) -> None:
    path = tmp_path / "r.json"
    path.write_bytes(content)
    with pytest.raises(PodkitError) as err:
        read_json(path)
    assert str(path) in str(err.value) and why in str(err.value)
    assert "\n" not in str(err.value)


def test_read_json_unreadable_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.mkdir()
    with pytest.raises(PodkitError, match=f"cannot read {path}"):
        read_json(path)


# --- version files and state records ------------------------------------------------------------

def test_version_round_trip(tmp_path: Path) -> None:
    shared = SharedDir(tmp_path)
    assert read_version(shared, "a") is None
    write_version(shared, "a", "v1.2")
    assert shared.version_file("a").read_bytes() == b"v1.2\n"
    assert read_version(shared, "a") == "v1.2"
    assert read_version(shared, "b") is None
    shared.version_file("b").write_bytes(b"  v2  \n")  # whitespace is forgiven
    assert read_version(shared, "b") == "v2"


@pytest.mark.parametrize("content, why", [
    (b"", "empty"), (b"\n\n", "empty"), (b"\xff\xfev1", "not ASCII"),
    (b"v1\nv2\n", "not a valid version"), (b"v 1", "not a valid version"),
])
def test_version_file_corrupt(tmp_path: Path, content: bytes, why: str) -> None:
    shared = SharedDir(tmp_path)
    shared.version_file("b").write_bytes(content)
    with pytest.raises(PodkitError) as err:
        read_version(shared, "b")
    assert str(shared.version_file("b")) in str(err.value) and why in str(err.value)


def test_state_round_trip(tmp_path: Path) -> None:
    shared = SharedDir(tmp_path)
    assert read_state(shared, "a") is None
    state = SlotState("a", "standby", "v2", 1234, 1700000000.25, "warm")
    write_state(shared, state)
    assert read_state(shared, "a") == state
    assert read_state(shared, "b") is None
    now = SlotState.now("b", "idle", "v2", "pause")
    assert now.pid == os.getpid() and now.since > 1700000000
    write_state(shared, now)
    assert read_state(shared, "b") == now
    assert no_temp_files(tmp_path)


GOOD_RECORD = {"slot": "b", "role": "idle", "version": "v1", "pid": 7, "since": 1.0,
               "mode": "pause"}


@pytest.mark.parametrize("change", [
    {"slot": None}, {"role": None}, {"version": None}, {"pid": None}, {"since": None},
    {"mode": None}, {"pid": "seven"}, {"pid": [7]}, {"since": "yesterday"}, {"since": {}},
    {"slot": "a"}, {"slot": "c"}, {"role": "boss"}, {"role": ""}, {"version": "v 1"},
    {"version": ""},
])
def test_state_field_errors(tmp_path: Path, change: dict) -> None:
    shared = SharedDir(tmp_path)
    record = {k: v for k, v in {**GOOD_RECORD, **change}.items() if v is not None}
    shared.state_file("b").write_text(json.dumps(record))
    with pytest.raises(PodkitError) as err:
        read_state(shared, "b")
    assert str(shared.state_file("b")) in str(err.value) and "corrupt" in str(err.value)
    assert "\n" not in str(err.value)


def test_state_good_record_reads(tmp_path: Path) -> None:
    shared = SharedDir(tmp_path)
    shared.state_file("b").write_text(json.dumps(GOOD_RECORD))
    assert read_state(shared, "b") == SlotState(**GOOD_RECORD)


def test_truncated_state_is_corrupt(tmp_path: Path) -> None:
    shared = SharedDir(tmp_path)
    write_state(shared, SlotState("a", "active", "v1", 1, 2.0, "wrapped"))
    whole = shared.state_file("a").read_bytes()
    for cut in (1, len(whole) // 2, len(whole) - 3):
        shared.state_file("a").write_bytes(whole[:cut])
        with pytest.raises(PodkitError, match="corrupt"):
            read_state(shared, "a")
