"""A real one-node Kubernetes cluster as local processes: `python -m testbed up|down|...`.

`up` installs what is missing, makes the PKI and configs, starts etcd, the patched control
plane, containerd, the kubelet, kube-proxy and metrics-server, and returns once the node is
Ready, the `kubernetes` Service answers on its cluster IP and the metrics API serves the node.
It is idempotent: running components are left alone, except that Kubernetes' own are restarted
when build.sh names another bin dir (the patches changed), and metrics-server when its build
does. `down` stops every recorded PID and removes containers, mounts, network
state, cgroups and the state directory.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

from testbed import components as comp
from testbed import host, kubebin, network, sandbox_image
from testbed import metrics_server as ms
from testbed.components import Component, Layout, Ports
from testbed.daemons import Proc, wait_until
from testbed.errors import TestbedError
from testbed.kube import Kube
from testbed.network import Addresses
from testbed.provisioner import storage_class
from testbed.runtime import Containerd

CACHE = Path(os.environ.get("PODKIT_CACHE", Path.home() / ".cache" / "podkit"))
LAYOUT = Layout(state=Path(os.environ.get("PODKIT_TESTBED_STATE", "/var/lib/podkit-testbed")),
                run=Path(os.environ.get("PODKIT_TESTBED_RUN", "/run/podkit-testbed")))
# Stopped in this order by `down` (the reverse of their start, the kubelet before containerd).
COMPONENTS = (ms.NAME, "podkit-provisioner", "kube-proxy", "kube-scheduler",
              "kube-controller-manager", "kubelet", "containerd", "kube-apiserver", "etcd")
KUBERNETES_COMPONENTS = ("kube-proxy", "kube-scheduler", "kube-controller-manager", "kubelet",
                         "kube-apiserver")
PROBE_POD = "podkit-testbed-probe"
BIN_DIR_RECORD = "bin-dir"  # the state file naming the Kubernetes bin dir of the last `up`
# Set by network.setup, and by the kubelet itself (its "kernel tunables"): `down` restores them.
TOUCHED_SYSCTLS = (*network.SYSCTLS, "vm.overcommit_memory", "vm.panic_on_oom",
                   "kernel.panic", "kernel.panic_on_oops", "kernel.keys.root_maxkeys",
                   "kernel.keys.root_maxbytes")


class Testbed:
    """One full cluster on this machine, described by its layout, addresses and ports."""

    __test__ = False  # not a pytest test class, whatever its name says

    def __init__(self, layout: Layout = LAYOUT, addr: Addresses = Addresses(),
                 ports: Ports = Ports()) -> None:
        self.layout, self.addr, self.ports = layout, addr, ports
        self.containerd = Containerd(layout.containerd_sock)

    # ---- information -------------------------------------------------------------------
    @property
    def kubeconfig(self) -> Path:
        return self.layout.admin_kubeconfig

    @property
    def bin_dir(self) -> Path | None:
        """The Kubernetes bin directory recorded by the last `up`."""
        path = self.layout.state / BIN_DIR_RECORD
        return Path(path.read_text().strip()) if path.exists() else None

    def certs(self) -> comp.Certs:
        """The cluster's certificates and kubeconfigs (issued on first use, then read)."""
        return comp.Certs(self.layout, self.addr, self.ports)

    def proc(self, name: str) -> Proc:
        return Proc(name, self.layout.procs)

    def running(self) -> dict[str, int | None]:
        return {name: self.proc(name).pid() if self.proc(name).alive() else None
                for name in reversed(COMPONENTS)}

    def is_up(self) -> bool:
        return all(self.running().values())

    def env(self) -> dict[str, str]:
        """What a shell needs to talk to the cluster with kubectl and ctr."""
        bins = self.bin_dir
        path = f"{bins}:{os.environ.get('PATH', '')}" if bins else os.environ.get("PATH", "")
        return {"KUBECONFIG": str(self.kubeconfig), "CONTAINERD_ADDRESS":
                str(self.layout.containerd_sock), "CONTAINERD_NAMESPACE": "k8s.io",
                "PATH": path}

    def kube(self) -> Kube:
        """kubectl of the patched build, as the cluster's admin."""
        bins = self.bin_dir
        if bins is None:
            raise TestbedError("the testbed is not up (no Kubernetes bin dir recorded)")
        return Kube(bins / "kubectl", self.kubeconfig)

    @property
    def lock_file(self) -> Path:
        """Beside the state directory, not in it: `down` removes that directory."""
        return self.layout.state.with_name(self.layout.state.name + ".lock")

    # ---- up ----------------------------------------------------------------------------
    def up(self) -> None:
        host.require_root()
        with host.exclusive(self.lock_file):
            self._up()

    def _up(self) -> None:
        host.ensure_packages()
        bins = kubebin.bin_dir()
        metrics_entry = ms.entry_dir()
        for d in (self.layout.state, self.layout.run, self.layout.procs, self.layout.config):
            d.mkdir(parents=True, exist_ok=True)
        self._record_build(BIN_DIR_RECORD, bins, KUBERNETES_COMPONENTS)
        host.save_sysctls(TOUCHED_SYSCTLS, self.layout.sysctl_state)
        network.setup(self.addr)
        certs = self.certs()
        comp.write_cni_config(self.layout, self.addr)
        sandbox_archive = sandbox_image.build(CACHE / "images")
        started: list[str] = []

        phases: list[list[Component]] = [
            [comp.etcd(self.layout, self.ports), comp.containerd(self.layout)],
            [comp.apiserver(bins, self.layout, self.addr, self.ports, certs)],
            [comp.controller_manager(bins, self.addr, self.ports, certs),
             comp.scheduler(bins, self.ports, certs),
             comp.kubelet(bins, self.layout, self.addr, self.ports, certs),
             comp.kube_proxy(bins, self.layout, self.addr, self.ports, certs),
             comp.provisioner(self.layout, certs.admin_kubeconfig)],
        ]
        for phase in phases:
            for c in phase:
                if not self.proc(c.name).alive():
                    self.proc(c.name).start(c.argv, env=_component_env())
                    started.append(c.name)
            for c in phase:
                wait_until(c.ready, timeout=c.timeout, proc=self.proc(c.name), what="ready")
                if (c.name == "containerd"
                        and sandbox_image.SANDBOX_IMAGE not in self.containerd.images()):
                    self.containerd.import_archive(sandbox_archive)
        self._wait_node_ready()
        self._wait_service_answers()
        self._wait_default_service_account()
        self.kube().apply(storage_class())
        if started:
            self._run_probe_pod()
        self._start_metrics_server(metrics_entry, certs)

    def _wait_node_ready(self) -> None:
        kube = self.kube()

        def ready() -> bool:
            node = json.loads(kube.run("get", "node", comp.NODE_NAME, "-o", "json"))
            conds = node.get("status", {}).get("conditions", [])
            return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)
        wait_until(ready, timeout=90, proc=self.proc("kubelet"), what="a Ready node", interval=1)

    def _wait_service_answers(self) -> None:
        """The `kubernetes` Service's cluster IP answers: kube-proxy's rules are in place."""
        certs = self.certs()
        url = f"https://{self.addr.kubernetes_service_ip}:443/readyz"
        wait_until(lambda: comp.https_ok(url, ca=certs.ca, client=certs.admin), timeout=60,
                   proc=self.proc("kube-proxy"), what="answering on the kubernetes cluster IP")

    def _wait_default_service_account(self) -> None:
        """Pods are admitted only once the controller-manager made the namespace's account."""
        kube = self.kube()
        wait_until(lambda: kube.get("serviceaccount", "default"), timeout=60,
                   proc=self.proc("kube-controller-manager"),
                   what="creating the default service account")

    def _run_probe_pod(self) -> None:
        """Run one pod on the sandbox image: proves containerd, runc and CNI work together."""
        kube = self.kube()
        kube.run("delete", "pod", PROBE_POD, "--ignore-not-found", "--wait=true")
        kube.apply({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": PROBE_POD, "namespace": "default"},
            "spec": {"containers": [{"name": "pause", "image": sandbox_image.SANDBOX_IMAGE,
                                     "imagePullPolicy": "Never"}],
                     "terminationGracePeriodSeconds": 0,
                     "automountServiceAccountToken": False}})

        def running() -> bool:
            pod = kube.get("pod", PROBE_POD)
            return pod["status"].get("phase") == "Running" and bool(pod["status"].get("podIP"))
        wait_until(running, timeout=60, proc=self.proc("kubelet"),
                   what="running a probe pod (containerd, runc, CNI)", interval=0.5)
        kube.delete("pod", PROBE_POD)

    def _record_build(self, record: str, bins: Path, names: tuple[str, ...]) -> None:
        """Record in the state file ``record`` the bin directory ``names`` run from; when the
        last `up` recorded another (a new build), stop them first, so they start again from
        this one."""
        path = self.layout.state / record
        if path.exists() and path.read_text().strip() != str(bins):
            for name in names:
                self.proc(name).stop()
        path.write_text(f"{bins}\n")

    def _start_metrics_server(self, entry: Path, certs: comp.Certs) -> None:
        """RBAC first (the process reads the front proxy's settings at its start), then the
        process, then the APIService, and wait until the metrics API serves the node."""
        kube, proc = self.kube(), self.proc(ms.NAME)
        kube.apply(ms.as_list(ms.rbac(entry)))
        bins = entry / "bin"
        self._record_build("metrics-server-bin-dir", bins, (ms.NAME,))
        c = comp.metrics_server(bins, self.addr, self.ports, certs)
        if not proc.alive():
            proc.start(c.argv, env=_component_env())
        wait_until(c.ready, timeout=c.timeout, proc=proc, what="ready (two scrapes stored)")
        kube.apply(ms.as_list([*ms.routing(self.addr.node_ip, self.ports.metrics_server),
                               ms.api_service(entry, certs.ca)]))
        wait_until(lambda: ms.api_available(kube), timeout=60, proc=proc,
                   what=f"reached through the APIService {ms.API_SERVICE}", interval=0.5)
        wait_until(lambda: ms.node_metrics(kube, comp.NODE_NAME), timeout=60, proc=proc,
                   what=f"serving metrics of node {comp.NODE_NAME}", interval=0.5)

    # ---- down --------------------------------------------------------------------------
    def down(self) -> None:
        host.require_root()
        with host.exclusive(self.lock_file):
            self._down()

    def _down(self) -> None:
        for name in COMPONENTS:
            if name == "containerd":
                # The kubelet is stopped, so nothing restarts them: kill the pods' processes
                # (all in the kubelet's cgroups), then containerd and its shims.
                _kill_cgroup_members("kubepods")
            self.proc(name).stop()
            if name == "containerd":
                self.containerd.stop_orphan_shims()
        network.remove_pod_netns(self.addr.pod_cidr)
        for root in (self.layout.run, self.layout.state):
            host.unmount_below(root)
        network.teardown()
        host.restore_sysctls(self.layout.sysctl_state)
        _remove_cgroups("kubepods")
        for root in (self.layout.run, self.layout.state):
            shutil.rmtree(root, ignore_errors=True)

    # ---- status ------------------------------------------------------------------------
    def status(self) -> str:
        lines = [f"{name:<24} {'running pid ' + str(pid) if pid else 'stopped'}"
                 for name, pid in self.running().items()]
        return "\n".join(lines)


