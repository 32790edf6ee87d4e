"""API-only clusters: several at once, kwok's fake nodes, the patched apiserver's rules."""

from __future__ import annotations

import json
import time

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


def running_since(pod: dict) -> dict[str, str]:
    return {s["name"]: s["state"]["running"]["startedAt"]
            for s in pod["status"].get("containerStatuses", []) if "running" in s["state"]}


def test_a_stage_kwok_plays_again_from_a_stale_pod_writes_the_same_start_times(
        api_clusters) -> None:
    """kwok renders a stage from the pod version that triggered it, and under a backlog plays
    one of an older version after a newer one. Such a replay is made here on purpose, by
    writing back the status an older version had; the fake kubelet's answer must name the
    same runs (a new startedAt reads as a restart: the first 10,000-pod bench)."""
    cluster = api_clusters()
    kube = cluster.kube()
    kube.apply({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "replayed", "namespace": "default"},
                "spec": {"containers": [{"name": "a", "image": "podkit.local/fake:1"},
                                        {"name": "b", "image": "podkit.local/fake:1"}]}})
    started = kube.wait_for("the pod running", lambda: len(running_since(
        kube.get("pod", "replayed"))) == 2 and kube.get("pod", "replayed"))
    first = running_since(started)
    time.sleep(1.1)  # start times have whole seconds: a stage played now has another second
    kube.patch("pod", "replayed", [
        {"op": "replace", "path": "/spec/containers/1/image", "value": "podkit.local/fake:2"}])
    swapped = kube.wait_for("container b running image 2", lambda: (
        pod := kube.get("pod", "replayed"))["status"]["containerStatuses"][1]["image"]
        == "podkit.local/fake:2" and pod)
    second = running_since(swapped)
    assert second["a"] == first["a"] and second["b"] != first["b"]  # b restarted, a did not
    assert swapped["status"]["startTime"] == started["status"]["startTime"]

    # the images-changed stage again: the status of the version before the patch comes back
    time.sleep(1.1)
    kube.run("patch", "pod", "replayed", "--subresource=status", "--type=merge", "-p",
             json.dumps({"status": {"containerStatuses": started["status"]["containerStatuses"]}}))
    again = kube.wait_for("kwok's answer to the stale status", lambda: (
        pod := kube.get("pod", "replayed"))["status"]["containerStatuses"][1]["image"]
        == "podkit.local/fake:2" and pod)
    assert running_since(again) == second
    # the start stage again: a status without a podIP, as before kwok's first write
    time.sleep(1.1)
    kube.run("patch", "pod", "replayed", "--subresource=status", "--type=json", "-p",
             json.dumps([{"op": "remove", "path": "/status/podIP"}]))
    restarted = kube.wait_for("kwok's answer to a pod without podIP", lambda: (
        pod := kube.get("pod", "replayed"))["status"].get("podIP") and pod)
    assert running_since(restarted) == second
