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

from testbed.errors import TestbedError


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
                 interval: float = 0.5, explain: Callable[[], str] | None = None) -> Any:
        """Poll `check` until it returns something truthy; raise naming `what` on time-out,
        with what `explain` says of the cause (e.g. :meth:`why_pods_wait`)."""
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
        message = (f"timed out after {timeout:.0f}s waiting for {what}"
                   + (f" (last error: {last_error})" if last_error else ""))
        if explain is not None:
            try:
                message += "\n" + explain()
            except (TestbedError, OSError, subprocess.TimeoutExpired) as err:
                message += f"\n(no diagnosis: {err})"
        raise TestbedError(message)

    def why_pods_wait(self, namespace: str, selector: str | None = None) -> str:
        """What keeps the pods of ``namespace`` from serving, one line each: phase, the
        message of an unmet condition (the scheduler's reason for a Pending pod), each
        container's waiting reason or last termination; then the namespace's last Warning
        events."""
        args = ["get", "pods", "-n", namespace, "-o", "json"]
        pods = json.loads(self.run(*args, *(["-l", selector] if selector else [])))["items"]
        lines = [_pod_line(pod) for pod in pods] or [f"no pods in namespace {namespace}"]
        events = json.loads(self.run("get", "events", "-n", namespace,
                                     "--field-selector", "type=Warning", "-o", "json"))["items"]
        events.sort(key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")
        lines += [f"event {e['involvedObject'].get('kind')}/{e['involvedObject'].get('name')}: "
                  f"{e.get('reason')}: {e.get('message', '').strip()}" for e in events[-5:]]
        return "\n".join(lines)


def _pod_line(pod: dict[str, Any]) -> str:
    status = pod.get("status") or {}
    parts = [f"pod {pod['metadata']['name']}: {status.get('phase', 'Unknown')}"]
    if pod["metadata"].get("deletionTimestamp"):
        parts.append("being deleted")
    for cond in status.get("conditions") or []:
        if cond.get("status") != "True" and cond.get("message"):
            parts.append(f"{cond['type']}: {cond['message']}")
    for container in status.get("containerStatuses") or []:
        state = container.get("state") or {}
        last = (container.get("lastState") or {}).get("terminated")
        if "waiting" in state:
            waiting = state["waiting"]
            parts.append(f"{container['name']} waiting: {waiting.get('reason')} "
                         f"{waiting.get('message', '')}".rstrip())
        elif last:
            parts.append(f"{container['name']} last exited {last.get('exitCode')} "
                         f"({last.get('reason')}), {container.get('restartCount', 0)} restarts")
    return "; ".join(parts)
