"""make chaos finds a slot's business process on the node by its container's cgroup: the
children of the container's first process (a /proc written here)."""

from __future__ import annotations

from pathlib import Path

from chaos.hostprocs import business_pids, container_id, pod_pid

CID = "4f" * 32


def process(proc: Path, pid: int, parent: int, cgroup: str, command: str = "python",
            inner: int | None = None) -> None:
    entry = proc / str(pid)
    entry.mkdir()
    (entry / "cgroup").write_text(f"0::{cgroup}\n")
    (entry / "stat").write_text(f"{pid} ({command}) S {parent} {pid} {pid} 0 -1\n")
    (entry / "status").write_text(f"Name:\t{command}\nNSpid:\t{pid}\t{inner or pid}\n")


def test_the_business_is_the_child_of_the_containers_first_process(tmp_path: Path) -> None:
    scope = f"/kubepods/besteffort/pod1234/{CID}"
    process(tmp_path, 100, 50, "/system.slice/containerd-shim")  # the shim: outside
    process(tmp_path, 101, 100, scope, "podkit run", inner=1)
    process(tmp_path, 102, 101, scope, "python (demo) x", inner=7)  # parentheses in its name
    process(tmp_path, 103, 102, scope, "worker", inner=8)  # the business's own child
    process(tmp_path, 200, 100, "/kubepods/besteffort/pod1234/" + "0a" * 32)  # another
    (tmp_path / "self").mkdir()  # not a pid
    assert business_pids(CID, tmp_path) == [102]
    assert pod_pid(102, tmp_path) == 7
    assert pod_pid(999, tmp_path) is None
    assert container_id(f"containerd://{CID}") == CID
