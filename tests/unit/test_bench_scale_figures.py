"""make bench-scale's figures from what its watchers saw: batches by the operator's split,
each figure from the right events, and None where nothing was seen."""

from __future__ import annotations

from scale_bench.figures import StatusSample, batch_figures, table


def test_each_batch_is_timed_from_its_own_pods_and_status():
    # 10 pods in 2 batches: batch 1 is ordinals 5-9, batch 2 ordinals 0-4
    started = {o: 10.0 + (9 - o) * 0.1 for o in range(5, 10)} | {o: 20.0 + o for o in range(5)}
    done = {o: 12.0 + (9 - o) * 0.1 for o in range(5, 10)} | {o: 22.0 + o for o in range(5)}
    # the status of the release before (its last batch, every pod updated) until the first pass
    samples = [StatusSample(9.5, 10, 2, "r1"), StatusSample(11.0, 0, 1, "r2"),
               StatusSample(12.9, 5, 1, "r2"), StatusSample(19.5, 5, 2, "r2"),
               StatusSample(26.5, 9, 2, "r2"), StatusSample(27.0, 10, 2, "r2")]
    figures = batch_figures(10, 2, 9.0, started, done, samples)
    assert figures == [
        {"batch": 1, "pods": 5, "updated": 5, "processing_s": 2.4, "batch_s": 3.4,
         "status_lag_s": 0.5},
        {"batch": 2, "pods": 5, "updated": 5, "processing_s": 6.0, "batch_s": 6.5,
         "status_lag_s": 1.0},
    ]
    lines = table(figures).splitlines()
    assert lines[1].split() == ["TKEx", "2000", "30.0", "70.0", "10.0"]
    assert lines[3].split() == ["2", "5", "6.00", "6.50", "1.00"]


def test_a_batch_not_seen_complete_has_no_figures():
    figures = batch_figures(4, 2, 0.0, {3: 1.0, 2: 1.0}, {3: 2.0},
                            [StatusSample(3.0, 1, 1, "r2")])
    assert figures[0] == {"batch": 1, "pods": 2, "updated": 1, "processing_s": None,
                          "batch_s": None, "status_lag_s": None}
    assert table(figures).splitlines()[2].split() == ["1", "2", "-", "-", "-"]
