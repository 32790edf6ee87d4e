"""The host the testbed runs on: Debian packages, kernel switches, command helpers.

Everything the testbed needs from the machine is installed here from Debian's packages, so a
fresh machine needs nothing done by hand.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

from testbed.errors import TestbedError

# Debian package -> a file it installs, to tell quickly whether it is there.
PACKAGES: dict[str, str] = {
    "containerd": "/usr/bin/containerd",
    "runc": "/usr/sbin/runc",
    "etcd-server": "/usr/bin/etcd",
    "containernetworking-plugins": "/usr/lib/cni/bridge",
    "iptables": "/usr/sbin/iptables",
    "conntrack": "/usr/sbin/conntrack",
    "debootstrap": "/usr/sbin/debootstrap",
    "docker.io": "/usr/sbin/dockerd",
    "iproute2": "/usr/sbin/ip",
    "gcc": "/usr/bin/gcc",
    "libc6-dev": "/usr/include/stdio.h",
    "nginx": "/usr/sbin/nginx",  # tests and bench of wrapped mode with inherited listeners
}

POLICY_RC_D = Path("/usr/sbin/policy-rc.d")


def run(cmd: list[str], *, check: bool = True,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command; on failure raise a TestbedError with its last output lines."""
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if check and proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise TestbedError(f"{' '.join(cmd[:3])} failed (exit {proc.returncode}): "
                           + " | ".join(tail))
    return proc


def require_root() -> None:
    """The testbed mounts, creates interfaces and edits iptables: only root can."""
    if os.geteuid() != 0:
        raise TestbedError("the testbed needs root (it mounts, creates interfaces, edits iptables)")


def missing_packages(names: list[str] | None = None) -> list[str]:
    """Packages among `names` (default: all the testbed uses) that are not installed."""
    wanted = names if names is not None else list(PACKAGES)
    return [p for p in wanted if not Path(PACKAGES[p]).exists()]


def ensure_packages(names: list[str] | None = None) -> None:
    """apt-get install whatever is missing, without letting the packages start daemons.

    Debian's docker.io and etcd-server ship init scripts; a policy-rc.d that answers 101
    keeps them from starting their own daemons during installation (the testbed starts its
    own, on its own ports). An existing policy-rc.d is left as it is.
    """
    missing = missing_packages(names)
    if not missing:
        return
    require_root()
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    placed_policy = not POLICY_RC_D.exists()
    if placed_policy:
        POLICY_RC_D.write_text("#!/bin/sh\nexit 101\n")
        POLICY_RC_D.chmod(0o755)
    try:
        wait_lock = ["-o", "DPkg::Lock::Timeout=300"]  # another apt may be running
        run(["apt-get", *wait_lock, "update", "-q"], env=env)
        run(["apt-get", *wait_lock, "install", "-y", "-q", "--no-install-recommends", *missing],
            env=env)
    finally:
        if placed_policy:
            POLICY_RC_D.unlink(missing_ok=True)


def _sysctl_path(key: str) -> Path:
    return Path("/proc/sys") / key.replace(".", "/")


def write_sysctl(key: str, value: str) -> None:
    path = _sysctl_path(key)
    if path.read_text().strip() != value:
        path.write_text(value)


def save_sysctls(keys: tuple[str, ...], state_file: Path) -> None:
    """Remember the values of `keys` before the testbed touches them (first call only)."""
    if not state_file.exists():
        state_file.write_text(json.dumps({k: _sysctl_path(k).read_text().strip()
                                          for k in keys if _sysctl_path(k).exists()}))


def restore_sysctls(state_file: Path) -> None:
    if state_file.exists():
        for key, value in json.loads(state_file.read_text()).items():
            write_sysctl(key, value)


def unmount_below(root: Path) -> None:
    """Unmount everything mounted at or below `root`, deepest first (lazily if busy)."""
    prefix = str(root).rstrip("/") + "/"
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    ours = [p for p in points if p == str(root) or p.startswith(prefix)]
    for point in sorted(set(ours), key=len, reverse=True):
        if run(["umount", point], check=False).returncode != 0:
            run(["umount", "-l", point], check=False)


@contextlib.contextmanager
def exclusive(lock_file: Path) -> Iterator[None]:
    """Hold an exclusive lock on `lock_file` (one `up` or `down` of a testbed at a time)."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_file, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield
