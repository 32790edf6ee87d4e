"""``python -m chaos [--runs N] [--seed S] [--only SEED]``: seeded fault-injected releases.

Runs seeds S..S+N-1 (or the one ``--only`` names) on one API-only cluster, one namespace per
run, one operator (as its ServiceAccount, as the testbed runs it). A line per run on stdout,
the runs in ``out/chaos/runs.jsonl``, and as the last stdout line one JSON object: ``runs``,
``seeds_failed``, ``violations`` (runs by invariant), ``faults`` (by kind), ``requests`` and
``lost`` (null here: kwok's pods run no process to send requests to). Exit status 1 when any
run broke an invariant.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path

from testbed.apicluster import ApiCluster
from testbed.errors import TestbedError
from testbed.operator_proc import OperatorProcess, operator_identity
from testbed.stsp import install_crd

from .faults import Injector
from .partition import Relay
from .run import RunResult, run
from .scenario import scenario
from .supervisor import Supervisor

NODES = 5
OUT = Path("out/chaos")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1, help="the first seed")
    parser.add_argument("--only", type=int, help="run this one seed alone")
    args = parser.parse_args(argv)
    seeds = [args.only] if args.only is not None else list(range(args.seed,
                                                                 args.seed + args.runs))
    OUT.mkdir(parents=True, exist_ok=True)
    api = ApiCluster(f"chaos-{os.getpid()}")
    began = time.monotonic()
    results: list[RunResult] = []
    relay: Relay | None = None
    try:
        api.up(nodes=NODES)
        kube = api.kube()
        install_crd(kube)
        operator = OperatorProcess(api.kubeconfig, OUT / "operator.log",
                                   identity="chaos-operator")
        relay = Relay(("127.0.0.1", api.ports().apiserver))
        operator.own_kubeconfig = operator_identity(api.kubeconfig,
                                                    OUT / "operator.kubeconfig")
        relay.point(operator.own_kubeconfig)
        with Supervisor(api, operator) as supervisor, open(OUT / "runs.jsonl", "w") as record:
            next_node = NODES
            for seed in seeds:
                plan = scenario(seed)
                namespace = kube.create_namespace(f"chaos-{seed}")
                injector = Injector(api, kube, supervisor, relay, namespace, next_node)
                result = run(plan, injector)
                next_node = injector.next_node
                results.append(result)
                row = asdict(result)
                looks = row.pop("seen")
                record.write(json.dumps({**row, "scenario": asdict(plan)}) + "\n")
                record.flush()
                if result.violations:  # every look, to see what happened
                    (OUT / f"seed-{seed}.json").write_text(json.dumps(looks))
                verdict = "ok" if not result.violations else f"VIOLATED {result.violations}"
                print(f"seed {seed} {plan.kind} faults {result.faults} "
                      f"{result.seconds} s: {verdict}", flush=True)
                kube.run("delete", "namespace", namespace, "--wait=false")
    except TestbedError as err:
        print(f"chaos: the testbed failed: {err}", file=sys.stderr)
        return 2
    finally:
        if relay is not None:
            relay.close()
        api.down()
    print(json.dumps(summary(results, time.monotonic() - began)))
    return 1 if any(r.violations for r in results) else 0


def summary(results: list[RunResult], seconds: float) -> dict[str, object]:
    violations: Counter[str] = Counter(name for r in results for name in r.violations)
    faults: Counter[str] = Counter(f.split(" at ")[0] for r in results for f in r.faults)
    faults.pop("steer", None)  # the user's rollback or scale: not a fault
    return {"runs": len(results),
            "seeds_failed": [r.seed for r in results if r.violations],
            "violations": dict(violations), "faults": dict(faults),
            "requests": None, "lost": None, "mode": "kwok",
            "operator_restarts": sum(r.operator_restarts for r in results),
            "seconds": round(seconds, 1)}


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
