"""podkit.shm across real processes: segments outlive their creators, standbys map
read-only, 1 GiB survives generations of writers, attach reads no payload."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from podkit import shm
from podkit.shm import HEADER_SIZE, Segment

pytestmark = pytest.mark.integration

GIB = 1 << 30
MIB = 1 << 20

# Shared by the child scripts: a deterministic non-zero pattern, one 4 KiB page repeated.
PRELUDE = """
import json, os, sys, zlib
from podkit import shm
from podkit.errors import PodkitError
PAGE = bytes((i * 7 + 1) % 251 + 1 for i in range(4096))
def fill(payload):
    block = PAGE * 4096
    for start in range(0, len(payload), len(block)):
        end = min(start + len(block), len(payload))
        payload[start:end] = block[:end - start]
def report(**fields):
    print(json.dumps(fields), flush=True)
"""
PAGE = bytes((i * 7 + 1) % 251 + 1 for i in range(4096))


@pytest.fixture
def shm_dir() -> Path:
    """A private directory in /dev/shm (a tmpfs, as in a pod), removed afterwards."""
    assert os.path.isdir("/dev/shm"), "these tests need a tmpfs at /dev/shm"
    path = Path(tempfile.mkdtemp(prefix="podkit-test-shm-", dir="/dev/shm"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def script(body: str) -> list[str]:
    return [sys.executable, "-c", PRELUDE + textwrap.dedent(body)]


def run_child(body: str, *args: str,
              expect_ok: bool = True) -> tuple[dict, subprocess.CompletedProcess]:
    """Run a child script to its end; return its last JSON line and the process."""
    done = subprocess.run(script(body) + list(args), capture_output=True, text=True,
                          timeout=300)
    if expect_ok:
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.strip().splitlines()[-1]), done
    return {}, done


def require_free(directory: Path, needed: int) -> None:
    """Fail (never skip) when the tmpfs cannot hold what the test needs."""
    stats = os.statvfs(directory)
    free = stats.f_bavail * stats.f_frsize
    if free < needed:
        pytest.fail(f"{directory} has {free / GIB:.2f} GiB free, this test needs "
                    f"{needed / GIB:.2f} GiB: free space in /dev/shm (or remount it larger, "
                    "e.g. mount -o remount,size=4G /dev/shm) and run again")


def test_segment_outlives_the_process_that_made_it(shm_dir: Path) -> None:
    created, child = run_child("""
        directory = sys.argv[1]
        segment = shm.Segment.create("state", 8 << 20, 1, shm_dir=directory)
        fill(segment.payload)
        sealed = segment.seal(checksum=True)
        report(pid=os.getpid(), checksum=sealed.checksum)
        # no close(), no unlink(): the process simply exits
    """, str(shm_dir))
    assert child.returncode == 0
    with Segment.attach("state", 1, shm_dir=shm_dir) as segment:
        assert segment.clean and segment.generation == 1
        assert segment.header.writer_pid == created["pid"]
        assert segment.header.checksum == created["checksum"]
        assert segment.verify()
        assert segment.checksum() == created["checksum"]
        assert segment.payload.tobytes() == PAGE * 2048


def test_multiprocessing_shared_memory_would_lose_the_state() -> None:
    """The trap podkit.shm avoids, shown on this Python: the creator's exit unlinks it."""
    name = f"podkit-test-mp-{uuid.uuid4().hex[:12]}"
    try:
        run_child("""
            from multiprocessing import shared_memory
            block = shared_memory.SharedMemory(name=sys.argv[1], create=True, size=4096)
            block.buf[:5] = b"state"
            block.close()
            report(created=True)
        """, name)
        gone = not os.path.exists(f"/dev/shm/{name}")
    finally:
        try:
            os.unlink(f"/dev/shm/{name}")
        except FileNotFoundError:
            pass
    assert gone, "multiprocessing.shared_memory kept the segment: the trap is gone on this Python"


