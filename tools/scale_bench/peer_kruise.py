"""The scale benchmark's peer: OpenKruise (kruise-manager v1.9.0, a local process, see
:mod:`testbed.kruise`) upgrading a CloneSet of the same pods in place, in batches, on an
API-only cluster like ``make bench-scale``'s (kwok plays the kubelets).

The CloneSet's pods are the StatefulSetPlus's pods of the benchmark (``shape="abswap"``, the
default): the containers its operator runs for the same template (slot ``web-a`` at v1, slot
``web-b`` at the pause image, the sidecar; their volumes), so each pod object is as large and
kwok plays as many containers; the release changes the image of ``web-a`` from v1 to v2, one
container restarted in place per pod, as a swap starts one slot. ``shape="plain"`` gives the
CloneSet the user's template instead (one container ``web``).

``updateStrategy``: ``type: InPlaceIfPossible``, ``maxUnavailable: 100%`` (kruise's default,
20%, would cap a batch below its size at small scales; the StatefulSetPlus has no such cap
within a batch), ``partition`` moved down per batch by this driver: kruise has no automatic
batches, so the driver plays that part, writing the next partition the moment every pod of
the batch is updated and ready. The batch sizes are the benchmark's
(``podkit_operator.releases.batches.batch_targets``). kruise-manager gets podkit operator's
client rate limit (1000 QPS, burst 2000; kruise's own defaults are 30/50).

Per batch: ``processing_s`` (the first pod of the batch whose spec got v2 to its last pod
updated), ``batch_s`` (the partition write to every pod of the batch updated), ``writes_s``
(the first spec write of the batch to its last), ``status_lag_s`` (its last pod updated to
``status.updatedReadyReplicas`` counting batches 1..k). A pod is updated when its spec and its
status (kwok's report) run v2, it is Ready and kruise's ``InPlaceUpdateReady`` condition is
True (kruise sets it False before it writes the new image and True once the kubelet reported
the new container). Also ``create_s`` (the CloneSet applied to every pod Ready at v1 and the
status counting them available), ``release_s``, kruise-manager's peak ``rss_mb`` (the whole
run) and ``cpu_s`` (over the release) from /proc, and ``reconcile_errors`` (the whole run).

    python -m scale_bench.peer_kruise [--pods 10000] [--batches 5] [--out out/bench-scale-kruise]
                                      [--podkit-json FILE]  # a bench-scale JSON: add ratios
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException
from urllib3.exceptions import HTTPError

from podkit_operator.api.statefulsetplus import parse_spec
from podkit_operator.inplace.pods import swap_layout
from podkit_operator.kube.objects import pod_ready
from podkit_operator.releases.batches import batch_targets
from podkit_operator.settings import Settings
from testbed.apicluster import ApiCluster
from testbed.errors import TestbedError
from testbed.kruise import KruiseManager
from testbed.podwatch import follow_pods
from testbed.stsp import manifest

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

NAME = "web"
NAMESPACE = "kruise-peer"
GROUP, VERSION, PLURAL = "apps.kruise.io", "v1alpha1", "clonesets"
INPLACE_READY = "InPlaceUpdateReady"  # kruise's readiness gate of in-place updates
PODKIT = Settings()  # the operator's defaults: kruise gets its client rate
WATCH_S = 300


def pod_template(shape: str) -> tuple[dict[str, Any], str]:
    """The CloneSet's pod template at v1 and the name of the container the release changes."""
    labels = {"app": NAME}
    if shape == "plain":
        return ({"metadata": {"labels": labels},
                 "spec": {"containers": [{"name": NAME, "image": V1}]}}, NAME)
    spec = parse_spec(manifest(NAMESPACE, 1, V1, min_ready=0)["spec"])
    # not patched: PODKIT_VERSION would follow the image, and an env change is no in-place one
    layout = swap_layout(spec, spec.template, patched=False)
    return ({"metadata": {"labels": labels},
             "spec": {"containers": layout.containers, "volumes": layout.volumes}},
            layout.containers[0]["name"])


