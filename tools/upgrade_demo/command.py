"""``make demo``: a real A/B upgrade on a local cluster, beside the two usual alternatives.

``python -m upgrade_demo`` builds what is missing (the patched Kubernetes, podkit's images; both
cached), starts the local cluster, deploys the operator's Deployment as a user would, deploys
the demo service three ways (see :mod:`upgrade_demo.workloads`) and upgrades each from v1 to v2 in
turn, one at a time, under 1 kHz TCP and UDP probes to the pod's IP and through its Service.
It prints a table, writes ``report.json`` and ``jitter.png`` to the output directory, and stops
the cluster unless asked to keep it (``--keep``, or ``KEEP=1`` from make).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import sys
import time
import uuid
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from podkit.errors import PodkitError
from testbed import host, images, kubebin
from testbed.cluster import Testbed
from testbed.errors import TestbedError
from testbed.kube import Kube
from testbed.operator_deploy import deploy_operator, remove_operator
from testbed.stsp import wait_crd_established
from upgrade_demo.plot import plot
from upgrade_demo.report import records, table, write_json
from upgrade_demo.run import MethodRun, upgrade_under_probes
from upgrade_demo.workloads import METHODS, Method, method_named

STEPS = 6
NAMESPACE_PREFIX = "podkit-demo-"


class Progress:
    """``<prefix> [n/steps] what`` lines on stderr, each closed with the time it took."""

    def __init__(self, prefix: str = "demo", steps: int = STEPS) -> None:
        self.prefix, self.steps = prefix, steps
        self.step = 0
        self.started = time.monotonic()

    def __call__(self, what: str) -> None:
        self.close()
        self.step += 1
        self.started = time.monotonic()
        print(f"{self.prefix} [{self.step}/{self.steps}] {what} ...", file=sys.stderr,
              flush=True)

    def close(self) -> None:
        if self.step:
            print(f"{self.prefix} [{self.step}/{self.steps}] done in "
                  f"{time.monotonic() - self.started:.1f}s", file=sys.stderr, flush=True)


def remove_kept_namespaces(kube: Kube, timeout: float = 180) -> None:
    """Delete the namespaces an earlier ``make demo KEEP=1`` left, and wait until they are
    gone: their pods hold the node's CPU, and the new pods would stay Pending."""
    names = [item.split("/", 1)[1] for item in kube.run("get", "namespaces", "-o",
                                                         "name").split()]
    kept = [name for name in names if name.startswith(NAMESPACE_PREFIX)]
    for name in kept:
        print(f"demo       removing namespace {name}, left by an earlier run",
              file=sys.stderr, flush=True)
        kube.run("delete", "namespace", name, "--ignore-not-found", "--wait=false")
    for name in kept:
        kube.wait_for(f"namespace {name} to be deleted", partial(_gone, kube, name),
                      timeout=timeout, interval=1.0, explain=partial(kube.why_pods_wait, name))


def _gone(kube: Kube, namespace: str) -> bool:
    return not kube.run("get", "namespace", namespace, "--ignore-not-found", "-o",
                        "name").strip()


def deploy_workloads(kube: Kube, namespace: str, methods: list[Method],
                     imgs: images.Tags) -> None:
    """A fresh namespace with each method's workload and Service, all serving v1."""
    kube.create_namespace(namespace, timeout=60)
    for method in methods:
        for body in method.services(namespace):
            kube.apply(body)
        kube.apply(method.workload(namespace, imgs))
    for method in methods:
        kube.wait_for(f"{method.label} to serve v1",
                      partial(method.settled_at, kube, namespace, imgs.demo_v1), timeout=300,
                      explain=partial(kube.why_pods_wait, namespace, f"app={method.app}"))


def save_streams(runs: list[MethodRun], path: Path) -> None:
    """Every request of every stream (gzip JSON), for a later look or another plot."""
    body = {run.method.name: {f"{p}/{proto}": rec.to_json()
                              for (p, proto), rec in run.streams.items()} for run in runs}
    with gzip.open(path, "wt") as out:
        json.dump(body, out)


