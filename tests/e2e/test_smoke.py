"""Smoke tests of the full cluster: pods run and answer, and the patched in-place update works.

The containers run a tiny HTTP server (below) that answers with its pod's name and its
PODKIT_VERSION, so a reply shows which container, with which environment, is serving.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from testbed.kube import Kube, KubectlError

PORT = 8080
SERVER = f"""
import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"{{os.environ.get('POD_NAME')}} {{os.environ.get('PODKIT_VERSION')}}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("0.0.0.0", {PORT}), H).serve_forever()
"""
UPSTREAM_REJECTION = "pod updates may not change fields other than"


def server_container(name: str, image: str, version: str) -> dict[str, Any]:
    return {
        "name": name,
        "image": image,
        "imagePullPolicy": "Never",
        "command": ["python3", "-c", SERVER],
        "env": [{"name": "PODKIT_VERSION", "value": version},
                {"name": "POD_NAME",
                 "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        "ports": [{"containerPort": PORT}],
        "readinessProbe": {"httpGet": {"path": "/", "port": PORT}, "periodSeconds": 1},
        "volumeMounts": [{"name": "shared", "mountPath": "/podkit"}],
    }


def pod(name: str, namespace: str, containers: list[dict[str, Any]], *,
        mutable: bool = False) -> dict[str, Any]:
    annotations = {"podkit.io/mutable-spec": "true"} if mutable else {}
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name},
                     "annotations": annotations},
        "spec": {"containers": containers,
                 "volumes": [{"name": "shared", "emptyDir": {}}],
                 "terminationGracePeriodSeconds": 1,
                 "automountServiceAccountToken": False},
    }


def http_get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=3) as resp:
        return resp.read().decode()


def wait_ready(kube: Kube, name: str, namespace: str) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        p = kube.get("pod", name, namespace)
        conds = p["status"].get("conditions", [])
        ok = any(c["type"] == "Ready" and c["status"] == "True" for c in conds)
        return p if ok and p["status"].get("podIP") else None
    return kube.wait_for(f"pod {namespace}/{name} Ready", ready, timeout=90)


def statuses(p: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in p["status"]["containerStatuses"]}


def test_plain_pod_answers_on_its_ip_and_through_a_service(kube: Kube, namespace: str,
                                                           podkit_images) -> None:
    kube.apply(pod("web", namespace, [server_container("web", podkit_images.base, "v1")]))
    kube.apply({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "web", "namespace": namespace},
                "spec": {"selector": {"app": "web"},
                         "ports": [{"port": 80, "targetPort": PORT}]}})
    p = wait_ready(kube, "web", namespace)

    assert http_get(f"http://{p['status']['podIP']}:{PORT}/") == "web v1"
    cluster_ip = kube.get("service", "web", namespace)["spec"]["clusterIP"]
    # kube-proxy programs the rule within its sync period once the endpoint is ready.
    reply = kube.wait_for("the Service's cluster IP to answer",
                          lambda: http_get(f"http://{cluster_ip}:80/"), timeout=30)
    assert reply == "web v1"
    # From inside the cluster too: the pod reaches itself through its Service (hairpin).
    fetch = f"import urllib.request; print(urllib.request.urlopen('http://{cluster_ip}/').read())"
    assert kube.exec("web", "web", "python3", "-c", fetch, namespace=namespace) == "b'web v1'\n"


def test_opted_in_pod_takes_new_image_and_env_in_place(kube: Kube, namespace: str,
                                                       podkit_images) -> None:
    idle = {"name": "idle", "image": podkit_images.base, "imagePullPolicy": "Never",
            "command": ["sleep", "infinity"],
            "volumeMounts": [{"name": "shared", "mountPath": "/podkit"}]}
    kube.apply(pod("slot", namespace,
                   [server_container("app", podkit_images.demo_v1, "v1"), idle],
                   mutable=True))
    before = wait_ready(kube, "slot", namespace)
    ip = before["status"]["podIP"]
    assert http_get(f"http://{ip}:{PORT}/") == "slot v1"
    kube.exec("slot", "app", "sh", "-c",
              "echo kept > /podkit/marker && echo segment-state > /dev/shm/podkit-smoke",
              namespace=namespace)

    kube.patch("pod", "slot", [
        {"op": "replace", "path": "/spec/containers/0/image", "value": podkit_images.demo_v2},
        {"op": "replace", "path": "/spec/containers/0/env/0/value", "value": "v2"},
    ], namespace=namespace)

    def restarted() -> dict[str, Any] | None:
        p = kube.get("pod", "slot", namespace)
        app = statuses(p)["app"]
        new_container = app["containerID"] != statuses(before)["app"]["containerID"]
        return p if new_container and app.get("ready") else None
    after = kube.wait_for("the app container to restart on v2", restarted, timeout=90)

    assert after["metadata"]["uid"] == before["metadata"]["uid"]
    assert after["status"]["podIP"] == ip
    old, new = statuses(before), statuses(after)
    assert new["app"]["restartCount"] == old["app"]["restartCount"] + 1
    assert new["app"]["image"].endswith(podkit_images.demo_v2.split("/", 1)[1])
    assert new["idle"]["containerID"] == old["idle"]["containerID"]
    assert new["idle"]["restartCount"] == old["idle"]["restartCount"]
    assert http_get(f"http://{ip}:{PORT}/") == "slot v2"
    assert kube.exec("slot", "app", "cat", "/podkit/marker", namespace=namespace) == "kept\n"
    assert kube.exec("slot", "app", "cat", "/dev/shm/podkit-smoke",
                     namespace=namespace) == "segment-state\n"


def test_opted_in_env_only_change_restarts_that_container(kube: Kube, namespace: str,
                                                          podkit_images) -> None:
    """Upstream's kubelet hashes only name and image; the patched one restarts on env too."""
    kube.apply(pod("envonly", namespace, [server_container("app", podkit_images.demo_v1, "v1")],
                   mutable=True))
    before = wait_ready(kube, "envonly", namespace)

    kube.patch("pod", "envonly", [
        {"op": "replace", "path": "/spec/containers/0/env/0/value", "value": "v2"},
    ], namespace=namespace)

    def restarted() -> dict[str, Any] | None:
        p = kube.get("pod", "envonly", namespace)
        app = statuses(p)["app"]
        return p if app["restartCount"] == 1 and app.get("ready") else None
    after = kube.wait_for("the app container to restart with the new env", restarted,
                          timeout=90)
    assert after["metadata"]["uid"] == before["metadata"]["uid"]
    assert http_get(f"http://{after['status']['podIP']}:{PORT}/") == "envonly v2"