def cloneset(replicas: int, template: dict[str, Any]) -> dict[str, Any]:
    """The CloneSet, every pod at v1 (the partition at ``replicas``: no pod to update yet)."""
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "CloneSet",
            "metadata": {"name": NAME, "namespace": NAMESPACE},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": NAME}},
                     "template": template, "minReadySeconds": 0,
                     "updateStrategy": {"type": "InPlaceIfPossible", "partition": replicas,
                                        "maxUnavailable": "100%"}}}


def image_of(containers: list[dict[str, Any]] | None, name: str) -> str | None:
    return next((c.get("image") for c in containers or [] if c.get("name") == name), None)


def inplace_settled(pod: dict[str, Any]) -> bool:
    """kruise's InPlaceUpdateReady condition is True when the pod has that readiness gate (as
    the CloneSet's pods do), else not False. Until kruise set it True after creating the pod,
    kruise does not count the pod available."""
    conditions = [c.get("status") for c in (pod.get("status") or {}).get("conditions") or []
                  if c.get("type") == INPLACE_READY]
    gated = any(g.get("conditionType") == INPLACE_READY
                for g in pod["spec"].get("readinessGates") or [])
    return conditions == ["True"] if gated else "False" not in conditions


class PodWatch(threading.Thread):
    """One watch of the namespace's pods (listing again whenever it cannot resume): per pod
    name, when its spec first had ``V2`` in ``container`` and when it was first updated (spec
    and status at V2, Ready, in-place settled); and the pods ready at V1 now."""

    def __init__(self, api: client.ApiClient, container: str) -> None:
        super().__init__(daemon=True)
        self.core, self.container = client.CoreV1Api(api), container
        self.lock = threading.Lock()
        self.started: dict[str, float] = {}
        self.done: dict[str, float] = {}
        self.ready_v1: set[str] = set()
        self.names: set[str] = set()  # every pod name seen: more than the replicas = recreated
        self.events = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        follow_pods(self._list, self._watch, self._saw, self.stopping, "peer-kruise")

    def _list(self) -> tuple[list[dict[str, Any]], str]:
        listed = json.loads(self.core.list_namespaced_pod(
            NAMESPACE, _preload_content=False, _request_timeout=(10, 60)).data)
        return listed["items"], listed["metadata"]["resourceVersion"]

    def _watch(self, version: str) -> Iterator[dict[str, Any]]:
        response = self.core.list_namespaced_pod(
            NAMESPACE, watch=True, allow_watch_bookmarks=True, resource_version=version,
            timeout_seconds=WATCH_S, _preload_content=False,
            _request_timeout=(10, WATCH_S + 30))
        try:
            for line in response:  # urllib3 yields the stream line by line
                if line.strip():
                    yield json.loads(line)
        finally:
            response.release_conn()

    def _saw(self, pod: dict[str, Any], deleted: bool) -> None:
        now = time.monotonic()
        name = pod["metadata"]["name"]
        wanted = image_of(pod["spec"].get("containers"), self.container)
        running = image_of((pod.get("status") or {}).get("containerStatuses"), self.container)
        settled = not deleted and pod_ready(pod) and inplace_settled(pod)
        with self.lock:
            self.events += 1
            self.names.add(name)
            if wanted == V2:
                self.started.setdefault(name, now)
                if running == V2 and settled:
                    self.done.setdefault(name, now)
            if wanted == V1 and running == V1 and settled:
                self.ready_v1.add(name)
            else:
                self.ready_v1.discard(name)


