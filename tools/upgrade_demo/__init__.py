"""``make demo``, podkit's main job: the A/B swap beside a kubelet restart and a rolling
update on the local cluster, under open-loop probes, with a report and a plot."""
