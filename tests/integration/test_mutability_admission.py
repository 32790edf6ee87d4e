"""Mutability for the operator only, on a real patched apiserver (an API-only cluster).

The patched apiserver (apiserver-patches 0002) lets a pod annotated podkit.io/mutable-spec
change its env, envFrom, volumeMounts and volumes by a plain update. These tests show who may
use that: the shipped ValidatingAdmissionPolicy (deploy/mutability-policy.yaml) keeps it to the
operator's ServiceAccount; Pod Security Admission judges a relaxed update on the whole new spec
(0005), even the operator's; cpu/memory change only through pods/resize, under ResourceQuota.

Identities are real ServiceAccount tokens: the operator's (its shipped RBAC applied) and a
tenant's that holds the ``admin`` ClusterRole in its own namespace (every pod right there);
the testbed's admin kubeconfig is in ``system:masters``, which the policy exempts.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from podkit_operator import manifests
from podkit_operator.api import keys
from testbed.fixtures import running_api_cluster
from testbed.kube import Kube, KubectlError
from testbed.operator_proc import account_kubeconfig, operator_identity

pytestmark = pytest.mark.integration

POLICY_MESSAGE = "ValidatingAdmissionPolicy 'podkit-mutable-spec'"
SPEC_MESSAGE = "pod updates may not change fields other than"
# Pods stay unscheduled: kwok would otherwise write statuses while the tests patch them.
NOWHERE = {"podkit.io/test-node": "none"}


@dataclass
class Identities:
    admin: Kube
    operator: Kube
    tenant: Kube
    namespace: str  # the tenant's own namespace, no Pod Security label (privileged)


@pytest.fixture(scope="module")
def who(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Identities]:
    with running_api_cluster(f"mut-{os.getpid()}") as cluster:
        admin = cluster.kube()
        state = tmp_path_factory.mktemp("identities")
        operator = Kube(admin.kubectl_path,
                        operator_identity(admin.kubeconfig, state / "operator.kubeconfig"))
        # kubectl patch reads the pod before it patches; the operator's own client never reads
        # a single pod (its RBAC has no get), so these tests grant kubectl that read
        admin.apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                     "metadata": {"name": "test-kubectl-reads-pods"},
                     "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]})
        admin.run("create", "clusterrolebinding", "test-kubectl-reads-pods",
                  "--clusterrole=test-kubectl-reads-pods",
                  f"--serviceaccount={manifests.NAMESPACE}:{manifests.SERVICE_ACCOUNT}")
        namespace = admin.create_namespace(f"tenant-{os.urandom(3).hex()}")
        admin.run("create", "serviceaccount", "tenant", "-n", namespace)
        admin.run("create", "rolebinding", "tenant-admin", "-n", namespace,
                  "--clusterrole=admin", f"--serviceaccount={namespace}:tenant")
        tenant = Kube(admin.kubectl_path,
                      account_kubeconfig(admin, namespace, "tenant", state / "tenant.kubeconfig"))
        # A new policy takes effect once the apiserver has compiled it: wait for its first
        # refusal (a dry run) before any test counts on it.
        probe = pod("probe", namespace, opted_in=True)

        def refused() -> bool:
            try:
                tenant.run("create", "--dry-run=server", "-f", "-", input=json.dumps(probe))
            except KubectlError as err:
                return POLICY_MESSAGE in err.stderr
            return False
        admin.wait_for("the mutability policy to take effect", refused)
        yield Identities(admin, operator, tenant, namespace)


def pod(name: str, namespace: str, *, opted_in: bool, restricted: bool = False,
        **spec: Any) -> dict[str, Any]:
    """A pod with env, a Secret and a ConfigMap volume mounted; ``restricted`` adds the
    securityContext the restricted Pod Security level asks for."""
    container: dict[str, Any] = {
        "name": "app", "image": "podkit.local/podkit-demo:v1",
        "env": [{"name": "SLOT_VERSION", "value": "1"}],
        "volumeMounts": [{"name": "secret", "mountPath": "/etc/secret"},
                         {"name": "config", "mountPath": "/etc/app"}]}
    if restricted:
        container["securityContext"] = {
            "runAsNonRoot": True, "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace,
                     "annotations": {keys.ANN_MUTABLE: "true"} if opted_in else {}},
        "spec": {"nodeSelector": NOWHERE, "containers": [container],
                 "volumes": [{"name": "secret", "secret": {"secretName": "app-secret"}},
                             {"name": "config", "configMap": {"name": "app-config-v1"}}],
                 **spec},
    }


def create(kube: Kube, obj: dict[str, Any]) -> None:
    kube.run("create", "-f", "-", input=json.dumps(obj))


def refusal(action: Any) -> str:
    """The apiserver's message for a request it must refuse (fails the test if it accepts)."""
    try:
        action()
    except KubectlError as err:
        return err.stderr
    pytest.fail("the apiserver accepted a request it must refuse")


