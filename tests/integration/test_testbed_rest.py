"""testbed.rest, the HTTPS reader ``make chaos`` observes with, against a real apiserver: the
admin kubeconfig's client certificate and a ServiceAccount's token both read; what is not
there, and an apiserver that is not there, give ``ApiReadError`` naming the read."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed.apicluster import ApiCluster
from testbed.fixtures import running_api_cluster
from testbed.operator_proc import account_kubeconfig
from testbed.rest import ApiReader, ApiReadError

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster() -> Iterator[ApiCluster]:
    with running_api_cluster(f"rest-{os.getpid()}") as api:
        yield api


def test_the_admin_kubeconfig_reads_pods_by_label(cluster: ApiCluster) -> None:
    kube = cluster.kube()
    for name, app in (("picked", "web"), ("other", "db")):
        kube.apply({"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": name, "namespace": "default", "labels": {"app": app}},
                    "spec": {"containers": [{"name": "c", "image": "example.invalid/c:1"}]}})
    reader = ApiReader.from_kubeconfig(cluster.kubeconfig)
    listed = reader.get("/api/v1/namespaces/default/pods", labelSelector="app=web")
    assert [p["metadata"]["name"] for p in listed["items"]] == ["picked"]


def test_a_token_kubeconfig_reads_as_its_account(cluster: ApiCluster, tmp_path: Path) -> None:
    kube = cluster.kube()
    kube.run("create", "serviceaccount", "reader", "-n", "default")
    kube.run("create", "clusterrolebinding", "reader-views", "--clusterrole=view",
             "--serviceaccount=default:reader")
    config = account_kubeconfig(kube, "default", "reader", tmp_path / "reader.kubeconfig")
    reader = ApiReader.from_kubeconfig(config)
    assert reader.get("/api/v1/namespaces/default/pods")["kind"] == "PodList"
    with pytest.raises(ApiReadError, match=r"GET /api/v1/secrets: HTTP 403"):
        reader.get("/api/v1/secrets")  # view does not read secrets: the token is the account's


def test_what_is_not_there_is_an_error_naming_the_read(cluster: ApiCluster) -> None:
    reader = ApiReader.from_kubeconfig(cluster.kubeconfig)
    with pytest.raises(ApiReadError, match=r"GET /api/v1/namespaces/default/pods/none: HTTP 404"):
        reader.get("/api/v1/namespaces/default/pods/none")


def test_an_apiserver_that_is_down_is_an_error_naming_the_read(cluster: ApiCluster) -> None:
    reader = ApiReader.from_kubeconfig(cluster.kubeconfig)
    cluster.proc("kube-apiserver").stop()
    try:
        with pytest.raises(ApiReadError, match=r"GET /api/v1/namespaces: "):
            reader.get("/api/v1/namespaces", timeout=5)
    finally:
        cluster.up(nodes=0)
    assert reader.get("/api/v1/namespaces")["kind"] == "NamespaceList"
