"""make bench-scale's plot: pods updated over the release, as the pods and as the status say."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on a server
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

from .figures import StatusSample  # noqa: E402


def plot_release(path: Path, release_at: float, done: Iterable[float],
                 samples: Sequence[StatusSample], pods: int) -> Path:
    """Updated pods against seconds since the release started: each pod when the operator
    recorded it at the new revision, and ``updatedReplicas`` as the status was polled."""
    times = sorted(t - release_at for t in done)
    fig, ax = plt.subplots(figsize=(9, 4.5))
    ax.step(times, range(1, len(times) + 1), where="post", label="pods updated (watch)")
    after = [s for s in samples if s.at >= release_at]
    ax.step([s.at - release_at for s in after], [s.updated for s in after], where="post",
            label="status.updatedReplicas")
    ax.set_xlabel("seconds since the release started")
    ax.set_ylabel("pods")
    ax.set_ylim(0, pods * 1.02)
    ax.set_title(f"make bench-scale: {pods} pods released in place")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
