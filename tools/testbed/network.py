"""The node's network: its own address, the pod bridge, kernel switches and iptables hygiene.

The node gets an address of its own on an interface of its own (a bridge without ports: the
`dummy` link type is missing from some kernels), so the cluster never depends on (or talks
through) the machine's real interfaces. The service range is routed to that interface too: a
packet for a cluster IP that kube-proxy has not (yet) translated ends there instead of leaving
the machine. A guard chain drops anything forwarded from the pod range to outside it, for the
same reason.

`down` removes every KUBE-* and CNI-* chain: the testbed assumes it is the only Kubernetes
node on the machine (a kind cluster keeps its rules inside its own containers, so it is safe).
"""

from __future__ import annotations

import ipaddress
import json
import shlex
from dataclasses import dataclass
from pathlib import Path

from testbed.host import run, write_sysctl

NODE_IFACE = "podkit0"
BRIDGE = "podkit-cni0"
GUARD_CHAIN = "PODKIT-TESTBED"
# Chains the testbed's components create: kube-proxy and kubelet (KUBE-), CNI plugins (CNI-).
OWNED_CHAIN_PREFIXES = ("KUBE-", "CNI-", GUARD_CHAIN)
SYSCTLS = {
    "net.ipv4.ip_forward": "1",
    "net.bridge.bridge-nf-call-iptables": "1",
}


@dataclass(frozen=True)
class Addresses:
    """The node's own address and the cluster's ranges (private, never routed off the host)."""

    node_ip: str = "10.199.0.1"
    pod_cidr: str = "10.200.0.0/24"
    service_cidr: str = "10.201.0.0/24"
    kubernetes_service_ip: str = "10.201.0.1"


def setup(addr: Addresses) -> None:
    """Create the node address, route the service range to it, add the forwarding guard."""
    if run(["ip", "link", "show", NODE_IFACE], check=False).returncode != 0:
        run(["ip", "link", "add", NODE_IFACE, "type", "bridge"])
    run(["ip", "link", "set", NODE_IFACE, "up"])
    run(["ip", "addr", "replace", f"{addr.node_ip}/32", "dev", NODE_IFACE])
    run(["ip", "route", "replace", addr.service_cidr, "dev", NODE_IFACE])
    for key, value in SYSCTLS.items():
        write_sysctl(key, value)
    if run(["iptables", "-n", "-L", GUARD_CHAIN], check=False).returncode != 0:
        run(["iptables", "-N", GUARD_CHAIN])
        run(["iptables", "-A", GUARD_CHAIN, "-s", addr.pod_cidr, "!", "-d", addr.pod_cidr,
             "-j", "DROP"])
        run(["iptables", "-I", "FORWARD", "1", "-j", GUARD_CHAIN])


def teardown() -> None:
    """Undo `setup` and remove every iptables chain the cluster's components left behind."""
    for iface in (BRIDGE, NODE_IFACE):
        run(["ip", "link", "delete", iface], check=False)
    for tool in ("iptables", "ip6tables"):
        remove_owned_chains(tool)


def remove_pod_netns(pod_cidr: str) -> None:
    """Delete the pods' network namespaces (and so their veths) that CNI left behind.

    containerd names them /run/netns/cni-*; ours are those whose interface holds an address
    in the pod range, which tells them from another runtime's without asking containerd
    (it may be the part that died).
    """
    pods = ipaddress.ip_network(pod_cidr)
    for path in sorted(Path("/run/netns").glob("cni-*")):
        out = run(["ip", "-n", path.name, "-j", "-4", "addr", "show"], check=False).stdout
        try:
            links = json.loads(out or "[]")
        except json.JSONDecodeError:
            continue
        addrs = [a.get("local", "") for link in links for a in link.get("addr_info", [])]
        if any(a and ipaddress.ip_address(a) in pods for a in addrs):
            run(["umount", str(path)], check=False)
            path.unlink(missing_ok=True)


def remove_owned_chains(tool: str) -> None:
    """Delete the rules that jump to our chains, then flush and delete those chains.

    Parsed from `iptables-save`, table by table, so rules that others own stay untouched.
    """
    dump = run([f"{tool}-save"], check=False).stdout
    table = ""
    jumps: list[tuple[str, list[str]]] = []
    chains: list[tuple[str, str]] = []
    for line in dump.splitlines():
        if line.startswith("*"):
            table = line[1:]
        elif line.startswith(":"):
            chain = line[1:].split()[0]
            if chain.startswith(OWNED_CHAIN_PREFIXES):
                chains.append((table, chain))
        elif line.startswith("-A "):
            parts = shlex.split(line)
            chain = parts[1]
            target = parts[parts.index("-j") + 1] if "-j" in parts else ""
            if not chain.startswith(OWNED_CHAIN_PREFIXES) and target.startswith(
                    OWNED_CHAIN_PREFIXES):
                jumps.append((table, parts[1:]))
    for table, rule in jumps:
        run([tool, "-t", table, "-D", *rule], check=False)
    for table, chain in chains:
        run([tool, "-t", table, "-F", chain], check=False)
    for table, chain in chains:
        run([tool, "-t", table, "-X", chain], check=False)