def test_standby_reads_live_cannot_write_then_promotes(shm_dir: Path) -> None:
    """An A/B swap in miniature: the standby maps read-only while the active writes, the
    active seals and exits, the standby promotes and writes."""
    active = Segment.create("state", 64 * 1024, 1, shm_dir=shm_dir)
    standby = subprocess.Popen(script("""
        segment = shm.Segment.attach("state", 1, shm_dir=sys.argv[1])
        report(step="attached")
        sys.stdin.readline()
        seen = segment.payload[:5].tobytes()
        try:
            segment.payload[0] = 0
            refused = None
        except TypeError as exc:
            refused = str(exc)
        try:
            segment.seal()
            seal_refused = False
        except PodkitError:
            seal_refused = True
        report(seen=seen.decode(), refused=refused, seal_refused=seal_refused)
        sys.stdin.readline()  # the active has sealed and gone
        report(clean=segment.clean, generation=segment.generation)
        segment.promote()
        segment.payload[:5] = b"world"
        segment.seal()
        report(promoted=segment.writable)
    """) + [str(shm_dir)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert json.loads(standby.stdout.readline()) == {"step": "attached"}
        active.payload[:5] = b"hello"
        standby.stdin.write("go\n")
        standby.stdin.flush()
        answer = json.loads(standby.stdout.readline())
        assert answer["seen"] == "hello"
        assert answer["refused"] is not None and "read-only" in answer["refused"]
        assert answer["seal_refused"]
        assert active.payload[0] == ord("h")

        active.seal()
        watch = active.payload  # the old active's last look, kept mapped by the test
        active.close()
        standby.stdin.write("sealed\n")
        standby.stdin.flush()
        assert json.loads(standby.stdout.readline()) == {"clean": True, "generation": 1}
        assert json.loads(standby.stdout.readline()) == {"promoted": True}
        assert standby.wait(timeout=60) == 0
        assert watch[:5].tobytes() == b"world"
    finally:
        if standby.poll() is None:
            standby.kill()
            standby.wait()
    with Segment.attach("state", 1, shm_dir=shm_dir) as after:
        assert after.generation == 2 and after.clean


def test_one_gib_intact_across_writer_generations(shm_dir: Path) -> None:
    """1 GiB made by one process, then handed from writer to writer, each a new process
    that attaches read-only, verifies the last seal's checksum, promotes, writes, seals."""
    require_free(shm_dir, GIB + 64 * MIB)
    created, _ = run_child("""
        segment = shm.Segment.create("state", 1 << 30, 1, shm_dir=sys.argv[1])
        fill(segment.payload)
        segment.payload[:8] = (0).to_bytes(8, "little")
        report(checksum=segment.seal(checksum=True).checksum)
    """, str(shm_dir))
    previous = created["checksum"]
    generations = 4
    for generation in range(1, generations + 1):
        step, _ = run_child("""
            segment = shm.Segment.attach("state", 1, shm_dir=sys.argv[1])
            found = segment.header
            intact = segment.verify()
            segment.promote()
            payload = segment.payload
            before = int.from_bytes(payload[:8], "little")
            payload[:8] = found.generation.to_bytes(8, "little")
            payload[-8:] = found.generation.to_bytes(8, "little")
            report(clean=found.clean, generation=found.generation, sealed=found.checksum,
                   intact=intact, before=before,
                   checksum=segment.seal(checksum=True).checksum)
        """, str(shm_dir))
        assert step["clean"] and step["intact"], f"generation {generation}: {step}"
        assert step["generation"] == generation
        assert step["sealed"] == previous
        assert step["before"] == generation - 1
        previous = step["checksum"]
    with Segment.attach("state", 1, shm_dir=shm_dir, verify=True) as final:
        assert final.generation == generations + 1 and final.clean
        assert final.header.checksum == previous
        payload = final.payload
        assert payload.nbytes == GIB
        assert int.from_bytes(payload[:8], "little") == generations
        assert int.from_bytes(payload[-8:], "little") == generations
        for offset in range(MIB, GIB - MIB, 64 * MIB):  # untouched pages keep the pattern
            assert payload[offset:offset + 4096].tobytes() == PAGE
        del payload


RSS_CHILD = """
def mapped_kib(path):
    total, inside = 0, False
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            head = line.split()
            if "-" in head[0] and len(head[0].split("-")) == 2 and ":" not in head[0]:
                inside = len(head) >= 6 and head[5] == path
            elif inside and head[0] == "Rss:":
                total += int(head[1])
    return total
segment = shm.Segment.attach("state", 1, shm_dir=sys.argv[1])
after_attach = mapped_kib(str(segment.path))
segment.checksum()
after_read = mapped_kib(str(segment.path))
report(after_attach=after_attach, after_read=after_read)
"""


@pytest.mark.parametrize("size", [MIB, GIB], ids=["1MiB", "1GiB"])
def test_attach_does_not_touch_the_payload(shm_dir: Path, size: int) -> None:
    """A fresh process that attaches has at most a few pages of the segment resident; only
    reading the payload brings it in. (Timing is left to benchmarks.shm_attach.)"""
    require_free(shm_dir, size + 64 * MIB)
    with Segment.create("state", size, 1, shm_dir=shm_dir) as segment:
        segment.payload[-1] = 1
    rss, _ = run_child(RSS_CHILD, str(shm_dir))
    assert rss["after_attach"] <= 256, rss  # KiB: the header page and some fault-around
    assert rss["after_read"] >= (HEADER_SIZE + size) // 1024 * 0.9, rss


def test_layout_refused_then_migrated_across_processes(shm_dir: Path) -> None:
    run_child("""
        segment = shm.Segment.create("state", 4096, 1, shm_dir=sys.argv[1])
        segment.payload[:4] = (1234).to_bytes(4, "little")
        segment.seal()
        report(ok=True)
    """, str(shm_dir))
    v2 = """
        migrations = {}
        if sys.argv[2] == "with-migration":
            def widen(segment):
                count = int.from_bytes(segment.payload[:4], "little")
                segment.payload[:8] = count.to_bytes(8, "little")
            migrations[(1, 2)] = widen
        try:
            segment = shm.Segment.attach("state", 2, writable=True, migrations=migrations,
                                         shm_dir=sys.argv[1])
        except PodkitError as exc:
            print(f"podkit: {exc}", file=sys.stderr)
            sys.exit(exc.exit_code)
        report(layout=segment.layout_version,
               count=int.from_bytes(segment.payload[:8], "little"))
    """
    _, refused = run_child(v2, str(shm_dir), "without", expect_ok=False)
    assert refused.returncode == 2
    assert "'state'" in refused.stderr and "layout version 1" in refused.stderr
    assert "register a migration from 1 to 2" in refused.stderr
    migrated, _ = run_child(v2, str(shm_dir), "with-migration")
    assert migrated == {"layout": 2, "count": 1234}


def test_racing_open_or_create_share_one_segment(shm_dir: Path) -> None:
    """Services starting together all end up in the same segment (one creator wins)."""
    start_at = time.time() + 1.0
    children = [subprocess.Popen(script("""
        import time
        index, start_at = int(sys.argv[2]), float(sys.argv[3])
        time.sleep(max(0.0, start_at - time.time()))
        segment = shm.open_or_create("state", 4096, 1, shm_dir=sys.argv[1])
        segment.payload[index * 8:index * 8 + 8] = os.getpid().to_bytes(8, "little")
        report(pid=os.getpid())
    """) + [str(shm_dir), str(index), repr(start_at)], stdout=subprocess.PIPE, text=True)
        for index in range(4)]
    pids = []
    for child in children:
        out, _ = child.communicate(timeout=60)
        assert child.returncode == 0
        pids.append(json.loads(out.strip().splitlines()[-1])["pid"])
    with Segment.attach("state", 1, shm_dir=shm_dir) as segment:
        written = [int.from_bytes(segment.payload[i * 8:i * 8 + 8], "little") for i in range(4)]
    assert written == pids
    assert os.listdir(shm_dir) == ["state"]
    assert list(shm.list_segments(shm_dir)) == ["state"]
