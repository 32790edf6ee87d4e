"""The operator's watch-fed pod cache (podkit_operator.kube.podcache) against a real apiserver
with a kwok node: it lists once and then follows creates, changes and deletes of the labelled
pods only, waking for each; the operator's own write is in it as soon as the write returns.

Not shown here: the relist on 410 Gone. The apiserver serves a watch from its watch cache,
which keeps every version of a small test's history (even one etcd compacted away), so a
test cannot make it answer 410; the code takes 410 both as a watch's ERROR event and as the
HTTP status (podkit_operator.kube.podcache.follow)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import config

from podkit_operator.kube.client import KubeIO
from podkit_operator.kube.podcache import PodCache
from podkit_operator.kube.podindex import Key, PodIndex
from testbed.apicluster import ApiCluster
from testbed.fixtures import running_api_cluster
from testbed.kube import Kube

pytestmark = pytest.mark.integration

NS = "cache"


def bare_pod(name: str, stsp: str | None = "web") -> dict[str, Any]:
    labels = {"podkit.io/stsp": stsp} if stsp else {"app": "other"}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NS, "labels": labels},
            "spec": {"containers": [{"name": "c", "image": "podkit.local/podkit-demo:v1"}]}}


class Wakes:
    """What the cache woke, from its thread."""

    def __init__(self) -> None:
        self.keys: list[Key] = []
        self.lock = threading.Lock()

    def __call__(self, key: Key) -> None:
        with self.lock:
            self.keys.append(key)

    def count(self) -> int:
        with self.lock:
            return len(self.keys)


@pytest.fixture(scope="module")
def cluster() -> Iterator[ApiCluster]:
    with running_api_cluster(f"cache-{os.getpid()}", nodes=1) as running:
        running.kube().create_namespace(NS)
        yield running


@pytest.fixture(scope="module")
def api(cluster: ApiCluster) -> tuple[Kube, KubeIO, PodIndex]:
    kube = cluster.kube()
    index = PodIndex(Wakes())
    client = config.new_client_from_config(config_file=str(kube.kubeconfig))
    return kube, KubeIO(client, index), index


def cached(index: PodIndex) -> set[str]:
    return {p["metadata"]["name"] for p in index.pods(NS, "web")}


def test_the_cache_lists_then_follows_the_labelled_pods_and_sees_its_own_writes(
        api: tuple[Kube, KubeIO, PodIndex]) -> None:
    kube, io, index = api
    for p in (bare_pod("web-0"), bare_pod("web-1"), bare_pod("plain", stsp=None)):
        kube.apply(p)
    cache, wakes = PodCache(io, index), index.on_change
    assert isinstance(wakes, Wakes)
    cache.follow(NS)
    assert cache.wait_synced(NS, 30), "the first LIST of the pods did not come"
    assert cached(index) == {"web-0", "web-1"}  # the unlabelled pod is not the operator's

    kube.apply(bare_pod("web-2"))
    kube.wait_for("web-2 in the cache", lambda: "web-2" in cached(index), timeout=30)
    assert ("ns", "web") not in wakes.keys and (NS, "web") in wakes.keys

    before = wakes.count()
    io.patch_pod(NS, "web-0", {"metadata": {"annotations": {"podkit.io/probe": "1"}}})
    web0 = next(p for p in index.pods(NS, "web") if p["metadata"]["name"] == "web-0")
    assert web0["metadata"]["annotations"]["podkit.io/probe"] == "1"  # no wait: the answer
    assert wakes.count() > before  # by the time the write returned, its answer (or its echo
    # if that came first) woke the loop: the next pass takes the next step without an event

    before = wakes.count()
    kube.run("delete", "pod", "web-1", "-n", NS, "--grace-period=0", "--force")
    kube.wait_for("web-1 gone from the cache", lambda: "web-1" not in cached(index),
                  timeout=60)
    assert wakes.count() > before
    kube.run("label", "pod", "web-2", "-n", NS, "podkit.io/stsp-")
    kube.wait_for("web-2 gone once unlabelled", lambda: "web-2" not in cached(index),
                  timeout=30)
    cache.stop()


def test_a_broken_watch_holds_passes_until_a_fresh_list(
        cluster: ApiCluster, api: tuple[Kube, KubeIO, PodIndex]) -> None:
    """After a lost watch the cache may be stale (a pod crashed meanwhile): from the break
    until the LIST after it, wait_synced says no (make chaos seed 52 counted a pod updated
    from such a record)."""
    kube, io, index = api
    kube.apply(bare_pod("web-3"))
    cache = PodCache(io, index)
    cache.follow(NS)
    assert cache.wait_synced(NS, 30), "the first LIST of the pods did not come"
    cluster.proc("kube-apiserver").stop()
    kube.wait_for("the cache to hold passes after the break",
                  lambda: not cache.wait_synced(NS, 0), timeout=30, interval=0.1)
    cluster.up(nodes=0)
    assert cache.wait_synced(NS, 60), "no LIST came after the apiserver was back"
    assert "web-3" in cached(index)
    cache.stop()
