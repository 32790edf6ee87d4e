"""API-only clusters: several at once, kwok's fake nodes, the patched apiserver's rules."""

from __future__ import annotations

import json

from testbed.apicluster import ApiCluster


def deployment(name: str, replicas: int) -> dict:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "app",
                                                       "image": "podkit.local/fake:1"}]}}},
    }


def ready_pods(cluster: ApiCluster, app: str) -> int:
    pods = json.loads(cluster.kube().run("get", "pods", "-l", f"app={app}", "-o", "json"))
    return sum(1 for p in pods["items"]
               if any(c["type"] == "Ready" and c["status"] == "True"
                      for c in p["status"].get("conditions", [])))


def test_two_clusters_run_at_once_and_fake_nodes_run_pods(api_clusters) -> None:
    first, second = api_clusters(nodes=2), api_clusters(nodes=1)
    assert first.ports().apiserver != second.ports().apiserver

    first.kube().apply(deployment("web", 20))
    second.kube().apply(deployment("web", 3))

    first.kube().wait_for("20 Ready pods on the first cluster",
                          lambda: ready_pods(first, "web") == 20, timeout=60)
    second.kube().wait_for("3 Ready pods on the second cluster",
                           lambda: ready_pods(second, "web") == 3, timeout=60)
    nodes = json.loads(first.kube().run("get", "nodes", "-o", "json"))["items"]
    assert sorted(n["metadata"]["name"] for n in nodes) == ["kwok-0", "kwok-1"]


def test_api_cluster_serves_the_patched_pod_update(api_clusters) -> None:
    cluster = api_clusters()
    kube = cluster.kube()
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "slot", "namespace": "default",
                        "annotations": {"podkit.io/mutable-spec": "true"}},
           "spec": {"containers": [{"name": "app", "image": "podkit.local/fake:1",
                                    "env": [{"name": "PODKIT_VERSION", "value": "v1"}]}]}}
    kube.apply(pod)
    kube.patch("pod", "slot", [
        {"op": "replace", "path": "/spec/containers/0/env/0/value", "value": "v2"}])
    env = kube.get("pod", "slot")["spec"]["containers"][0]["env"]
    assert env == [{"name": "PODKIT_VERSION", "value": "v2"}]
