"""The operator as a local ``kopf run`` process against a cluster.

Tests run it this way, so they can kill and restart it at will; users run its Deployment
(operator/deploy). Its output is appended to ``log``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

from testbed.apicluster import free_ports


class OperatorProcess:
    """One operator, watching ``namespace`` (or every namespace when ``None``); as a context
    manager, started on entry and stopped on exit."""

    def __init__(self, kubeconfig: Path, log: Path, namespace: str | None = None,
                 identity: str | None = None) -> None:
        self.kubeconfig, self.log, self.namespace = kubeconfig, log, namespace
        # its leader-election candidate, kept across restarts (as a pod's name is across
        # container restarts), so a restarted operator takes its own Lease back at once
        self.identity = identity or f"operator-{uuid.uuid4().hex[:8]}"
        self.metrics_port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> OperatorProcess:
        scope = ["-n", self.namespace] if self.namespace else ["--all-namespaces"]
        self.metrics_port = free_ports(1)[0]
        env = dict(os.environ, KUBECONFIG=str(self.kubeconfig),
                   PODKIT_OPERATOR_METRICS_PORT=str(self.metrics_port),
                   PODKIT_OPERATOR_ID=self.identity,
                   PODKIT_LEASE_NAMESPACE=self.namespace or "default")
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "kopf", "run", "--standalone", *scope,
                 "-m", "podkit_operator.controller"], env=env, stdout=out,
                stderr=subprocess.STDOUT)
        return self

    def __enter__(self) -> OperatorProcess:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def kill(self) -> None:
        """SIGKILL: the operator gets no chance to tidy up."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
            self.proc = None
