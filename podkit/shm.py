"""Named shared-memory segments that outlive the process that made them.

A service keeps its state in a segment so that the next version of the service, started in
the other slot of the same pod, finds the state where the old version left it. The segment is
a plain file in a shared-memory directory (``/dev/shm`` by default; ``PODKIT_SHM_DIR`` or the
``shm_dir`` parameter override it), sized once and mapped with ``mmap``. Attaching is O(1):
open, ``mmap``, read one header page; no byte of the payload is read or copied, so attaching a
1 GiB segment costs the same as attaching 1 MiB.

Why not ``multiprocessing.shared_memory``: on Python 3.11 and 3.12 it registers every segment
with the resource tracker, which unlinks the segment when the registering process exits, so
the state would vanish with the old version. This module never talks to the resource tracker;
a segment lives until someone calls :meth:`Segment.unlink` (or the pod goes away).

The file is named exactly like the segment, so a program in another language finds it with
``shm_open("/<name>")`` when the directory is ``/dev/shm``. Its first 4096 bytes are the
header, all integers little-endian, then the payload (page-aligned):

======  ======  ===============  ==========================================================
offset  type    field            meaning
======  ======  ===============  ==========================================================
0       8s      magic            ``PODKITSM``
8       u32     header_version   1
12      u32     header_size      4096; the payload starts here
16      u32     layout_version   the service's own data layout, checked at every attach
20      u32     flags            bit 0 CLEAN: sealed by a clean hand-over, no writer since;
                                 bit 1 CHECKSUM: ``checksum`` describes the payload
24      u64     generation       0 at creation, +1 at every seal
32      u64     payload_size     bytes of payload
40      u64     sealed_at_ns     wall clock of the last seal (ns since the epoch), 0 if never
48      u32     checksum         zlib crc32 of the payload at the last seal
52      u32     writer_pid       pid of the last process that attached for writing
56      u32     header_crc       zlib crc32 of bytes 0..55, so a torn or corrupt header shows
======  ======  ===============  ==========================================================

Rules of use, matching the A/B swap: only the active slot writes. The standby attaches
read-only (``ACCESS_READ``; its ``payload`` refuses writes), waits for the hand-over lock, and
then calls :meth:`Segment.promote`, which remaps the segment writable in O(1). The old version's
last act on the segment is :meth:`Segment.seal`: generation + 1, the CLEAN flag and, only if
asked, a checksum (a crc32 of 1 GiB takes about half a second, so the hand-over path need not
pay it). A writer clears CLEAN and CHECKSUM as it attaches, so a segment found without CLEAN was
left by a writer that did not hand over cleanly. This module does not stop two writers; the
hand-over lock (:mod:`podkit.lock`) does.

Layout versions: each attach names the layout the caller understands. A segment in another
layout is refused with a :class:`IncompatibleLayout` error unless the caller passes migrations
that lead from the found layout to the expected one (possibly in several steps, downgrades
included, so a rollback can migrate back). Migrations run only with write access: at a
writable attach, or at :meth:`Segment.promote` for a standby that attached read-only (until
then the payload is still in the old layout). A migration may grow the payload with
:meth:`Segment.grow`; segments never shrink, since another process may still map the tail.

Memory in a tmpfs is charged to the pod's memory limit, and the container runtime gives each
pod a 64 MiB ``/dev/shm`` by default: creating a larger segment there fails with a message
that says to mount an emptyDir of medium Memory at ``/dev/shm``. Space is reserved at creation
(``posix_fallocate``), so a full tmpfs is reported then, not later as a SIGBUS on first write.

SysV segments (``shmget``) are left out: they need ctypes, are capped by ``kernel.shmmax`` and
``kernel.shmall``, and add nothing here, since the containers of a pod already share
``/dev/shm``. A service that keeps SysV segments can go on using them across the swap (the
pod's containers share one IPC namespace), but podkit does not manage them.
"""

from __future__ import annotations

import errno
import mmap
import os
import re
import secrets
import struct
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from .errors import PodkitError

DEFAULT_SHM_DIR = "/dev/shm"
SHM_DIR_ENV = "PODKIT_SHM_DIR"

MAGIC = b"PODKITSM"
HEADER_VERSION = 1
HEADER_SIZE = 4096

