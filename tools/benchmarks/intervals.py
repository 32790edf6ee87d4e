"""Active intervals of business processes, read from the stub's event log."""

from __future__ import annotations

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
    """Pair each process's ``active`` and ``release`` events, ordered by start.

    Events are paired in log order per PID, not by PID alone: PIDs are reused (``pid_max``
    is often 32768), and a long run starts many processes. A process writes its own events in
    order and exits before its PID can be reused, so its ``release`` always follows its own
    ``active`` and precedes any later process's ``active`` under the same PID.
    """
    open_: dict[int, tuple[str, str, int]] = {}
    intervals: list[Interval] = []
    for line in log.read_text().splitlines():
        event, slot, version, pid, stamp = line.split()
        if event == "active":
            previous = open_.pop(int(pid), None)
            if previous is not None:  # killed without a release, PID since reused
                intervals.append(Interval(previous[0], previous[1], int(pid), previous[2], None))
            open_[int(pid)] = (slot, version, int(stamp))
        elif event == "release" and int(pid) in open_:
            start_slot, start_version, start = open_.pop(int(pid))
            intervals.append(Interval(start_slot, start_version, int(pid), start, int(stamp)))
    intervals.extend(Interval(slot, version, pid, start, None)
                     for pid, (slot, version, start) in open_.items())
    return sorted(intervals, key=lambda i: i.start_ns)


def overlaps(intervals: list[Interval]) -> int:
    """How many intervals begin before an earlier one ended (two active at once).

    Compared with the latest end of *all* earlier intervals, not only the previous one: a
    long interval that spans two short ones overlaps both. An interval still open (no end)
    overlaps everything after it.
    """
    count = 0
    latest_end: float | None = None  # None: nothing yet; inf: an interval never ended
    for interval in sorted(intervals, key=lambda i: i.start_ns):
        if latest_end is not None and interval.start_ns < latest_end:
            count += 1
        end = float("inf") if interval.end_ns is None else interval.end_ns
        latest_end = end if latest_end is None else max(latest_end, end)
    return count


def gaps_ms(intervals: list[Interval]) -> list[float]:
    """Time from each release to the next process's activation, in milliseconds."""
    return [(after.start_ns - before.end_ns) / 1e6
            for before, after in zip(intervals, intervals[1:]) if before.end_ns is not None]


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation between the closest ranks
    (numpy's default, statistics' "inclusive" method); 0.0 for no values."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is outside 0..100")
    if not values:
        return 0.0
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)
