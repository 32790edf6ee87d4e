"""The operator's Deployment applied as a user applies it (``kubectl apply -k operator/deploy``),
and removed again: other tests run the operator as a local process, and two operators must never
reconcile the same namespace."""

from __future__ import annotations

import json

from podkit_operator import manifests
from testbed.errors import TestbedError
from testbed.kube import Kube, KubectlError
from testbed.repo import REPO

DEPLOY = REPO / "operator" / "deploy"


def deploy_operator(kube: Kube, timeout: float = 180) -> str:
    """Apply the kustomization and wait for the rollout; return the operator's namespace.

    A Deployment left running (``make demo KEEP=1``) is restarted: its image tag stays the
    same when the image is rebuilt, so only a new pod runs the new build."""
    existed = bool(kube.run("get", "deployment", "podkit-operator", "-n", manifests.NAMESPACE,
                            "--ignore-not-found", "-o", "name").strip())
    kube.run("apply", "-k", str(DEPLOY))
    if existed:
        kube.run("rollout", "restart", "deployment/podkit-operator", "-n", manifests.NAMESPACE)
    try:
        kube.run("rollout", "status", "deployment/podkit-operator", "-n", manifests.NAMESPACE,
                 f"--timeout={int(timeout)}s", timeout=timeout + 20)
    except KubectlError as err:
        raise TestbedError(f"{err}\n{kube.why_pods_wait(manifests.NAMESPACE)}") from None
    return manifests.NAMESPACE


def remove_operator(kube: Kube, timeout: float = 120) -> None:
    """Delete the Deployment and wait until its pod is gone."""
    kube.run("delete", "deployment", "podkit-operator", "-n", manifests.NAMESPACE,
             "--ignore-not-found", "--wait=true", f"--timeout={int(timeout)}s",
             timeout=timeout + 30)
    kube.wait_for("the operator's pod to be gone", lambda: not json.loads(kube.run(
        "get", "pods", "-n", manifests.NAMESPACE, "-o", "json"))["items"], timeout=timeout)
