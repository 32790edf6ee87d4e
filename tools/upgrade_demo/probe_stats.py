"""Figures from a probe stream's records: requests sent and lost, latency, and gaps.

The *gap* is what a client feels during an upgrade: the longest time between two consecutive
replies. A stream at 1 kHz that is never disturbed shows gaps of about 1 ms; an outage of
``d`` ms shows a gap of about ``d + 1`` ms. Latency counts from when a request was due. The
*send lateness* is the prober's own part: how long after it was due a request left.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from benchmarks.intervals import percentile
from upgrade_demo.probe import LOST, StreamRecords


@dataclass(frozen=True)
class Window:
    """A stretch of CLOCK_MONOTONIC time, ``end_ns`` None meaning to the end."""

    start_ns: int = 0
    end_ns: int | None = None

    def holds(self, t_ns: int) -> bool:
        return t_ns >= self.start_ns and (self.end_ns is None or t_ns < self.end_ns)


@dataclass(frozen=True)
class StreamFigures:
    sent: int
    lost: int
    max_gap_ms: float
    p99_ms: float
    max_latency_ms: float
    lateness_p99_ms: float
    lateness_max_ms: float
    # Why the lost requests were lost: the prober's reason (an errno name, "timeout", ...).
    lost_by_reason: dict[str, int] = field(default_factory=dict)


def reply_times_ns(rec: StreamRecords, window: Window = Window()) -> list[int]:
    """When each answered request of the window got its reply, in order."""
    return sorted(due + lat for due, lat in zip(rec.due_ns, rec.latency_ns)
                  if lat != LOST and window.holds(due))


def figures(rec: StreamRecords, window: Window = Window()) -> StreamFigures:
    """The figures of the requests due within ``window``."""
    latencies = [lat / 1e6 for due, lat in zip(rec.due_ns, rec.latency_ns)
                 if window.holds(due) and lat != LOST]
    sent = sum(1 for due in rec.due_ns if window.holds(due))
    lateness = [late / 1e6 for due, late in zip(rec.due_ns, rec.lateness_ns)
                if window.holds(due)]
    replies = reply_times_ns(rec, window)
    gaps = [(b - a) / 1e6 for a, b in zip(replies, replies[1:])]
    reasons = Counter(reason for index, reason in rec.failures if window.holds(rec.due_ns[index]))
    return StreamFigures(sent=sent, lost=sent - len(latencies),
                         max_gap_ms=round(max(gaps, default=0.0), 3),
                         p99_ms=round(percentile(latencies, 99), 3),
                         max_latency_ms=round(max(latencies, default=0.0), 3),
                         lateness_p99_ms=round(percentile(lateness, 99), 3),
                         lateness_max_ms=round(max(lateness, default=0.0), 3),
                         lost_by_reason=dict(reasons))


def first_new_reply_ns(rec: StreamRecords) -> int | None:
    """When the first reply from a version other than the first one's came (None: no
    other version answered)."""
    replies = sorted((due + lat, v) for due, lat, v in zip(rec.due_ns, rec.latency_ns,
                                                            rec.version) if lat != LOST)
    return next((t for t, v in replies if v != replies[0][1]), None) if replies else None


def handover_gap_ms(rec: StreamRecords) -> float | None:
    """The time from the last reply before the new version's first reply to that reply: the
    gap of the hand-over itself, as a client sees it (None: no other version answered)."""
    switch = first_new_reply_ns(rec)
    if switch is None:
        return None
    before = [t for t in reply_times_ns(rec) if t < switch]
    return round((switch - before[-1]) / 1e6, 3) if before else None


def answering_versions(rec: StreamRecords) -> list[str]:
    """The versions that answered, in the order they first did."""
    seen = sorted((due, rec.versions[v]) for due, v in zip(rec.due_ns, rec.version) if v >= 0)
    order: list[str] = []
    for _, version in seen:
        if version not in order:
            order.append(version)
    return order
