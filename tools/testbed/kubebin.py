"""The patched Kubernetes binaries, obtained only through apiserver-patches/build.sh.

build.sh caches its output; its last stdout line is the bin directory.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from testbed.errors import TestbedError
from testbed.repo import REPO

BUILD_SH = REPO / "apiserver-patches" / "build.sh"
NEEDED = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet",
          "kube-proxy", "kubectl", "kwok")


def bin_dir() -> Path:
    """Run build.sh (a no-op when cached) and return its bin directory.

    The build's progress goes to our stderr, so a cold build (tens of minutes) shows life.
    """
    if not BUILD_SH.exists():
        raise TestbedError(f"kubernetes build: {BUILD_SH} is missing")
    proc = subprocess.run(["bash", str(BUILD_SH)], stdout=subprocess.PIPE, text=True)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise TestbedError(f"kubernetes build: {BUILD_SH} failed (exit {proc.returncode}); "
                           "see its output above")
    path = Path(lines[-1])
    missing = [b for b in NEEDED if not (path / b).exists()]
    if missing:
        raise TestbedError(f"kubernetes build: {path} lacks {', '.join(missing)}")
    return path
