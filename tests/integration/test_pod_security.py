"""The swap pods the operator builds, against Pod Security Admission of a real apiserver.

An API-only cluster (tools/testbed/apicluster.py) with namespaces at each Pod Security level;
the pod bodies come from :func:`podkit_operator.inplace.pods.build_pod` and are created with
``--dry-run=server``, so admission (PodSecurity included) decides exactly as for a real create.
This is the table of docs/operator.md, "Pod security": which podkit feature leaves which level.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest

from podkit_operator.api.statefulsetplus import parse_spec
from podkit_operator.inplace.pods import build_pod
from testbed.fixtures import running_api_cluster
from testbed.kube import Kube, KubectlError

pytestmark = pytest.mark.integration

LEVELS = ("restricted", "baseline", "privileged")


@pytest.fixture(scope="module")
def kube() -> Iterator[Kube]:
    with running_api_cluster(f"psa-{os.getpid()}") as cluster:
        kube = cluster.kube()
        for level in LEVELS:
            kube.create_namespace(f"psa-{level}")
            kube.run("label", "namespace", f"psa-{level}",
                     f"pod-security.kubernetes.io/enforce={level}")
        yield kube


def swap_pod(namespace: str, business_ctx: dict[str, Any] | None = None,
             pod_ctx: dict[str, Any] | None = None) -> dict[str, Any]:
    tmpl: dict[str, Any] = {
        "metadata": {"labels": {"app": "web"}},
        "spec": {"containers": [{"name": "web", "image": "podkit.local/podkit-demo:v1",
                                 "ports": [{"name": "tcp", "containerPort": 7000}]}]}}
    stsp = {"apiVersion": "podkit.io/v1alpha1", "kind": "StatefulSetPlus",
            "metadata": {"name": "web", "namespace": namespace, "uid": "u-1"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                     "template": tmpl}}
    if business_ctx is not None:
        tmpl["spec"]["containers"][0]["securityContext"] = business_ctx
    if pod_ctx is not None:
        tmpl["spec"]["securityContext"] = pod_ctx
    spec = parse_spec(stsp["spec"])
    pod = build_pod(stsp, spec, 0, "web-r1", spec.template, patched=True)
    pod["metadata"].pop("ownerReferences")  # no such StatefulSetPlus here
    return pod


def admitted(kube: Kube, pod: dict[str, Any]) -> str | None:
    """None when the apiserver admits the pod, else its refusal."""
    try:
        kube.run("create", "--dry-run=server", "-f", "-", input=json.dumps(pod))
    except KubectlError as err:
        return err.stderr
    return None


def test_a_plain_swap_pod_passes_restricted(kube: Kube) -> None:
    assert admitted(kube, swap_pod("psa-restricted")) is None


# (the business container's securityContext, the lowest level that admits it, what the
# refusal names one level below)
FEATURES = [
    pytest.param({"capabilities": {"add": ["SYS_NICE"]}, "runAsUser": 0}, "privileged",
                 "SYS_NICE", id="cpu-priorities"),
    pytest.param({"capabilities": {"add": ["SYS_PTRACE"]}}, "privileged", "SYS_PTRACE",
                 id="wrapped-close-detection-across-uids"),
    pytest.param({"runAsUser": 0}, "baseline", "runAsUser=0", id="root-business"),
    pytest.param({"capabilities": {"add": ["NET_BIND_SERVICE"]}}, "restricted", "",
                 id="low-ports-by-capability"),
]


@pytest.mark.parametrize("ctx, lowest, named", FEATURES)
def test_each_feature_needs_exactly_its_level(kube: Kube, ctx: dict[str, Any], lowest: str,
                                              named: str) -> None:
    index = LEVELS.index(lowest)
    for level in LEVELS[index:]:
        assert admitted(kube, swap_pod(f"psa-{level}", ctx)) is None, level
    if index > 0:
        refusal = admitted(kube, swap_pod(f"psa-{LEVELS[index - 1]}", ctx))
        assert refusal is not None and "violates PodSecurity" in refusal, refusal
        assert named in refusal, refusal


def test_the_unprivileged_port_sysctl_passes_restricted(kube: Kube) -> None:
    """How the nginx recipe binds port 80 as uid 65532 (images/nginx/Dockerfile)."""
    pod_ctx = {"sysctls": [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "80"}]}
    assert admitted(kube, swap_pod("psa-restricted", pod_ctx=pod_ctx)) is None
