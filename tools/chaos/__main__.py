"""``python -m chaos [--mode kwok|kubelet] [--runs N] [--seed S] [--only SEED] [--jobs J]``:
seeded fault-injected releases.

Runs seeds S..S+N-1 (or the one ``--only`` names), one namespace per run, one operator per
cluster (as its ServiceAccount, as the testbed runs it): in mode ``kwok`` on API-only clusters,
``--jobs`` of them side by side (each takes the next seed not yet run), in mode ``kubelet`` on
the full testbed (a real kubelet and containerd; root), whose pods the checker also probes. A
line per run on stdout, the runs in ``out/chaos/<mode>/runs.jsonl``, and as the last stdout line
one JSON object: ``runs``, ``seeds_failed``, ``violations`` (runs by invariant), ``faults`` (by
kind), ``requests`` and ``lost`` (the probes'; null in kwok mode, whose pods run no process to
ask). Exit status 1 when any run broke an invariant.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import queue
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TextIO

from testbed import images
from testbed.apicluster import ApiCluster
from testbed.cluster import Testbed
from testbed.errors import TestbedError
from testbed.kube import Kube
from testbed.operator_deploy import remove_operator
from testbed.operator_proc import OperatorProcess, operator_identity
from testbed.rest import ApiReader
from testbed.stsp import install_crd

from .faults import Injector
from .partition import Relay
from .run import RunResult, run
from .scenario import Scenario, scenario
from .supervisor import Cluster, Supervisor

NODES = 5  # kwok mode's fake nodes
CONTROLLER_MANAGER = "kube-controller-manager"  # its process's name, in either mode
OUT = Path("out/chaos")


@dataclass
class Bed:
    """Where the runs happen: the cluster, how to bring it back, its apiserver's port."""

    kube: Kube
    kubeconfig: Path
    cluster: Cluster
    bring_up: Callable[[], None]
    apiserver: tuple[str, int]  # the address its kubeconfig names
    api: ApiCluster | None = None  # kwok mode: whose fake nodes a fault loses
    podkit: dict[str, str] | None = None  # kubelet mode: the pause and sidecar images

    @property
    def reader(self) -> ApiReader:
        return ApiReader.from_kubeconfig(self.kubeconfig)


@contextmanager
def kwok_bed(job: int = 0) -> Iterator[Bed]:
    api = ApiCluster(f"chaos-{os.getpid()}-{job}")
    try:
        api.up(nodes=NODES)
        yield Bed(api.kube(), api.kubeconfig, api, lambda: api.up(nodes=0),
                  ("127.0.0.1", api.ports().apiserver), api=api)
    finally:
        api.down()


@contextmanager
def kubelet_bed(job: int = 0) -> Iterator[Bed]:
    """The full testbed, left as it was found: brought down after only if it was down."""
    bed = Testbed()
    was_up = bed.is_up()
    try:
        bed.up()
        kube = bed.kube()
        remove_operator(kube)  # one left by `make demo KEEP=1` would fight over the pods
        images.load_into_testbed(images.build_all())
        tags = images.tags()
        yield Bed(kube, bed.kubeconfig, bed, bed.up, (bed.addr.node_ip, bed.ports.apiserver),
                  podkit={"pauseImage": tags.pause, "sidecarImage": tags.sidecar})
    finally:
        if not was_up:
            bed.down()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__.split("\n")[0])
    parser.add_argument("--mode", choices=("kwok", "kubelet"), default="kwok")
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1, help="the first seed")
    parser.add_argument("--only", type=int, help="run this one seed alone")
    parser.add_argument("--jobs", type=int, default=1,
                        help="kwok mode: this many API-only clusters running seeds side by side")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs {args.jobs}: give 1 or more")
    if args.jobs > 1 and args.mode == "kubelet":
        parser.error("--jobs: kubelet mode runs on the one full testbed; give --jobs 1")
    seeds = [args.only] if args.only is not None else list(range(args.seed,
                                                                 args.seed + args.runs))
    pending: queue.SimpleQueue[int] = queue.SimpleQueue()
    for seed in seeds:
        pending.put(seed)
    out = OUT / args.mode
    out.mkdir(parents=True, exist_ok=True)
    lock = open(out / ".lock", "w")  # held (by the open file) until the process ends
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        # two runs would share out/'s operator kubeconfigs and logs: one operator, restarted,
        # would read the other's kubeconfig and drive the other cluster
        print(f"chaos: another run of mode {args.mode} uses {out}; wait for it, or run "
              "seeds side by side in one run with --jobs", file=sys.stderr)
        return 2
    bed_for = kubelet_bed if args.mode == "kubelet" else kwok_bed
    began = time.monotonic()

    def job(number: int) -> list[RunResult]:
        with bed_for(number) as bed:
            return runs(bed, args.mode, pending, out, log, number)

    try:
        with open(out / "runs.jsonl", "w") as record:
            log = RunLog(record, out)
            with ThreadPoolExecutor(max_workers=min(args.jobs, len(seeds))) as pool:
                jobs = [pool.submit(job, number) for number in range(min(args.jobs, len(seeds)))]
                results = sorted((r for j in jobs for r in j.result()), key=lambda r: r.seed)
    except TestbedError as err:
        print(f"chaos: the testbed failed: {err}", file=sys.stderr)
        return 2
    print(json.dumps(summary(results, time.monotonic() - began, args.mode)))
    return 1 if any(r.violations for r in results) else 0


