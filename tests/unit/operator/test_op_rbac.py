"""The operator's RBAC (deploy/rbac.yaml) is exactly what its code uses: no rule more, none less.

What the code uses is derived from the code, not from a list kept beside it:
- every call ``podkit_operator.kube.client.KubeIO`` makes, read from its source (the kubernetes
  client's method names say verb and resource: ``create_namespaced_pod`` is create on pods,
  ``list_namespaced_pod(watch=True)`` watch on them, a ``*_custom_object*`` call is on the
  StatefulSetPlus, ``call_api("/metrics", "GET")`` a
  non-resource URL);
- ``update`` on ``statefulsetplus/finalizers``, because the objects the operator creates carry
  an owner reference with ``blockOwnerDeletion`` (the apiserver's
  OwnerReferencesPermissionEnforcement asks for it);
- kopf's needs, from its registry of the operator's handlers: list and watch of every resource a
  handler serves, patch where a handler puts a finalizer (the daemon), create on core events
  (kopf posts them), and list and watch of CRDs (kopf follows them; the cluster-wide mode never
  lists namespaces).
A rule that nothing here derives fails the test, and so does a call without its rule.
"""

from __future__ import annotations

import ast
import inspect
import re

import kopf

import podkit_operator.controller  # noqa: F401  (registers every handler)
from podkit_operator import manifests
from podkit_operator.api.keys import GROUP, PLURAL
from podkit_operator.api.statefulsetplus import owner_reference
from podkit_operator.kube import client

Right = tuple[str, str, str]  # (API group, resource, verb); ("", "/metrics", "get") for a URL

CALL_RE = re.compile(r"^(?P<verb>create|delete|patch|replace|read|get|list)_namespaced_"
                     r"(?P<what>[a-z_]+?)(?P<sub>_status|_resize)?$")
VERBS = {"read": "get", "replace": "update"}
GROUPS = {"core": "", "apps": "apps", "discovery": "discovery.k8s.io", "custom": GROUP,
          "coordination": "coordination.k8s.io"}
RESOURCES = {"pod": "pods", "config_map": "configmaps", "controller_revision":
             "controllerrevisions", "endpoint_slice": "endpointslices",
             "custom_object": PLURAL, "lease": "leases",
             "persistent_volume_claim": "persistentvolumeclaims"}


def kube_io_rights() -> set[Right]:
    """Every apiserver call in KubeIO's source, as a right."""
    tree = ast.parse(inspect.getsource(client.KubeIO))
    rights: set[Right] = set()
    for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call)):
        func = call.func
        if not (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Attribute)
                and isinstance(func.value.value, ast.Name) and func.value.value.id == "self"):
            continue  # only self.<api client>.<method>(...) reaches the apiserver
        api, method = func.value.attr, func.attr
        if api == "pods":
            continue  # the pod index its writes' answers go to (kube.podindex): no call
        if method == "call_api":
            path, verb = (a.value for a in call.args[:2])  # type: ignore[attr-defined]
            rights.add(("", path, verb.lower()))
            continue
        match = CALL_RE.match(method)
        assert match and api in GROUPS, f"KubeIO calls {api}.{method}: teach this test its right"
        resource = RESOURCES[match["what"]] + (match["sub"] or "").replace("_", "/")
        verb = VERBS.get(match["verb"], match["verb"])
        if verb == "list" and any(k.arg == "watch" for k in call.keywords):
            verb = "watch"  # list_*(watch=True) opens a watch
        rights.add((GROUPS[api], resource, verb))
    return rights


def owner_rights() -> set[Right]:
    owner = owner_reference({"metadata": {"name": "x", "uid": "u"}})
    return {(GROUP, f"{PLURAL}/finalizers", "update")} if owner["blockOwnerDeletion"] else set()


def owner_setting_rights() -> set[Right]:
    """Delete on what a ``set_*_owners`` method of KubeIO patches: the apiserver's
    OwnerReferencesPermissionEnforcement lets only who may delete an object set its
    ownerReferences."""
    tree = ast.parse(inspect.getsource(client.KubeIO))
    rights: set[Right] = set()
    for method in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)
                   and n.name.startswith("set_") and n.name.endswith("_owners")):
        for call in (n for n in ast.walk(method) if isinstance(n, ast.Call)
                     and isinstance(n.func, ast.Attribute) and n.func.attr.startswith("patch_")):
            match = CALL_RE.match(call.func.attr)  # type: ignore[attr-defined]
            assert match, f"{method.name} patches with {call.func.attr}"  # type: ignore[attr-defined]
            api = call.func.value.attr  # type: ignore[attr-defined]
            rights.add((GROUPS[api], RESOURCES[match["what"]], "delete"))
    return rights


def kopf_rights() -> set[Right]:
    registry = kopf.get_default_registry()
    rights: set[Right] = {("", "events", "create"),
                          ("apiextensions.k8s.io", "customresourcedefinitions", "list"),
                          ("apiextensions.k8s.io", "customresourcedefinitions", "watch")}
    for kind in ("_indexing", "_watching", "_spawning", "_changing", "_webhooks"):
        for handler in getattr(registry, kind).get_all_handlers():
            selector = handler.selector
            rights |= {(selector.group or "", selector.any_name, v) for v in ("list", "watch")}
            if getattr(handler, "requires_finalizer", False):
                rights.add((selector.group or "", selector.any_name, "patch"))
    return rights


def granted(rules: list[dict]) -> set[Right]:
    rights: set[Right] = set()
    for rule in rules:
        names = rule.get("nonResourceURLs") or rule["resources"]
        groups = rule.get("apiGroups") or [""]
        rights |= {(g, n, v) for g in groups for n in names for v in rule["verbs"]}
    return rights


def used() -> set[Right]:
    return kube_io_rights() | owner_rights() | owner_setting_rights() | kopf_rights()


def test_the_roles_grant_exactly_what_the_code_uses() -> None:
    """The ClusterRole and the leader election's Role (leases in the operator's namespace)."""
    rules = (manifests.find("ClusterRole", manifests.SERVICE_ACCOUNT)["rules"]
             + manifests.find("Role", f"{manifests.SERVICE_ACCOUNT}-leader")["rules"])
    have = granted(rules)
    assert sorted(have - used()) == [], "rules nothing in the code uses"
    assert sorted(used() - have) == [], "calls without a rule"


def test_the_derivation_sees_the_calls_it_must() -> None:
    """The parts of the derivation that would silently shrink if the source moved."""
    rights = kube_io_rights()
    assert {("", "pods", "create"), ("", "pods", "delete"), ("", "pods", "patch"),
            (GROUP, f"{PLURAL}/status", "patch"), ("", "/metrics", "get"),
            ("discovery.k8s.io", "endpointslices", "update")} <= rights
    assert {("", "pods", "watch"), (GROUP, PLURAL, "patch")} <= kopf_rights()
    assert {("", "configmaps", "delete"),
            ("", "persistentvolumeclaims", "delete")} <= owner_setting_rights()


def test_one_rule_per_resource_so_additions_merge() -> None:
    rules = manifests.find("ClusterRole", manifests.SERVICE_ACCOUNT)["rules"]
    keys = [(tuple(r.get("apiGroups", [])), tuple(r.get("resources") or r["nonResourceURLs"]))
            for r in rules]
    assert all(len(k[1]) == 1 for k in keys) and len(set(keys)) == len(keys)
