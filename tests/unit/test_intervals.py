"""Active intervals from the stub's event log: pairing, overlaps, gaps and percentiles."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.intervals import Interval, gaps_ms, overlaps, percentile, read_intervals


def log_of(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "events.log"
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


def iv(start: int, end: int | None, pid: int = 1) -> Interval:
    return Interval("a", "v1", pid, start, end)


# --- read_intervals ----------------------------------------------------------------------------

def test_read_pairs_active_and_release_by_process(tmp_path: Path) -> None:
    log = log_of(tmp_path,
                 "ready a v1 10 100",
                 "active a v1 10 1000",
                 "ready b v2 20 1500",
                 "release a v1 10 2000",
                 "active b v2 20 2100")
    assert read_intervals(log) == [Interval("a", "v1", 10, 1000, 2000),
                                   Interval("b", "v2", 20, 2100, None)]


def test_read_orders_by_start_not_by_line(tmp_path: Path) -> None:
    # two processes append their lines in whatever order they get the CPU
    log = log_of(tmp_path, "active b v2 20 3000", "active a v1 10 1000",
                 "release a v1 10 2000", "release b v2 20 4000")
    assert [i.pid for i in read_intervals(log)] == [10, 20]


def test_read_survives_pid_reuse(tmp_path: Path) -> None:
    """PIDs wrap (pid_max is often 32768): a later process may get an earlier one's PID."""
    log = log_of(tmp_path,
                 "active a v1 10 1000", "release a v1 10 2000",
                 "active b v2 20 2100", "release b v2 20 3000",
                 "active a v3 10 3100", "release a v3 10 4000",
                 "active b v4 20 4100")
    intervals = read_intervals(log)
    assert [(i.version, i.start_ns, i.end_ns) for i in intervals] == [
        ("v1", 1000, 2000), ("v2", 2100, 3000), ("v3", 3100, 4000), ("v4", 4100, None)]
    assert overlaps(intervals) == 0
    assert gaps_ms(intervals) == [pytest.approx(0.0001)] * 3


def test_read_keeps_a_killed_process_interval_open(tmp_path: Path) -> None:
    # pid 10 was killed while active (no release), then its PID came back
    log = log_of(tmp_path, "active a v1 10 1000", "active b v2 10 5000",
                 "release b v2 10 6000")
    assert read_intervals(log) == [Interval("a", "v1", 10, 1000, None),
                                   Interval("b", "v2", 10, 5000, 6000)]


def test_read_empty_log(tmp_path: Path) -> None:
    assert read_intervals(log_of(tmp_path)) == []


# --- overlaps --------------------------------------------------------------------------------

@pytest.mark.parametrize("intervals, expected", [
    ([], 0),
    ([iv(0, None)], 0),
    ([iv(0, 10), iv(20, 30), iv(40, None)], 0),
    ([iv(0, 10), iv(10, 20)], 0),  # back to back is not two at once
    ([iv(0, 10), iv(9, 20)], 1),
    ([iv(0, None), iv(5, 6)], 1),  # the first one never stopped
    ([iv(0, 100), iv(10, 20), iv(30, 40)], 2),  # a long interval spans two short ones
    ([iv(30, 40), iv(0, 10), iv(5, 35)], 2),  # any input order
    ([iv(0, 10), iv(0, 10)], 1),
])
def test_overlaps(intervals: list[Interval], expected: int) -> None:
    assert overlaps(intervals) == expected


# --- gaps and percentiles ------------------------------------------------------------------------

def test_gaps_ms() -> None:
    intervals = [iv(0, 1_000_000), iv(1_500_000, 3_000_000), iv(5_000_000, None)]
    assert gaps_ms(intervals) == [0.5, 2.0]
    assert gaps_ms([iv(0, None)]) == []
    assert gaps_ms([]) == []


@pytest.mark.parametrize("values, q, expected", [
    ([], 50, 0.0),
    ([7.0], 0, 7.0),
    ([7.0], 99, 7.0),
    ([1.0, 2.0, 3.0, 4.0, 5.0], 50, 3.0),
    ([5.0, 1.0, 4.0, 2.0, 3.0], 50, 3.0),  # unsorted input
    ([1.0, 2.0, 3.0, 4.0, 5.0], 0, 1.0),
    ([1.0, 2.0, 3.0, 4.0, 5.0], 100, 5.0),
    ([1.0, 2.0, 3.0, 4.0, 5.0], 25, 2.0),
    ([0.0, 10.0], 25, 2.5),  # linear interpolation between ranks
    ([0.0, 10.0], 50, 5.0),
    ([float(n) for n in range(1, 102)], 99, 100.0),
    ([float(n) for n in range(1, 1002)], 99.9, 1000.0),
    ([float(n) for n in range(1, 1002)], 0.05, 1.5),
])
def test_percentile(values: list[float], q: float, expected: float) -> None:
    assert percentile(values, q) == pytest.approx(expected)


@pytest.mark.parametrize("q", [-1, 100.5])
def test_percentile_outside_0_100(q: float) -> None:
    with pytest.raises(ValueError):
        percentile([1.0, 2.0], q)


def test_percentile_is_monotonic_in_q() -> None:
    values = [0.3, 0.1, 0.9, 0.5, 0.2, 2.5, 0.4]
    results = [percentile(values, q) for q in range(0, 101)]
    assert results == sorted(results)
    assert (results[0], results[-1]) == (min(values), max(values))
