"""One upgrade under the probes: the measuring core of ``make demo`` and of its e2e test.

For a method (see :mod:`upgrade_demo.workloads`) whose pod serves v1: probe streams start (TCP and
UDP, to the pod's IP and through each of its Services), run a baseline, then the upgrade to v2 is
started as a user would start it; the probes run on until the workload reports the upgrade done
and a settling time has passed. The pod-IP streams follow the pod if it comes back with a new
IP. The shared-memory state is read before and after through the demo's ``STATE`` request.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from podkit_demo.client import tcp_get, tcp_state, udp_get
from testbed.images import Tags
from testbed.kube import Kube
from upgrade_demo.pod_follower import PodIPFollower
from upgrade_demo.probe import DEFAULT_RATE_HZ, ProbeProcess, ProberUsage, Stream, StreamRecords
from upgrade_demo.workloads import TCP_PORT, UDP_PORT, Method, cluster_ip, pod_ip

PROTOCOLS = ("tcp", "udp")
PORTS = {"tcp": TCP_PORT, "udp": UDP_PORT}


@dataclass
class MethodRun:
    """What one upgrade under the probes gave."""

    method: Method
    streams: dict[tuple[str, str], StreamRecords]  # (path, protocol) -> records
    started_ns: int  # probes started
    upgrade_ns: int  # upgrade requested
    done_ns: int  # the workload reported it done
    state_before: dict[str, Any]
    state_after: dict[str, Any]
    prober: ProberUsage  # the one prober process behind every stream
    pod_ips: list[str] = field(default_factory=list)

    @property
    def paths(self) -> list[str]:
        return list(dict.fromkeys(path for path, _ in self.streams))

    @property
    def state_intact(self) -> bool:
        """The blob is the one the pod had before, unchanged, and the request counter went on
        from where it was (a new pod starts a new blob and a new count)."""
        before, after = self.state_before, self.state_after
        return bool(after.get("intact") and after["blob_crc"] == before["blob_crc"]
                    and after["blob_crc_at_create"] == before["blob_crc_at_create"]
                    and after["served"] > before["served"])


def _name(key: tuple[str, str]) -> str:
    """A stream's name in the prober: ``path/protocol``."""
    return "/".join(key)


def _answers(protocol: str, target: tuple[str, int]) -> bool:
    try:
        (tcp_get if protocol == "tcp" else udp_get)(target, 0, timeout=0.5)
    except OSError:
        return False
    return True


def _wait_ip(kube: Kube, namespace: str, method: Method, timeout: float) -> str:
    return kube.wait_for(f"the {method.name} pod to be Ready",
                         lambda: pod_ip(kube, namespace, method), timeout=timeout,
                         explain=lambda: kube.why_pods_wait(namespace, f"app={method.app}"))


def upgrade_under_probes(kube: Kube, namespace: str, method: Method, images: Tags,
                         rate_hz: float = DEFAULT_RATE_HZ, baseline_s: float = 2.0,
                         settle_s: float = 2.0, timeout: float = 300) -> MethodRun:
    """Upgrade ``method``'s pod from v1 to v2 while probing it; see the module docstring."""
    ip = _wait_ip(kube, namespace, method, timeout)
    before = tcp_state((ip, TCP_PORT))
    addresses = {"pod-ip": ip} | {path: cluster_ip(kube, namespace, name)
                                  for path, name in method.service_paths.items()}
    targets = {(path, proto): (address, PORTS[proto])
               for path, address in addresses.items() for proto in PROTOCOLS}
    for (path, proto), target in targets.items():  # kube-proxy may lag the endpoints
        kube.wait_for(f"{path} to answer over {proto}", partial(_answers, proto, target),
                      timeout=60, interval=0.2)
    probes = ProbeProcess({_name(key): Stream(key[1], target) for key, target in targets.items()},
                          rate_hz)

    def follow(new_ip: str) -> None:
        for proto in PROTOCOLS:
            probes.retarget(_name(("pod-ip", proto)), (new_ip, PORTS[proto]))

    follower = PodIPFollower(kube, namespace, method.pod, follow)
    try:
        started = time.monotonic_ns()
        probes.start()
        follower.start()
        time.sleep(baseline_s)
        upgrade = time.monotonic_ns()
        method.upgrade(kube, namespace, images.demo_v2)
        kube.wait_for(f"{method.label} to finish its upgrade",
                      lambda: method.settled_at(kube, namespace, images.demo_v2),
                      timeout=timeout, interval=1.0,
                      explain=lambda: kube.why_pods_wait(namespace, f"app={method.app}"))
        done = time.monotonic_ns()
        time.sleep(settle_s)
        probed = probes.stop()
    finally:
        probes.kill()
        follower.stop()
    new_ip = _wait_ip(kube, namespace, method, timeout)
    after = tcp_state((new_ip, TCP_PORT))
    streams = {key: probed.streams[_name(key)] for key in targets}
    return MethodRun(method, streams, started, upgrade, done, before, after, probed.usage,
                     pod_ips=list(dict.fromkeys([ip, *follower.seen])))
