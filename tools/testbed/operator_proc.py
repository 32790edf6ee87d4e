"""The operator as a local ``kopf run`` process against a cluster.

Tests run it this way, so they can kill and restart it at will; users run its Deployment
(operator/deploy). Its output is appended to ``log``.

It runs as the Deployment would: as the ``podkit-operator`` ServiceAccount, with a token of
that account, after the shipped RBAC and the mutability policy are applied (``operator_identity``).
So the tests exercise the least-privilege ClusterRole, and the patched apiserver's relaxed pod
updates are allowed to it and to nobody else, as on a real install.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import yaml

from podkit_operator import manifests
from testbed import kubebin
from testbed.apicluster import free_ports
from testbed.kube import Kube

# The deploy files that give the operator its identity and rights (the CRD and the
# Deployment are left to the tests: they install the CRD themselves and run no Deployment).
IDENTITY_FILES = ("namespace.yaml", "rbac.yaml", "mutability-policy.yaml")


def account_kubeconfig(kube: Kube, namespace: str, account: str, dest: Path) -> Path:
    """Write to ``dest`` a kubeconfig for ``kube``'s cluster that authenticates with a token
    of ServiceAccount ``namespace/account`` (``kubectl create token``); return ``dest``."""
    token = kube.run("create", "token", account, "-n", namespace, "--duration=48h").strip()
    config = yaml.safe_load(kube.kubeconfig.read_text())
    for user in config["users"]:
        user["user"] = {"token": token}
    dest.write_text(yaml.safe_dump(config))
    dest.chmod(0o600)
    return dest


def operator_identity(admin_kubeconfig: Path, dest: Path) -> Path:
    """Apply the operator's namespace, ServiceAccount, RBAC and mutability policy with
    ``admin_kubeconfig``, and write to ``dest`` a kubeconfig for the same cluster holding a
    token of the ServiceAccount; return ``dest``."""
    kube = Kube(kubebin.bin_dir() / "kubectl", admin_kubeconfig)
    for name in IDENTITY_FILES:
        for obj in manifests.load(name):
            kube.apply(obj)
    return account_kubeconfig(kube, manifests.NAMESPACE, manifests.SERVICE_ACCOUNT, dest)


class OperatorProcess:
    """One operator, watching ``namespace`` (or every namespace when ``None``); as a context
    manager, started on entry and stopped on exit. ``kubeconfig`` is the cluster's admin one:
    the operator itself runs as its ServiceAccount (``operator_identity``), with a kubeconfig
    written next to ``log``."""

    def __init__(self, kubeconfig: Path, log: Path, namespace: str | None = None,
                 identity: str | None = None) -> None:
        self.kubeconfig, self.log, self.namespace = kubeconfig, log, namespace
        # its leader-election candidate, kept across restarts (as a pod's name is across
        # container restarts), so a restarted operator takes its own Lease back at once
        self.identity = identity or f"operator-{uuid.uuid4().hex[:8]}"
        self.metrics_port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.own_kubeconfig: Path | None = None

    def start(self) -> OperatorProcess:
        if self.own_kubeconfig is None:
            self.own_kubeconfig = operator_identity(
                self.kubeconfig, self.log.with_name(f"{self.log.stem}.kubeconfig"))
        scope = ["-n", self.namespace] if self.namespace else ["--all-namespaces"]
        self.metrics_port = free_ports(1)[0]
        # the Lease lives where the ServiceAccount may write it; one per watched scope, so
        # operators of different tests' namespaces never wait for each other
        env = dict(os.environ, KUBECONFIG=str(self.own_kubeconfig),
                   PODKIT_OPERATOR_METRICS_PORT=str(self.metrics_port),
                   PODKIT_OPERATOR_ID=self.identity,
                   PODKIT_LEASE_NAMESPACE=manifests.NAMESPACE,
                   PODKIT_LEASE_NAME=f"podkit-operator-{self.namespace or 'all'}")
        if self.namespace:
            # as the namespaced install runs it: kopf's scanning would list namespaces, which
            # the ServiceAccount may not, and retry for about a minute before it watches
            env["PODKIT_FOLLOW_CRDS"] = "false"
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