FLAG_CLEAN = 1 << 0
FLAG_CHECKSUM = 1 << 1

MAX_LAYOUT_VERSION = 0xFFFF_FFFF
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
# magic, header_version, header_size, layout_version, flags, generation, payload_size,
# sealed_at_ns, checksum, writer_pid; header_crc follows and covers exactly these bytes.
_FIELDS = struct.Struct("<8sIIIIQQQII")
_CRC = struct.Struct("<I")
_CHUNK = 64 << 20
# A reader can catch a writer in the middle of rewriting the header; it retries for a while
# (the rewrite is one small memcpy) before calling the header corrupt.
_HEADER_RETRIES = 50
_HEADER_RETRY_SLEEP = 0.0002


class SegmentNotFound(PodkitError):
    """No segment of that name exists in the shm directory."""


class SegmentExists(PodkitError):
    """A segment of that name already exists (raised by :meth:`Segment.create`)."""


class IncompatibleLayout(PodkitError):
    """The segment's layout version differs from the caller's and no migration leads there."""

    def __init__(self, message: str, found: int, expected: int) -> None:
        super().__init__(message)
        self.found = found
        self.expected = expected


@dataclass(frozen=True)
class Header:
    """The decoded header of a segment."""

    layout_version: int
    payload_size: int
    generation: int = 0
    flags: int = 0
    sealed_at_ns: int = 0
    checksum: int = 0
    writer_pid: int = 0
    header_version: int = HEADER_VERSION
    header_size: int = HEADER_SIZE

    @property
    def clean(self) -> bool:
        return bool(self.flags & FLAG_CLEAN)

    @property
    def has_checksum(self) -> bool:
        return bool(self.flags & FLAG_CHECKSUM)

    def encode(self) -> bytes:
        """The header's bytes (without the zero padding up to ``HEADER_SIZE``)."""
        fields = _FIELDS.pack(MAGIC, self.header_version, self.header_size,
                              self.layout_version, self.flags, self.generation,
                              self.payload_size, self.sealed_at_ns, self.checksum,
                              self.writer_pid)
        return fields + _CRC.pack(zlib.crc32(fields))

    @classmethod
    def decode(cls, data: bytes | memoryview | mmap.mmap, source: str = "segment") -> Header:
        """Parse and check a header; raise :class:`PodkitError` naming ``source`` if bad."""
        size = _FIELDS.size + _CRC.size
        if len(data) < size:
            raise PodkitError(f"{source} is not a podkit segment: {len(data)} bytes, shorter "
                              "than the header; unlink it or pick another name")
        raw = bytes(data[:size])
        (magic, header_version, header_size, layout_version, flags, generation, payload_size,
         sealed_at_ns, checksum, writer_pid) = _FIELDS.unpack_from(raw)
        if magic != MAGIC:
            raise PodkitError(f"{source} is not a podkit segment (magic {magic!r}, expected "
                              f"{MAGIC!r}); unlink it or pick another name")
        if header_version != HEADER_VERSION:
            raise PodkitError(f"{source} has header version {header_version}, this podkit "
                              f"reads version {HEADER_VERSION}; use the podkit that made it "
                              "or unlink the segment")
        (stored_crc,) = _CRC.unpack_from(raw, _FIELDS.size)
        if zlib.crc32(raw[:_FIELDS.size]) != stored_crc:
            raise PodkitError(f"{source} has a corrupt header (header checksum mismatch); "
                              "the state cannot be trusted: unlink the segment and restart")
        if header_size != HEADER_SIZE:
            raise PodkitError(f"{source} has a corrupt header (header size {header_size}, "
                              f"expected {HEADER_SIZE}); unlink the segment and restart")
        return cls(layout_version=layout_version, payload_size=payload_size,
                   generation=generation, flags=flags, sealed_at_ns=sealed_at_ns,
                   checksum=checksum, writer_pid=writer_pid, header_version=header_version,
                   header_size=header_size)


Migration = Callable[["Segment"], None]


