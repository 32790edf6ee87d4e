"""Follow a pod's IP as the API reports it, through one ``kubectl get -w`` stream.

A StatefulSet's rolling update deletes the pod and creates it again, usually with a new IP;
a probe aimed at "the pod" must follow it there. A watch costs one process for the whole run,
where polling would start a kubectl every fraction of a second on the machine being measured.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable

from testbed.kube import Kube

_TEMPLATE = '{.metadata.uid} {.status.podIP} {.metadata.deletionTimestamp}{"\\n"}'


class PodIPFollower:
    """Calls ``on_ip(ip)`` each time the pod named ``name`` appears with a new IP and is not
    being deleted."""

    def __init__(self, kube: Kube, namespace: str, name: str,
                 on_ip: Callable[[str], None]) -> None:
        self.argv = [str(kube.kubectl_path), f"--kubeconfig={kube.kubeconfig}", "get", "pods",
                     "-n", namespace, "--field-selector", f"metadata.name={name}", "--watch",
                     "-o", f"jsonpath={_TEMPLATE}"]
        self.on_ip = on_ip
        self.seen: list[str] = []  # every IP reported, in order
        self._proc: subprocess.Popen[str] | None = None
        self._thread = threading.Thread(target=self._read, name="pod-follower", daemon=True)

    def start(self) -> PodIPFollower:
        self._proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE,
                                      stderr=subprocess.DEVNULL, text=True)
        self._thread.start()
        return self

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            fields = line.split()
            if len(fields) == 2 and (not self.seen or self.seen[-1] != fields[1]):
                self.seen.append(fields[1])  # uid and IP, no deletion timestamp
                self.on_ip(fields[1])

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=10)
        self._thread.join(timeout=10)
