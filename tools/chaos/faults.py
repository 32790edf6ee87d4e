"""The faults a run injects, each as an operator or node would meet it: SIGKILL, a process of
the control plane (or, on the full testbed, the kubelet or containerd) restarted, a pod
deleted, a node gone for good, a slot's business process killed on the node."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from testbed.apicluster import ApiCluster
from testbed.kube import Kube

from . import hostprocs
from .observe import ACTIVE_SLOT, NAME
from .partition import Relay
from .records import Hit
from .scenario import Fault
from .supervisor import Supervisor

RESTARTS = {"apiserver-restart": "kube-apiserver", "etcd-restart": "etcd",
            "kubelet-restart": "kubelet", "containerd-restart": "containerd"}


@dataclass
class Injector:
    api: ApiCluster | None  # kwok mode: the cluster whose fake nodes a fault loses
    kube: Kube
    supervisor: Supervisor
    relay: Relay  # the operator's road to the apiserver
    namespace: str
    next_node: int  # the number of the next fake node to create (lost ones are not re-used)
    started: float = 0.0  # monotonic time of the release's start
    hits: list[Hit] = field(default_factory=list)

    def inject(self, fault: Fault) -> str:
        """Inject ``fault``; return what was hit, for the run's record."""
        if fault.kind == "operator-kill":
            self.supervisor.kill_operator(fault.outage_s)
            return f"operator down {fault.outage_s} s"
        if fault.kind == "operator-partition":
            self.relay.cut()
            time.sleep(fault.outage_s)
            self.relay.heal()
            return f"operator cut off {fault.outage_s} s"
        if fault.kind in RESTARTS:
            self.supervisor.restart(RESTARTS[fault.kind])
            return RESTARTS[fault.kind]
        at_s = time.monotonic() - self.started
        pods = self._pods()
        if not pods:
            return "no pod to hit"
        pod = pods[fault.pick % len(pods)]
        name, uid = str(pod["metadata"]["name"]), str(pod["metadata"]["uid"])
        if fault.kind == "pod-delete":
            self.hits.append(Hit(fault.kind, at_s, uid))
            self.kube.run("delete", "pod", name, "-n", self.namespace, "--wait=false")
            return name
        if fault.kind in ("active-kill", "standby-kill"):
            return self._kill(fault.kind, pod)
        if fault.kind == "node-lost" and self.api is not None:
            node = pod["spec"].get("nodeName")
            if not node:
                return f"{pod['metadata']['name']} has no node yet"
            # a pod stuck on a node an earlier fault deleted still names it
            if not self.kube.run("delete", "node", node, "--ignore-not-found",
                                 "--wait=false").strip():
                return f"{node} (of {name}) was gone already"
            self.api.create_nodes(1, first=self.next_node)  # the capacity comes back
            self.next_node += 1
            return str(node)
        raise ValueError(f"unknown fault {fault.kind!r}")

    def _kill(self, kind: str, pod: dict[str, Any]) -> str:
        """SIGKILL the business process of the active slot (by the pod's annotation) or of
        the other one, found on the node. The hit's time is the kill's: the checker compares
        the answers before and after it (kubelet seed 3: reading the pods took 0.8 s)."""
        name, uid = pod["metadata"]["name"], pod["metadata"]["uid"]
        active = ((pod["metadata"].get("annotations") or {}).get(ACTIVE_SLOT))
        if active is None:
            return f"{name} has no active slot yet"
        slot = active if kind == "active-kill" else {"a": "b", "b": "a"}[active]
        ids = {s["name"]: s.get("containerID") for s in
               (pod.get("status") or {}).get("containerStatuses") or []}
        cid = ids.get(f"{NAME}-{slot}")
        if not cid:
            return f"{name} slot {slot} runs no container"
        at_s = time.monotonic() - self.started
        killed = hostprocs.kill_business(hostprocs.container_id(cid))
        if not killed:
            return f"{name} slot {slot} runs no business process"
        self.hits.append(Hit(kind, at_s, uid, tuple(killed)))
        return f"{name} slot {slot} pid {', '.join(map(str, killed))}"

    def _pods(self) -> list[dict[str, Any]]:
        listed: list[dict[str, Any]] = json.loads(self.kube.run(
            "get", "pods", "-n", self.namespace, "-l", f"podkit.io/stsp={NAME}", "-o",
            "json"))["items"]
        return sorted(listed, key=lambda p: str(p["metadata"]["name"]))
