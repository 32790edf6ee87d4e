"""Two operators against one real apiserver (an API-only cluster with kwok's nodes): one holds
the Lease and does all the work, the other waits; killed, the leader's work passes to the
standby; a leader whose Lease another takes exits (podkit_operator.leader); one that cannot
serve its metrics exits too.

"Only one writes" is read from each process's own metrics: the count of its API calls
(``podkit_operator_api_requests_total{client="controller"}``) is zero for a standby, since
kopf starts nothing before the startup handler leads.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn

import pytest

from podkit_operator import manifests
from podkit_operator.api import keys
from testbed.fixtures import running_api_cluster
from testbed.kube import Kube
from testbed.operator_proc import OperatorProcess
from testbed.stsp import QUICK_SOAK_S, batch_status, install_crd, pods, serving_image, set_image

pytestmark = pytest.mark.integration

V1, V2 = "podkit.local/podkit-demo:v1", "podkit.local/podkit-demo:v2"
LEASE = "podkit-operator-all"  # testbed.operator_proc: one Lease per watched scope


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[Kube, Path]]:
    with running_api_cluster(f"lead-{os.getpid()}", nodes=1) as api:
        kube = api.kube()
        install_crd(kube)
        yield kube, api.layout.state


def fail_with_log(operator: OperatorProcess, what: str) -> NoReturn:
    code = operator.proc.poll() if operator.proc else "not started"
    pytest.fail(f"operator {operator.identity} (exit status {code}) {what}\n"
                f"{operator.log.read_text(errors='replace')[-3000:]}")


def scrape(operator: OperatorProcess) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{operator.metrics_port}/metrics",
                                timeout=10) as response:
        return response.read().decode()


def metric(operator: OperatorProcess, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include ``labels``; an operator that does not
    answer fails the test with its exit status and the end of its log."""
    try:
        text = scrape(operator)
    except OSError as err:
        fail_with_log(operator, f"serves no metrics on port {operator.metrics_port}: {err}")
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            if line[len(name)] in " {":
                total += float(line.rsplit(" ", 1)[1])
    return total


def serves_metrics(operator: OperatorProcess) -> bool:
    """Whether ``operator`` answers on its metrics port yet; one that has exited fails the test."""
    if operator.proc is None or operator.proc.poll() is not None:
        fail_with_log(operator, "exited before it served metrics")
    try:
        scrape(operator)
    except OSError:
        return False
    return True


def holder(kube: Kube) -> str | None:
    return kube.get("lease", LEASE, manifests.NAMESPACE)["spec"].get("holderIdentity")


def calls(operator: OperatorProcess) -> float:
    return metric(operator, "podkit_operator_api_requests_total", client="controller")


def stsp(namespace: str) -> dict[str, object]:
    return {"apiVersion": f"{keys.GROUP}/{keys.VERSION}", "kind": keys.KIND,
            "metadata": {"name": "web", "namespace": namespace},
            "spec": {"replicas": 3, "podManagementPolicy": "Parallel",
                     "selector": {"matchLabels": {"app": "web"}},
                     "minReadySeconds": QUICK_SOAK_S,
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "web", "image": V1}]}}}}


def released(kube: Kube, namespace: str, image: str) -> bool:
    listed = pods(kube, namespace)
    return (len(listed) == 3 and all(serving_image(p) == image for p in listed)
            and batch_status(kube, namespace).get("generalStatus") == "Completed")


def test_one_leads_the_other_waits_and_takes_over_when_the_leader_dies(
        cluster: tuple[Kube, Path]) -> None:
    kube, state = cluster
    with ExitStack() as stack:
        ops = {name: stack.enter_context(OperatorProcess(
            kube.kubeconfig, state / f"operator-{name}.log", identity=name))
            for name in ("op-a", "op-b")}
        first = kube.wait_for("a leader", lambda: holder(kube) in ops and holder(kube),
                              timeout=60)
        leader, standby = ops[first], next(o for n, o in ops.items() if n != first)
        # a standby serves metrics from its start, which may come after the leader's
        kube.wait_for("both to serve metrics",
                      lambda: all(serves_metrics(o) for o in ops.values()), timeout=60)
        namespace = kube.create_namespace(f"lead-{os.urandom(4).hex()}")
        kube.apply(stsp(namespace))
        kube.wait_for("3 pods at v1", lambda: released(kube, namespace, V1), timeout=120)
        assert metric(leader, "podkit_operator_leader") == 1
        assert metric(standby, "podkit_operator_leader") == 0
        assert calls(leader) > 0
        assert calls(standby) == 0  # no read, no write: the standby runs no handler
        transitions = kube.get("lease", LEASE, manifests.NAMESPACE)["spec"].get(
            "leaseTransitions", 0)

        leader.kill()  # SIGKILL: no release, the standby waits the Lease out
        kube.wait_for("the standby to take the Lease", lambda: holder(kube) == standby.identity,
                      timeout=60)
        set_image(kube, namespace, V2)
        kube.wait_for("the release by the new leader", lambda: released(kube, namespace, V2),
                      timeout=120)
        assert metric(standby, "podkit_operator_leader") == 1 and calls(standby) > 0
        assert kube.get("lease", LEASE, manifests.NAMESPACE)["spec"]["leaseTransitions"] == (
            transitions + 1)


def test_a_leader_whose_lease_is_taken_exits(cluster: tuple[Kube, Path]) -> None:
    kube, state = cluster
    log = state / "operator-op-c.log"
    with OperatorProcess(kube.kubeconfig, log, identity="op-c") as operator:
        # the previous test's leader stopped gracefully: it handed the Lease back
        kube.wait_for("op-c to lead", lambda: holder(kube) == "op-c", timeout=60)
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        kube.run("patch", "lease", LEASE, "-n", manifests.NAMESPACE, "--type=merge", "-p",
                 '{"spec": {"holderIdentity": "intruder", "leaseDurationSeconds": 3600, '
                 f'"renewTime": "{now}"}}}}')
        assert operator.proc is not None
        assert operator.proc.wait(timeout=60) == 1
    assert "op-c lost it (intruder holds the lease now): exiting" in log.read_text()
    assert holder(kube) == "intruder"


def test_an_operator_whose_metrics_port_is_taken_exits_saying_so(
        cluster: tuple[Kube, Path]) -> None:
    kube, _ = cluster
    with socket.socket() as taken:
        taken.bind(("", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = dict(os.environ, KUBECONFIG=str(kube.kubeconfig),
                   PODKIT_OPERATOR_METRICS_PORT=str(port), PODKIT_OPERATOR_ID="op-d",
                   PODKIT_LEASE_NAMESPACE=manifests.NAMESPACE)
        run = subprocess.run([sys.executable, "-m", "kopf", "run", "--standalone",
                              "--all-namespaces", "-m", "podkit_operator.controller"],
                             env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, run.stderr[-3000:]
    assert (f"cannot serve metrics on port {port} (Address already in use): free it or set "
            "PODKIT_OPERATOR_METRICS_PORT to another port (0 serves none)") in run.stderr
