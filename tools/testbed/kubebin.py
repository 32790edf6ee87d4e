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


def run_build_script(script: Path, what: str) -> Path:
    """Run a build script of the repository's (cached builds: apiserver-patches/build.sh,
    tools/testbed/kruise/build.sh) and return the path its last stdout line names; its
    progress goes to our stderr."""
    if not script.exists():
        raise TestbedError(f"{what}: {script} is missing")
    proc = subprocess.run(["bash", str(script)], stdout=subprocess.PIPE, text=True)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise TestbedError(f"{what}: {script} failed (exit {proc.returncode}); "
                           "see its output above")
    return Path(lines[-1])


def bin_dir() -> Path:
    """Run build.sh (a no-op when cached) and return its bin directory.

    The build's progress goes to our stderr, so a cold build (tens of minutes) shows life.
    """
    path = run_build_script(BUILD_SH, "kubernetes build")
    missing = [b for b in NEEDED if not (path / b).exists()]
    if missing:
        raise TestbedError(f"kubernetes build: {path} lacks {', '.join(missing)}")
    return path