class Sampler(threading.Thread):
    """Polls the CloneSet's status and kruise-manager's RSS every ``SAMPLE_S``."""

    def __init__(self, api: client.ApiClient, pid: int) -> None:
        super().__init__(daemon=True)
        self.custom, self.pid = client.CustomObjectsApi(api), pid
        self.samples: list[tuple[float, int, int]] = []  # (when, updatedReady, available)
        self.peak_rss_kb = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            self.peak_rss_kb = max(self.peak_rss_kb, rss_kb(self.pid))
            try:
                found = json.loads(self.custom.get_namespaced_custom_object(
                    GROUP, VERSION, NAMESPACE, PLURAL, NAME, _preload_content=False,
                    _request_timeout=(5, 10)).data)
                status = found.get("status") or {}
                self.samples.append((time.monotonic(),
                                     int(status.get("updatedReadyReplicas") or 0),
                                     int(status.get("availableReplicas") or 0)))
            except (ApiException, HTTPError, OSError, ValueError):
                pass
            time.sleep(SAMPLE_S)


def _r(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 3)


def batch_figures(targets: list[int], writes: list[float], started: dict[str, float],
                  done: dict[str, float], samples: list[tuple[float, int, int]]
                  ) -> list[dict[str, Any]]:
    """Per batch, from what the watchers saw. A batch's pods are those whose spec got v2
    after its partition write and before the next one (kruise picks which pods)."""
    out = []
    for k, write in enumerate(writes):
        until = writes[k + 1] if k + 1 < len(writes) else math.inf
        members = [n for n, at in started.items() if write <= at < until]
        starts = [started[n] for n in members]
        finishes = [done[n] for n in members if n in done]
        size = targets[k] - (targets[k - 1] if k else 0)
        last = max(finishes) if len(finishes) == size and finishes else None
        shown = None if last is None else next(
            (at for at, ready, _ in samples if at >= last and ready >= targets[k]), None)
        out.append({
            "batch": k + 1, "pods": size, "updated": len(finishes),
            "processing_s": _r(last - min(starts)) if last is not None else None,
            "batch_s": _r(last - write) if last is not None else None,
            "writes_s": _r(max(starts) - min(starts)) if starts else None,
            "status_lag_s": _r(shown - last) if shown is not None and last is not None
            else None,
        })
    return out


def run_kruise_peer(cluster: ApiCluster, pods: int, batches: int, timeout: float, out: Path,
                    shape: str = "abswap") -> dict[str, Any]:
    """On a running cluster with room for ``pods`` (1,000 a kwok node): install and start
    kruise-manager (its log under ``out``), create the CloneSet, wait for every pod Ready at
    v1, release v2 in ``batches`` partition steps; the figures (see the module's doc)."""
    out.mkdir(parents=True, exist_ok=True)
    kube = cluster.kube()
    template, container = pod_template(shape)
    index = next(i for i, c in enumerate(template["spec"]["containers"])
                 if c["name"] == container)
    targets = batch_targets(pods, batches)
    with KruiseManager(kube, out, qps=PODKIT.qps, burst=PODKIT.burst) as kruise:
        pid = kruise.pid
        kube.create_namespace(NAMESPACE)
        api = api_client(cluster.kubeconfig, 4)
        watch = PodWatch(api, container)
        watch.start()
        sampler = Sampler(api, pid)
        sampler.start()
        try:
            print(f"peer-kruise: creating {pods} pods", file=sys.stderr)
            kube.apply(cloneset(pods, template))
            create_s = timed(kube, f"{pods} pods Ready at v1 and the status counting them",
                             lambda: len(watch.ready_v1) == pods and any(
                                 available >= pods for _, _, available in sampler.samples[-3:]),
                             timeout, lambda: f"{len(watch.ready_v1)} are")
            meter = ReleaseMeter(cluster, kube, pid)
            meter.start()
            writes: list[float] = []
            for k, target in enumerate(targets):
                patch = [{"op": "replace", "path": "/spec/updateStrategy/partition",
                          "value": pods - target}]
                if k == 0:
                    patch.append({"op": "replace", "value": V2,
                                  "path": f"/spec/template/spec/containers/{index}/image"})
                writes.append(time.monotonic())
                kube.patch(f"{PLURAL}.{VERSION}.{GROUP}", NAME, patch, NAMESPACE)
                print(f"peer-kruise: batch {k + 1}: partition {pods - target}", file=sys.stderr)
                timed(kube, f"batch {k + 1}: {target} pods updated",
                      lambda t=target: len(watch.done) >= t, timeout,
                      lambda: f"{len(watch.done)} updated, {len(watch.started)} at v2 in spec")
            timed(kube, "the status to count every pod updated and ready",
                  lambda: any(ready >= pods for _, ready, _ in sampler.samples[-3:]), timeout)
            release_s = time.monotonic() - writes[0]
            cost = meter.figures(release_s)
            with watch.lock:
                started, done = dict(watch.started), dict(watch.done)
                recreated = len(watch.names) - pods
            figures = batch_figures(targets, writes, started, done, list(sampler.samples))
            (out / "timeline.json").write_text(json.dumps({  # seconds from the first write
                "writes": [w - writes[0] for w in writes],
                "started": {n: at - writes[0] for n, at in started.items()},
                "done": {n: at - writes[0] for n, at in done.items()}}))
            return {
                "peer": "openkruise v1.9.0 CloneSet InPlaceIfPossible", "shape": shape,
                "pods": pods, "batches": figures, "create_s": round(create_s, 3),
                "release_s": round(release_s, 3),
                "rss_mb": round(sampler.peak_rss_kb / 1024, 1),
                **cost, "pods_recreated": recreated,
                "pod_events_seen": watch.events, "kruise_qps": PODKIT.qps,
                "reconcile_errors": reconcile_errors(kruise.proc.log_file),
                "kruise_log": str(kruise.proc.log_file),
            }
        finally:
            watch.stopping.set()
            sampler.stopping.set()


