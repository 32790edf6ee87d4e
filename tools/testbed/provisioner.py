"""The testbed's volume provisioner: a directory on the node per claim of StorageClass
``podkit-local``, mounted by the kubelet as a hostPath PersistentVolume.

kube-controller-manager's own hostPath provisioner (``--enable-hostpath-provisioner``) makes
each directory with mode 0750, owned by the controller-manager's user (root here), and the kubelet
applies no fsGroup to hostPath volumes: podkit's pods, which run as uid 65532, could not write
to their claims. This one makes the directory owned by the class's ``uid``/``gid``
parameters (65532 by default) with mode 0770, and removes it when a volume of reclaim policy
Delete is released.

It runs as a process of the testbed, like the others (``python -m testbed.provisioner
--kubeconfig K --root DIR``), polls claims and volumes once a second, and needs no kubelet:
an API-only cluster runs it too when asked (claims bind the same way; kwok mounts nothing).
It stops by itself once its cluster's kubeconfig is gone (the state directory removed).
The one-node cluster has no topology, so a volume has no node affinity.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

PROVISIONER = "podkit.io/testbed-local"
CLASS_NAME = "podkit-local"
ANN_PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
DEFAULT_OWNER = 65532  # podkit's images run as this uid and gid
POLL_S = 1.0


def storage_class() -> dict[str, Any]:
    """The default StorageClass of the testbed's clusters."""
    return {
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": CLASS_NAME,
                     "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "Immediate",
        "parameters": {"uid": str(DEFAULT_OWNER), "gid": str(DEFAULT_OWNER)},
    }


def volume_name(claim: dict[str, Any]) -> str:
    return f"pvc-{claim['metadata']['uid']}"


def volume_for(claim: dict[str, Any], klass: dict[str, Any], root: Path) -> dict[str, Any]:
    """The PersistentVolume of ``claim``: bound to it by ``claimRef`` (the controller-manager's
    binder completes the binding), its capacity what the claim requests."""
    meta = claim["metadata"]
    spec = claim.get("spec") or {}
    storage = ((spec.get("resources") or {}).get("requests") or {}).get("storage", "1Gi")
    return {
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": volume_name(claim),
                     "annotations": {ANN_PROVISIONED_BY: PROVISIONER}},
        "spec": {
            "capacity": {"storage": storage},
            "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": klass.get("reclaimPolicy") or "Delete",
            "storageClassName": klass["metadata"]["name"],
            "volumeMode": spec.get("volumeMode") or "Filesystem",
            "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                         "namespace": meta["namespace"], "name": meta["name"],
                         "uid": meta["uid"]},
            "hostPath": {"path": str(root / volume_name(claim)), "type": "Directory"},
        },
    }


def wanting(claims: list[dict[str, Any]], classes: dict[str, dict[str, Any]],
            volumes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The claims of one of ``classes`` that are Pending and have no volume yet."""
    have = {((v["spec"].get("claimRef") or {}).get("uid")) for v in volumes}
    return [c for c in claims
            if (c.get("spec") or {}).get("storageClassName") in classes
            and not (c.get("spec") or {}).get("volumeName")
            and (c.get("status") or {}).get("phase", "Pending") == "Pending"
            and not (c["metadata"].get("deletionTimestamp"))
            and c["metadata"]["uid"] not in have]


def released(volumes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Volumes of this provisioner whose claim is gone and whose policy deletes them."""
    return [v for v in volumes
            if (v["metadata"].get("annotations") or {}).get(ANN_PROVISIONED_BY) == PROVISIONER
            and (v.get("status") or {}).get("phase") in ("Released", "Failed")
            and v["spec"].get("persistentVolumeReclaimPolicy") == "Delete"]


def make_dir(path: Path, klass: dict[str, Any]) -> None:
    params = klass.get("parameters") or {}
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o770)
    if os.geteuid() == 0:
        os.chown(path, int(params.get("uid", DEFAULT_OWNER)), int(params.get("gid", DEFAULT_OWNER)))


class Provisioner:
    """One pass at a time over the cluster's claims and volumes (:meth:`step`)."""

    def __init__(self, kubeconfig: Path, root: Path) -> None:
        from kubernetes import client, config  # the tools' environment has the operator's

        self.root, self.kubeconfig = root, kubeconfig
        api = config.new_client_from_config(config_file=str(kubeconfig))
        self.core = client.CoreV1Api(api)
        self.storage = client.StorageV1Api(api)
        self.api = api

    def _items(self, call: Any, *args: Any) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.api.sanitize_for_serialization(call(*args))["items"]
        return found

    def step(self) -> None:
        classes = {c["metadata"]["name"]: c for c in self._items(self.storage.list_storage_class)
                   if c.get("provisioner") == PROVISIONER}
        if not classes:
            return
        claims = self._items(self.core.list_persistent_volume_claim_for_all_namespaces)
        volumes = self._items(self.core.list_persistent_volume)
        for claim in wanting(claims, classes, volumes):
            klass = classes[claim["spec"]["storageClassName"]]
            body = volume_for(claim, klass, self.root)
            make_dir(Path(body["spec"]["hostPath"]["path"]), klass)
            self.core.create_persistent_volume(body)
        for volume in released(volumes):
            path = Path(volume["spec"]["hostPath"]["path"])
            if path.parent == self.root:  # never anything outside its own directory
                shutil.rmtree(path, ignore_errors=True)
            self.core.delete_persistent_volume(volume["metadata"]["name"])

    def run(self) -> None:
        from kubernetes.client.rest import ApiException
        from urllib3.exceptions import HTTPError

        self.root.mkdir(parents=True, exist_ok=True)
        while self.kubeconfig.exists():  # gone: the cluster was taken down (by any version)
            try:
                self.step()
            except (ApiException, HTTPError, OSError) as exc:  # the next pass retries
                print(f"provisioner pass failed: {exc}", file=sys.stderr, flush=True)
            time.sleep(POLL_S)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m testbed.provisioner",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--root", type=Path, required=True, help="where the volumes' dirs go")
    args = parser.parse_args(argv)
    Provisioner(args.kubeconfig, args.root).run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