def test_pod_without_opt_in_rejects_env_change_as_upstream(kube: Kube, namespace: str,
                                                           podkit_images) -> None:
    kube.apply(pod("plain", namespace, [server_container("app", podkit_images.demo_v1, "v1")]))
    wait_ready(kube, "plain", namespace)

    try:
        kube.patch("pod", "plain", [
            {"op": "replace", "path": "/spec/containers/0/env/0/value", "value": "v2"},
        ], namespace=namespace)
    except KubectlError as err:
        assert UPSTREAM_REJECTION in err.stderr
    else:
        raise AssertionError("the apiserver accepted an env change on a pod without opt-in")
    env = kube.get("pod", "plain", namespace)["spec"]["containers"][0]["env"]
    assert env[0] == {"name": "PODKIT_VERSION", "value": "v1"}


def test_a_container_given_back_an_image_it_ran_restarts_without_back_off(
        kube: Kube, namespace: str, podkit_images) -> None:
    """Patch 0006: a container the kubelet replaces because its spec changed starts at once,
    also when it gets back an image it ran seconds ago (an A/B slot on every second swap).
    Upstream's kubelet keys its restart back-off by name and image, so the fourth change here
    (v1 again, three seconds after v1's last exit) would wait out 10 s in CrashLoopBackOff."""
    images = [podkit_images.demo_v1, podkit_images.demo_v2]
    kube.apply(pod("flip", namespace, [server_container("app", images[0], "v1")]))
    wait_ready(kube, "flip", namespace)
    held: list[str] = []  # every status seen with the container held back
    for n in range(1, 7):
        image = images[n % 2]
        kube.patch("pod", "flip", [{"op": "replace", "path": "/spec/containers/0/image",
                                    "value": image}], namespace=namespace)

        def restarted(count: int = n, image: str = image) -> bool:
            app = statuses(kube.get("pod", "flip", namespace))["app"]
            waiting = (app.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") == "CrashLoopBackOff":
                held.append(f"change {count}: {waiting.get('message')}")
            return bool(app["restartCount"] == count and app.get("ready")
                        and "running" in (app.get("state") or {}))
        kube.wait_for(f"change {n}: the container restarted on {image}", restarted,
                      timeout=90, interval=0.2)
    backoffs = [e["message"] for e in json.loads(kube.run(
        "get", "events", "-n", namespace, "-o", "json"))["items"]
        if e["reason"] == "BackOff" and e["involvedObject"].get("name") == "flip"]
    assert held == [] and backoffs == []
