"""make bench-scale's figures from what its watchers saw: batches by the operator's split,
each figure from the right events, and None where nothing was seen."""

from __future__ import annotations

from scale_bench import peer_kruise
from scale_bench.figures import StatusSample, batch_figures, cpu_share, request_counts, table


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


def test_the_request_counts_are_the_writes_and_the_lists_and_watches_of_pods():
    metrics = "\n".join([
        "# TYPE apiserver_request_total counter",
        'apiserver_request_total{code="200",component="apiserver",group="",resource="pods",'
        'scope="resource",subresource="",verb="PATCH",version="v1"} 8001',
        'apiserver_request_total{code="201",component="apiserver",group="",resource="pods",'
        'scope="resource",subresource="",verb="POST",version="v1"} 2001',
        'apiserver_request_total{code="409",component="apiserver",group="",resource="pods",'
        'scope="resource",subresource="status",verb="PATCH",version="v1"} 3',
        'apiserver_request_total{code="200",component="apiserver",group="",resource="pods",'
        'scope="namespace",subresource="",verb="LIST",version="v1"} 40',
        'apiserver_request_total{code="200",component="apiserver",group="",resource="pods",'
        'scope="namespace",subresource="",verb="WATCH",version="v1"} 7',
        'apiserver_request_duration_seconds_count{verb="PATCH"} 99',
    ])
    assert request_counts(metrics) == {"writes": 8001 + 2001 + 3, "pod_lists": 40,
                                       "pod_watches": 7}
    assert request_counts("") == {"writes": 0, "pod_lists": 0, "pod_watches": 0}


def test_the_cpu_share_is_of_every_core_over_the_time():
    share = cpu_share({"kube-apiserver": 40.44, "operator": 31.0}, 65.0, 2)
    assert share == {"by_process_s": {"kube-apiserver": 40.4, "operator": 31.0}, "busy": 0.55}
    assert cpu_share({}, 0.0, 2)["busy"] is None


def test_the_peer_s_batches_are_its_partition_steps_and_the_ratios_theirs_over_ours():
    # 4 pods in 2 batches; partitions written at 0 and 10; kruise picks the pods
    started = {"a": 1.0, "b": 2.0, "c": 11.0, "d": 12.0}
    done = {"a": 4.0, "b": 5.0, "c": 14.0}  # d never seen updated
    samples = [(5.5, 2, 4), (14.5, 3, 4)]
    figures = peer_kruise.batch_figures([2, 4], [0.0, 10.0], started, done, samples)
    assert figures[0] == {"batch": 1, "pods": 2, "updated": 2, "processing_s": 4.0,
                          "batch_s": 5.0, "writes_s": 1.0, "status_lag_s": 0.5}
    assert figures[1]["updated"] == 1 and figures[1]["processing_s"] is None
    ours = {"batches": [{"batch": 1, "processing_s": 2.0, "batch_s": 2.5, "status_lag_s": 0.0},
                        {"batch": 2, "processing_s": 3.0, "batch_s": 4.0, "status_lag_s": 1.0}]}
    assert peer_kruise.ratios({"batches": figures}, ours) == [
        {"batch": 1, "processing_s": 2.0, "batch_s": 2.0, "status_lag_s": None},
        {"batch": 2, "processing_s": None, "batch_s": None, "status_lag_s": None}]
    lines = table([{"pods": 2, **b} for b in ours["batches"]], figures).splitlines()
    assert [line.split()[0] for line in lines[2:]] == ["1", "2", "kr1", "kr2"]
    assert lines[4].split() == ["kr1", "2", "4.00", "5.00", "0.50"]
