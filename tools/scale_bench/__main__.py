"""``make bench-scale``: one StatefulSetPlus of 10,000 ABSwap pods on an API-only cluster (kwok
plays the kubelets), released in place in 5 automatic batches of 2,000.

The operator runs as a local process (as in the kwok integration tests) against the cluster;
the benchmark follows the pods with one watch and the object's status by polling it, and
reads the operator's RSS and CPU time from /proc. Figures (see :mod:`.figures`):
per batch ``processing_s``, ``batch_s``, ``status_lag_s``; the operator's peak ``rss_mb``
and ``cpu_s`` (over the release); ``create_s`` (every pod created and Ready);
``idle_status_lag_s`` (no release: a pod deleted and made again, from Ready to the status
counting it ready); over the release, the writes the apiserver answered (``release_writes``,
``writes_per_s``: the operator's pod patches and kwok's status patches, mostly), every
client's LISTs and WATCHes of pods (``release_pod_lists``, ``release_pod_watches``) and where the
machine's CPU went (``release_cpu``: seconds per process, and ``busy``, the share of every
core they used together), which tell whether the operator or the machine bounds a batch.
The last stdout line is one JSON object; before it, the batches as a table beside TKEx's
figures; ``out/bench-scale/release.png`` plots the pods updated over time.

    python -m scale_bench [--pods 10000] [--batches 5] [--out out/bench-scale] [--peer kruise]

``--peer kruise`` then runs :mod:`.peer_kruise` (OpenKruise's CloneSet, the same pods, a
cluster of its own) and adds its figures (``peer``) and the ratios, OpenKruise's over
podkit's, per batch (``ratio_kruise_over_podkit``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import threading
import time
from pathlib import Path
from typing import Any

from kubernetes.client.rest import ApiException
from urllib3.exceptions import HTTPError

from podkit_operator.kube.client import KubeIO
from podkit_operator.kube.objects import pod_ready
from testbed.apicluster import ApiCluster
from testbed.errors import TestbedError
from testbed.kube import Kube
from testbed.operator_proc import OperatorProcess
from testbed.podwatch import follow_pods
from testbed.stsp import NAME, install_crd, manifest, serving_image, set_image

from . import peer_kruise
from .figures import StatusSample, batch_figures, table
from .plot import plot_release
from .procs import (
    PODS_PER_NODE,
    SAMPLE_S,
    V1,
    V2,
    ReleaseMeter,
    add_size_arguments,
    api_client,
    parse_sizes,
    rss_kb,
    timed,
)


def ordinal_of(pod: dict[str, Any]) -> int:
    return int(pod["metadata"]["name"].rsplit("-", 1)[1])


class PodWatch(threading.Thread):
    """One watch of the StatefulSetPlus's pods (listing again whenever it cannot resume):
    per ordinal, when a container first had ``new`` in its spec and when the operator
    recorded the pod serving it; and the pods ready at ``old`` now, with when each last
    turned so."""

    def __init__(self, io: KubeIO, namespace: str, old: str, new: str) -> None:
        super().__init__(daemon=True)
        self.io, self.namespace, self.old, self.new = io, namespace, old, new
        self.lock = threading.Lock()
        self.started: dict[int, float] = {}
        self.done: dict[int, float] = {}
        self.ready_old: dict[str, float] = {}  # pod UID -> when seen ready at ``old``
        self.events = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        follow_pods(lambda: self.io.list_labelled_pods(self.namespace),
                    lambda version: self.io.watch_labelled_pods(self.namespace, version),
                    self._saw, self.stopping, "bench-scale", relisted=self._relisted)

    def _relisted(self) -> None:
        with self.lock:
            self.ready_old.clear()

    def _saw(self, pod: dict[str, Any], deleted: bool) -> None:
        now = time.monotonic()
        uid, ordinal = pod["metadata"]["uid"], ordinal_of(pod)
        images = {c["image"] for c in pod["spec"]["containers"]}
        serving = serving_image(pod, NAME)
        with self.lock:
            self.events += 1
            if self.new in images:
                self.started.setdefault(ordinal, now)
            if serving == self.new and pod_ready(pod):
                self.done.setdefault(ordinal, now)
            if not deleted and serving == self.old and pod_ready(pod):
                self.ready_old.setdefault(uid, now)
            else:
                self.ready_old.pop(uid, None)


class Sampler(threading.Thread):
    """Polls the object's status and the operator's RSS every ``SAMPLE_S``."""

    def __init__(self, io: KubeIO, namespace: str, pid: int) -> None:
        super().__init__(daemon=True)
        self.io, self.namespace, self.pid = io, namespace, pid
        self.samples: list[StatusSample] = []
        self.ready: list[tuple[float, int]] = []  # (when, readyReplicas)
        self.general = ""
        self.peak_rss_kb = 0

    def run(self) -> None:
        while True:
            self.peak_rss_kb = max(self.peak_rss_kb, rss_kb(self.pid))
            try:
                found = self.io.get_stsp(self.namespace, NAME) or {}
            except (ApiException, HTTPError, OSError):
                found = {}
            status = found.get("status") or {}
            batch = status.get("batchDeployStatus") or {}
            now = time.monotonic()
            if status.get("updateRevision"):
                self.samples.append(StatusSample(now, int(status.get("updatedReplicas") or 0),
                                                 int(batch.get("batchOrder") or 0),
                                                 str(status["updateRevision"])))
                self.ready.append((now, int(status.get("readyReplicas") or 0)))
                self.general = str(batch.get("generalStatus") or "")
            time.sleep(SAMPLE_S)


def idle_status_lag(kube: Kube, namespace: str, watch: PodWatch, sampler: Sampler,
                    pods: int, timeout: float) -> float:
    """No release: delete pod 0 and time its successor's Ready (as the watch saw it) to the
    status counting every pod ready."""
    gone = f"{NAME}-0"
    with watch.lock:
        before = set(watch.ready_old)
    kube.run("delete", "pod", gone, "-n", namespace, "--wait=false")

    def successor_ready() -> bool:
        with watch.lock:
            return len(watch.ready_old) == pods and set(watch.ready_old) != before
    timed(kube, f"{gone} made again and Ready", successor_ready, timeout)
    with watch.lock:
        ready_at = max(watch.ready_old.values())
    timed(kube, "the status to count it ready", lambda: any(
        at >= ready_at and n == pods for at, n in sampler.ready), timeout)
    shown = next(at for at, n in sampler.ready if at >= ready_at and n == pods)
    return round(shown - ready_at, 3)


def run(pods: int, batches: int, out: Path, timeout: float) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    cluster = ApiCluster("bench-scale")
    nodes = math.ceil(pods / PODS_PER_NODE) + 1
    print(f"bench-scale: an API-only cluster with {nodes} fake nodes", file=sys.stderr)
    cluster.up(nodes)
    try:
        kube = cluster.kube()
        install_crd(kube)
        namespace = kube.create_namespace("bench-scale")
        with OperatorProcess(kube.kubeconfig, out / "operator.log", namespace) as operator:
            assert operator.proc is not None
            pid = operator.proc.pid
            io = KubeIO(api_client(kube.kubeconfig, 4))
            watch = PodWatch(io, namespace, V1, V2)
            watch.start()
            sampler = Sampler(io, namespace, pid)
            sampler.start()
            kube.apply(manifest(namespace, pods, V1, min_ready=0, batchNum=batches,
                                batchDeadlineSeconds=600))
            print(f"bench-scale: creating {pods} pods", file=sys.stderr)
            create_s = timed(kube, f"{pods} pods Ready at v1",
                             lambda: len(watch.ready_old) == pods, timeout,
                             lambda: f"{len(watch.ready_old)} are")
            idle_lag = idle_status_lag(kube, namespace, watch, sampler, pods, timeout)
            meter = ReleaseMeter(cluster, kube, pid)
            meter.start()
            release_at = time.monotonic()
            print("bench-scale: releasing v2", file=sys.stderr)
            set_image(kube, namespace, V2)
            release_s = timed(kube, "every pod at v2 and the release Completed", lambda: (
                len(watch.done) == pods and sampler.general == "Completed"), timeout,
                lambda: f"{len(watch.done)} at v2, status {sampler.general}")
            cost = meter.figures(release_s)
            with watch.lock:
                started, done = dict(watch.started), dict(watch.done)
            samples = list(sampler.samples)
            figures = batch_figures(pods, batches, release_at, started, done, samples)
            plot = plot_release(out / "release.png", release_at, done.values(), samples, pods)
            watch.stopping.set()
            return {
                "pods": pods, "batches": figures, "create_s": round(create_s, 3),
                "release_s": round(release_s, 3), "idle_status_lag_s": idle_lag,
                "rss_mb": round(sampler.peak_rss_kb / 1024, 1),
                **cost, "pod_events_seen": watch.events,
                "operator_log": str(out / "operator.log"), "plot": str(plot),
            }
    finally:
        cluster.down()


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench-scale", description=__doc__.split("\n\n")[0])
    add_size_arguments(parser, Path("out/bench-scale"), "creation, release")
    parser.add_argument("--peer", choices=("kruise",),
                        help="then the same release by OpenKruise (a CloneSet of the same pods "
                             "on a cluster of its own): its figures and the ratios")
    args = parse_sizes(parser)
    try:
        result = run(args.pods, args.batches, args.out, args.timeout)
        if args.peer == "kruise":
            result["peer"] = peer_kruise.run_in_own_cluster(
                args.pods, args.batches, args.timeout, args.out / "kruise")
            result["ratio_kruise_over_podkit"] = peer_kruise.ratios(result["peer"], result)
    except TestbedError as err:
        print(err, file=sys.stderr)
        return 1
    print(table(result["batches"], result.get("peer", {}).get("batches", ())))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
