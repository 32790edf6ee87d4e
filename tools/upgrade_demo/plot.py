"""``jitter.png``: request latency over time around the upgrade, one panel per method.

Each dot is one request, placed at the time it was due (seconds from the upgrade's start) and at
its latency (log scale); a lost request is a cross on the panel's top edge. The shaded band is
the upgrade, from its request until the workload reported it done; the dashed line is the first
reply of the new version on the pod's IP.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on a server
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

from upgrade_demo.probe import LOST  # noqa: E402
from upgrade_demo.probe_stats import first_new_reply_ns  # noqa: E402
from upgrade_demo.run import PROTOCOLS, MethodRun  # noqa: E402

COLOURS = {("pod-ip", "tcp"): "tab:blue", ("pod-ip", "udp"): "tab:cyan",
           ("service", "tcp"): "tab:orange", ("service", "udp"): "tab:red",
           ("service-pod-ready", "tcp"): "tab:purple", ("service-pod-ready", "udp"): "tab:pink"}
LOST_AT_MS = 2000.0


def plot(runs: list[MethodRun], path: Path) -> None:
    fig, axes = plt.subplots(len(runs), 1, figsize=(13, 3.2 * len(runs)), sharey=True,
                             squeeze=False)
    for ax, run in zip(axes[:, 0], runs):
        for key in ((p, proto) for p in run.paths for proto in PROTOCOLS):
            rec = run.streams[key]
            ok = [((d - run.upgrade_ns) / 1e9, lat / 1e6)
                  for d, lat in zip(rec.due_ns, rec.latency_ns) if lat != LOST]
            lost = [(d - run.upgrade_ns) / 1e9
                    for d, lat in zip(rec.due_ns, rec.latency_ns) if lat == LOST]
            label = f"{key[0]} {key[1]}"
            if ok:
                ax.scatter(*zip(*ok), s=2, color=COLOURS[key], label=label, rasterized=True)
            if lost:
                ax.scatter(lost, [LOST_AT_MS] * len(lost), s=12, marker="x",
                           color=COLOURS[key], label=f"{label} lost ({len(lost)})")
        ax.axvspan(0, (run.done_ns - run.upgrade_ns) / 1e9, color="0.9", zorder=0)
        if (switch := first_new_reply_ns(run.streams["pod-ip", "tcp"])) is not None:
            ax.axvline((switch - run.upgrade_ns) / 1e9, color="0.4", linestyle="--",
                       linewidth=0.8, label="first reply of v2 (pod IP)")
        ax.set_yscale("log")
        ax.set_ylim(0.02, LOST_AT_MS * 1.5)
        ax.set_title(run.method.label, fontsize=10)
        ax.set_ylabel("latency, ms")
        ax.legend(fontsize=7, markerscale=3, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    axes[-1, 0].set_xlabel("seconds from the upgrade's start (shaded: until reported done)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