def _component_env() -> dict[str, str]:
    """The components find mount, iptables, runc and the CNI tools in the sbin dirs."""
    env = dict(os.environ)
    env["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    return env


def _cgroup_trees(name: str) -> list[Path]:
    """The directories of cgroup `name` in every v1 hierarchy, or in the v2 root."""
    base = Path("/sys/fs/cgroup")
    candidates = [base / name, *(h / name for h in base.iterdir() if h.is_dir())]
    return [c for c in candidates if c.is_dir()]


def _kill_cgroup_members(name: str) -> None:
    """SIGKILL every process left in the kubelet's cgroup tree `name` (pods' containers)."""
    pids = {int(pid) for top in _cgroup_trees(name) for procs in top.rglob("cgroup.procs")
            for pid in procs.read_text().split()}
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _remove_cgroups(name: str) -> None:
    """Remove the kubelet's (now empty) cgroup tree `name`, deepest directories first."""
    for top in _cgroup_trees(name):
        for dirpath, _dirs, _files in sorted(os.walk(top), key=lambda t: -len(t[0])):
            try:
                os.rmdir(dirpath)
            except OSError:
                pass


def main(argv: list[str]) -> int:
    commands = ("up", "down", "status", "env")
    if len(argv) != 1 or argv[0] not in commands:
        print(f"usage: python -m testbed {{{'|'.join(commands)}}}", file=sys.stderr)
        return 2
    bed = Testbed()
    started = time.monotonic()
    try:
        if argv[0] == "up":
            bed.up()
            print(f"testbed up in {time.monotonic() - started:.1f}s; "
                  f"export KUBECONFIG={bed.kubeconfig}")
        elif argv[0] == "down":
            bed.down()
            print(f"testbed down in {time.monotonic() - started:.1f}s")
        elif argv[0] == "status":
            print(bed.status())
            return 0 if bed.is_up() else 3
        else:
            for key, value in bed.env().items():
                print(f"export {key}={value}")
    except TestbedError as err:
        print(f"testbed {argv[0]}: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
