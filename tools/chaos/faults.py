"""The faults a run injects into its API-only cluster, each as an operator or node would meet
it: SIGKILL, a control-plane process restarted, a pod deleted, a node gone for good."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from testbed.apicluster import ApiCluster
from testbed.kube import Kube

from .observe import NAME
from .partition import Relay
from .scenario import Fault
from .supervisor import Supervisor


@dataclass
class Injector:
    api: ApiCluster
    kube: Kube
    supervisor: Supervisor
    relay: Relay  # the operator's road to the apiserver
    namespace: str
    next_node: int  # the number of the next fake node to create (lost ones are not re-used)

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
        if fault.kind in ("apiserver-restart", "etcd-restart"):
            component = fault.kind.removesuffix("-restart").replace("apiserver",
                                                                    "kube-apiserver")
            self.supervisor.restart(component)
            return component
        pods = self._pods()
        if not pods:
            return "no pod to hit"
        pod = pods[fault.pick % len(pods)]
        if fault.kind == "pod-delete":
            self.kube.run("delete", "pod", pod["metadata"]["name"], "-n", self.namespace,
                          "--wait=false")
            return str(pod["metadata"]["name"])
        if fault.kind == "node-lost":
            node = pod["spec"].get("nodeName")
            if not node:
                return f"{pod['metadata']['name']} has no node yet"
            self.kube.run("delete", "node", node, "--wait=false")
            self.api.create_nodes(1, first=self.next_node)  # the capacity comes back
            self.next_node += 1
            return str(node)
        raise ValueError(f"unknown fault {fault.kind!r}")

    def _pods(self) -> list[dict[str, Any]]:
        listed: list[dict[str, Any]] = json.loads(self.kube.run(
            "get", "pods", "-n", self.namespace, "-l", f"podkit.io/stsp={NAME}", "-o",
            "json"))["items"]
        return sorted(listed, key=lambda p: str(p["metadata"]["name"]))