def add_keep_argument(parser: argparse.ArgumentParser) -> None:
    """``--keep``: leave the cluster running afterwards (default from ``KEEP=1``, as make
    passes it)."""
    parser.add_argument("--keep", action="store_true", default=os.environ.get("KEEP") == "1",
                        help="leave the cluster running (default from KEEP=1)")


def start_cluster(progress: Progress) -> Testbed:
    """The patched Kubernetes built (cached) and the local cluster up: two steps."""
    host.require_root()
    progress("the patched Kubernetes (cached after the first build, ~10 min cold)")
    kubebin.bin_dir()
    progress("the local cluster: etcd, apiserver, controllers, kubelet, containerd")
    bed = Testbed()
    bed.up()
    return bed


def install_podkit(kube: Kube, progress: Progress) -> None:
    """podkit's images in the cluster and its operator deployed as a user deploys it, with
    what an earlier ``KEEP=1`` run left removed: two steps."""
    progress("podkit's images (cached), imported into the cluster's containerd")
    host.ensure_packages(["docker.io", "debootstrap"])
    images.load_into_testbed(images.build_all())
    progress("the operator, deployed with kubectl apply -k operator/deploy")
    deploy_operator(kube)
    wait_crd_established(kube)
    remove_kept_namespaces(kube)


def tear_down(bed: Testbed, kube: Kube, namespace: str, keep: bool) -> None:
    """Stop the cluster (and what ran on it), or say what was kept and how to reach it."""
    if keep:
        print(f"kept: the cluster, the operator and namespace {namespace} "
              f"(export KUBECONFIG={bed.kubeconfig}; make cluster-down stops it)",
              file=sys.stderr)
        return
    kube.run("delete", "namespace", namespace, "--ignore-not-found", "--wait=false")
    remove_operator(kube)
    bed.down()


def run(methods: list[Method], out: Path, keep: bool, rate_hz: float) -> int:
    progress = Progress()
    bed = start_cluster(progress)
    kube = bed.kube()
    namespace = f"{NAMESPACE_PREFIX}{uuid.uuid4().hex[:6]}"
    try:
        install_podkit(kube, progress)
        imgs = images.tags()
        progress(f"the demo service three ways, in namespace {namespace}")
        deploy_workloads(kube, namespace, methods, imgs)
        progress(f"upgrading v1 -> v2 under {rate_hz:.0f} Hz probes, one method at a time")
        runs = []
        for method in methods:
            print(f"demo       {method.label}", file=sys.stderr, flush=True)
            runs.append(upgrade_under_probes(kube, namespace, method, imgs, rate_hz=rate_hz))
        progress.close()
        rows = [row for r in runs for row in records(r)]
        context = {"rate_hz": rate_hz, "generated": datetime.now(UTC).isoformat(),
                   "machine": {"cpus": os.cpu_count(), "kernel": platform.release()},
                   "images": {"v1": imgs.demo_v1, "v2": imgs.demo_v2}}
        write_json(rows, out / "report.json", context)
        plot(runs, out / "jitter.png")
        save_streams(runs, out / "streams.json.gz")
        print(table(rows))
        print(f"\nreport: {out / 'report.json'}  plot: {out / 'jitter.png'}")
    finally:
        tear_down(bed, kube, namespace, keep)
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m upgrade_demo", description=__doc__.split(
        "\n", 1)[0])
    parser.add_argument("--methods", default=",".join(m.name for m in METHODS),
                        help="comma-separated subset of: "
                             + ", ".join(m.name for m in METHODS))
    parser.add_argument("--out", type=Path, default=Path("out/demo"))
    parser.add_argument("--rate", type=float, default=1000.0, help="probe requests/s per stream")
    add_keep_argument(parser)
    args = parser.parse_args(argv)
    try:
        methods = [method_named(n.strip()) for n in args.methods.split(",") if n.strip()]
        return run(methods, args.out, args.keep, args.rate)
    except (TestbedError, PodkitError, ValueError) as err:
        print(f"demo: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
