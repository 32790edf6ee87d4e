"""API-only clusters: etcd and the patched control plane, with kwok's fake nodes.

For operator tests, multi-cluster features and 10,000-pod runs: no kubelet and no containers,
so pods cost only API objects. kwok plays the nodes: it keeps them Ready and marks the pods
scheduled to them Running and Ready. Each cluster has its own directory and free loopback
ports, so several run at once; root is not needed.

    python -m testbed.apicluster up NAME [--nodes N] | down NAME | env NAME | list
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import sys
import time
from dataclasses import asdict
from pathlib import Path

from testbed import components as comp
from testbed import kubebin
from testbed.components import Component, Layout, Ports
from testbed.daemons import Proc, wait_until
from testbed.errors import TestbedError
from testbed.kube import Kube
from testbed.network import Addresses
from testbed.provisioner import storage_class

ROOT = Path(os.environ.get("PODKIT_API_CLUSTERS", "/var/tmp/podkit-api-clusters"))
ADDRESSES = Addresses(node_ip="127.0.0.1", pod_cidr="10.240.0.0/16",
                      service_cidr="10.96.0.0/16", kubernetes_service_ip="10.96.0.1")
COMPONENTS = ("podkit-provisioner", "kwok", "kube-scheduler", "kube-controller-manager",
              "kube-apiserver", "etcd")
FAKE_NODE_ANNOTATION = "kwok.x-k8s.io/node"
# How fake pods follow their spec, images changed in place included (see the file).
POD_STAGES = Path(__file__).parent / "kwok" / "pod-stages.yaml"


def ephemeral_range() -> range:
    """The ports the kernel hands out to outgoing connections and to ``bind(port 0)``."""
    low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    return range(int(low), int(high) + 1)


def free_ports(count: int) -> list[int]:
    """Ports free right now (held open together, so all distinct), picked below the ephemeral
    range: a port is bound by its server only seconds after it is picked, and in between an
    ephemeral one can become any connection's source port (the likeliest reason a CI run once
    found an operator alive and serving no metrics), while no connection is given one outside
    that range; and above the full testbed's fixed ports (``components.Ports``, all below
    20000). Each is tried on every address, so a server bound to one address only does not
    hide it."""
    below = range(20000, ephemeral_range().start)
    socks: list[socket.socket] = []
    try:
        for port in random.sample(below, len(below)):
            if len(socks) == count:
                break
            s = socket.socket()
            try:
                s.bind(("", port))
            except OSError:
                s.close()
                continue
            socks.append(s)
        if len(socks) < count:
            raise TestbedError(f"only {len(socks)} of {count} ports free in {below}")
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class ApiCluster:
    """One API-only cluster named `name`, its state under ROOT/name."""

    def __init__(self, name: str, root: Path = ROOT) -> None:
        self.name = name
        self.layout = Layout(state=root / name, run=root / name / "run")

    @property
    def ports_file(self) -> Path:
        return self.layout.state / "ports.json"

    @property
    def kubeconfig(self) -> Path:
        return self.layout.admin_kubeconfig

    def ports(self) -> Ports:
        """This cluster's ports: chosen once from free ones, then kept in its state."""
        if self.ports_file.exists():
            return Ports(**json.loads(self.ports_file.read_text()))
        etcd_client, etcd_peer, apiserver, kcm, sched = free_ports(5)
        ports = Ports(etcd_client=etcd_client, etcd_peer=etcd_peer, apiserver=apiserver,
                      controller_manager=kcm, scheduler=sched)
        self.layout.state.mkdir(parents=True, exist_ok=True)
        self.ports_file.write_text(json.dumps(asdict(ports)))
        return ports

    def proc(self, name: str) -> Proc:
        return Proc(name, self.layout.procs)

    def is_up(self) -> bool:
        # the provisioner runs only in clusters started with storage
        return all(self.proc(n).alive() for n in COMPONENTS if n != "podkit-provisioner")

    def kube(self) -> Kube:
        return Kube(Path((self.layout.state / "bin-dir").read_text().strip()) / "kubectl",
                    self.kubeconfig)

    def up(self, nodes: int = 1, storage: bool = False) -> None:
        """Start what is not running, then make sure `nodes` fake nodes exist and are Ready;
        with ``storage``, the testbed's provisioner and its default StorageClass
        (testbed.provisioner), so claims bind as on the full cluster."""
        bins = kubebin.bin_dir()
        for d in (self.layout.procs, self.layout.config):
            d.mkdir(parents=True, exist_ok=True)
        (self.layout.state / "bin-dir").write_text(f"{bins}\n")
        ports = self.ports()
        certs = comp.Certs(self.layout, ADDRESSES, ports)
        apiserver = comp.apiserver(bins, self.layout, ADDRESSES, ports, certs)
        # No node serves the `kubernetes` Service's endpoint on loopback; keep it unmanaged.
        apiserver.argv.append("--endpoint-reconciler-type=none")
        phases: list[list[Component]] = [
            # kwok's streaming watches need an etcd with RequestWatchProgress, which Debian's
            # 3.4 lacks; apiserver-patches/build.sh builds one (see versions.env).
            [comp.etcd(self.layout, ports, str(bins / "etcd"))],
            [apiserver],
            [comp.controller_manager(bins, ADDRESSES, ports, certs),
             comp.scheduler(bins, ports, certs), self._kwok(bins, certs),
             *([comp.provisioner(self.layout, certs.admin_kubeconfig)] if storage else [])],
        ]
        for phase in phases:
            for c in phase:
                if not self.proc(c.name).alive():
                    self.proc(c.name).start(c.argv)
            for c in phase:
                wait_until(c.ready, timeout=c.timeout, proc=self.proc(c.name), what="ready")
        kube = self.kube()
        self.create_nodes(nodes)  # kwok readies them while the controller-manager starts
        # Pods are admitted only once the controller-manager made the namespace's account.
        wait_until(lambda: kube.get("serviceaccount", "default"), timeout=60,
                   proc=self.proc("kube-controller-manager"),
                   what="creating the default service account")
        self.wait_nodes_ready(nodes)
        if storage:
            kube.apply(storage_class())

    def _kwok(self, bins: Path, certs: comp.Certs) -> Component:
        return Component(
            "kwok",
            [str(bins / "kwok"), f"--kubeconfig={certs.admin_kubeconfig}",
             f"--manage-nodes-with-annotation-selector={FAKE_NODE_ANNOTATION}=fake",
             f"--cidr={ADDRESSES.pod_cidr}", "--node-lease-duration-seconds=40",
             f"--config={POD_STAGES}"],
            # kwok serves no health endpoint; wait_nodes_ready checks that it does its job.
            ready=lambda: True)

    def add_nodes(self, count: int) -> None:
        """Make sure fake nodes kwok-0..kwok-(count-1) exist and are Ready."""
        self.create_nodes(count)
        self.wait_nodes_ready(count)

    def create_nodes(self, count: int, first: int = 0) -> None:
        """Create fake nodes kwok-<first>..kwok-<first+count-1> (apply: existing ones stay).

        Each offers room for 1,000 pods, so ten nodes carry a 10,000-pod run.
        """
        if count <= 0:
            return
        room = {"cpu": "256", "memory": "1Ti", "pods": "1000"}
        self.kube().apply({"apiVersion": "v1", "kind": "List", "items": [{
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": f"kwok-{i}",
                         "annotations": {FAKE_NODE_ANNOTATION: "fake",
                                         "node.alpha.kubernetes.io/ttl": "0"},
                         "labels": {"type": "kwok", "kubernetes.io/hostname": f"kwok-{i}",
                                    "kubernetes.io/os": "linux"}},
            "status": {"allocatable": room, "capacity": room},
        } for i in range(first, first + count)]})

    def wait_nodes_ready(self, count: int) -> None:
        kube = self.kube()

        def all_ready() -> bool:
            items = json.loads(kube.run("get", "nodes", "-l", "type=kwok", "-o", "json"))["items"]
            ready = [n for n in items if any(c["type"] == "Ready" and c["status"] == "True"
                                             for c in n["status"].get("conditions", []))]
            return len(ready) >= count
        wait_until(all_ready, timeout=60, proc=self.proc("kwok"),
                   what=f"keeping {count} fake node(s) Ready", interval=0.5)

    def down(self) -> None:
        for name in COMPONENTS:
            self.proc(name).stop()
        shutil.rmtree(self.layout.state, ignore_errors=True)

    def env(self) -> dict[str, str]:
        bins = (self.layout.state / "bin-dir").read_text().strip()
        return {"KUBECONFIG": str(self.kubeconfig),
                "PATH": f"{bins}:{os.environ.get('PATH', '')}"}


