"""The operator deployed as a user deploys it: ``kubectl apply -k operator/deploy`` on the full
cluster, its image built here, running unprivileged with its least-privilege RBAC, and
reconciling a StatefulSetPlus of the demo service."""

from __future__ import annotations

import json

from podkit_operator.api import keys
from testbed.fixtures import Images
from testbed.kube import Kube


def test_deployed_operator_reconciles_a_statefulsetplus(deployed_operator: str, kube: Kube,
                                                        namespace: str,
                                                        podkit_images: Images) -> None:
    pod = json.loads(kube.run("get", "pods", "-n", deployed_operator, "-o", "json"))["items"][0]
    assert pod["spec"]["containers"][0]["image"] == podkit_images.operator
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True

    kube.apply({
        "apiVersion": f"{keys.GROUP}/{keys.VERSION}", "kind": keys.KIND,
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {"replicas": 2, "podManagementPolicy": "Parallel",
                 "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web",
                                                       "image": podkit_images.demo_v1,
                                                       "imagePullPolicy": "Never"}]}},
                 "podkit": {"pauseImage": podkit_images.pause,
                            "sidecarImage": podkit_images.sidecar}}})

    def converged() -> bool:
        status = kube.get(keys.PLURAL, "web", namespace).get("status") or {}
        return status.get("readyReplicas") == 2 and (
            status.get("batchDeployStatus", {}).get("generalStatus") == "Completed")

    kube.wait_for("the deployed operator to bring up 2 pods", converged, timeout=240)
    status = kube.get(keys.PLURAL, "web", namespace)["status"]
    mode = next(c for c in status["conditions"] if c["type"] == "SwapMode")
    # read from the apiserver's feature-gate metric, through the operator's RBAC
    assert mode["reason"] == "Patched", mode
