"""`down` leaves nothing behind and `up` brings the same cluster back.

Runs last in this directory (file order): it stops the session's cluster, checks the machine is
clean, and starts the cluster again, with podkit's images, for whatever follows.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from testbed import images, network
from testbed.cluster import COMPONENTS, Testbed
from testbed.kube import Kube


def leftovers(bed: Testbed) -> list[str]:
    """Everything of the cluster still on the machine, described for a failure message."""
    found = [f"process {n}" for n, pid in bed.running().items() if pid]
    for tool in ("iptables-save", "ip6tables-save"):
        dump = subprocess.run([tool], capture_output=True, text=True).stdout
        found += [f"{tool}: {line}" for line in dump.splitlines()
                  if line.startswith(":") and line[1:].startswith(network.OWNED_CHAIN_PREFIXES)]
    with open("/proc/self/mountinfo") as f:
        mounts = [line.split()[4] for line in f]
    found += [f"mount {m}" for m in mounts
              if m.startswith((str(bed.layout.state), str(bed.layout.run)))]
    found += [f"netns {p.name}" for p in Path("/run/netns").glob("cni-*")]
    found += [f"interface {i}" for i in (network.NODE_IFACE, network.BRIDGE)
              if Path(f"/sys/class/net/{i}").exists()]
    found += [f"cgroup {c}" for c in Path("/sys/fs/cgroup").glob("*/kubepods")]
    found += [f"directory {d}" for d in (bed.layout.state, bed.layout.run) if d.exists()]
    marker = str(bed.layout.containerd_sock).encode()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if marker in Path(f"/proc/{entry}/cmdline").read_bytes():
                    found.append(f"shim pid {entry}")
            except OSError:
                pass
    return found


def test_down_cleans_everything_and_up_restores(cluster: Testbed, kube: Kube,
                                                podkit_images) -> None:
    kube.apply({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "leftover", "namespace": "default"},
                "spec": {"containers": [{"name": "c", "image": podkit_images.base,
                                         "imagePullPolicy": "Never",
                                         "command": ["sleep", "infinity"]}],
                         "automountServiceAccountToken": False}})
    kube.wait_for("the pod to run",
                  lambda: kube.get("pod", "leftover")["status"].get("phase") == "Running")

    cluster.down()
    try:
        assert leftovers(cluster) == []
    finally:
        cluster.up()
        images.load_into_testbed(images.build_all())
    assert all(cluster.running()[name] for name in COMPONENTS)
    assert kube.get("node", "podkit-node")["metadata"]["name"] == "podkit-node"