def main(argv: list[str]) -> int:
    usage = ("usage: python -m testbed.apicluster "
             "{up NAME [--nodes N] | down NAME | env NAME | list}")
    if argv == ["list"]:
        for d in sorted(ROOT.glob("*")) if ROOT.exists() else []:
            state = "up" if ApiCluster(d.name).is_up() else "down"
            print(f"{d.name} {state}")
        return 0
    if len(argv) < 2 or argv[0] not in ("up", "down", "env"):
        print(usage, file=sys.stderr)
        return 2
    command, cluster = argv[0], ApiCluster(argv[1])
    nodes = 1
    if argv[2:4] and argv[2] == "--nodes" and len(argv) == 4 and argv[3].isdigit():
        nodes = int(argv[3])
    elif argv[2:]:
        print(usage, file=sys.stderr)
        return 2
    started = time.monotonic()
    try:
        if command == "up":
            cluster.up(nodes)
            print(f"api cluster {cluster.name} up in {time.monotonic() - started:.1f}s; "
                  f"export KUBECONFIG={cluster.kubeconfig}")
        elif command == "down":
            cluster.down()
            print(f"api cluster {cluster.name} down")
        else:
            for key, value in cluster.env().items():
                print(f"export {key}={value}")
    except (TestbedError, OSError) as err:
        print(f"api cluster {command}: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
