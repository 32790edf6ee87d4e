"""``make bench-swap``: where the time of one A/B swap goes on the testbed's real kubelet.

The demo's StatefulSetPlus (one pod of the demo service, deployed as ``make demo`` deploys it)
is released ``--swaps`` times, v1 -> v2 -> v1 ..., one release after the other finishes. A
watch of the pod records every version of it the apiserver returns, with when it arrived;
:mod:`upgrade_demo.timeline` turns each release into its milestones (the operator's patches,
the kubelet's container starts, readiness, the pod recorded), and the object's status is read
every ``POLL_S`` for when it showed the release done. The last stdout line is one JSON object:
per step the median and max over the swaps and who worked then, and every swap's milestones.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from kubernetes import config
from kubernetes.client.exceptions import ApiException

from podkit.errors import PodkitError
from podkit_operator.api.keys import GROUP, PLURAL, VERSION
from podkit_operator.kube.client import KubeIO
from testbed import images
from testbed.errors import TestbedError
from testbed.kube import Kube
from testbed.podwatch import follow_pods
from upgrade_demo.command import (
    NAMESPACE_PREFIX,
    Progress,
    add_keep_argument,
    deploy_workloads,
    install_podkit,
    start_cluster,
    tear_down,
)
from upgrade_demo.timeline import Seen, milestones, step_figures
from upgrade_demo.workloads import BUSINESS, method_named

POLL_S = 0.05  # the status read this often while a release runs
SETTLE_S = 1.0  # after the status shows a release done, its last pod events still arrive
METHOD = method_named("abswap")


class PodEvents(threading.Thread):
    """Every version of pod ``name`` the lists and watches return
    (:func:`testbed.podwatch.follow_pods`), with the monotonic time it arrived."""

    def __init__(self, io: KubeIO, namespace: str, name: str) -> None:
        super().__init__(daemon=True)
        self.io, self.namespace, self.name = io, namespace, name
        self.lock = threading.Lock()
        self.seen: list[Seen] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        follow_pods(lambda: self.io.list_labelled_pods(self.namespace),
                    lambda version: self.io.watch_labelled_pods(self.namespace, version),
                    self._saw, self.stopping, "bench-swap")

    def _saw(self, pod: dict[str, Any], deleted: bool) -> None:
        if not deleted and pod["metadata"]["name"] == self.name:
            with self.lock:
                self.seen.append((time.monotonic(), pod))

    def snapshot(self) -> list[Seen]:
        with self.lock:
            return list(self.seen)


def release_done(status: dict[str, Any], generation: int, replicas: int) -> bool:
    """The status describes ``generation`` with every pod updated and the release Completed."""
    return ((status.get("observedGeneration") or 0) >= generation
            and status.get("updatedReplicas") == replicas
            and (status.get("batchDeployStatus") or {}).get("generalStatus") == "Completed")


def one_release(io: KubeIO, namespace: str, image: str, timeout: float) -> tuple[float, float]:
    """Set the business container's image, as a user would, and wait until the status shows
    the release done; the monotonic times of the edit and of that status."""
    stsp = io.get_stsp(namespace, METHOD.app)
    if stsp is None:
        raise TestbedError(f"StatefulSetPlus {namespace}/{METHOD.app} is gone")
    container = next(c for c in stsp["spec"]["template"]["spec"]["containers"]
                     if c["name"] == BUSINESS)
    container["image"] = image
    started = time.monotonic()
    written = io.custom.replace_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL,
                                                         METHOD.app, stsp)
    generation, replicas = written["metadata"]["generation"], written["spec"]["replicas"]
    now: dict[str, Any] | None = None
    while time.monotonic() < started + timeout:
        now = io.get_stsp(namespace, METHOD.app)
        if now is not None and release_done(now.get("status") or {}, generation, replicas):
            return started, time.monotonic()
        time.sleep(POLL_S)
    raise TestbedError(f"the release to {image} was not done within {timeout:.0f}s: status "
                       f"{json.dumps((now or {}).get('status'))}")


def run(swaps: int, out: Path, keep: bool, timeout: float) -> dict[str, Any]:
    progress = Progress("bench-swap", 6)
    bed = start_cluster(progress)
    kube: Kube = bed.kube()
    namespace = f"{NAMESPACE_PREFIX}{uuid.uuid4().hex[:6]}"
    try:
        install_podkit(kube, progress)
        imgs = images.tags()
        progress(f"the demo's StatefulSetPlus, in namespace {namespace}")
        deploy_workloads(kube, namespace, [METHOD], imgs)
        progress(f"{swaps} releases, one after the other")
        io = KubeIO(config.new_client_from_config(config_file=str(kube.kubeconfig)))
        watch = PodEvents(io, namespace, METHOD.pod)
        watch.start()
        kube.wait_for(f"the watch to see pod {METHOD.pod}", watch.snapshot, timeout=timeout)
        runs: list[dict[str, Any]] = []
        reached: list[dict[str, float | None]] = []
        totals: list[float] = []
        for n in range(swaps):
            image = imgs.demo_v2 if n % 2 == 0 else imgs.demo_v1
            started, done = one_release(io, namespace, image, timeout)
            time.sleep(SETTLE_S)
            found = milestones(watch.snapshot(), started, BUSINESS, image, imgs.pause)
            reached.append(found)
            totals.append(done - started)
            runs.append({"image": image, **found, "status_done": round(done - started, 3)})
            print(f"bench-swap   swap {n + 1}: " + ", ".join(
                f"{k} {v}" for k, v in found.items()), file=sys.stderr, flush=True)
        watch.stopping.set()
        progress.close()
    finally:
        tear_down(bed, kube, namespace, keep)
    result = {"swaps": swaps, "pod": "the demo service (make demo's abswap StatefulSetPlus)",
              "steps": step_figures(reached),
              "status_done_s": {"median": round(statistics.median(totals), 3),
                                "max": round(max(totals), 3)},
              "machine": {"cpus": os.cpu_count()}, "runs": runs}
    out.mkdir(parents=True, exist_ok=True)
    (out / "swap-steps.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


def table(result: dict[str, Any]) -> str:
    lines = [f"{'step':<18} {'who':<16} {'median s':>9} {'max s':>7}  what"]
    for row in result["steps"]:
        median = "-" if row["median_s"] is None else f"{row['median_s']:.3f}"
        worst = "-" if row["max_s"] is None else f"{row['max_s']:.3f}"
        lines.append(f"{row['step']:<18} {row['who']:<16} {median:>9} {worst:>7}  {row['what']}")
    done = result["status_done_s"]
    lines.append(f"{'status done':<18} {'operator':<16} {done['median']:>9.3f} "
                 f"{done['max']:>7.3f}  from the edit to the status showing the release done")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m upgrade_demo.swap_steps",
                                     description=__doc__.split("\n", 1)[0])
    parser.add_argument("--swaps", type=int, default=6, help="releases, v1 -> v2 -> v1 ...")
    parser.add_argument("--out", type=Path, default=Path("out/bench-swap"))
    parser.add_argument("--timeout", type=float, default=120.0, help="per release, seconds")
    add_keep_argument(parser)
    args = parser.parse_args(argv)
    if args.swaps < 1:
        print("bench-swap: --swaps must be at least 1", file=sys.stderr)
        return 2
    try:
        result = run(args.swaps, args.out, args.keep, args.timeout)
    except (TestbedError, PodkitError, ApiException, ValueError) as err:
        print(f"bench-swap: {err}", file=sys.stderr)
        return 1
    print(table(result))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
