"""Docker's engine for image builds (and testcontainers): use a running one, or start one.

An engine started here runs without touching the host's firewall or forwarding
(`--iptables=false --ip-forward=false --ip-masq=false`): builds need no network, and Docker's
FORWARD policy would otherwise drop the testbed's bridged pod traffic. It is stopped by its PID
when the work that needed it is done, and the bridge it made is removed.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

from testbed import host
from testbed.daemons import Proc, wait_until

CACHE = Path(os.environ.get("PODKIT_CACHE", Path.home() / ".cache" / "podkit"))
PROC = Proc("dockerd", CACHE / "docker-run")


def responding() -> bool:
    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


def has_image(tag: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode == 0


@contextlib.contextmanager
def engine() -> Iterator[None]:
    """Make sure a Docker engine answers inside the block; stop it after if we started it."""
    if responding():
        yield
        return
    host.ensure_packages(["docker.io"])
    had_bridge = Path("/sys/class/net/docker0").exists()
    PROC.start(["dockerd", "--iptables=false", "--ip-forward=false", "--ip-masq=false",
                "--pidfile", str(PROC.run_dir / "dockerd.pidfile")])
    try:
        wait_until(responding, timeout=60, proc=PROC, what="answering `docker info`")
        yield
    finally:
        PROC.stop(timeout=30)
        if not had_bridge:  # leave the machine's interfaces as they were
            host.run(["ip", "link", "delete", "docker0"], check=False)
