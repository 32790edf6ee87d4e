"""A thin kubectl wrapper for the testbed and the e2e tests: JSON in, JSON out.

kubectl (from the patched build) speaks the exact API of the cluster, so no client library
has to keep up with the patched apiserver.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from e2e.errors import TestbedError


class KubectlError(TestbedError):
    """kubectl exited non-zero; `stderr` holds the apiserver's message."""

    def __init__(self, args: list[str], stderr: str) -> None:
        super().__init__(f"kubectl {' '.join(args[:3])}: {stderr.strip()}")
        self.stderr = stderr


class Kube:
    def __init__(self, kubectl: Path, kubeconfig: Path) -> None:
        self.kubectl_path, self.kubeconfig = kubectl, kubeconfig

    def run(self, *args: str, input: str | None = None, timeout: float = 60) -> str:
        proc = subprocess.run([str(self.kubectl_path), f"--kubeconfig={self.kubeconfig}",
                               *args], input=input, capture_output=True, text=True,
                              timeout=timeout)
        if proc.returncode != 0:
            raise KubectlError(list(args), proc.stderr)
        return proc.stdout

    def apply(self, obj: dict[str, Any]) -> None:
        self.run("apply", "-f", "-", input=json.dumps(obj))

    def get(self, kind: str, name: str, namespace: str = "default") -> dict[str, Any]:
        return json.loads(self.run("get", kind, name, "-n", namespace, "-o", "json"))

    def patch(self, kind: str, name: str, patch: list[dict[str, Any]],
              namespace: str = "default") -> None:
        """A JSON patch (RFC 6902): precise about which list element changes."""
        self.run("patch", kind, name, "-n", namespace, "--type=json", "-p", json.dumps(patch))

    def create_namespace(self, name: str, timeout: float = 30) -> str:
        """Create namespace ``name`` and return it once its default service account exists
        (pods are refused until then)."""
        self.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        self.wait_for(f"the service account of namespace {name}",
                      lambda: self.get("serviceaccount", "default", name), timeout=timeout)
        return name

    def exec(self, pod: str, container: str, *cmd: str, namespace: str = "default") -> str:
        return self.run("exec", pod, "-n", namespace, "-c", container, "--", *cmd)

    def delete(self, kind: str, name: str, namespace: str = "default") -> None:
        self.run("delete", kind, name, "-n", namespace, "--ignore-not-found", "--wait=false")

    def wait_for(self, what: str, check: Callable[[], Any], timeout: float = 60,
                 interval: float = 0.5) -> Any:
        """Poll `check` until it returns something truthy; raise naming `what` on time-out."""
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            try:
                result = check()
                if result:
                    return result
            except (TestbedError, KeyError, IndexError, OSError) as err:
                last_error = err
            time.sleep(interval)
        raise TestbedError(f"timed out after {timeout:.0f}s waiting for {what}"
                           + (f" (last error: {last_error})" if last_error else ""))