def json_patch(kube: Kube, name: str, namespace: str, *ops: dict[str, Any],
               subresource: str | None = None) -> None:
    extra = [f"--subresource={subresource}"] if subresource else []
    kube.run("patch", "pod", name, "-n", namespace, "--type=json", "-p", json.dumps(ops), *extra)


HOST_PATH = {"op": "add", "path": "/spec/volumes/-",
             "value": {"name": "host", "hostPath": {"path": "/"}}}
SWAP_SECRET = {"op": "replace", "path": "/spec/volumes/0/secret/secretName",
               "value": "someone-elses-secret"}
NEW_ENV = {"op": "replace", "path": "/spec/containers/0/env/0/value", "value": "2"}
NEW_CONFIG = {"op": "replace", "path": "/spec/volumes/1/configMap/name", "value": "app-config-v2"}


# --- only the operator may opt a pod in ---------------------------------------------------------

def test_tenant_cannot_set_the_annotation_at_create(who: Identities) -> None:
    message = refusal(lambda: create(who.tenant, pod("opt-in", who.namespace, opted_in=True)))
    assert POLICY_MESSAGE in message and "may set the annotation podkit.io/mutable-spec" in message


def test_tenant_cannot_set_the_annotation_at_update(who: Identities) -> None:
    create(who.tenant, pod("later", who.namespace, opted_in=False))
    message = refusal(lambda: who.tenant.run("annotate", "pod", "later", "-n", who.namespace,
                                             f"{keys.ANN_MUTABLE}=true"))
    assert POLICY_MESSAGE in message and "may set the annotation" in message
    assert keys.ANN_MUTABLE not in who.admin.get("pod", "later", who.namespace)["metadata"].get(
        "annotations", {})


@pytest.mark.parametrize("identity", ["operator", "admin"])
def test_the_operator_and_system_masters_may_set_the_annotation(
        who: Identities, identity: str) -> None:
    name = f"by-{identity}"
    create(getattr(who, identity), pod(name, who.namespace, opted_in=True))
    annotations = who.admin.get("pod", name, who.namespace)["metadata"]["annotations"]
    assert annotations[keys.ANN_MUTABLE] == "true"


# --- only the operator may change an opted-in pod in place --------------------------------------

@pytest.mark.parametrize("change", [HOST_PATH, SWAP_SECRET, NEW_ENV],
                         ids=["hostPath", "secret", "env"])
def test_tenant_cannot_change_an_opted_in_pod_in_place(who: Identities,
                                                       change: dict[str, Any]) -> None:
    name = f"tenant-{change['path'].split('/')[2]}-{os.urandom(2).hex()}"
    create(who.operator, pod(name, who.namespace, opted_in=True))
    before = who.admin.get("pod", name, who.namespace)["spec"]
    message = refusal(lambda: json_patch(who.tenant, name, who.namespace, change))
    assert POLICY_MESSAGE in message
    assert "may change the env, envFrom, volumeMounts or volumes" in message
    assert who.admin.get("pod", name, who.namespace)["spec"] == before
    # The change itself is one the patched apiserver allows an opted-in pod: the refusal is
    # the policy's, not validation's.
    json_patch(who.operator, name, who.namespace, change)


def test_tenant_keeps_upstreams_rules_on_an_opted_in_pod(who: Identities) -> None:
    """What upstream allows any pod (image, labels, dropping the opt-in) stays allowed."""
    create(who.operator, pod("upstream", who.namespace, opted_in=True))
    json_patch(who.tenant, "upstream", who.namespace, {
        "op": "replace", "path": "/spec/containers/0/image",
        "value": "podkit.local/podkit-demo:v2"})
    who.tenant.run("annotate", "pod", "upstream", "-n", who.namespace, f"{keys.ANN_MUTABLE}-")
    stored = who.admin.get("pod", "upstream", who.namespace)
    assert stored["spec"]["containers"][0]["image"] == "podkit.local/podkit-demo:v2"
    assert keys.ANN_MUTABLE not in stored["metadata"].get("annotations", {})


