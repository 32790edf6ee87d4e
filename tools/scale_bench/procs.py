"""What the scale benchmark and its peer share: the images released, the fake nodes' room,
the command line's sizes, and reading a process's memory and CPU from /proc."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

from kubernetes import client, config

from testbed.apicluster import COMPONENTS, ApiCluster
from testbed.kube import Kube

from .figures import cpu_share, request_counts

V1, V2 = "podkit.local/podkit-demo:v1", "podkit.local/podkit-demo:v2"
PODS_PER_NODE = 1000  # the fake nodes' room (testbed.apicluster)
SAMPLE_S = 0.1  # the status poll and the RSS sample


def add_size_arguments(parser: argparse.ArgumentParser, out: Path, phases: str) -> None:
    """``--pods``, ``--batches``, ``--out`` (default ``out``) and ``--timeout`` (the seconds
    each of ``phases`` may take)."""
    parser.add_argument("--pods", type=int, default=10000)
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--out", type=Path, default=out)
    parser.add_argument("--timeout", type=float, default=1800,
                        help=f"seconds each phase ({phases}) may take")


def parse_sizes(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """The arguments, the sizes checked (exits with the parser's usage line when wrong)."""
    args = parser.parse_args()
    if args.pods < args.batches or args.batches < 1:
        parser.error("--pods must be at least --batches, and --batches at least 1")
    return args


def rss_kb(pid: int) -> int:
    """The process's resident set now (kB), 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_s(pid: int) -> float:
    """The process's user + system CPU time so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(kube: Kube, what: str, check: Any, timeout: float,
          explain: Any = None) -> float:
    """``Kube.wait_for`` polling every 0.05 s; the seconds it took."""
    began = time.monotonic()
    kube.wait_for(what, check, timeout=timeout, interval=0.05, explain=explain)
    return time.monotonic() - began


def api_client(kubeconfig: Path, pool: int) -> client.ApiClient:
    """A client of the cluster as admin, ``pool`` connections kept."""
    configuration = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    configuration.connection_pool_maxsize = pool
    return client.ApiClient(configuration)


class ReleaseMeter:
    """What a release costs the machine, from :meth:`start` to :meth:`figures`: each
    process's CPU seconds (the cluster's components, the controller released with, named
    ``operator``: podkit's or the peer's, and this benchmark's watchers) and the writes the
    apiserver answered."""

    def __init__(self, cluster: ApiCluster, kube: Kube, controller_pid: int) -> None:
        found = {name: cluster.proc(name).pid() for name in COMPONENTS}
        self.pids = {**{name: pid for name, pid in found.items() if pid is not None},
                     "operator": controller_pid, "bench": os.getpid()}
        self.kube = kube
        self.cpu_before: dict[str, float] = {}
        self.requests_before: dict[str, int] = {}

    def _requests(self) -> dict[str, int]:
        return request_counts(self.kube.run("get", "--raw", "/metrics"))

    def start(self) -> None:
        self.cpu_before = {name: cpu_s(pid) for name, pid in self.pids.items()}
        self.requests_before = self._requests()

    def figures(self, release_s: float) -> dict[str, Any]:
        """``cpu_s`` (the controller's), ``release_writes``, ``writes_per_s``,
        ``release_pod_lists`` and ``release_pod_watches`` (every client's) and ``release_cpu``
        (:func:`~.figures.cpu_share`) since :meth:`start`."""
        used = {name: cpu_s(pid) - self.cpu_before[name] for name, pid in self.pids.items()}
        after = self._requests()
        done = {name: n - self.requests_before[name] for name, n in after.items()}
        return {"cpu_s": round(used["operator"], 2), "release_writes": done["writes"],
                "writes_per_s": round(done["writes"] / release_s, 1),
                "release_pod_lists": done["pod_lists"],
                "release_pod_watches": done["pod_watches"],
                "release_cpu": cpu_share(used, release_s, os.cpu_count() or 1)}
