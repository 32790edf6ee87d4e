"""``make bench-state``: state, sockets and config across A/B swaps of the demo service.

A :class:`~podkit.localpod.LocalPod` runs the demo service (warm mode, a blob of
``--state-mb`` in shared memory) while a TCP client (one connection per request), a keep-alive
TCP client (one connection for all its requests) and a UDP client send requests at full speed;
the pod swaps versions ``--swaps`` times. Then the
shared-memory attach time by segment size, and the config hook latency (from the kubelet-style
``..data`` swap to the hook done, through a real ``podkit sidecar``). The last stdout line is
one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from podkit import shm
from podkit.configdir import write_like_kubelet
from podkit.errors import PodkitError
from podkit.localpod import LocalPod
from podkit_demo.client import LoadLoop, tcp_state

from .intervals import percentile
from .shm_attach import attach_times_ms

ATTACH_SIZES = [1 << 20, 16 << 20, 256 << 20, 1 << 30]


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def check_shm_room(needed: int) -> None:
    free = shutil.disk_usage(shm.shm_dir_path()).free
    if free < needed:
        raise PodkitError(f"{shm.shm_dir_path()} has {free >> 20} MiB free, the benchmark needs "
                          f"{needed >> 20} MiB; lower --state-mb or enlarge /dev/shm")


def demo_pod(root: Path, state_mb: int, segment: str) -> tuple[LocalPod, int, int]:
    tcp_port, udp_port = free_port(), free_port(socket.SOCK_DGRAM)
    env = {"PODKIT_DEMO_LISTEN": f"tcp=tcp://127.0.0.1:{tcp_port},"
                                 f"udp=udp://127.0.0.1:{udp_port}",
           "PODKIT_DEMO_STATE_MB": str(state_mb), "PODKIT_DEMO_SEGMENT": segment,
           "PODKIT_DEMO_CONFIG": str(root / "config" / "greeting")}
    pod = LocalPod(root / "pod", lambda slot, version: [sys.executable, "-m", "podkit_demo"],
                   mode="warm", env=env)
    return pod, tcp_port, udp_port


def swaps_under_load(pod: LocalPod, tcp_port: int, udp_port: int,
                     swaps: int) -> dict[str, Any]:
    pod.start("v1")
    before = tcp_state(("127.0.0.1", tcp_port))
    tcp = LoadLoop(("127.0.0.1", tcp_port), "tcp").start()
    kept = LoadLoop(("127.0.0.1", tcp_port), "keepalive").start()
    udp = LoadLoop(("127.0.0.1", udp_port), "udp").start()
    time.sleep(0.2)
    for n in range(swaps):
        pod.swap("v2" if n % 2 == 0 else "v1")
        print(f"bench-state: swap {n + 1}/{swaps}", file=sys.stderr, flush=True)
    time.sleep(0.2)
    tcp_result, kept_result, udp_result = tcp.stop(), kept.stop(), udp.stop()
    after = tcp_state(("127.0.0.1", tcp_port))
    gaps = tcp_result.handover_gaps_ms()
    kept_gaps = kept_result.handover_gaps_ms()
    udp_gaps = udp_result.handover_gaps_ms()
    return {
        "swaps": swaps,
        "gap_max_ms": round(max(gaps, default=0.0), 3),
        "gap_p99_ms": round(percentile(gaps, 99), 3),
        "gap_p50_ms": round(percentile(gaps, 50), 3),
        "handovers_seen": len(gaps),
        "lost_requests": tcp_result.lost + kept_result.lost + udp_result.lost,
        "tcp": {"sent": tcp_result.sent, "lost": tcp_result.lost},
        # One connection for every request: the service closes it gracefully at each
        # hand-over, and the client sends its unanswered request again to the successor.
        "keepalive": {"sent": kept_result.sent, "lost": kept_result.lost,
                      "retries": kept_result.retries,
                      "gap_max_ms": round(max(kept_gaps, default=0.0), 3),
                      "gap_p50_ms": round(percentile(kept_gaps, 50), 3)},
        "udp": {"sent": udp_result.sent, "lost": udp_result.lost,
                "gap_max_ms": round(max(udp_gaps, default=0.0), 3)},
        "state_intact": bool(before["intact"] and after["intact"]
                             and after["blob_crc"] == before["blob_crc_at_create"]
                             and after["generation"] == before["generation"] + swaps),
        "state_mb": before["blob_size"] >> 20,
    }


def config_hook_latency(pod: LocalPod, root: Path, changes: int) -> list[float]:
    """Milliseconds from the ``..data`` rename to the sidecar's hook done, per change."""
    port = free_port()
    config = root / "config"
    sidecar = subprocess.Popen(
        [sys.executable, "-m", "podkit", "sidecar", "--address", "127.0.0.1", "--port",
         str(port), "--dir", str(pod.shared.root), "--config-dir", str(config),
         "--config-hook", "signal:HUP"], stdout=subprocess.DEVNULL)
    try:
        last = _wait_sidecar(port)
        latencies = []
        for n in range(changes):
            before_ns = time.monotonic_ns()
            write_like_kubelet(config, {"greeting": f"hello-{n}".encode()})
            reload = _wait_reload(port, last)
            last = reload
            latencies.append((reload["finished_ns"] - before_ns) / 1e6)
            time.sleep(0.05)
        return latencies
    finally:
        sidecar.terminate()
        sidecar.wait()


def _state(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/state", timeout=5) as answer:
        return json.load(answer)


def _wait_sidecar(port: int) -> dict[str, Any] | None:
    deadline = time.monotonic() + 20
    while True:
        try:
            return _state(port)["config"]["last_reload"]
        except OSError:
            if time.monotonic() > deadline:
                raise PodkitError("the sidecar did not answer within 20 s") from None
            time.sleep(0.05)


def _wait_reload(port: int, previous: dict[str, Any] | None) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        reload = _state(port)["config"]["last_reload"]
        if reload is not None and reload != previous:
            if not reload["ok"]:
                raise PodkitError(f"the config hook failed: {reload['message']}")
            return reload
        time.sleep(0.005)
    raise PodkitError("the sidecar saw no config change within 10 s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--swaps", type=int, default=20)
    parser.add_argument("--state-mb", type=int, default=1024)
    parser.add_argument("--config-changes", type=int, default=20)
    args = parser.parse_args()
    check_shm_room((args.state_mb << 20) + max(ATTACH_SIZES) + (64 << 20))
    segment = f"podkit-bench-{os.getpid()}"
    with tempfile.TemporaryDirectory(prefix="podkit-bench-state-") as tmp:
        root = Path(tmp)
        write_like_kubelet(root / "config", {"greeting": b"hello"})
        pod, tcp_port, udp_port = demo_pod(root, args.state_mb, segment)
        try:
            result = swaps_under_load(pod, tcp_port, udp_port, args.swaps)
            latencies = config_hook_latency(pod, root, args.config_changes)
        finally:
            pod.close()
            shm.unlink(segment)
    result["config_hook_ms"] = round(max(latencies), 3)
    result["config_hook_p50_ms"] = round(statistics.median(latencies), 3)
    result["shm_attach_ms"] = attach_times_ms(ATTACH_SIZES)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