def test_the_operator_can_release_in_place(who: Identities) -> None:
    """What a release needs: a new env value and a new ConfigMap version, in place."""
    create(who.operator, pod("release", who.namespace, opted_in=True))
    uid = who.admin.get("pod", "release", who.namespace)["metadata"]["uid"]
    json_patch(who.operator, "release", who.namespace, NEW_ENV, NEW_CONFIG)
    stored = who.admin.get("pod", "release", who.namespace)
    assert stored["metadata"]["uid"] == uid
    assert stored["spec"]["containers"][0]["env"] == [{"name": "SLOT_VERSION", "value": "2"}]
    assert stored["spec"]["volumes"][1]["configMap"]["name"] == "app-config-v2"


# --- Pod Security Admission sees a relaxed update whole ----------------------------------------

@pytest.mark.parametrize("level", ["baseline", "restricted"])
def test_pod_security_refuses_an_in_place_host_path_even_for_the_operator(
        who: Identities, level: str) -> None:
    namespace = who.admin.create_namespace(f"{level}-{os.urandom(3).hex()}")
    who.admin.run("label", "namespace", namespace, f"pod-security.kubernetes.io/enforce={level}")
    create(who.operator, pod("psa", namespace, opted_in=True, restricted=True))
    # A release's change passes: the whole spec still meets the level.
    json_patch(who.operator, "psa", namespace, NEW_ENV)
    before = who.admin.get("pod", "psa", namespace)["spec"]
    message = refusal(lambda: json_patch(who.operator, "psa", namespace, HOST_PATH))
    assert f'violates PodSecurity "{level}:latest"' in message and "hostPath" in message
    assert who.admin.get("pod", "psa", namespace)["spec"] == before


def test_pod_security_refuses_an_in_place_privileged_looking_change(who: Identities) -> None:
    """A pod created before its namespace turned baseline: upstream never re-checks it on an
    env change; with 0005 the whole spec (a hostPath already there) is judged again."""
    namespace = who.admin.create_namespace(f"late-{os.urandom(3).hex()}")
    host = pod("late", namespace, opted_in=True)
    host["spec"]["volumes"].append({"name": "host", "hostPath": {"path": "/"}})
    create(who.operator, host)
    who.admin.run("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=baseline")
    message = refusal(lambda: json_patch(who.operator, "late", namespace, NEW_ENV))
    assert 'violates PodSecurity "baseline:latest"' in message


# --- cpu/memory only through pods/resize, under ResourceQuota -------------------------------

def test_cpu_and_memory_change_only_through_resize_under_quota(who: Identities) -> None:
    namespace = who.admin.create_namespace(f"quota-{os.urandom(3).hex()}")
    who.admin.apply({"apiVersion": "v1", "kind": "ResourceQuota",
                     "metadata": {"name": "cpu", "namespace": namespace},
                     "spec": {"hard": {"requests.cpu": "100m"}}})
    who.admin.wait_for("the quota's first count", lambda: who.admin.get(
        "resourcequota", "cpu", namespace).get("status", {}).get("used"))
    resources = {"requests": {"cpu": "100m", "memory": "64Mi"},
                 "limits": {"cpu": "100m", "memory": "64Mi"}}
    sized = pod("sized", namespace, opted_in=True)
    sized["spec"]["containers"][0]["resources"] = resources
    create(who.operator, sized)
    # At its limit once the quota controller has counted the pod.
    who.admin.wait_for("the quota to count the pod", lambda: who.admin.get(
        "resourcequota", "cpu", namespace)["status"]["used"].get("requests.cpu") == "100m")

    def grow(kube: Kube, subresource: str | None) -> None:
        json_patch(kube, "sized", namespace, *[
            {"op": "replace", "path": f"/spec/containers/0/resources/{kind}/cpu", "value": "200m"}
            for kind in ("requests", "limits")], subresource=subresource)

    assert "exceeded quota" in refusal(lambda: grow(who.admin, "resize"))
    # The plain update that 0002 used to relax is refused, even for the operator.
    assert SPEC_MESSAGE in refusal(lambda: grow(who.operator, None))
    stored = who.admin.get("pod", "sized", namespace)["spec"]["containers"][0]["resources"]
    assert stored == resources
    # Resize itself works: a decrease fits the quota.
    json_patch(who.admin, "sized", namespace, *[
        {"op": "replace", "path": f"/spec/containers/0/resources/{kind}/cpu", "value": "50m"}
        for kind in ("requests", "limits")], subresource="resize")
    cpu = who.admin.get("pod", "sized", namespace)["spec"]["containers"][0]["resources"]
    assert cpu["requests"]["cpu"] == "50m" and cpu["limits"]["cpu"] == "50m"

