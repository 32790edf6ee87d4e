"""The demo's state in shared memory: a request counter and a blob that must survive swaps."""

from __future__ import annotations

import os
import threading
import zlib

from podkit import shm

from .protocol import COUNTERS, COUNTERS_SIZE, LAYOUT_VERSION

_PATTERN_BLOCK = 1 << 20


class DemoState:
    """The counters and blob in one segment; only the active process writes."""

    def __init__(self, segment: shm.Segment) -> None:
        self.segment = segment
        self._lock = threading.Lock()

    @classmethod
    def open(cls, name: str, blob_size: int) -> DemoState:
        """Attach read-only to the pod's segment, or create and fill it on the first start."""
        if shm.exists(name):
            return cls(shm.Segment.attach(name, LAYOUT_VERSION, writable=False))
        try:
            segment = shm.Segment.create(name, COUNTERS_SIZE + blob_size, LAYOUT_VERSION)
        except shm.SegmentExists:
            return cls(shm.Segment.attach(name, LAYOUT_VERSION, writable=False))
        payload = segment.payload
        block = os.urandom(min(_PATTERN_BLOCK, blob_size))
        for offset in range(COUNTERS_SIZE, COUNTERS_SIZE + blob_size, len(block)):
            chunk = min(len(block), COUNTERS_SIZE + blob_size - offset)
            payload[offset:offset + chunk] = block[:chunk]
        crc = zlib.crc32(payload[COUNTERS_SIZE:])
        COUNTERS.pack_into(payload, 0, 0, crc, blob_size)
        segment.seal()
        return cls(segment)

    def promote(self) -> None:
        """Become the writer (O(1) remap); call once this process holds the lock."""
        if not self.segment.writable:
            self.segment.promote()

    def count_request(self) -> int:
        with self._lock:
            payload = self.segment.payload
            served, crc, size = COUNTERS.unpack_from(payload, 0)
            COUNTERS.pack_into(payload, 0, served + 1, crc, size)
            return served + 1

    def served(self) -> int:
        return COUNTERS.unpack_from(self.segment.payload, 0)[0]

    def report(self) -> dict[str, int | bool]:
        """Counters and checksums; reads the whole blob (for tests, not for load)."""
        payload = self.segment.payload
        served, crc_at_create, size = COUNTERS.unpack_from(payload, 0)
        crc_now = zlib.crc32(payload[COUNTERS_SIZE:COUNTERS_SIZE + size])
        return {"served": served, "blob_size": size, "blob_crc": crc_now,
                "blob_crc_at_create": crc_at_create, "intact": crc_now == crc_at_create,
                "generation": self.segment.generation}

    def seal(self) -> None:
        """The last write of this process: mark a clean hand-over."""
        self.segment.seal()
