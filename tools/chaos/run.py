"""One run: a settled StatefulSetPlus at v1, its release, the faults on their timeline, the
end awaited, and the invariants checked on what the observer (and in kubelet mode the
probes) saw."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from testbed.errors import TestbedError
from testbed.kube import Kube
from testbed.rest import ApiReader

from .faults import Injector
from .invariants import check, converged, ended_with_a_reason, lost_requests
from .observe import NAME, READ_ERRORS, Observer, Seen, look
from .probes import Probes
from .records import Probed
from .scenario import MIN_READY_S, V1, Scenario

SETTLE_TIMEOUT_S = 300  # OrderedReady: each pod soaks MIN_READY_S before the next is made
# the end is awaited this long after the last fault: a node lost takes about a minute to be
# noticed (the pod garbage collector's quarantine), and each batch soaks MIN_READY_S
END_TIMEOUT_S = 300


@dataclass
class RunResult:
    seed: int
    kind: str
    faults: list[str] = field(default_factory=list)  # "kind at_s: what it hit"
    violations: dict[str, list[str]] = field(default_factory=dict)
    looks: int = 0
    failed_reads: int = 0
    operator_restarts: int = 0  # the operator exited by itself and was started again
    requests: int | None = None  # kubelet mode: the probes' requests, and those lost
    lost: int | None = None
    excused: int | None = None  # failed where a fault or a crashing version stopped the server
    seen: list[Seen] = field(default_factory=list, repr=False)  # every look, for a failed run
    probed: Probed | None = field(default=None, repr=False)
    seconds: float = 0.0


def manifest(scenario: Scenario, namespace: str, podkit: dict[str, str] | None = None
             ) -> dict[str, Any]:
    """The StatefulSetPlus of a run; ``podkit`` (kubelet mode) names the pause and sidecar
    images, and the demo's images are the node's own."""
    container: dict[str, Any] = {"name": NAME, "image": V1}
    pod: dict[str, Any] = {"containers": [container]}
    spec: dict[str, Any] = {
        "replicas": scenario.replicas, "minReadySeconds": MIN_READY_S,
        "podManagementPolicy": scenario.pod_management,
        "selector": {"matchLabels": {"app": NAME}},
        "template": {"metadata": {"labels": {"app": NAME}}, "spec": pod},
        "updateStrategy": {"type": "ABSwap", "batchDeployConfig": {
            "batchNum": scenario.batches, "maxFailedPercent": 0,
            "batchDeadlineSeconds": scenario.batch_deadline_s}}}
    if podkit is not None:
        spec["podkit"] = podkit
        container["imagePullPolicy"] = "Never"
        pod["terminationGracePeriodSeconds"] = 5
    if scenario.template_env:
        container["env"] = [{"name": k, "value": v} for k, v in scenario.template_env.items()]
    return {"apiVersion": "podkit.io/v1alpha1", "kind": "StatefulSetPlus",
            "metadata": {"name": NAME, "namespace": namespace}, "spec": spec}


def settled(api: ApiReader, namespace: str, replicas: int) -> bool:
    """Every pod serves v1, ready, and the status says so of the spec as it is."""
    seen = look(api, namespace, 0)
    pods = [p for p in seen.pods if not p.terminating]
    return (len(pods) == replicas and all(p.serving == V1 and p.ready for p in pods)
            and seen.status.get("observedGeneration") == seen.generation
            and seen.status.get("updatedReplicas") == replicas)


def start_release(kube: Kube, scenario: Scenario, namespace: str) -> None:
    value: Any
    if scenario.release_env:
        env = {**scenario.template_env, **scenario.release_env}
        path, value = "/spec/template/spec/containers/0/env", [
            {"name": k, "value": v} for k, v in env.items()]
    else:
        path, value = "/spec/template/spec/containers/0/image", scenario.target_image
    kube.patch("statefulsetplus", NAME, [{"op": "add", "path": path, "value": value}],
               namespace)


def steer(kube: Kube, scenario: Scenario, namespace: str) -> str:
    """The user's move during the release: the one-key rollback, or a scale."""
    if scenario.kind == "rollback":
        kube.run("annotate", "statefulsetplus", NAME, "-n", namespace,
                 "podkit.io/rollback=true", "--overwrite")
        return "rollback"
    kube.patch("statefulsetplus", NAME, [{"op": "replace", "path": "/spec/replicas",
                                          "value": scenario.scale_to}], namespace)
    return f"scale to {scenario.scale_to}"


def run(scenario: Scenario, injector: Injector, api: ApiReader,
        podkit: dict[str, str] | None = None) -> RunResult:
    """One run, observed through ``api``; ``podkit`` (the kubelet mode's pause and sidecar
    images) also probes every pod and checks what the probes saw."""
    kube, namespace = injector.kube, injector.namespace
    result = RunResult(scenario.seed, scenario.kind)
    began = time.monotonic()
    restarts_before = injector.supervisor.restarts
    kube.apply(manifest(scenario, namespace, podkit))
    try:
        kube.wait_for(f"{scenario.replicas} pods at v1",
                      lambda: settled(api, namespace, scenario.replicas),
                      timeout=SETTLE_TIMEOUT_S, interval=0.5)
    except TestbedError as err:  # no release can start: the run failed before its faults
        result.violations = {"settled": [str(err)]}
        result.seconds = round(time.monotonic() - began, 1)
        return result
    started = injector.started = time.monotonic()
    probes = Probes(started) if podkit is not None else None
    observer = Observer(api, namespace, started,
                        on_look=probes.follow if probes is not None else None).start()
    kube.wait_for("the observer's first look", lambda: observer.seen, timeout=30)
    start_release(kube, scenario, namespace)
    timeline: list[tuple[float, str, Any]] = [(f.at_s, "fault", f) for f in scenario.faults]
    if scenario.steer_at_s is not None:
        timeline.append((scenario.steer_at_s, "steer", None))
    for at_s, what, fault in sorted(timeline, key=lambda t: t[0]):
        time.sleep(max(0.0, started + at_s - time.monotonic()))
        hit = injector.inject(fault) if what == "fault" else steer(kube, scenario, namespace)
        result.faults.append(f"{fault.kind if fault else 'steer'} at {at_s} s: {hit}")
    deadline = time.monotonic() + END_TIMEOUT_S
    final = _final_look(api, scenario, observer.seen, namespace, started, deadline)
    seen = observer.stop()
    if probes is not None:
        answers, reads = probes.stop()
        result.probed = Probed(tuple(answers), tuple(reads), tuple(injector.hits))
        lost, excused = lost_requests(scenario, seen, result.probed)
        result.requests, result.lost, result.excused = len(answers), len(lost), len(excused)
    result.violations = check(scenario, seen, final, result.probed)
    result.seen = [*seen, final]
    result.looks, result.failed_reads = len(seen), observer.failed_reads
    result.operator_restarts = injector.supervisor.restarts - restarts_before
    result.seconds = round(time.monotonic() - began, 1)
    return result


def _final_look(api: ApiReader, scenario: Scenario, seen: list[Seen], namespace: str,
                started: float, deadline: float) -> Seen:
    """The first look at which the run ended as it must, by what was ``seen`` so far, or the
    last one at the deadline."""
    while True:
        try:
            final = look(api, namespace, time.monotonic() - started)
        except READ_ERRORS:
            time.sleep(1.0)
            continue
        ended = not converged(scenario, seen, final) and not ended_with_a_reason(
            scenario, [], final)
        if ended or time.monotonic() > deadline:
            return final
        time.sleep(1.0)
