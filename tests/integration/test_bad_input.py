"""Bad input through the real CLI: one readable line on stderr that says what to fix, a
non-zero exit, and no half-written (temporary) file left in the shared directory.

Corrupt files of a *peer* are not the reader's error: ``podkit probe ready`` and the sidecar's
``/readyz`` report them as the reason the pod is not ready, naming the file.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from podkit.layout import SharedDir
from podkit.slot_records import SlotState, read_state, write_state, write_version

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

GOOD = {"PODKIT_SLOT": "a", "PODKIT_VERSION": "v1"}


def assert_one_line_error(done: subprocess.CompletedProcess[str], directory: Path | None,
                          *fragments: str) -> str:
    """The run failed with exactly one ``podkit: ...`` line naming ``fragments``; return it."""
    assert done.returncode != 0, done
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    line = lines[0]
    assert line.startswith("podkit: "), line
    for fragment in fragments:
        assert fragment in line, (fragment, line)
    if directory is not None and directory.is_dir():
        assert not list(directory.glob(".*.tmp")), list(directory.iterdir())
        assert not list(directory.glob("*.tmp")), list(directory.iterdir())
    return line


ENTRYPOINTS = {
    "run-wrapped": ("run", "--", "true"),
    "run-warm": ("run", "--mode", "warm", "--", "true"),
    "pause": ("pause",),
}


# --- the shared directory --------------------------------------------------------------------

@pytest.mark.parametrize("entry", ENTRYPOINTS)
def test_missing_podkit_dir(entry: str, tmp_path: Path, cli) -> None:
    missing = tmp_path / "not-mounted"
    done = cli.run(*ENTRYPOINTS[entry], PODKIT_DIR=str(missing), **GOOD)
    assert_one_line_error(done, None, str(missing), "does not exist", "PODKIT_DIR")
    assert not missing.exists()


def test_missing_podkit_dir_for_the_sidecar(tmp_path: Path, cli) -> None:
    missing = tmp_path / "not-mounted"
    done = cli.run("sidecar", "--dir", str(missing), "--port", "0", "--address", "127.0.0.1")
    assert_one_line_error(done, None, str(missing), "does not exist")


def test_podkit_dir_is_a_file(tmp_path: Path, cli) -> None:
    a_file = tmp_path / "podkit"
    a_file.write_text("")
    done = cli.run("run", "--", "true", PODKIT_DIR=str(a_file), **GOOD)
    assert_one_line_error(done, None, str(a_file), "is not a directory")


@pytest.fixture
def mounted(tmp_path: Path) -> Iterator[Callable[[str, str], Path]]:
    """Mount small tmpfs file systems for the test; unmount them after."""
    mounts: list[Path] = []

    def mount(name: str, options: str) -> Path:
        if os.geteuid() != 0:
            pytest.fail("this test mounts a tmpfs (a read-only or a full shared directory, "
                        "which root's os.access cannot fake): run the tests as root",
                        pytrace=False)
        target = tmp_path / name
        target.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.fail(f"cannot mount a tmpfs on {target}: {done.stderr.strip()}",
                        pytrace=False)
        mounts.append(target)
        return target

    yield mount
    for target in reversed(mounts):
        subprocess.run(["umount", str(target)], check=True)


@pytest.mark.parametrize("entry", ENTRYPOINTS)
def test_read_only_podkit_dir(entry: str, mounted, cli) -> None:
    read_only = mounted("ro", "ro,size=1m")
    done = cli.run(*ENTRYPOINTS[entry], PODKIT_DIR=str(read_only), **GOOD)
    assert_one_line_error(done, read_only, str(read_only), "not writable")
    assert list(read_only.iterdir()) == []


def test_read_only_podkit_dir_for_the_sidecar(mounted, cli) -> None:
    read_only = mounted("ro", "ro,size=1m")
    done = cli.run("sidecar", "--dir", str(read_only), "--port", "0", "--address", "127.0.0.1")
    assert_one_line_error(done, read_only, str(read_only), "not writable")


@pytest.mark.parametrize("entry", ENTRYPOINTS)
def test_full_podkit_dir(entry: str, mounted, cli) -> None:
    full = mounted("full", "size=64k")
    with open(full / "filler", "wb", buffering=0) as filler:
        with pytest.raises(OSError):
            while True:
                filler.write(b"\0" * 4096)
    done = cli.run(*ENTRYPOINTS[entry], PODKIT_DIR=str(full), **GOOD)
    assert_one_line_error(done, full, str(full / "slot-a.version"), "No space left")
    assert not (full / "slot-a.version").exists()


# --- the environment ---------------------------------------------------------------------------

@pytest.mark.parametrize("entry, slot", [("run-wrapped", "c"), ("run-wrapped", "A"),
                                         ("run-wrapped", " a"), ("run-wrapped", "ab"),
                                         ("run-warm", "c"), ("pause", "c"), ("pause", "")])
def test_slot_name_other_than_a_or_b(entry: str, slot: str, tmp_path: Path, cli) -> None:
    done = cli.run(*ENTRYPOINTS[entry], PODKIT_DIR=str(tmp_path), PODKIT_SLOT=slot,
                   PODKIT_VERSION="v1")
    assert_one_line_error(done, tmp_path, "PODKIT_SLOT", "'a' or 'b'")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("entry", ENTRYPOINTS)
def test_slot_not_set(entry: str, tmp_path: Path, cli) -> None:
    done = cli.run(*ENTRYPOINTS[entry], PODKIT_DIR=str(tmp_path), PODKIT_VERSION="v1")
    assert_one_line_error(done, tmp_path, "PODKIT_SLOT")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("mode", ["wrapped", "warm"])
def test_missing_version(mode: str, tmp_path: Path, cli) -> None:
    done = cli.run("run", "--mode", mode, "--", "true", PODKIT_DIR=str(tmp_path),
                   PODKIT_SLOT="b")
    assert_one_line_error(done, tmp_path, "PODKIT_VERSION is not set")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("entry, version", [
    *(("run-wrapped", v) for v in ("v 1", "-v1", ".hidden", "v1\nv2", "x" * 129, "väter")),
    ("run-warm", "v1;rm"), ("pause", "v1 v2")])
def test_invalid_version(entry: str, version: str, tmp_path: Path, cli) -> None:
    done = cli.run(*ENTRYPOINTS[entry], PODKIT_DIR=str(tmp_path), PODKIT_SLOT="a",
                   PODKIT_VERSION=version)
    assert_one_line_error(done, tmp_path, "PODKIT_VERSION", "not a valid version")
    assert list(tmp_path.iterdir()) == []


def test_unknown_mode_from_the_environment(tmp_path: Path, cli) -> None:
    done = cli.run("run", "--", "true", PODKIT_DIR=str(tmp_path), PODKIT_MODE="hot", **GOOD)
    assert_one_line_error(done, tmp_path, "'hot'", "wrapped", "warm")


# --- the command -------------------------------------------------------------------------------

@pytest.mark.parametrize("args", [("run", "--"), ("run",), ("run", "--mode", "warm", "--")])
def test_missing_command(args: tuple[str, ...], tmp_path: Path, cli) -> None:
    done = cli.run(*args, PODKIT_DIR=str(tmp_path), **GOOD)
    assert_one_line_error(done, tmp_path, "no command given", "podkit run -- CMD")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("mode", ["wrapped", "warm"])
def test_command_not_found(mode: str, tmp_path: Path, cli) -> None:
    done = cli.run("run", "--mode", mode, "--", "no-such-program-podkit", "--flag",
                   PODKIT_DIR=str(tmp_path), **GOOD)
    assert done.returncode == 127
    assert_one_line_error(done, tmp_path, "'no-such-program-podkit'", "not found")
    assert read_state(SharedDir(tmp_path), "a") is None  # refused before writing anything


@pytest.mark.parametrize("mode", ["wrapped", "warm"])
def test_command_not_executable(mode: str, tmp_path: Path, cli) -> None:
    program = tmp_path / "bin" / "service"
    program.parent.mkdir()
    program.write_text("#!/bin/sh\nexit 0\n")
    program.chmod(0o644)
    shared = tmp_path / "shared"
    shared.mkdir()
    done = cli.run("run", "--mode", mode, "--", str(program), PODKIT_DIR=str(shared), **GOOD)
    assert done.returncode == 126
    assert_one_line_error(done, shared, str(program), "not executable")


# --- corrupt and truncated files -----------------------------------------------------------------

def healthy_pod(shared: SharedDir) -> None:
    """Files of a converged pod, a held lock aside: a active, b idle, both at v1."""
    for slot, role, mode in (("a", "active", "warm"), ("b", "idle", "pause")):
        write_version(shared, slot, "v1")
        write_state(shared, SlotState(slot, role, "v1", 4242, 1.0, mode))


CORRUPT = {
    "version-binary": ("version", b"\xff\xfe\x00\n", "not ASCII"),
    "version-garbage": ("version", b"v1 and some words\n", "not a valid version"),
    "version-truncated": ("version", b"", "empty"),
    "version-blank": ("version", b"\n", "empty"),
    "state-not-json": ("state", b"role=active\n", "corrupt"),
    "state-truncated": ("state", b'{"mode": "pause", "pid": 4242, "ro', "corrupt"),
    "state-not-an-object": ("state", b'["a", "idle"]\n', "corrupt"),
    "state-missing-field": ("state", b'{"slot": "b", "role": "idle", "version": "v1"}\n',
                            "corrupt"),
    "state-bad-pid": ("state", b'{"slot": "b", "role": "idle", "version": "v1", "pid": "x",'
                               b' "since": 1.0, "mode": "pause"}\n', "corrupt"),
    "state-unknown-role": ("state", b'{"slot": "b", "role": "boss", "version": "v1", '
                                    b'"pid": 1, "since": 1.0, "mode": "pause"}\n', "corrupt"),
    "state-other-slot": ("state", b'{"slot": "a", "role": "idle", "version": "v1", '
                                  b'"pid": 1, "since": 1.0, "mode": "pause"}\n', "corrupt"),
    "state-bad-version": ("state", b'{"slot": "b", "role": "idle", "version": "v 1", '
                                   b'"pid": 1, "since": 1.0, "mode": "pause"}\n', "corrupt"),
    "state-binary": ("state", b"\x80\x81\x82", "corrupt"),
}


def corrupt(shared: SharedDir, case: str) -> Path:
    kind, content, _ = CORRUPT[case]
    path = shared.version_file("b") if kind == "version" else shared.state_file("b")
    path.write_bytes(content)
    return path


@pytest.mark.parametrize("case", CORRUPT)
def test_corrupt_file_is_the_probes_reason(case: str, tmp_path: Path, cli) -> None:
    shared = SharedDir(tmp_path)
    healthy_pod(shared)
    path = corrupt(shared, case)
    done = cli.run("probe", "ready", "--dir", str(tmp_path))
    assert done.returncode == 1, done
    assert done.stderr == ""
    lines = done.stdout.splitlines()
    assert len(lines) == 1, done.stdout
    assert str(path) in lines[0] and CORRUPT[case][2] in lines[0], lines[0]
    assert "delete it" in lines[0] or "valid version" in lines[0], lines[0]


@pytest.mark.parametrize("case", ["version-binary", "version-truncated", "state-truncated",
                                  "state-missing-field"])
def test_corrupt_file_is_the_sidecars_reason(case: str, tmp_path: Path, sidecar_for,
                                             h) -> None:
    shared = SharedDir(tmp_path)
    healthy_pod(shared)
    path = corrupt(shared, case)
    port = sidecar_for(shared).port
    reply = h.http_get(port, "/readyz")
    assert reply.status == 503
    assert reply.body.count("\n") == 1 and str(path) in reply.body, reply.body
    assert str(path) in h.state_json(port)["slots"]["b"]["error"]


def test_probe_of_a_directory_in_a_files_place(tmp_path: Path, cli) -> None:
    shared = SharedDir(tmp_path)
    healthy_pod(shared)
    shared.state_file("b").unlink()
    shared.state_file("b").mkdir()
    done = cli.run("probe", "ready", "--dir", str(tmp_path))
    assert done.returncode == 1 and done.stderr == "", done
    assert str(shared.state_file("b")) in done.stdout and done.stdout.count("\n") == 1


@pytest.mark.parametrize("case", ["state-truncated", "version-binary"])
def test_a_slot_restarts_over_its_own_corrupt_files(case: str, tmp_path: Path, cli) -> None:
    """A slot whose previous container left a broken file rewrites it whole."""
    shared = SharedDir(tmp_path)
    corrupt(shared, case)
    done = cli.run("run", "--", "true", PODKIT_DIR=str(tmp_path), PODKIT_SLOT="b",
                   PODKIT_VERSION="v2")
    assert done.returncode == 0, done.stderr
    assert shared.version_file("b").read_text() == "v2\n"
    assert read_state(shared, "b").role == "exited"
    assert not list(tmp_path.glob(".*.tmp"))


def test_files_are_readable_by_the_other_containers(tmp_path: Path, cli) -> None:
    done = cli.run("run", "--", "true", PODKIT_DIR=str(tmp_path), **GOOD)
    assert done.returncode == 0, done.stderr
    shared = SharedDir(tmp_path)
    for path in (shared.version_file("a"), shared.state_file("a")):
        assert path.stat().st_mode & 0o444 == 0o444, oct(path.stat().st_mode)
