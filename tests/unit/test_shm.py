"""podkit.shm in one process: header format, validation, layouts and migrations."""

from __future__ import annotations

import os
import shutil
import struct
import tempfile
import zlib
from pathlib import Path

import pytest

from podkit import shm
from podkit.errors import PodkitError
from podkit.shm import (
    FLAG_CHECKSUM,
    FLAG_CLEAN,
    HEADER_SIZE,
    Header,
    IncompatibleLayout,
    Migrations,
    Segment,
    SegmentExists,
    SegmentNotFound,
)


@pytest.fixture
def shm_dir() -> Path:
    """A private directory on a tmpfs (/dev/shm when there is one), removed afterwards."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    path = Path(tempfile.mkdtemp(prefix="podkit-test-shm-", dir=base))
    yield path
    shutil.rmtree(path, ignore_errors=True)


# -- header encoding --------------------------------------------------------------------------

def test_header_round_trip_and_byte_layout() -> None:
    header = Header(layout_version=7, payload_size=1 << 30, generation=42,
                    flags=FLAG_CLEAN | FLAG_CHECKSUM, sealed_at_ns=123456789, checksum=0xDEADBEEF,
                    writer_pid=4321)
    raw = header.encode()
    assert Header.decode(raw) == header
    # The documented offsets, which programs in other languages rely on.
    assert raw[0:8] == b"PODKITSM"
    assert struct.unpack_from("<IIII", raw, 8) == (1, HEADER_SIZE, 7, 3)
    assert struct.unpack_from("<QQQ", raw, 24) == (42, 1 << 30, 123456789)
    assert struct.unpack_from("<III", raw, 48) == (0xDEADBEEF, 4321, zlib.crc32(raw[:56]))
    assert len(raw) == 60
    assert header.clean and header.has_checksum
    assert not Header(layout_version=1, payload_size=1).clean


@pytest.mark.parametrize("damage, words", [
    (lambda raw: b"NOTPODKT" + raw[8:], "not a podkit segment"),
    (lambda raw: raw[:20], "shorter than the header"),
    (lambda raw: raw[:30] + bytes([raw[30] ^ 1]) + raw[31:], "corrupt header"),
])
def test_damaged_header_is_refused(damage, words) -> None:
    raw = Header(layout_version=1, payload_size=4096).encode()
    with pytest.raises(PodkitError, match=words) as caught:
        Header.decode(damage(raw), "shm segment 'state'")
    assert "shm segment 'state'" in str(caught.value)
    assert "unlink" in str(caught.value)


def test_other_header_version_is_refused() -> None:
    raw = Header(layout_version=1, payload_size=4096, header_version=9).encode()
    with pytest.raises(PodkitError, match="header version 9, this podkit reads version 1"):
        Header.decode(raw)


# -- names and sizes ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["", "a/b", "../x", ".hidden", "-dash", "x" * 201, "sp ace",
                                  "nul\0"])
def test_bad_names_are_refused(shm_dir: Path, name: str) -> None:
    with pytest.raises(PodkitError, match="not valid"):
        Segment.create(name, 4096, 1, shm_dir=shm_dir)
    with pytest.raises(PodkitError, match="not valid"):
        Segment.attach(name, 1, shm_dir=shm_dir)
    assert os.listdir(shm_dir) == []


def test_good_names_are_accepted(shm_dir: Path) -> None:
    for name in ["state", "media.v1_counters-0", "x" * 200]:
        with Segment.create(name, 1, 1, shm_dir=shm_dir) as segment:
            assert segment.path == shm_dir / name
    assert sorted(shm.list_segments(shm_dir)) == sorted(["state", "media.v1_counters-0",
                                                         "x" * 200])


@pytest.mark.parametrize("size", [0, -1, 1.5, True])
def test_bad_sizes_are_refused(shm_dir: Path, size) -> None:
    with pytest.raises(PodkitError, match="size"):
        Segment.create("state", size, 1, shm_dir=shm_dir)


def test_no_room_names_the_directory_and_the_fix(shm_dir: Path) -> None:
    stats = os.statvfs(shm_dir)
    too_big = stats.f_bavail * stats.f_frsize + (1 << 30)
    with pytest.raises(PodkitError) as caught:
        Segment.create("state", too_big, 1, shm_dir=shm_dir)
    message = str(caught.value)
    assert str(shm_dir) in message and "emptyDir of medium Memory" in message
    assert os.listdir(shm_dir) == []


def test_shm_dir_comes_from_the_environment(shm_dir: Path, monkeypatch) -> None:
    monkeypatch.setenv("PODKIT_SHM_DIR", str(shm_dir))
    with Segment.create("state", 10, 1) as segment:
        assert segment.path == shm_dir / "state"
    monkeypatch.setenv("PODKIT_SHM_DIR", str(shm_dir / "missing"))
    with pytest.raises(PodkitError, match="does not exist.*PODKIT_SHM_DIR"):
        Segment.attach("state", 1)


# -- create, attach, seal ----------------------------------------------------------------------

def test_create_attach_seal_verify(shm_dir: Path) -> None:
    with Segment.create("state", 10_000, 3, shm_dir=shm_dir) as writer:
        assert writer.writable and writer.generation == 0 and not writer.clean
        assert os.stat(writer.path).st_size == HEADER_SIZE + 10_000
        assert writer.payload.tobytes() == bytes(10_000)
        writer.payload[:4] = b"abcd"
        sealed = writer.seal(checksum=True)
        assert sealed.generation == 1 and sealed.clean and sealed.has_checksum
        assert sealed.checksum == zlib.crc32(b"abcd" + bytes(9_996))
        assert writer.sealed_at is not None
        assert writer.seal().generation == 2 and not writer.header.has_checksum

    reader = Segment.attach("state", 3, shm_dir=shm_dir)
    assert not reader.writable and reader.clean and reader.generation == 2
    assert reader.payload[:4].tobytes() == b"abcd"
    with pytest.raises(PodkitError, match="no checksum"):
        reader.verify()
    reader.close()
    reader.close()
    with pytest.raises(PodkitError, match="closed"):
        _ = reader.payload


def test_read_only_attach_refuses_writes(shm_dir: Path) -> None:
    Segment.create("state", 4096, 1, shm_dir=shm_dir).close()
    with Segment.attach("state", 1, shm_dir=shm_dir) as reader:
        with pytest.raises(TypeError):
            reader.payload[0] = 1
        with pytest.raises(PodkitError, match="read-only.*promote"):
            reader.seal()
        with pytest.raises(PodkitError, match="read-only"):
            reader.grow(8192)


def test_verify_detects_a_changed_payload(shm_dir: Path) -> None:
    with Segment.create("state", 4096, 1, shm_dir=shm_dir) as writer:
        writer.payload[:] = b"\x05" * 4096
        writer.seal(checksum=True)
        assert writer.verify()
        writer.payload[100] = 6  # a write after the seal, as a misbehaving writer would
        assert not writer.verify()
    with pytest.raises(PodkitError, match="fails its checksum"):
        Segment.attach("state", 1, shm_dir=shm_dir, verify=True)


def test_writer_attach_clears_clean_and_checksum(shm_dir: Path) -> None:
    with Segment.create("state", 4096, 1, shm_dir=shm_dir) as writer:
        writer.seal(checksum=True)
    with Segment.attach("state", 1, writable=True, shm_dir=shm_dir, verify=True) as writer:
        assert writer.flags & (FLAG_CLEAN | FLAG_CHECKSUM) == 0
        assert writer.header.writer_pid == os.getpid()
        assert writer.generation == 1


def test_promote_remaps_writable(shm_dir: Path) -> None:
    Segment.create("state", 4096, 1, shm_dir=shm_dir).close()
    standby = Segment.attach("state", 1, shm_dir=shm_dir)
    old_view = standby.payload
    standby.promote()
    assert standby.writable
    standby.payload[0] = 9
    assert old_view[0] == 9  # the same pages; the old view is still mapped
    with pytest.raises(TypeError):
        old_view[0] = 1
    standby.close()
    assert old_view[0] == 9  # a view the caller holds outlives close()


def test_create_refuses_an_existing_name_and_attach_a_missing_one(shm_dir: Path) -> None:
    Segment.create("state", 4096, 1, shm_dir=shm_dir).close()
    with pytest.raises(SegmentExists, match="already exists"):
        Segment.create("state", 4096, 1, shm_dir=shm_dir)
    with pytest.raises(SegmentNotFound, match="does not exist"):
        Segment.attach("other", 1, shm_dir=shm_dir)
    assert sorted(os.listdir(shm_dir)) == ["state"]  # no temporary file left behind


def test_corrupt_segment_file_is_refused(shm_dir: Path) -> None:
    Segment.create("state", 4096, 1, shm_dir=shm_dir).close()
    path = shm_dir / "state"
    with open(path, "r+b") as handle:
        handle.seek(26)
        handle.write(b"\xff")  # inside the generation field
    with pytest.raises(PodkitError, match="corrupt header"):
        Segment.attach("state", 1, shm_dir=shm_dir)
    (shm_dir / "short").write_bytes(b"x" * 100)
    with pytest.raises(PodkitError, match="not a podkit segment"):
        Segment.attach("short", 1, shm_dir=shm_dir)
    (shm_dir / "other").write_bytes(b"y" * 8192)
    with pytest.raises(PodkitError, match="not a podkit segment"):
        Segment.attach("other", 1, shm_dir=shm_dir)
    os.truncate(path, 0)
    with pytest.raises(PodkitError, match="0 bytes, shorter than the header"):
        Segment.attach("state", 1, shm_dir=shm_dir)
    truncated = shm_dir / "truncated"
    header = Header(layout_version=1, payload_size=1 << 20).encode()
    truncated.write_bytes(header + bytes(HEADER_SIZE - len(header)) + bytes(100))
    with pytest.raises(PodkitError, match="truncated"):
        Segment.attach("truncated", 1, shm_dir=shm_dir)


def test_open_or_create(shm_dir: Path) -> None:
    with shm.open_or_create("state", 4096, 1, shm_dir=shm_dir) as first:
        first.payload[0] = 42
        first.seal()
    with shm.open_or_create("state", 4096, 1, shm_dir=shm_dir) as second:
        assert second.payload[0] == 42 and second.generation == 1 and second.writable
    with pytest.raises(PodkitError, match="holds 4096 payload bytes.*asks for 8192"):
        shm.open_or_create("state", 8192, 1, shm_dir=shm_dir)
    with shm.open_or_create("standby", 4096, 1, writable=False, shm_dir=shm_dir) as standby:
        assert not standby.writable and standby.payload_size == 4096


# -- layouts and migrations --------------------------------------------------------------------

def test_incompatible_layout_is_refused_clearly(shm_dir: Path) -> None:
    Segment.create("state", 4096, 1, shm_dir=shm_dir).close()
    for writable in (False, True):
        with pytest.raises(IncompatibleLayout) as caught:
            Segment.attach("state", 2, writable=writable, shm_dir=shm_dir)
        message = str(caught.value)
        assert "'state'" in message and "layout version 1" in message
        assert "expects 2" in message and "register a migration from 1 to 2" in message
        assert (caught.value.found, caught.value.expected) == (1, 2)
    # A migration that does not lead to the expected layout does not help.
    with pytest.raises(IncompatibleLayout):
        Segment.attach("state", 2, shm_dir=shm_dir, migrations={(1, 3): lambda s: None})


def _v1_to_v2(segment: Segment) -> None:
    """Layout 1 is one little-endian u32 counter; layout 2 makes it a u64 after a u32 tag."""
    assert segment.layout_version == 1
    (count,) = struct.unpack_from("<I", segment.payload)
    struct.pack_into("<IQ", segment.payload, 0, 0x2, count)


def test_registered_migration_runs_on_writable_attach(shm_dir: Path) -> None:
    with Segment.create("state", 4096, 1, shm_dir=shm_dir) as v1:
        struct.pack_into("<I", v1.payload, 0, 1234)
        v1.seal()
    with Segment.attach("state", 2, writable=True, shm_dir=shm_dir,
                        migrations={(1, 2): _v1_to_v2}) as v2:
        assert v2.layout_version == 2 and not v2.needs_migration
        assert struct.unpack_from("<IQ", v2.payload) == (2, 1234)
    with Segment.attach("state", 2, shm_dir=shm_dir) as again:  # no migration needed now
        assert again.layout_version == 2


def test_standby_defers_migration_to_promote(shm_dir: Path) -> None:
    migrations = Migrations()
    migrations.register(1, 2)(_v1_to_v2)
    with Segment.create("state", 4096, 1, shm_dir=shm_dir) as v1:
        struct.pack_into("<I", v1.payload, 0, 77)
        standby = Segment.attach("state", 2, shm_dir=shm_dir, migrations=migrations)
        assert standby.needs_migration and standby.layout_version == 1
        struct.pack_into("<I", v1.payload, 0, 78)  # the active keeps writing layout 1
        v1.seal()
    standby.promote()
    assert standby.layout_version == 2 and not standby.needs_migration
    assert struct.unpack_from("<IQ", standby.payload) == (2, 78)
    standby.close()


def test_migrations_chain_grow_and_roll_back(shm_dir: Path) -> None:
    migrations = Migrations()
    calls = []

    @migrations.register(2, 3)
    def grow(segment: Segment) -> None:
        calls.append((2, 3))
        segment.grow(8192)
        segment.payload[8191] = 3

    migrations.register(1, 2)(lambda segment: calls.append((1, 2)))
    migrations.register(3, 1)(lambda segment: calls.append((3, 1)))
    assert [step[:2] for step in migrations.path(1, 3)] == [(1, 2), (2, 3)]
    assert migrations.path(2, 2) == [] and migrations.path(4, 1) is None

    Segment.create("state", 4096, 1, shm_dir=shm_dir).close()
    with Segment.attach("state", 3, writable=True, shm_dir=shm_dir,
                        migrations=migrations) as v3:
        assert calls == [(1, 2), (2, 3)]
        assert v3.layout_version == 3 and v3.payload_size == 8192 and v3.payload[8191] == 3
    assert os.stat(shm_dir / "state").st_size == HEADER_SIZE + 8192
    with Segment.attach("state", 1, writable=True, shm_dir=shm_dir,
                        migrations=migrations) as back:
        assert calls[-1] == (3, 1) and back.layout_version == 1


def test_failing_migration_leaves_the_old_layout(shm_dir: Path) -> None:
    Segment.create("state", 4096, 1, shm_dir=shm_dir).close()

    def broken(segment: Segment) -> None:
        raise ValueError("bad field")

    with pytest.raises(PodkitError, match="from layout 1 to 2 failed.*bad field"):
        Segment.attach("state", 2, writable=True, shm_dir=shm_dir, migrations={(1, 2): broken})
    with Segment.attach("state", 1, shm_dir=shm_dir) as reader:
        assert reader.layout_version == 1


def test_bad_layout_versions_are_refused(shm_dir: Path) -> None:
    for version in (-1, 1 << 32, "2"):
        with pytest.raises(PodkitError, match="layout version"):
            Segment.create("state", 4096, version, shm_dir=shm_dir)
    with pytest.raises(PodkitError, match="to itself"):
        Migrations({(2, 2): lambda s: None})
