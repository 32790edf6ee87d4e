"""The processes of a pod's containers, found on the node itself: the kubelet mode's faults
kill a slot's business process as the kernel would (SIGKILL), whatever the control plane is
doing. A container is found by the ID the kubelet reports (``containerStatuses``), its
processes by their cgroup; the business is what the container's first process started
(``podkit run`` is the first process of a slot, the business its child)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

PROC = Path("/proc")


def container_id(status_id: str) -> str:
    """``containerd://<id>`` as the kubelet reports it -> ``<id>``."""
    return status_id.rsplit("/", 1)[-1]


def processes_of(cid: str, proc: Path = PROC) -> dict[int, int]:
    """pid -> parent pid of every process whose cgroup names container ``cid``."""
    found: dict[int, int] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if cid not in (entry / "cgroup").read_text():
                continue
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        # the command may hold spaces and parentheses: the fields follow the last ")"
        found[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return found


def business_pids(cid: str, proc: Path = PROC) -> list[int]:
    """The children of the container's first process (the one whose parent is outside it)."""
    procs = processes_of(cid, proc)
    firsts = {pid for pid, parent in procs.items() if parent not in procs}
    return sorted(pid for pid, parent in procs.items() if parent in firsts)


def pod_pid(pid: int, proc: Path = PROC) -> int | None:
    """The pid of host process ``pid`` in its innermost PID namespace (the pod's), which
    is how the process names itself; None when it is gone."""
    try:
        for line in (proc / str(pid) / "status").read_text().splitlines():
            if line.startswith("NSpid:"):
                return int(line.split()[-1])
    except OSError:
        return None
    return pid  # a kernel without NSpid: one namespace


def kill_business(cid: str) -> list[int]:
    """SIGKILL the container's business processes; their pids in the pod's namespace (empty:
    none ran)."""
    killed = []
    for pid in business_pids(cid):
        inner = pod_pid(pid)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
        if inner is not None:
            killed.append(inner)
    return killed
