"""testbed.metrics_server adapts upstream's manifests to a process on the host: the bindings
name the testbed's client-certificate user, the APIService checks the serving certificate, and
anything else than upstream's shape is refused rather than applied half-adapted."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import yaml

from testbed import metrics_server as ms
from testbed.errors import TestbedError

SA_SUBJECT = [{"kind": "ServiceAccount", "name": "metrics-server", "namespace": "kube-system"}]


def entry(tmp_path: Path, rbac: list[dict], api: dict) -> Path:
    (tmp_path / "manifests").mkdir()
    (tmp_path / "manifests" / "rbac.yaml").write_text(yaml.safe_dump_all(rbac))
    (tmp_path / "manifests" / "apiservice.yaml").write_text(yaml.safe_dump(api))
    return tmp_path


def upstream_api() -> dict:
    return {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
            "metadata": {"name": "v1beta1.metrics.k8s.io"},
            "spec": {"service": {"name": "metrics-server", "namespace": "kube-system"},
                     "group": "metrics.k8s.io", "version": "v1beta1",
                     "insecureSkipTLSVerify": True, "groupPriorityMinimum": 100,
                     "versionPriority": 100}}


def test_bindings_name_the_certificate_user_and_the_service_account_goes(
        tmp_path: Path) -> None:
    role = {"kind": "ClusterRole", "metadata": {"name": "system:metrics-server"},
            "rules": [{"apiGroups": [""], "resources": ["nodes/metrics"], "verbs": ["get"]}]}
    rbac = [{"kind": "ServiceAccount", "metadata": {"name": "metrics-server"}}, role,
            {"kind": "ClusterRoleBinding", "metadata": {"name": "system:metrics-server"},
             "roleRef": {"kind": "ClusterRole", "name": "system:metrics-server"},
             "subjects": SA_SUBJECT},
            {"kind": "RoleBinding", "metadata": {"name": "metrics-server-auth-reader"},
             "roleRef": {"kind": "Role", "name": "extension-apiserver-authentication-reader"},
             "subjects": SA_SUBJECT}]
    objs = ms.rbac(entry(tmp_path, rbac, upstream_api()))
    assert [o["kind"] for o in objs] == ["ClusterRole", "ClusterRoleBinding", "RoleBinding"]
    assert objs[0] == role
    for binding in objs[1:]:
        assert binding["subjects"] == [{"kind": "User", "name": ms.USER,
                                        "apiGroup": "rbac.authorization.k8s.io"}]


def test_a_binding_of_another_subject_is_refused(tmp_path: Path) -> None:
    rbac = [{"kind": "ClusterRoleBinding", "metadata": {"name": "x"},
             "subjects": [{"kind": "Group", "name": "system:authenticated"}]}]
    with pytest.raises(TestbedError, match="not upstream's ServiceAccount"):
        ms.rbac(entry(tmp_path, rbac, upstream_api()))


def test_the_api_service_verifies_the_serving_certificate(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_bytes(b"-----BEGIN CERTIFICATE-----\n")
    api = ms.api_service(entry(tmp_path, [], upstream_api()), ca)
    assert "insecureSkipTLSVerify" not in api["spec"]
    assert base64.b64decode(api["spec"]["caBundle"]) == ca.read_bytes()
    assert api["spec"]["service"] == {"name": "metrics-server", "namespace": "kube-system"}


def test_routing_sends_the_service_to_the_node() -> None:
    service, endpoints = ms.routing("10.199.0.1", 4443)
    assert "selector" not in service["spec"]
    assert endpoints["metadata"]["labels"]["kubernetes.io/service-name"] == "metrics-server"
    assert endpoints["endpoints"][0]["addresses"] == ["10.199.0.1"]
    # the aggregator matches the endpoint's port to the Service's by name
    assert endpoints["ports"][0]["name"] == service["spec"]["ports"][0]["name"]
