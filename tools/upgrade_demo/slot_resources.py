"""``make bench-resources``: how the serving slot fares while the other slot burns CPU, under
the two ways a swap pod could reserve its business once (docs/architecture.md, "One
reservation per pod").

Each round runs two pods on the testbed's real kubelet, one per design, each of two
containers: ``serve`` does a fixed piece of work (about 2.5 ms) every 100 ms for 24 s and
prints how long each took; ``standby`` sleeps 10 s, then burns CPU in two processes for 3 s,
as a new version booting in the idle slot does (at most, with podkit's ``SCHED_IDLE`` standby
off). The designs:

- ``pod_level``: pod-level resources (``spec.resources``, cpu 500m, memory 256Mi), none on
  the containers: both share one quota;
- ``per_container`` (podkit's): ``serve`` requests and limits 500m, ``standby`` requests 1m and
  keeps the same limit.

The last stdout line is one JSON object: per design and round, the pod's QoS class and the
work's p50 and max milliseconds while calm (2-9.5 s) and during the burst (10-13 s).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import uuid
from typing import Any

from podkit.errors import PodkitError
from testbed import images
from testbed.errors import TestbedError
from testbed.kube import Kube
from upgrade_demo.command import NAMESPACE_PREFIX, Progress, add_keep_argument, start_cluster

SERVE = r"""
import time
n = 0
t = time.perf_counter()
while time.perf_counter() - t < 0.02:
    n += 1
start = tick = time.time()
while time.time() - start < 24:
    tick += 0.1
    began = time.perf_counter()
    for _ in range(n):
        pass
    print(f"{time.time() - start:.3f} {1000 * (time.perf_counter() - began):.2f}", flush=True)
    time.sleep(max(0.0, tick - time.time()))
print("done", flush=True)
time.sleep(3600)
"""
BURST = r"""
import os, time
time.sleep(10)
t = time.time()
if os.fork() == 0:
    while time.time() - t < 3:
        pass
    os._exit(0)
while time.time() - t < 3:
    pass
time.sleep(3600)
"""
CALM_S = (2.0, 9.5)
BURST_S = (10.0, 13.0)
LIMITS = {"cpu": "500m", "memory": "256Mi"}
DESIGNS = {
    "pod_level": {"pod": {"requests": LIMITS, "limits": LIMITS}, "serve": None, "standby": None},
    "per_container": {"pod": None,
                      "serve": {"requests": LIMITS, "limits": LIMITS},
                      "standby": {"requests": {"cpu": "1m", "memory": "1Mi"}, "limits": LIMITS}},
}


def pod(name: str, design: str, image: str) -> dict[str, Any]:
    """The experiment's pod under ``design``."""
    parts = DESIGNS[design]

    def container(role: str, code: str) -> dict[str, Any]:
        out: dict[str, Any] = {"name": role, "image": image, "imagePullPolicy": "Never",
                               "command": ["python3", "-c", code]}
        if parts[role]:
            out["resources"] = parts[role]
        return out

    spec: dict[str, Any] = {"terminationGracePeriodSeconds": 1,
                            "containers": [container("serve", SERVE),
                                           container("standby", BURST)]}
    if parts["pod"]:
        spec["resources"] = parts["pod"]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def figures(log: str) -> dict[str, Any]:
    """p50 and max of the work's milliseconds while calm and during the burst."""
    rows = [tuple(float(x) for x in line.split()) for line in log.splitlines()
            if line[:1].isdigit()]

    def window(lo: float, hi: float) -> dict[str, float]:
        found = [ms for at, ms in rows if lo <= at < hi]
        if not found:
            raise ValueError(f"no sample of the serving container between {lo} and {hi} s")
        return {"p50_ms": round(statistics.median(found), 2), "max_ms": max(found),
                "samples": len(found)}

    return {"calm": window(*CALM_S), "burst": window(*BURST_S)}


def one(kube: Kube, namespace: str, design: str, image: str) -> dict[str, Any]:
    name = design.replace("_", "-")
    kube.run("delete", "pod", name, "-n", namespace, "--ignore-not-found", "--wait")
    body = pod(name, design, image)
    body["metadata"]["namespace"] = namespace
    kube.apply(body)
    log = kube.wait_for(f"pod {name} to finish its samples", lambda: (
        out if "done" in (out := kube.run("logs", name, "-c", "serve", "-n", namespace))
        else None), timeout=120, interval=1, explain=lambda: kube.why_pods_wait(namespace))
    qos = (kube.get("pod", name, namespace).get("status") or {}).get("qosClass")
    kube.delete("pod", name, namespace)
    return {"design": design, "qos": qos, **figures(log)}


def run(rounds: int, keep: bool) -> dict[str, Any]:
    progress = Progress("bench-resources", 4)
    bed = start_cluster(progress)
    kube = bed.kube()
    namespace = f"{NAMESPACE_PREFIX}{uuid.uuid4().hex[:6]}"
    try:
        progress("podkit's images (cached), imported into the cluster's containerd")
        images.load_into_testbed(images.build_all())
        kube.run("create", "namespace", namespace)
        progress(f"{rounds} rounds of both designs, in namespace {namespace}")
        results = [one(kube, namespace, design, images.tags().demo_v1)
                   for _ in range(rounds) for design in DESIGNS]
        progress.close()
    finally:
        if keep:
            print(f"kept: the cluster and namespace {namespace}", file=sys.stderr)
        else:
            kube.run("delete", "namespace", namespace, "--ignore-not-found", "--wait=false")
            bed.down()
    return {"rounds": rounds, "work_ms": "a fixed loop, about 2.5 ms, every 100 ms",
            "burst": "the other container, 2 processes busy for 3 s", "results": results,
            "machine": {"cpus": os.cpu_count()}}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m upgrade_demo.slot_resources",
                                     description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=2)
    add_keep_argument(parser)
    args = parser.parse_args(argv)
    if args.rounds < 1:
        print("bench-resources: --rounds must be at least 1", file=sys.stderr)
        return 2
    try:
        result = run(args.rounds, args.keep)
    except (TestbedError, PodkitError, ValueError) as err:
        print(f"bench-resources: {err}", file=sys.stderr)
        return 1
    for row in result["results"]:
        print(f"{row['design']:<14} {row['qos']:<11} calm p50 {row['calm']['p50_ms']:5.2f} "
              f"max {row['calm']['max_ms']:6.2f} ms   burst p50 {row['burst']['p50_ms']:5.2f} "
              f"max {row['burst']['max_ms']:6.2f} ms")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
