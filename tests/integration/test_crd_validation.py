"""The StatefulSetPlus CRD and the operator's deploy manifests against a real apiserver.

An API-only cluster (etcd, the patched control plane, kwok's fake nodes;
tools/testbed/apicluster.py) takes ``kubectl apply -k operator/deploy``; then every rule of the
schema and its CEL validations is exercised through kubectl, the way a user meets it: a bad spec is
rejected with a message that says what to fix. A cluster that cannot start fails the module.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from podkit_operator import manifests
from podkit_operator.api import keys
from testbed.fixtures import running_api_cluster
from testbed.kube import Kube, KubectlError
from testbed.stsp import wait_crd_established

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "operator" / "deploy"
EXAMPLES = DEPLOY / "examples"
OPERATOR_ACCOUNT = f"system:serviceaccount:{manifests.NAMESPACE}:{manifests.SERVICE_ACCOUNT}"


@pytest.fixture(scope="module")
def kube() -> Iterator[Kube]:
    """kubectl on a fresh API-only cluster where operator/deploy is applied (for real)."""
    with running_api_cluster(f"crd-{os.getpid()}") as cluster:
        kube = cluster.kube()
        try:
            kube.run("apply", "-k", str(DEPLOY))
            wait_crd_established(kube)
        except KubectlError as err:
            pytest.fail(f"kubectl apply -k {DEPLOY} failed: {err.stderr}", pytrace=False)
        yield kube


# --- objects ------------------------------------------------------------------------------------

def stsp(name: str, replicas: int = 6, batch: dict[str, Any] | None = None,
         **spec: Any) -> dict[str, Any]:
    """A valid StatefulSetPlus; ``batch`` replaces batchDeployConfig, ``spec`` top-level
    fields of the spec."""
    obj: dict[str, Any] = {
        "apiVersion": f"{keys.GROUP}/{keys.VERSION}", "kind": keys.KIND,
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name, "tier": "media"}},
                         "spec": {"containers": [{"name": "media",
                                                  "image": "podkit.local/podkit-demo:v1"}]}},
            "updateStrategy": {"type": "ABSwap",
                               "batchDeployConfig": batch if batch is not None
                               else {"batchNum": 3}},
        },
    }
    obj["spec"].update(spec)
    return obj


def create(kube: Kube, obj: dict[str, Any]) -> None:
    kube.run("create", "-f", "-", input=json.dumps(obj))


def rejection(kube: Kube, obj: dict[str, Any]) -> str:
    """The apiserver's message for an object it must refuse (fails the test if it accepts)."""
    try:
        create(kube, obj)
    except KubectlError as err:
        return err.stderr
    kube.delete(keys.PLURAL, obj["metadata"]["name"])
    pytest.fail(f"the apiserver accepted a bad spec: {json.dumps(obj['spec'])}")


def get(kube: Kube, name: str) -> dict[str, Any]:
    return kube.get(keys.PLURAL, name)


def write_status(kube: Kube, name: str, status: dict[str, Any]) -> None:
    """What the operator does: a merge patch of the status subresource."""
    kube.run("patch", keys.PLURAL, name, "-n", "default", "--subresource=status",
             "--type=merge", "-p", json.dumps({"status": status}))


def can_i(kube: Kube, *args: str, namespace: str | None = None) -> bool:
    """``kubectl auth can-i ... --as=<the operator's account>`` in all namespaces (or one)."""
    scope = ["-n", namespace] if namespace else ["--all-namespaces"]
    proc = subprocess.run([str(kube.kubectl_path), f"--kubeconfig={kube.kubeconfig}", "auth",
                           "can-i", *args, *scope, f"--as={OPERATOR_ACCOUNT}"],
                          capture_output=True, text=True, timeout=60)
    answer = proc.stdout.strip()
    assert answer in ("yes", "no"), f"kubectl auth can-i {' '.join(args)}: {proc.stderr}"
    return answer == "yes"


