"""Active intervals of business processes, read from the stub's event log."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Interval:
    """One process's time as the active slot, in CLOCK_MONOTONIC nanoseconds."""

    slot: str
    version: str
    pid: int
    start_ns: int
    end_ns: int | None  # None while still active


def read_intervals(log: Path) -> list[Interval]:
    """Pair each process's ``active`` and ``release`` events, ordered by start."""
    starts: dict[int, tuple[str, str, int]] = {}
    ends: dict[int, int] = {}
    for line in log.read_text().splitlines():
        event, slot, version, pid, stamp = line.split()
        if event == "active":
            starts[int(pid)] = (slot, version, int(stamp))
        elif event == "release":
            ends[int(pid)] = int(stamp)
    intervals = [Interval(slot, version, pid, start, ends.get(pid))
                 for pid, (slot, version, start) in starts.items()]
    return sorted(intervals, key=lambda i: i.start_ns)


def overlaps(intervals: list[Interval]) -> int:
    """How many intervals begin before the previous one ended (two active at once)."""
    count = 0
    for before, after in zip(intervals, intervals[1:]):
        if before.end_ns is None or after.start_ns < before.end_ns:
            count += 1
    return count


def gaps_ms(intervals: list[Interval]) -> list[float]:
    """Time from each release to the next process's activation, in milliseconds."""
    return [(after.start_ns - before.end_ns) / 1e6
            for before, after in zip(intervals, intervals[1:]) if before.end_ns is not None]


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation; 0.0 for no values."""
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 10) - 1] \
        if q < 100 else max(values)
