"""How long a fresh process takes to attach a shared-memory segment, by segment size.

The target is an attach time flat in size: attaching maps the segment and reads one header
page, never the payload. Each segment is created and filled with non-zero bytes (so its pages
are really allocated), then a separate Python process attaches it read-only several times,
each time with a fresh ``open`` + ``mmap``, and reports the median. Import time of the child
is not counted.

``python -m benchmarks.shm_attach [SIZE ...]`` prints ``{"shm_attach_ms": {...}}`` as its
last stdout line; ``make bench-state`` calls :func:`attach_times_ms` instead.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

from podkit.shm import Segment, format_size, shm_dir_path

DEFAULT_SIZES = [1 << 20, 16 << 20, 256 << 20, 1 << 30]
TRIES = 7
_FILL_BLOCK = 16 << 20


def _fill(segment: Segment) -> None:
    """Write a non-zero pattern over the whole payload."""
    payload = segment.payload
    block = bytes(range(1, 256)) * (_FILL_BLOCK // 255 + 1)
    for start in range(0, len(payload), _FILL_BLOCK):
        end = min(start + _FILL_BLOCK, len(payload))
        payload[start:end] = block[:end - start]
    payload.release()


def _measure(name: str, shm_dir: str, tries: int) -> list[float]:
    """In this process: attach ``tries`` times, each with a fresh mapping; times in ms."""
    times = []
    for _ in range(tries):
        started = time.perf_counter()
        segment = Segment.attach(name, 1, shm_dir=shm_dir)
        elapsed = time.perf_counter() - started
        assert segment.payload_size > 0
        segment.close()
        times.append(elapsed * 1000.0)
    return times


def attach_times_ms(sizes: list[int], shm_dir: str | os.PathLike[str] | None = None,
                    tries: int = TRIES) -> dict[str, float]:
    """Median attach time in ms of a fresh reader process, keyed by size (``"1MiB"``)."""
    directory = str(shm_dir_path(shm_dir))
    results: dict[str, float] = {}
    for size in sizes:
        name = f"podkit-bench-attach-{os.getpid()}-{size}"
        segment = Segment.create(name, size, 1, shm_dir=directory)
        try:
            _fill(segment)
            segment.seal()
            segment.close()
            child = subprocess.run(
                [sys.executable, "-m", "benchmarks.shm_attach", "--child", name, directory,
                 str(tries)],
                capture_output=True, text=True, check=False)
            if child.returncode != 0:
                raise RuntimeError(f"attach child failed for {format_size(size)}: "
                                   f"{child.stderr.strip()}")
            times = json.loads(child.stdout.strip().splitlines()[-1])
            results[format_size(size)] = round(statistics.median(times), 4)
        finally:
            segment.close()
            segment.unlink()
    return results


def main(argv: list[str]) -> int:
    if argv[:1] == ["--child"]:
        name, directory, tries = argv[1], argv[2], int(argv[3])
        print(json.dumps(_measure(name, directory, tries)))
        return 0
    sizes = [int(arg) for arg in argv] or DEFAULT_SIZES
    print(json.dumps({"shm_attach_ms": attach_times_ms(sizes)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