def flow_of(kube: Kube, account: str) -> tuple[str, str]:
    """The (FlowSchema, PriorityLevel) UIDs the apiserver answered a request of ``account``
    with (its X-Kubernetes-PF-* headers, as ``kubectl -v=8`` logs them)."""
    proc = subprocess.run([str(kube.kubectl_path), f"--kubeconfig={kube.kubeconfig}", "get",
                           "--raw", "/api/v1/namespaces/default/pods", f"--as={account}",
                           "-v=8"], capture_output=True, text=True, timeout=60)
    found = {name.lower(): uid for name, uid in re.findall(
        r"(X-Kubernetes-Pf-(?:Flowschema|Prioritylevel)-Uid): (\S+)", proc.stderr, re.I)}
    assert len(found) == 2, f"no priority-and-fairness headers in: {proc.stderr[-2000:]}"
    return (found["x-kubernetes-pf-flowschema-uid"], found["x-kubernetes-pf-prioritylevel-uid"])


def test_the_operator_requests_queue_at_a_priority_level_of_their_own(kube: Kube) -> None:
    """flowcontrol.yaml: the apiserver classifies the operator's account (and it alone) into
    the podkit-operator FlowSchema and PriorityLevel."""
    schema = kube.get("flowschemas.flowcontrol.apiserver.k8s.io", "podkit-operator")
    level = kube.get("prioritylevelconfigurations.flowcontrol.apiserver.k8s.io",
                     "podkit-operator")
    ours = (schema["metadata"]["uid"], level["metadata"]["uid"])
    assert flow_of(kube, OPERATOR_ACCOUNT) == ours
    another = "system:serviceaccount:default:default"
    assert flow_of(kube, another)[0] != ours[0]


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return spec["template"]["spec"]["containers"]


def batch_config(spec: dict[str, Any]) -> dict[str, Any]:
    return spec["updateStrategy"]["batchDeployConfig"]


# --- the manifests ------------------------------------------------------------------------------

def test_deploy_applies_and_the_crd_is_established(kube: Kube) -> None:
    # The fixture applied it for real; applying again (server-side dry run) changes nothing.
    out = kube.run("apply", "-k", str(DEPLOY), "--dry-run=server")
    for kind in ("namespace/podkit-system", f"customresourcedefinition.apiextensions.k8s.io/"
                 f"{keys.CRD_NAME}", "serviceaccount/podkit-operator",
                 "clusterrole.rbac.authorization.k8s.io/podkit-operator",
                 "clusterrolebinding.rbac.authorization.k8s.io/podkit-operator",
                 "deployment.apps/podkit-operator"):
        assert kind in out, out
    crd = json.loads(kube.run("get", "crd", keys.CRD_NAME, "-o", "json"))
    conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conditions["Established"] == "True" and conditions["NamesAccepted"] == "True"
    assert crd["status"]["acceptedNames"]["shortNames"] == ["stsp"]


def test_the_package_loads_what_kustomize_builds(kube: Kube) -> None:
    built = [doc for doc in yaml.safe_load_all(kube.run("kustomize", str(DEPLOY))) if doc]
    key = lambda o: (o["kind"], o["metadata"]["name"])  # noqa: E731
    assert sorted(built, key=key) == sorted(manifests.deploy_objects(), key=key)
    assert manifests.crd()["spec"]["names"]["plural"] == keys.PLURAL


def test_the_operator_pod_passes_the_restricted_pod_security_standard(kube: Kube) -> None:
    # podkit-system enforces "restricted": the ReplicaSet creates the pod only if the
    # Deployment's security context complies (kwok then plays its node).
    def operator_pods() -> list[dict[str, Any]]:
        return json.loads(kube.run("get", "pods", "-n", manifests.NAMESPACE, "-l",
                                   "app.kubernetes.io/name=podkit-operator", "-o",
                                   "json"))["items"]
    pods = kube.wait_for("the operator's pod", operator_pods, timeout=60)
    container = pods[0]["spec"]["containers"][0]
    assert container["image"] == manifests.OPERATOR_IMAGE
    assert container["command"][:3] == ["kopf", "run", "--standalone"]
    assert pods[0]["spec"]["serviceAccountName"] == manifests.SERVICE_ACCOUNT


