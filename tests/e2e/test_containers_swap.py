"""A v1 -> v2 swap between real containers (testcontainers on Docker), no Kubernetes.

The containers are arranged like a pod's: a sandbox container owns the network and IPC
namespaces (and /dev/shm); slot a runs demo v1, slot b demo v2, both join the sandbox's
namespaces and share a /podkit directory. Stopping slot a (SIGTERM, as the kubelet does) hands
its listeners and the lock to slot b.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from testcontainers.core.container import DockerContainer

from podkit_demo.client import LoadLoop, tcp_get, tcp_state

PORT = 7000
STATE_MB = 32


def slot(image: str, name: str, sandbox: DockerContainer, shared: Path) -> DockerContainer:
    sandbox_id = sandbox.get_wrapped_container().id
    return (DockerContainer(image)
            .with_env("PODKIT_SLOT", name)
            .with_env("PODKIT_DIR", "/podkit")
            .with_env("PODKIT_DEMO_STATE_MB", str(STATE_MB))
            .with_volume_mapping(str(shared), "/podkit", "rw")
            .with_kwargs(network_mode=f"container:{sandbox_id}",
                         ipc_mode=f"container:{sandbox_id}", stop_signal="SIGTERM"))


def wait_for(what: str, check, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def role(shared: Path, name: str) -> str:
    return json.loads((shared / f"slot-{name}.state.json").read_text())["role"]


def test_swap_keeps_shared_memory_and_loses_no_request(docker_images, tmp_path: Path) -> None:
    shared = tmp_path / "podkit"
    shared.mkdir()
    shared.chmod(0o777)  # as a pod's emptyDir: the images run as uid 65532
    sandbox = (DockerContainer(docker_images.base).with_command("sleep infinity")
               .with_kwargs(ipc_mode="shareable", shm_size=f"{STATE_MB * 4}m"))
    with sandbox:
        container = sandbox.get_wrapped_container()
        container.reload()
        address = (container.attrs["NetworkSettings"]["IPAddress"], PORT)
        with slot(docker_images.demo_v1, "a", sandbox, shared) as v1:
            wait_for("v1 to serve", lambda: tcp_get(address, 0).startswith(b"v1 a "))
            before = tcp_state(address)
            assert before["intact"]

            with slot(docker_images.demo_v2, "b", sandbox, shared):
                wait_for("v2 to stand by", lambda: role(shared, "b") == "standby")
                assert (shared / "slot-b.version").read_text().strip() == "v2"
                load = LoadLoop(address, "tcp", rate_hz=500).start()
                time.sleep(0.5)
                v1.get_wrapped_container().stop(timeout=10)  # SIGTERM: hand over to b
                wait_for("v2 to serve", lambda: role(shared, "b") == "active")
                time.sleep(0.5)
                result = load.stop()
                after = tcp_state(address)

    assert result.lost == 0, (f"{result.lost} of {result.sent} requests lost: "
                              f"{result.failures[:5]}")
    assert set(result.versions) == {"v1", "v2"}
    assert after["version"] == "v2" and after["slot"] == "b"
    assert after["intact"]
    assert after["blob_crc"] == before["blob_crc"]
    assert after["blob_size"] == STATE_MB << 20
    assert after["served"] > before["served"]