class Migrations:
    """Functions that turn a payload from one layout version into another.

    Register each step once; :meth:`path` chains steps (shortest first), so 1->2 and 2->3
    also serve a segment found at 1 by a service expecting 3. A function receives the
    writable :class:`Segment` (its ``layout_version`` still says the step's source), rewrites
    the payload in place (or grows it first), and returns; the header is bumped after it.
    """

    def __init__(self, steps: Mapping[tuple[int, int], Migration] | None = None) -> None:
        self._steps: dict[tuple[int, int], Migration] = {}
        for (source, target), fn in (steps or {}).items():
            self.add(source, target, fn)

    def add(self, source: int, target: int, fn: Migration) -> None:
        _check_layout(source)
        _check_layout(target)
        if source == target:
            raise PodkitError(f"a migration from layout {source} to itself makes no sense; "
                              "register it between two different versions")
        self._steps[(source, target)] = fn

    def register(self, source: int, target: int) -> Callable[[Migration], Migration]:
        """Decorator form of :meth:`add`."""
        def decorate(fn: Migration) -> Migration:
            self.add(source, target, fn)
            return fn
        return decorate

    def path(self, found: int, expected: int) -> list[tuple[int, int, Migration]] | None:
        """The steps from ``found`` to ``expected``; ``[]`` when equal, ``None`` when none."""
        if found == expected:
            return []
        previous: dict[int, tuple[int, int, Migration]] = {}
        queue = deque([found])
        seen = {found}
        while queue:
            current = queue.popleft()
            for (source, target), fn in sorted(self._steps.items(), key=lambda item: item[0]):
                if source != current or target in seen:
                    continue
                previous[target] = (source, target, fn)
                if target == expected:
                    steps = []
                    node = expected
                    while node != found:
                        step = previous[node]
                        steps.append(step)
                        node = step[0]
                    return steps[::-1]
                seen.add(target)
                queue.append(target)
        return None

    def __len__(self) -> int:
        return len(self._steps)


MigrationTable = Migrations | Mapping[tuple[int, int], Migration]


def shm_dir_path(shm_dir: str | os.PathLike[str] | None = None) -> Path:
    """The shm directory: the parameter, else ``PODKIT_SHM_DIR``, else ``/dev/shm``."""
    chosen = shm_dir if shm_dir is not None else (os.environ.get(SHM_DIR_ENV) or DEFAULT_SHM_DIR)
    path = Path(chosen)
    if not path.is_dir():
        raise PodkitError(f"shm directory {path} does not exist; mount a tmpfs there (in "
                          f"Kubernetes an emptyDir of medium Memory) or set {SHM_DIR_ENV}")
    return path