@pytest.mark.parametrize("verb, resource, allowed", [
    ("watch", "statefulsetplus.podkit.io", True),
    ("patch", "statefulsetplus.podkit.io", True),
    ("update", "statefulsetplus.podkit.io", False),
    ("delete", "statefulsetplus.podkit.io", False),
    ("create", "pods", True),
    ("delete", "pods", True),
    ("patch", "pods", True),
    ("update", "pods", False),
    ("create", "controllerrevisions.apps", True),
    ("delete", "controllerrevisions.apps", True),
    ("create", "events", True),
    ("create", "events.events.k8s.io", False),
    ("watch", "customresourcedefinitions.apiextensions.k8s.io", True),
    ("create", "customresourcedefinitions.apiextensions.k8s.io", False),
    ("list", "namespaces", False),
    ("get", "secrets", False),
    ("list", "configmaps", True),
    ("watch", "configmaps", True),
    ("create", "configmaps", True),
    ("delete", "configmaps", True),
    ("update", "configmaps", False),
    ("patch", "configmaps", True),  # a copy's ownerReferences only
    ("create", "deployments.apps", False),
    ("create", "leases.coordination.k8s.io", False),
    ("create", "kopfpeerings.kopf.dev", False),
])
def test_the_operator_account_has_least_privilege(kube: Kube, verb: str, resource: str,
                                                   allowed: bool) -> None:
    assert can_i(kube, verb, resource) is allowed


@pytest.mark.parametrize("verb, resource, allowed", [
    ("get", "leases.coordination.k8s.io", True),
    ("create", "leases.coordination.k8s.io", True),
    ("update", "leases.coordination.k8s.io", True),
    ("delete", "leases.coordination.k8s.io", False),
    ("list", "endpointslices.discovery.k8s.io", True),
])
def test_the_operator_account_may_keep_its_lease_in_its_own_namespace(
        kube: Kube, verb: str, resource: str, allowed: bool) -> None:
    assert can_i(kube, verb, resource, namespace=manifests.NAMESPACE) is allowed
    assert not can_i(kube, "create", "leases.coordination.k8s.io")  # not elsewhere


def test_the_operator_account_may_resize_pods_only_by_patch(kube: Kube) -> None:
    assert can_i(kube, "patch", "pods", "--subresource=resize")
    assert not can_i(kube, "update", "pods", "--subresource=resize")


def test_the_operator_account_may_write_status_but_not_exec(kube: Kube) -> None:
    assert can_i(kube, "patch", "statefulsetplus.podkit.io", "--subresource=status")
    assert can_i(kube, "update", "statefulsetplus.podkit.io", "--subresource=finalizers")
    assert not can_i(kube, "create", "pods", "--subresource=exec")
    assert not can_i(kube, "create", "pods", "--subresource=eviction")


def test_the_example_is_valid(kube: Kube) -> None:
    out = kube.run("apply", "--dry-run=server", "-f", str(EXAMPLES))
    assert "statefulsetplus.podkit.io/web created (server dry run)" in out


# --- accepted specs and their defaults -----------------------------------------------------------

def test_a_minimal_object_gets_its_defaults(kube: Kube) -> None:
    obj = stsp("defaults")
    del obj["spec"]["replicas"], obj["spec"]["updateStrategy"]
    create(kube, obj)
    spec = get(kube, "defaults")["spec"]
    assert spec["replicas"] == 1
    assert spec["revisionHistoryLimit"] == 10
    assert spec["minReadySeconds"] == 10  # the soak catches a crash within 10 s
    assert spec["updateStrategy"] == {"type": "ABSwap", "batchDeployConfig": {
        "batchNum": 1, "batchAuto": True, "batchIntervalSeconds": 0,
        "batchDeadlineSeconds": 600, "maxFailedPercent": 0}}


