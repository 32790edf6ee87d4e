"""The testbed's containerd, driven with `ctr`: image imports; its shims at teardown.

Kubernetes' images and containers live in containerd's `k8s.io` namespace.
"""

from __future__ import annotations

import os
from pathlib import Path

from testbed.daemons import stop_pid
from testbed.host import run

NAMESPACE = "k8s.io"


class Containerd:
    def __init__(self, socket: Path) -> None:
        self.socket = socket

    def ctr(self, *args: str, check: bool = True) -> str:
        return run(["ctr", "-a", str(self.socket), "-n", NAMESPACE, *args], check=check).stdout

    def images(self) -> set[str]:
        return set(self.ctr("images", "list", "-q").split())

    def import_archive(self, archive: Path) -> None:
        """Import an image archive (Docker or OCI format) and unpack it for the CRI."""
        self.ctr("images", "import", str(archive))

    def stop_orphan_shims(self) -> None:
        """Stop the runc shims that serve this containerd (they outlive it by design).

        A shim names the containerd socket it serves in its command line, which tells ours
        from any other containerd's.
        """
        marker = str(self.socket).encode()
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv and argv[0].endswith(b"containerd-shim-runc-v2") and marker in argv:
                stop_pid(int(entry), timeout=5)