def validate_name(name: str) -> str:
    """Return ``name`` when it is a valid segment name, else raise :class:`PodkitError`."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise PodkitError(f"shm segment name {name!r} is not valid; use 1-200 letters, digits "
                          "and . _ - starting with a letter or digit (no slashes)")
    return name


def _check_layout(version: int) -> int:
    if not isinstance(version, int) or isinstance(version, bool) \
            or not 0 <= version <= MAX_LAYOUT_VERSION:
        raise PodkitError(f"layout version {version!r} is not valid; use an integer from 0 "
                          f"to {MAX_LAYOUT_VERSION}")
    return version


def _as_migrations(migrations: MigrationTable | None) -> Migrations:
    if migrations is None:
        return Migrations()
    if isinstance(migrations, Migrations):
        return migrations
    return Migrations(migrations)


def format_size(size: int) -> str:
    """``1048576`` -> ``1MiB``; exact binary units, else bytes."""
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if size >= 1 << shift and size % (1 << shift) == 0:
            return f"{size >> shift}{unit}"
    return f"{size}B"


def _human(size: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if size >= 1 << shift:
            return f"{size / (1 << shift):.1f} {unit}"
    return f"{size} B"


def _no_room(name: str, directory: Path, needed: int) -> PodkitError:
    stats = os.statvfs(directory)
    free = stats.f_bavail * stats.f_frsize
    total = stats.f_blocks * stats.f_frsize
    return PodkitError(
        f"no room for shm segment {name!r} ({_human(needed)}) in {directory}: "
        f"{_human(free)} free of {_human(total)}; lift the limit (in Kubernetes mount an "
        "emptyDir of medium Memory with a large enough sizeLimit at /dev/shm, since the "
        f"container runtime gives /dev/shm only 64 MiB) or set {SHM_DIR_ENV} to a larger tmpfs")


class Segment:
    """One mapped segment. Build it with :meth:`create`, :meth:`attach` or
    :func:`open_or_create`; it is a context manager that closes (never unlinks) on exit."""

    def __init__(self, name: str, path: Path, fd: int, writable: bool,
                 expected_layout: int, migrations: Migrations) -> None:
        self.name = name
        self.path = path
        self.expected_layout = expected_layout
        self._fd: int | None = fd
        self._inode = os.fstat(fd).st_ino
        self._writable = writable
        self._migrations = migrations
        self._mm: mmap.mmap | None = None
        self._view: memoryview | None = None

    # -- building ---------------------------------------------------------------------------

    @classmethod
    def create(cls, name: str, size: int, layout_version: int,
               shm_dir: str | os.PathLike[str] | None = None, mode: int = 0o660) -> Segment:
        """Create a segment with ``size`` zeroed payload bytes, mapped writable.

        The file is built under a temporary name and linked into place, so no attacher ever
        sees it half made, and two creators racing get one winner (the other gets
        :class:`SegmentExists`). The generation starts at 0 and the CLEAN flag is off until
        the first :meth:`seal`.
        """
        validate_name(name)
        _check_layout(layout_version)
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise PodkitError(f"shm segment {name!r}: size {size!r} is not valid; give a "
                              "positive number of bytes")
        directory = shm_dir_path(shm_dir)
        path = directory / name
        needed = HEADER_SIZE + size
        stats = os.statvfs(directory)
        if needed > stats.f_bavail * stats.f_frsize:
            raise _no_room(name, directory, needed)
        tmp = directory / f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
        except OSError as exc:
            raise PodkitError(f"cannot create shm segment {name!r} in {directory}: "
                              f"{exc.strerror}; make the directory writable") from exc
        try:
            try:
                # Reserve the pages now: a tmpfs that is full fails here with ENOSPC instead
                # of killing the writer later with SIGBUS.
                os.posix_fallocate(fd, 0, needed)
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EFBIG, errno.ENOMEM):
                    raise _no_room(name, directory, needed) from exc
                if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                    raise
                os.ftruncate(fd, needed)
            os.fchmod(fd, mode)
            header = Header(layout_version=layout_version, payload_size=size,
                            writer_pid=os.getpid())
            os.pwrite(fd, header.encode(), 0)
            try:
                os.link(tmp, path)
            except FileExistsError as exc:
                raise SegmentExists(f"shm segment {name!r} already exists in {directory}; "
                                    "attach to it, or unlink it to start empty") from exc
        except BaseException:
            os.close(fd)
            raise
        finally:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
        segment = cls(name, path, fd, True, layout_version, Migrations())
        segment._map(needed)
        return segment

    @classmethod
    def attach(cls, name: str, layout_version: int, writable: bool = False,
               migrations: MigrationTable | None = None,
               shm_dir: str | os.PathLike[str] | None = None,
               verify: bool = False) -> Segment:
        """Map an existing segment in O(1): no byte of the payload is read.

        Read-only by default (the standby's view). ``writable=True`` marks the segment as
        written (CLEAN and CHECKSUM cleared, ``writer_pid`` set) and runs the migrations
        needed to reach ``layout_version``. ``verify=True`` checks the checksum of the last
        seal before anything else, which reads the whole payload.
        """
        validate_name(name)
        _check_layout(layout_version)
        table = _as_migrations(migrations)
        directory = shm_dir_path(shm_dir)
        path = directory / name
        try:
            fd = os.open(path, (os.O_RDWR if writable else os.O_RDONLY) | os.O_CLOEXEC)
        except FileNotFoundError as exc:
            raise SegmentNotFound(f"shm segment {name!r} does not exist in {directory}; "
                                  "create it first (or use open_or_create)") from exc
        except OSError as exc:
            raise PodkitError(f"cannot open shm segment {name!r} in {directory}: "
                              f"{exc.strerror}; run the slots as the same user or widen "
                              "the segment's mode") from exc
        segment = cls(name, path, fd, writable, layout_version, table)
        try:
            segment._map_from_file()
            header = segment.header
            if table.path(header.layout_version, layout_version) is None:
                raise segment._incompatible(header.layout_version)
            if verify:
                segment._verify_or_raise()
            if writable:
                segment._start_writing()
        except BaseException:
            segment.close()
            raise
        return segment

    def _map_from_file(self) -> None:
        assert self._fd is not None
        file_size = os.fstat(self._fd).st_size
        source = f"shm segment {self.name!r} ({self.path})"
        if file_size < HEADER_SIZE:
            raise PodkitError(f"{source} is not a podkit segment: {file_size} bytes, shorter "
                              "than the header; unlink it or pick another name")
        fd = self._fd
        head = os.pread(fd, HEADER_SIZE, 0)
        header = self._decode_retrying(lambda: os.pread(fd, HEADER_SIZE, 0), head)
        needed = HEADER_SIZE + header.payload_size
        if file_size < needed:
            raise PodkitError(f"{source} is truncated: the header says {needed} bytes, the "
                              f"file has {file_size}; unlink it and restart")
        self._map(needed)

    def _map(self, length: int) -> None:
        assert self._fd is not None
        access = mmap.ACCESS_WRITE if self._writable else mmap.ACCESS_READ
        self._mm = mmap.mmap(self._fd, length, access=access)
        self._view = memoryview(self._mm)

    def _decode_retrying(self, read: Callable[[], bytes | memoryview], first: bytes | memoryview
                         ) -> Header:
        source = f"shm segment {self.name!r} ({self.path})"
        data = first
        for attempt in range(_HEADER_RETRIES):
            try:
                return Header.decode(data, source)
            except PodkitError:
                if attempt == _HEADER_RETRIES - 1:
                    raise
                time.sleep(_HEADER_RETRY_SLEEP)
                data = read()
        raise AssertionError("unreachable")

    def _incompatible(self, found: int) -> IncompatibleLayout:
        return IncompatibleLayout(
            f"shm segment {self.name!r} ({self.path}) has layout version {found}, this "
            f"service expects {self.expected_layout}; register a migration from {found} to "
            f"{self.expected_layout} (podkit.shm.Migrations), or unlink the segment to "
            "start empty", found=found, expected=self.expected_layout)

    # -- the header -------------------------------------------------------------------------

    @property
    def header(self) -> Header:
        """The header as it is now in shared memory (another process may change it)."""
        view = self._require_view()
        return self._decode_retrying(lambda: view[:HEADER_SIZE], view[:HEADER_SIZE])

    @property
    def layout_version(self) -> int:
        return self.header.layout_version

    @property
    def generation(self) -> int:
        return self.header.generation

    @property
    def payload_size(self) -> int:
        return self.header.payload_size

    @property
    def flags(self) -> int:
        return self.header.flags

    @property
    def clean(self) -> bool:
        """Whether the last writer sealed the segment and no writer has attached since."""
        return self.header.clean

    @property
    def sealed_at(self) -> float | None:
        """Wall-clock time (seconds since the epoch) of the last seal, ``None`` if never."""
        sealed_at_ns = self.header.sealed_at_ns
        return sealed_at_ns / 1e9 if sealed_at_ns else None

    @property
    def writable(self) -> bool:
        return self._writable

    @property
    def closed(self) -> bool:
        return self._mm is None

    @property
    def needs_migration(self) -> bool:
        """True for a read-only standby whose segment is still in another layout."""
        return self.header.layout_version != self.expected_layout

    def _write_header(self, header: Header) -> None:
        view = self._require_view()
        if not self._writable:
            raise PodkitError(f"shm segment {self.name!r} is attached read-only; only the "
                              "active slot writes: promote() it once it holds the lock")
        encoded = header.encode()
        view[:len(encoded)] = encoded

    # -- the payload ------------------------------------------------------------------------

    @property
    def payload(self) -> memoryview:
        """The payload, mapped in place; read-only unless the segment is writable.

        After :meth:`promote` or :meth:`grow` fetch it again: the old view stays valid but
        keeps its old size and (for a promoted standby) stays read-only.
        """
        view = self._require_view()
        return view[HEADER_SIZE:]

    def checksum(self) -> int:
        """zlib crc32 of the payload as it is now (reads every byte)."""
        payload = self.payload
        crc = 0
        for start in range(0, len(payload), _CHUNK):
            crc = zlib.crc32(payload[start:start + _CHUNK], crc)
        return crc

    def verify(self) -> bool:
        """Whether the payload still matches the checksum of the last seal.

        Raises :class:`PodkitError` when no checksum is recorded (the last seal had none, or
        a writer attached since).
        """
        header = self.header
        if not header.has_checksum:
            raise PodkitError(f"shm segment {self.name!r} has no checksum to verify: the last "
                              "seal was made with checksum=False or a writer attached since; "
                              "seal(checksum=True) at the hand-over to record one")
        return self.checksum() == header.checksum

    def _verify_or_raise(self) -> None:
        if not self.verify():
            header = self.header
            raise PodkitError(f"shm segment {self.name!r} fails its checksum (sealed "
                              f"{header.checksum:#010x}, now {self.checksum():#010x}): it was "
                              "changed after the seal or is corrupt; unlink it to start empty")

    # -- writing and hand-over --------------------------------------------------------------

    def _start_writing(self) -> None:
        header = self.header
        self._write_header(replace(header, flags=header.flags & ~(FLAG_CLEAN | FLAG_CHECKSUM),
                                   writer_pid=os.getpid()))
        steps = self._migrations.path(header.layout_version, self.expected_layout)
        if steps is None:
            raise self._incompatible(header.layout_version)
        for source, target, fn in steps:
            try:
                fn(self)
            except Exception as exc:
                raise PodkitError(f"migration of shm segment {self.name!r} from layout "
                                  f"{source} to {target} failed: {exc!r}; the header still says "
                                  f"{source} but the payload may be partly migrated: fix the "
                                  "migration, or unlink the segment to start empty") from exc
            self._write_header(replace(self.header, layout_version=target))

    def promote(self) -> None:
        """Remap a read-only segment writable (O(1)) and run any pending migrations.

        Call it once this process holds the hand-over lock, i.e. once the old writer has
        sealed and stopped. Views taken from :attr:`payload` before stay read-only; take a
        new one.
        """
        self._require_view()
        if self._writable:
            return
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError as exc:
            raise SegmentNotFound(f"shm segment {self.name!r} was unlinked from "
                                  f"{self.path.parent} while this standby was attached; "
                                  "nothing to promote, create it again") from exc
        except OSError as exc:
            raise PodkitError(f"cannot open shm segment {self.name!r} ({self.path}) for "
                              f"writing: {exc.strerror}; run the slots as the same user or "
                              "widen the segment's mode") from exc
        if os.fstat(fd).st_ino != self._inode:
            os.close(fd)
            raise PodkitError(f"shm segment {self.name!r} ({self.path}) was replaced while "
                              "this standby was attached; attach again")
        self._retire_mapping()
        assert self._fd is not None
        os.close(self._fd)
        self._fd = fd
        self._writable = True
        self._map_from_file()
        self._start_writing()

    def seal(self, checksum: bool = False) -> Header:
        """Mark a clean hand-over: generation + 1, CLEAN, the time, and a checksum if asked.

        This is the writer's last act on the segment before it releases the hand-over lock;
        the checksum reads the whole payload, so leave it off where the hand-over must be
        fast. Returns the new header.
        """
        header = self.header
        if not self._writable:
            raise PodkitError(f"shm segment {self.name!r} is attached read-only; only the "
                              "active slot seals: promote() it first")
        flags = (header.flags & ~FLAG_CHECKSUM) | FLAG_CLEAN
        crc = 0
        if checksum:
            crc = self.checksum()
            flags |= FLAG_CHECKSUM
        sealed = replace(header, generation=header.generation + 1, flags=flags, checksum=crc,
                         sealed_at_ns=time.time_ns())
        self._write_header(sealed)
        return sealed

    def grow(self, payload_size: int) -> None:
        """Enlarge the payload (for a migration that needs room); never shrinks.

        Views taken from :attr:`payload` before keep their old size; take a new one.
        """
        header = self.header
        if not self._writable:
            raise PodkitError(f"shm segment {self.name!r} is attached read-only; only the "
                              "active slot grows it: promote() it first")
        if payload_size < header.payload_size:
            raise PodkitError(f"shm segment {self.name!r} cannot shrink from "
                              f"{header.payload_size} to {payload_size} bytes (another process "
                              "may map the tail); copy into a new segment instead")
        if payload_size == header.payload_size:
            return
        assert self._fd is not None
        needed = HEADER_SIZE + payload_size
        try:
            os.posix_fallocate(self._fd, 0, needed)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EFBIG, errno.ENOMEM):
                raise _no_room(self.name, self.path.parent, needed) from exc
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                raise
            os.ftruncate(self._fd, needed)
        self._retire_mapping()
        self._map(needed)
        self._write_header(replace(header, payload_size=payload_size))

    # -- the end ----------------------------------------------------------------------------

    def _require_view(self) -> memoryview:
        if self._view is None:
            raise PodkitError(f"shm segment {self.name!r} is closed; attach it again")
        return self._view

    def _retire_mapping(self) -> None:
        """Drop this object's mapping. One that the caller's views still use is not
        unmapped under them (that would crash them): it goes when the last of them goes."""
        if self._view is not None:
            self._view.release()
            self._view = None
        if self._mm is not None:
            try:
                self._mm.close()
            except BufferError:
                pass
            self._mm = None

    def close(self) -> None:
        """Unmap the segment from this process; the segment itself stays. Idempotent.

        Views of :attr:`payload` that the caller still holds keep working (and keep the
        mapping) until they are released.
        """
        self._retire_mapping()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def unlink(self) -> None:
        """Remove the segment's name (the memory goes when the last process unmaps it).

        Leaves alone a file that replaced this segment under the same name.
        """
        try:
            if os.stat(self.path).st_ino == self._inode:
                os.unlink(self.path)
        except FileNotFoundError:
            pass

    def __enter__(self) -> Segment:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else ("writable" if self._writable else "read-only")
        return f"<Segment {self.name!r} {state} at {self.path}>"


def open_or_create(name: str, size: int, layout_version: int, writable: bool = True,
                   migrations: MigrationTable | None = None,
                   shm_dir: str | os.PathLike[str] | None = None, mode: int = 0o660) -> Segment:
    """Attach to ``name`` if it exists, else create it with ``size`` zeroed payload bytes.

    The usual call at a service's start. An existing segment must hold at least ``size``
    bytes (a migration can :meth:`Segment.grow` it). With ``writable=False`` a newly created
    segment is handed back read-only, as a standby would have attached it.
    """
    for _ in range(3):
        try:
            segment = Segment.attach(name, layout_version, writable=writable,
                                     migrations=migrations, shm_dir=shm_dir)
        except SegmentNotFound:
            try:
                segment = Segment.create(name, size, layout_version, shm_dir=shm_dir, mode=mode)
            except SegmentExists:
                continue  # someone created it meanwhile: attach to theirs
            if not writable:
                segment.close()
                continue
            return segment
        if segment.payload_size < size and not segment.needs_migration:
            found = segment.payload_size
            segment.close()
            raise PodkitError(f"shm segment {name!r} holds {found} payload bytes, the service "
                              f"asks for {size}; grow it in a migration (Segment.grow) or "
                              "unlink it to start empty")
        return segment
    raise PodkitError(f"shm segment {name!r} keeps appearing and vanishing in "
                      f"{shm_dir_path(shm_dir)}; another process is creating and unlinking it")


def exists(name: str, shm_dir: str | os.PathLike[str] | None = None) -> bool:
    """Whether a segment file of that name exists (its header is not checked)."""
    return (shm_dir_path(shm_dir) / validate_name(name)).exists()


def unlink(name: str, shm_dir: str | os.PathLike[str] | None = None) -> bool:
    """Remove a segment by name; return whether it existed."""
    try:
        os.unlink(shm_dir_path(shm_dir) / validate_name(name))
    except FileNotFoundError:
        return False
    return True


def list_segments(shm_dir: str | os.PathLike[str] | None = None) -> Iterator[str]:
    """Names of the podkit segments in the shm directory (files with the podkit magic)."""
    directory = shm_dir_path(shm_dir)
    for entry in sorted(os.scandir(directory), key=lambda e: e.name):
        if not entry.is_file() or not _NAME_RE.match(entry.name):
            continue
        try:
            with open(entry.path, "rb") as handle:
                if handle.read(len(MAGIC)) == MAGIC:
                    yield entry.name
        except OSError:
            continue