def test_a_full_object_is_kept_as_given(kube: Kube) -> None:
    batch = {"batchNum": 4, "batchAuto": False, "batchIntervalSeconds": 30,
             "podsNumToUpdate": [1, "25%", 4, "100%"], "batchDeadlineSeconds": 120,
             "maxFailedPercent": 20}
    obj = stsp("full", replicas=10, batch=batch, serviceName="full", revisionHistoryLimit=3,
               minReadySeconds=30, podManagementPolicy="Parallel", ordinals={"start": 0},
               podkit={"pauseImage": "podkit.local/podkit-pause:dev",
                       "sidecarImage": "podkit.local/podkit-sidecar:dev"})
    c = containers(obj["spec"])[0]
    c["env"] = [{"name": "PODKIT_VERSION", "value": "v1"}]  # unknown to the schema: kept
    c["ports"] = [{"containerPort": 8080}]
    c["volumeMounts"] = [{"name": "data", "mountPath": "/data"}]
    obj["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 5
    obj["spec"]["template"]["spec"]["volumes"] = [{"name": "data", "emptyDir": {}}]
    create(kube, obj)
    assert get(kube, "full")["spec"] == obj["spec"]


@pytest.mark.parametrize("name, change", [
    # no release yet: replicas 0 allows any batchNum
    ("zero-replicas", lambda s: s.update(replicas=0)),
    # percentages are not compared with counts: [1, "50%", 2, "100%"] can make sense
    ("mixed", lambda s: batch_config(s).update(batchNum=4, podsNumToUpdate=[1, "50%", 2, "100%"])),
    # the last batch takes the rest whatever its entry: a count above or below replicas (a
    # scale in either direction never conflicts with the list)
    ("last-count", lambda s: batch_config(s).update(podsNumToUpdate=[2, 4, 8])),
    ("last-count-below", lambda s: batch_config(s).update(podsNumToUpdate=[1, 2, 3])),
    ("last-percent-below", lambda s: batch_config(s).update(podsNumToUpdate=[1, 2, "50%"])),
    ("percent", lambda s: batch_config(s).update(podsNumToUpdate=["9%", "10%", "100%"])),
    # only ABSwap runs the business container twice: InPlace may set a command
    ("inplace-command", lambda s: (s["updateStrategy"].update(type="InPlace"),
                                   containers(s)[0].update(command=["serve"]))),
    ("selector-expressions", lambda s: s.update(selector={"matchExpressions": [
        {"key": "tier", "operator": "In", "values": ["media", "edge"]},
        {"key": "canary", "operator": "DoesNotExist"}]})),
    ("config-maps", lambda s: with_config(s).update(configHistoryLimit=3)),
    ("config-hook-command", lambda s: with_config(s).update(
        podkit={"configHook": "command:/app/reload --all"})),
    ("config-hook-signal-lower-case", lambda s: with_config(s).update(
        podkit={"configHook": "signal:sigusr1"})),
])
def test_valid_specs_are_accepted(kube: Kube, name: str,
                                  change: Callable[[dict[str, Any]], Any]) -> None:
    obj = stsp(f"ok-{name}")
    change(obj["spec"])
    create(kube, obj)
    assert get(kube, f"ok-{name}")["spec"]["replicas"] == obj["spec"]["replicas"]


def with_config(spec: dict[str, Any]) -> dict[str, Any]:
    """Release ConfigMap ``media-config``, mounted by volume ``config``; returns the spec."""
    spec["configMaps"] = ["media-config"]
    spec["podkit"] = {"configHook": "signal:HUP"}
    spec["template"]["spec"]["volumes"] = [{"name": "config",
                                            "configMap": {"name": "media-config"}}]
    return spec


# --- rejected specs: each message says what to fix -----------------------------------------------

BAD_SPECS: list[tuple[str, Callable[[dict[str, Any]], Any], list[str]]] = [
    ("batchnum-zero", lambda s: batch_config(s).update(batchNum=0),
     ["spec.updateStrategy.batchDeployConfig.batchNum",
      "should be greater than or equal to 1"]),
    ("more-batches-than-replicas", lambda s: s.update(replicas=2),
     ["batchNum must not exceed replicas", "there cannot be more batches than pods"]),
    ("length-not-batchnum", lambda s: batch_config(s).update(podsNumToUpdate=[1, "100%"]),
     ["podsNumToUpdate must have exactly batchNum entries"]),
    ("decreasing-counts", lambda s: batch_config(s).update(podsNumToUpdate=[3, 2, "100%"]),
     ["podsNumToUpdate entries are cumulative targets and must not decrease"]),
    ("decreasing-percentages",
     lambda s: batch_config(s).update(podsNumToUpdate=["50%", "9%", "100%"]),
     ["must not decrease"]),
    ("decreasing-counts-apart",
     lambda s: batch_config(s).update(batchNum=4, podsNumToUpdate=[5, "50%", 3, "100%"]),
     ["must not decrease"]),
    ("percent-above-100", lambda s: batch_config(s).update(podsNumToUpdate=[1, "150%", "100%"]),
     ['podsNumToUpdate entry 150% is invalid', 'a percentage "N%" with N from 1 to 100']),
    ("percent-zero", lambda s: batch_config(s).update(podsNumToUpdate=["0%", "50%", "100%"]),
     ["podsNumToUpdate entry 0% is invalid"]),
    ("count-zero", lambda s: batch_config(s).update(podsNumToUpdate=[0, 3, "100%"]),
     ["podsNumToUpdate entry 0 is invalid", "a pod count of at least 1"]),
    ("not-a-percentage", lambda s: batch_config(s).update(podsNumToUpdate=[1, "half", "100%"]),
     ["podsNumToUpdate entry half is invalid"]),
    ("labels-miss-selector",
     lambda s: s["template"]["metadata"].update(labels={"app": "someone-else"}),
     ["template.metadata.labels must contain every label of selector.matchLabels"]),
    ("labels-miss-expression", lambda s: s.update(selector={"matchExpressions": [
        {"key": "tier", "operator": "NotIn", "values": ["media"]}]}),
     ["template.metadata.labels must satisfy every selector.matchExpressions entry"]),
    ("empty-selector", lambda s: s.update(selector={}),
     ["selector must not be empty"]),
    ("business-command", lambda s: containers(s)[0].update(command=["/bin/serve"]),
     ['the business container (the first container, "media") must not set command or args',
      "move the command into the image"]),
    ("business-args", lambda s: containers(s)[0].update(args=["--port=8080"]),
     ["must not set command or args"]),
    ("slot-name-taken", lambda s: containers(s).append({"name": "media-b", "image": "x:1"}),
     ["the container names podkit-sidecar, media-a and media-b are taken"]),
    ("reserved-volume", lambda s: s["template"]["spec"].update(
        volumes=[{"name": "podkit", "emptyDir": {}}]),
     ["the volume names podkit and podkit-shm are taken"]),
    ("unknown-strategy", lambda s: s["updateStrategy"].update(type="OnDelete"),
     ['spec.updateStrategy.type: Unsupported value: "OnDelete"',
      '"ABSwap", "InPlace", "Recreate", "RollingUpdate"']),
    ("empty-pause-image", lambda s: s.update(podkit={"pauseImage": ""}),
     ["podkit.pauseImage must be a non-empty image reference"]),
    ("blank-sidecar-image", lambda s: s.update(podkit={"sidecarImage": " "}),
     ["podkit.sidecarImage must be a non-empty image reference"]),
    ("max-failed-above-100", lambda s: batch_config(s).update(maxFailedPercent=101),
     ["maxFailedPercent in body should be less than or equal to 100"]),
    ("no-containers", lambda s: s["template"]["spec"].update(containers=[]),
     ["spec.template.spec.containers in body should have at least 1 items"]),
    ("config-map-not-mounted", lambda s: with_config(s).update(configMaps=["other"]),
     ["every name in configMaps must be mounted by a configMap volume of the template"]),
    ("config-map-items", lambda s: with_config(s)["template"]["spec"]["volumes"][0][
        "configMap"].update(items=[{"key": "a", "path": "b"}]),
     ["its volume must not list items"]),
    ("config-map-inplace", lambda s: with_config(s)["updateStrategy"].update(type="InPlace"),
     ["configMaps needs updateStrategy.type ABSwap"]),
    ("config-hook-unknown", lambda s: with_config(s).update(podkit={"configHook": "reload"}),
     ["spec.podkit.configHook in body should match"]),
    ("config-hook-bad-signal", lambda s: with_config(s).update(
        podkit={"configHook": "signal:HUPP"}),
     ["spec.podkit.configHook in body should match"]),
    ("config-hook-not-a-reload-signal", lambda s: with_config(s).update(
        podkit={"configHook": "signal:KILL"}),
     ["spec.podkit.configHook in body should match"]),
    ("config-history-zero", lambda s: with_config(s).update(configHistoryLimit=0),
     ["spec.configHistoryLimit in body should be greater than or equal to 1"]),
    ("config-map-name-too-long", lambda s: with_config(s).update(configMaps=["a" * 243]),
     ["spec.configMaps[0]: Too long"]),
    ("min-ready-negative", lambda s: s.update(minReadySeconds=-1),
     ["spec.minReadySeconds in body should be greater than or equal to 0"]),
    ("misspelt-field", lambda s: batch_config(s).update(batchnum=3),
     ['unknown field "spec.updateStrategy.batchDeployConfig.batchnum"']),
]


@pytest.mark.parametrize("name, change, expected", BAD_SPECS, ids=[b[0] for b in BAD_SPECS])
def test_bad_specs_are_rejected_with_what_to_fix(kube: Kube, name: str,
                                                 change: Callable[[dict[str, Any]], Any],
                                                 expected: list[str]) -> None:
    obj = stsp(f"bad-{name}")
    change(obj["spec"])
    message = rejection(kube, obj)
    for part in expected:
        assert part in message, f"{part!r} not in the apiserver's answer:\n{message}"


def test_the_selector_is_immutable(kube: Kube) -> None:
    create(kube, stsp("fixed"))
    with pytest.raises(KubectlError, match="selector is immutable"):
        kube.run("patch", keys.PLURAL, "fixed", "-n", "default", "--type=merge", "-p",
                 json.dumps({"spec": {"selector": {"matchLabels": {"tier": "media"}}}}))


# --- status, scale, printer columns -------------------------------------------------------------

FULL_STATUS = {
    "observedGeneration": 1, "replicas": 6, "readyReplicas": 5, "updatedReplicas": 3,
    "unhealthyReplicas": 1, "unhealthyPods": ["cols-4"],
    "currentRevision": "cols-6d5f7c9b8", "updateRevision": "cols-7f9c8d6b5",
    "selector": "app=cols",
    "batchDeployStatus": {
        "action": "Next", "batchDeadlineTime": "2026-01-01T00:10:00Z", "batchOrder": 2,
        "batchOrdinal": 3, "batchReplicas": 2, "currentDeployComplete": False,
        "currentOrderSuccessPer": 50, "currentOrderProgress": "1/2",
        "currentRollbackProgress": "0/0", "generalStatus": "Progressing"},
    "conditions": [
        {"type": "SwapMode", "status": "True", "reason": "Patched",
         "message": "the apiserver lets pods change env in place",
         "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 1},
        {"type": "Progressing", "status": "True", "reason": "BatchRunning",
         "lastTransitionTime": "2026-01-01T00:00:00Z"}],
}


def test_the_status_keeps_every_field_the_operator_writes(kube: Kube) -> None:
    create(kube, stsp("cols"))
    write_status(kube, "cols", copy.deepcopy(FULL_STATUS))
    assert get(kube, "cols")["status"] == FULL_STATUS  # nothing pruned, nothing refused
    # the main resource ignores status: only the status subresource writes it
    kube.run("patch", keys.PLURAL, "cols", "-n", "default", "--type=merge", "-p",
             json.dumps({"status": {"replicas": 99}}))
    assert get(kube, "cols")["status"]["replicas"] == 6


def test_printer_columns(kube: Kube) -> None:
    create(kube, stsp("printed"))
    write_status(kube, "printed", {**copy.deepcopy(FULL_STATUS), "selector": "app=printed"})
    for short in ("stsp", "statefulsetplus"):
        lines = kube.run("get", short, "printed", "-n", "default").splitlines()
        assert lines[0].split() == ["NAME", "REPLICAS", "READY", "UPDATED", "BATCH", "PHASE",
                                    "AGE"]
        assert lines[1].split()[:6] == ["printed", "6", "5", "3", "2", "Progressing"]
    wide = kube.run("get", "stsp", "printed", "-n", "default", "-o", "wide").splitlines()
    assert wide[0].split()[-3:] == ["ACTION", "PROGRESS", "REVISION"]
    assert wide[1].split()[-3:] == ["Next", "1/2", "cols-7f9c8d6b5"]


def test_kubectl_scale_drives_replicas_through_the_scale_subresource(kube: Kube) -> None:
    create(kube, stsp("scaled", replicas=3))
    kube.run("scale", "stsp/scaled", "-n", "default", "--replicas=5")
    assert get(kube, "scaled")["spec"]["replicas"] == 5
    write_status(kube, "scaled", {"replicas": 5, "selector": "app=scaled"})
    scale = json.loads(kube.run("get", "stsp", "scaled", "-n", "default",
                                "--subresource=scale", "-o", "json"))
    assert scale["kind"] == "Scale"
    assert scale["spec"] == {"replicas": 5}
    assert scale["status"] == {"replicas": 5, "selector": "app=scaled"}


def test_scaling_below_batch_num_is_refused(kube: Kube) -> None:
    # The rule batchNum <= replicas holds for the scale subresource too: an HPA that would
    # go below batchNum is refused (lower batchNum first).
    create(kube, stsp("narrow", replicas=3))
    with pytest.raises(KubectlError, match="batchNum must not exceed replicas"):
        kube.run("scale", "stsp/narrow", "-n", "default", "--replicas=2")
    assert get(kube, "narrow")["spec"]["replicas"] == 3
