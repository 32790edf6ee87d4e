"""``make bench-scale``: one StatefulSetPlus of 10,000 ABSwap pods on an API-only cluster (kwok
plays the kubelets), released in place in 5 automatic batches of 2,000.

The operator runs as a local process (as in the kwok integration tests) against the cluster;
the benchmark follows the pods with one watch and the object's status by polling it, and
reads the operator's RSS and CPU time from /proc. Figures (see :mod:`.figures`):
per batch ``processing_s``, ``batch_s``, ``status_lag_s``; the operator's peak ``rss_mb``
and ``cpu_s`` (over the release); ``create_s`` (every pod created and Ready);
``idle_status_lag_s`` (no release: a pod deleted and made again, from Ready to the status
counting it ready). The last stdout line is one JSON object; before it, the batches as a
table beside TKEx's figures; ``out/bench-scale/release.png`` plots the pods updated over time.

    python -m scale_bench [--pods 10000] [--batches 5] [--out out/bench-scale]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException
from urllib3.exceptions import HTTPError

from podkit_operator.kube.client import KubeIO
from testbed.apicluster import ApiCluster
from testbed.errors import TestbedError
from testbed.kube import Kube
from testbed.operator_proc import OperatorProcess
from testbed.stsp import NAME, install_crd, manifest, serving_image, set_image

from .figures import StatusSample, batch_figures, table
from .plot import plot_release

V1, V2 = "podkit.local/podkit-demo:v1", "podkit.local/podkit-demo:v2"
PODS_PER_NODE = 1000  # the fake nodes' room (testbed.apicluster)
SAMPLE_S = 0.1  # the status poll and the operator's RSS sample


def ordinal_of(pod: dict[str, Any]) -> int:
    return int(pod["metadata"]["name"].rsplit("-", 1)[1])


def is_ready(pod: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


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
        while True:
            try:
                listed, version = self.io.list_labelled_pods(self.namespace)
                with self.lock:
                    self.ready_old.clear()
                for pod in listed:
                    self._saw(pod, False)
                for event in self._follow(version):
                    self._saw(event["object"], event["type"] == "DELETED")
            except (ApiException, HTTPError, OSError) as err:
                if self.stopping.is_set():
                    return  # the cluster is going down
                print(f"bench-scale: pod watch: {err}; listing again", file=sys.stderr)
                time.sleep(1)

    def _follow(self, version: str) -> Any:
        while True:
            for event in self.io.watch_labelled_pods(self.namespace, version):
                if event["type"] == "ERROR":
                    return
                version = event["object"]["metadata"]["resourceVersion"]
                if event["type"] != "BOOKMARK":
                    yield event

    def _saw(self, pod: dict[str, Any], deleted: bool) -> None:
        now = time.monotonic()
        uid, ordinal = pod["metadata"]["uid"], ordinal_of(pod)
        images = {c["image"] for c in pod["spec"]["containers"]}
        serving = serving_image(pod, NAME)
        with self.lock:
            self.events += 1
            if self.new in images:
                self.started.setdefault(ordinal, now)
            if serving == self.new and is_ready(pod):
                self.done.setdefault(ordinal, now)
            if not deleted and serving == self.old and is_ready(pod):
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


def kube_io(kubeconfig: Path, writers: int) -> KubeIO:
    configuration = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    configuration.connection_pool_maxsize = writers
    return KubeIO(client.ApiClient(configuration))


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
            io = kube_io(kube.kubeconfig, 4)
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
            cpu_before = cpu_s(pid)
            release_at = time.monotonic()
            print("bench-scale: releasing v2", file=sys.stderr)
            set_image(kube, namespace, V2)
            release_s = timed(kube, "every pod at v2 and the release Completed", lambda: (
                len(watch.done) == pods and sampler.general == "Completed"), timeout,
                lambda: f"{len(watch.done)} at v2, status {sampler.general}")
            release_cpu = cpu_s(pid) - cpu_before
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
                "cpu_s": round(release_cpu, 2), "pod_events_seen": watch.events,
                "operator_log": str(out / "operator.log"), "plot": str(plot),
            }
    finally:
        cluster.down()


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench-scale", description=__doc__.split("\n\n")[0])
    parser.add_argument("--pods", type=int, default=10000)
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("out/bench-scale"))
    parser.add_argument("--timeout", type=float, default=1800,
                        help="seconds each phase (creation, release) may take")
    args = parser.parse_args()
    if args.pods < args.batches or args.batches < 1:
        parser.error("--pods must be at least --batches, and --batches at least 1")
    try:
        result = run(args.pods, args.batches, args.out, args.timeout)
    except TestbedError as err:
        print(err, file=sys.stderr)
        return 1
    print(table(result["batches"]))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