def reconcile_errors(log: Path) -> int:
    """The CloneSet controller's failed reconciles in kruise-manager's log (a conflict with
    kwok's status writes fails the whole sync, which is retried after a backoff)."""
    with open(log, errors="replace") as lines:
        return sum(1 for line in lines
                   if "Reconciler error" in line and '"cloneset-controller"' in line)


def ratios(kruise: dict[str, Any], podkit: dict[str, Any]) -> list[dict[str, Any]]:
    """Per batch, kruise's figure over podkit's (above 1: podkit faster)."""
    out = []
    for ours, theirs in zip(podkit["batches"], kruise["batches"]):
        row: dict[str, Any] = {"batch": ours["batch"]}
        for key in ("processing_s", "batch_s", "status_lag_s"):
            a, b = theirs.get(key), ours.get(key)
            row[key] = round(a / b, 2) if a is not None and b else None
        out.append(row)
    return out


def run_in_own_cluster(pods: int, batches: int, timeout: float, out: Path,
                       shape: str = "abswap") -> dict[str, Any]:
    """:func:`run_kruise_peer` on an API-only cluster of its own (``kruise-peer``, as many
    fake nodes as ``make bench-scale`` gives its pods), brought up first and down after."""
    cluster = ApiCluster("kruise-peer")
    nodes = math.ceil(pods / PODS_PER_NODE) + 1
    try:
        print(f"peer-kruise: an API-only cluster with {nodes} fake nodes", file=sys.stderr)
        cluster.up(nodes)
        return run_kruise_peer(cluster, pods, batches, timeout, out, shape)
    finally:
        cluster.down()


def main() -> int:
    parser = argparse.ArgumentParser(prog="peer-kruise", description=__doc__.split("\n\n")[0])
    add_size_arguments(parser, Path("out/bench-scale-kruise"), "creation, a batch")
    parser.add_argument("--shape", choices=("abswap", "plain"), default="abswap")
    parser.add_argument("--podkit-json", type=Path,
                        help="a bench-scale result (its last JSON line): add kruise/podkit ratios")
    args = parse_sizes(parser)
    try:
        result = run_in_own_cluster(args.pods, args.batches, args.timeout, args.out, args.shape)
    except TestbedError as err:
        print(err, file=sys.stderr)
        return 1
    if args.podkit_json:
        podkit = json.loads(args.podkit_json.read_text().strip().splitlines()[-1])
        result["ratio_kruise_over_podkit"] = ratios(result, podkit)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
