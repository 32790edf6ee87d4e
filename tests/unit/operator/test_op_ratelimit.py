"""The operator's client rate limit: a burst at once, then qps a second, in order."""

from __future__ import annotations

import pytest

from podkit_operator.kube.ratelimit import TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_a_burst_passes_at_once_then_calls_are_spaced_by_the_rate():
    clock = Clock()
    bucket = TokenBucket(qps=10, burst=3, clock=clock, sleep=clock.sleep)
    assert [bucket.take() for _ in range(3)] == [0, 0, 0]
    waits = [round(bucket.take(), 6) for _ in range(3)]
    assert waits == [0.1, 0.1, 0.1]
    assert clock.now == pytest.approx(100.3)


def test_waiting_callers_are_served_in_order_and_a_quiet_spell_refills_up_to_the_burst():
    clock = Clock()
    bucket = TokenBucket(qps=2, burst=2, clock=clock)
    assert [bucket.reserve() for _ in range(4)] == [0, 0, 0.5, 1.0]  # nobody overtakes
    clock.now += 60  # a minute idle: still only the burst saved up
    assert [bucket.reserve() for _ in range(3)] == [0, 0, 0.5]


@pytest.mark.parametrize("qps, burst", [(0, 1), (-1, 5), (5, 0)])
def test_a_bucket_that_could_never_serve_is_refused(qps, burst):
    with pytest.raises(ValueError):
        TokenBucket(qps, burst)
