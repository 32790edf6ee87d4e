"""The operator's deploy manifests, shipped inside this package (``deploy/``).

``operator/deploy`` is a kustomization that points at the same files, so
``kubectl apply -k operator/deploy`` and these functions see identical objects:

    from podkit_operator import manifests
    manifests.crd()            # the StatefulSetPlus CustomResourceDefinition (a dict)
    manifests.deploy_objects() # every object of the kustomization, in its order
"""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from .api.keys import CRD_NAME, VERSION

DEPLOY_DIR = Path(__file__).resolve().parent / "deploy"

NAMESPACE = "podkit-system"
SERVICE_ACCOUNT = "podkit-operator"
OPERATOR_IMAGE = "podkit.local/podkit-operator:dev"


@cache
def _documents(name: str) -> tuple[dict[str, Any], ...]:
    text = (DEPLOY_DIR / name).read_text()
    return tuple(doc for doc in yaml.safe_load_all(text) if doc)


def load(name: str) -> list[dict[str, Any]]:
    """The objects of one file of ``deploy/`` (fresh copies: callers may change them)."""
    return copy.deepcopy(list(_documents(name)))


def files() -> list[str]:
    """The files the kustomization lists, in its order."""
    kustomization = _documents("kustomization.yaml")[0]
    return list(kustomization["resources"])


def deploy_objects() -> list[dict[str, Any]]:
    """Every object ``kubectl apply -k operator/deploy`` applies, in the kustomization's order."""
    return [obj for name in files() for obj in load(name)]


def crd() -> dict[str, Any]:
    """The StatefulSetPlus CustomResourceDefinition."""
    found = [o for o in load("crd.yaml") if o.get("kind") == "CustomResourceDefinition"]
    if len(found) != 1 or found[0]["metadata"]["name"] != CRD_NAME:
        raise ValueError(f"{DEPLOY_DIR / 'crd.yaml'} must hold exactly the CRD {CRD_NAME}")
    return found[0]


def schema() -> dict[str, Any]:
    """The openAPIV3Schema of the served version (v1alpha1)."""
    version = next(v for v in crd()["spec"]["versions"] if v["name"] == VERSION)
    return version["schema"]["openAPIV3Schema"]


def find(kind: str, name: str | None = None) -> dict[str, Any]:
    """The one deploy object of ``kind`` (and ``name``, when given)."""
    found = [o for o in deploy_objects() if o.get("kind") == kind
             and (name is None or o["metadata"]["name"] == name)]
    if len(found) != 1:
        raise LookupError(f"{len(found)} deploy objects of kind {kind}"
                          + (f" named {name}" if name else "") + ", expected 1")
    return found[0]