@dataclass
class RunLog:
    """Where the jobs' runs are told: a line on stdout and in ``runs.jsonl`` each, and every
    look, probe record and event of a run that broke an invariant in ``seed-<n>.json``."""

    record: TextIO
    out: Path
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, plan: Scenario, result: RunResult, events: list[object] | None) -> None:
        row = asdict(result)
        looks, probed = row.pop("seen"), row.pop("probed")
        if events is not None:
            (self.out / f"seed-{plan.seed}.json").write_text(json.dumps(
                {"looks": looks, "probed": probed, "events": events}))
        verdict = "ok" if not result.violations else f"VIOLATED {result.violations}"
        with self._lock:
            self.record.write(json.dumps({**row, "scenario": asdict(plan)}) + "\n")
            self.record.flush()
            print(f"seed {plan.seed} {plan.kind} faults {result.faults} "
                  f"{result.seconds} s: {verdict}", flush=True)


def runs(bed: Bed, mode: str, seeds: queue.SimpleQueue[int], out: Path, log: RunLog,
         job: int = 0) -> list[RunResult]:
    """Run the seeds taken from ``seeds`` on ``bed`` until none is left."""
    install_crd(bed.kube)
    operator = OperatorProcess(bed.kubeconfig, out / f"operator-{job}.log",
                               identity="chaos-operator")
    relay = Relay(bed.apiserver)
    reader = bed.reader
    results = []
    try:
        operator.own_kubeconfig = operator_identity(bed.kubeconfig,
                                                    out / f"operator-{job}.kubeconfig")
        relay.point(operator.own_kubeconfig)
        with Supervisor(bed.cluster, bed.bring_up, operator) as supervisor:
            next_node = NODES
            while True:
                try:
                    seed = seeds.get_nowait()
                except queue.Empty:
                    break
                plan = scenario(seed, mode)
                namespace = fresh_namespace(bed, supervisor, seed)
                injector = Injector(bed.api, bed.kube, supervisor, relay, namespace, next_node)
                result = run(plan, injector, reader, bed.podkit)
                next_node = injector.next_node
                results.append(result)
                events = json.loads(bed.kube.run("get", "events", "-n", namespace, "-o", "json")
                                    )["items"] if result.violations else None
                log.add(plan, result, events)
                bed.kube.run("delete", "namespace", namespace, "--wait=false")
    finally:
        relay.close()
    return results


def fresh_namespace(bed: Bed, supervisor: Supervisor, seed: int) -> str:
    """The run's namespace, once the controller-manager gave it its service account. When
    that does not come within the wait (seen twice in one 100-run pass of three clusters,
    each after about 40 runs, the cause not known), the controller-manager's log ends on
    stderr, it is restarted and the namespace waited for once more: a fault of the testbed,
    before the run, is no run's result."""
    name = f"chaos-{seed}"
    try:
        return bed.kube.create_namespace(name)
    except TestbedError as err:
        manager = bed.cluster.proc(CONTROLLER_MANAGER)
        print(f"chaos: seed {seed}: {err}; the controller-manager's log ends:\n"
              f"{manager.tail()}\nchaos: restarting the controller-manager", file=sys.stderr)
        supervisor.restart(CONTROLLER_MANAGER)
        return bed.kube.create_namespace(name, timeout=60)


def summary(results: list[RunResult], seconds: float, mode: str = "kwok") -> dict[str, object]:
    violations: Counter[str] = Counter(name for r in results for name in r.violations)
    faults: Counter[str] = Counter(f.split(" at ")[0] for r in results for f in r.faults)
    faults.pop("steer", None)  # the user's rollback or scale: not a fault
    probed = mode == "kubelet"
    return {"runs": len(results),
            "seeds_failed": [r.seed for r in results if r.violations],
            "violations": dict(violations), "faults": dict(faults),
            "requests": sum(r.requests or 0 for r in results) if probed else None,
            "lost": sum(r.lost or 0 for r in results) if probed else None,
            "excused": sum(r.excused or 0 for r in results) if probed else None,
            "mode": mode,
            "operator_restarts": sum(r.operator_restarts for r in results),
            "seconds": round(seconds, 1)}


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
