"""The namespaced install on a real apiserver: the operator, running with exactly the rights
``kubectl apply -k operator/deploy/namespaced`` grants its ServiceAccount (its own token, no
admin), releases a StatefulSetPlus in a watched namespace, and has no right anywhere else.

An API-only cluster with kwok's fake nodes (tools/testbed/apicluster.py); the operator runs as
a local ``kopf run`` process, as in tests/integration/test_operator_kwok.py, but authenticated
as ``system:serviceaccount:podkit-system:podkit-operator``. A rule the narrowed RBAC lacks shows
as a 403 in its log and as a release that never ends.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from test_operator_kwok import V1, V2, stsp

from podkit_operator import manifests
from testbed.apicluster import free_ports
from testbed.fixtures import running_api_cluster
from testbed.kube import Kube
from testbed.stsp import batch_status, pods, serving_image, set_image, wait_crd_established

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[2]
NAMESPACED = REPO / "operator" / "deploy" / "namespaced"
WATCHED = ("team-a", "team-b")
ACCOUNT = f"system:serviceaccount:{manifests.NAMESPACE}:{manifests.SERVICE_ACCOUNT}"


def account_kubeconfig(kube: Kube, path: Path) -> Path:
    """A kubeconfig of the operator's ServiceAccount (a token from the TokenRequest API)."""
    token = kube.run("create", "token", manifests.SERVICE_ACCOUNT, "-n", manifests.NAMESPACE,
                     "--duration=1h").strip()
    config = yaml.safe_load(kube.kubeconfig.read_text())
    config["users"] = [{"name": "operator", "user": {"token": token}}]
    for context in config["contexts"]:
        context["context"]["user"] = "operator"
    path.write_text(yaml.safe_dump(config))
    return path


def shipped_operator(kube: Kube) -> tuple[list[str], dict[str, str]]:
    """The overlay's operator command and this environment plus the overlay's variables (those
    the downward API gives a pod as this process would have them: its Lease's namespace)."""
    objects = list(yaml.safe_load_all(kube.run("kustomize", str(NAMESPACED))))
    [deployment] = [o for o in objects if o and o["kind"] == "Deployment"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    command = container["command"]
    assert command[:2] == ["kopf", "run"] and "--all-namespaces" not in command, command
    assert [command[i + 1] for i, a in enumerate(command) if a == "-n"] == list(WATCHED)
    extra = {e["name"]: e["value"] for e in container["env"]
             if e["name"].startswith("PODKIT_") and "value" in e}
    # /healthz on no port of this machine (the Deployment's 8080 is its container's)
    return command, {**os.environ, **extra, "PODKIT_LEASE_NAMESPACE": manifests.NAMESPACE,
                     "PODKIT_OPERATOR_HEALTH_PORT": "0"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Kube, Path]]:
    """The namespaced install applied, and the operator running with its account's rights;
    yields kubectl (admin) and the operator's log."""
    with running_api_cluster(f"rbac-{os.getpid()}") as api:
        kube = api.kube()
        for namespace in (*WATCHED, "elsewhere"):
            kube.create_namespace(namespace)
        kube.run("apply", "-k", str(NAMESPACED))
        wait_crd_established(kube)
        kube.wait_for("the operator's ServiceAccount", lambda: kube.get(
            "serviceaccount", manifests.SERVICE_ACCOUNT, manifests.NAMESPACE))
        tmp = tmp_path_factory.mktemp("rbac")
        log = tmp / "operator.log"
        command, env = shipped_operator(kube)
        env.update(KUBECONFIG=str(account_kubeconfig(kube, tmp / "kubeconfig")),
                   PODKIT_OPERATOR_METRICS_PORT=str(free_ports(1)[0]))
        with open(log, "ab") as out:
            proc = subprocess.Popen([sys.executable, "-m", *command], env=env, stdout=out,
                                    stderr=subprocess.STDOUT)
        try:
            yield kube, log
        finally:
            proc.terminate()
            proc.wait(30)


def can(kube: Kube, verb: str, resource: str, namespace: str | None) -> bool:
    where = ["-n", namespace] if namespace else ["--all-namespaces"]
    try:
        kube.run("auth", "can-i", verb, resource, *where, f"--as={ACCOUNT}")
    except Exception:  # noqa: BLE001  (kubectl says "no" with exit code 1)
        return False
    return True


def test_the_account_has_rights_only_in_the_watched_namespaces(
        cluster: tuple[Kube, Path]) -> None:
    kube, _ = cluster
    for namespace in WATCHED:
        assert can(kube, "create", "pods", namespace)
        assert can(kube, "delete", "configmaps", namespace)
    assert not can(kube, "create", "pods", "elsewhere")
    assert not can(kube, "list", "configmaps", "elsewhere")
    assert not can(kube, "list", "pods", None)
    assert not can(kube, "get", "/metrics", None)
    assert not can(kube, "list", "customresourcedefinitions", None)


def test_a_release_in_a_watched_namespace_and_nothing_elsewhere(
        cluster: tuple[Kube, Path]) -> None:
    kube, log = cluster
    kube.apply(stsp("elsewhere", 1, V1, batchNum=1))
    kube.apply(stsp("team-a", 2, V1, batchNum=1))

    def at(image: str) -> bool:
        listed = pods(kube, "team-a")
        return len(listed) == 2 and all(serving_image(p) == image for p in listed)

    kube.wait_for("2 pods at v1 in team-a", lambda: at(V1), timeout=120)
    set_image(kube, "team-a", V2)
    kube.wait_for("the release to v2 in team-a", lambda: at(V2) and batch_status(
        kube, "team-a").get("generalStatus") == "Completed", timeout=180)
    assert pods(kube, "elsewhere") == []  # never watched, never touched
    forbidden = [line for line in log.read_text().splitlines()
                 if "403" in line or "orbidden" in line or "permissions" in line]
    assert forbidden == [], forbidden
