"""Pod bodies: a swap pod (slots a and b plus the sidecar) or a plain pod, from a template.

The business container of the template becomes two symmetric slots: the active one runs the
business image, the idle one the pause image; both carry the same spec otherwise, so a swap only
changes images (and on a patched cluster the version env). Decisions:
- the slots' readiness probe asks the sidecar about the slot over HTTP (``/readyz/slot/<s>``:
  the slot is up, idle, standing by or active; an exec probe would start a process in the
  container every second, and those starts showed up as 10 ms stalls of the serving slot on a
  2-core node), because a business readiness probe would fail in the idle slot; liveness and startup
  probes of the business container are dropped from the slots for the same reason, and all three
  go to the sidecar instead (env ``PODKIT_PROBES``), which runs them against the active slot
  (:mod:`podkit.probes`) and fails that slot's readiness when they fail;
- one reservation per pod: the slot that serves requests the business container's cpu and
  memory, the other slot requests the least there is (:data:`IDLE_REQUESTS`); both keep its
  limits, so either runs the business unthrottled the moment it takes over, and the swap moves
  the requests to the new slot with ``pods/resize`` once the old one has the pause image
  (:func:`slot_resources`; why not pod-level resources: docs/architecture.md, "One
  reservation per pod");
- container ports are declared on slot a only (a port name may appear once per pod);
- probes run every second: the swap advances on what they report, never on a sleep;
- the slots and the sidecar pass Pod Security ``restricted`` unless the template asks for more
  (:func:`restricted_context`; which podkit feature needs what: docs/operator.md, "Pod
  security"); the sidecar runs as the business container's uid when the template names one,
  because the slots' control socket is 0600;
- the sidecar gets a random bearer token for ``/state`` and ``/metrics`` (``podkit.sidecar``);
  the operator reads it back from the pod (:func:`sidecar_token`), so it is never stored
  elsewhere.
"""

from __future__ import annotations

import copy
import json
import secrets
from dataclasses import dataclass
from typing import Any

from podkit.sidecar import TOKEN_ENV as SIDECAR_TOKEN_ENV

from ..api.keys import ANN_ACTIVE_SLOT, ANN_CONFIG_APPLIED, ANN_MUTABLE, ANN_REVISION, LABEL_STSP
from ..api.statefulsetplus import RESERVED_VOLUMES, SIDECAR_NAME, StsPlusSpec, owner_reference
from ..revisions.revision import version_of
from .claims import with_claims
from .config import config_key, sidecar_dir

PODKIT_DIR = "/podkit"
SIDECAR_PORT = 9901
SLOT_ENV = ("PODKIT_SLOT", "PODKIT_DIR", "PODKIT_VERSION")
# Measured: `podkit sidecar` with a config watcher holds 27 MiB RSS, also after 400 requests of
# /state and /metrics; it answers three probes a second. The limits leave room for a command
# hook, which runs inside the sidecar.
SIDECAR_RESOURCES = {"requests": {"cpu": "20m", "memory": "64Mi"},
                     "limits": {"cpu": "500m", "memory": "256Mi"}}

# What the slot that does not serve requests of each of cpu and memory that the business
# requests: the least the kubelet grants (cpu shares and memory are not rounded below these).
IDLE_REQUESTS = {"cpu": "1m", "memory": "1Mi"}


def slot_resources(business: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The resources of the serving slot and of the other one, from the business container's.

    The serving slot's requests are spelled out as the API would default them (a limit without
    a request requests the limit), so that a slot taking over gets them back by a resize; the
    other slot requests :data:`IDLE_REQUESTS` of cpu and memory instead, its limits and other
    resources as the business's. Without cpu/memory requests both are the business's."""
    resources = business.get("resources") or {}
    requests = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
    if not requests:
        return copy.deepcopy(resources), copy.deepcopy(resources)
    idle = {k: IDLE_REQUESTS.get(k, v) for k, v in requests.items()}
    return (copy.deepcopy({**resources, "requests": requests}),
            copy.deepcopy({**resources, "requests": idle}))


def slot_names(business: str) -> tuple[str, str]:
    """The two slot container names of a business container."""
    return f"{business}-a", f"{business}-b"


def pod_name(stsp_name: str, ordinal: int) -> str:
    """``<stsp>-<ordinal>``, as a StatefulSet names its pods."""
    return f"{stsp_name}-{ordinal}"


def ordinal_of(stsp_name: str, pod: dict[str, Any]) -> int | None:
    """The ordinal of a pod named ``<stsp>-<n>``, else None (not one of ours)."""
    name = pod.get("metadata", {}).get("name", "")
    prefix = f"{stsp_name}-"
    rest = name[len(prefix):] if name.startswith(prefix) else ""
    if rest.isdigit() and str(int(rest)) == rest:
        return int(rest)
    return None


def _probe_timing() -> dict[str, int]:
    return {"periodSeconds": 1, "timeoutSeconds": 1, "successThreshold": 1,
            "failureThreshold": 1}


def slot_env(business_env: list[dict[str, Any]] | None, slot: str, version: str | None,
             patched: bool) -> list[dict[str, Any]]:
    """The business env without podkit's variables, plus PODKIT_SLOT, PODKIT_DIR (and
    PODKIT_VERSION on a patched cluster; on a stock cluster the image's baked value counts)."""
    env = [copy.deepcopy(e) for e in business_env or [] if e.get("name") not in SLOT_ENV]
    env.append({"name": "PODKIT_SLOT", "value": slot})
    env.append({"name": "PODKIT_DIR", "value": PODKIT_DIR})
    if patched and version:
        env.append({"name": "PODKIT_VERSION", "value": version})
    return env


def restricted_context(context: dict[str, Any] | None,
                       pod_context: dict[str, Any] | None) -> dict[str, Any]:
    """A container's ``securityContext`` with what Pod Security ``restricted`` asks for filled
    in where the template (``context``, or the pod's ``pod_context``) says nothing: no
    privilege escalation, every capability dropped, a non-root user (unless the template names
    uid 0), the runtime's seccomp profile. What the template sets wins, so a feature that needs
    more (CAP_SYS_NICE for the CPU priorities, root) keeps it, and only that feature's pods
    leave ``restricted``."""
    ctx = copy.deepcopy(context or {})
    pod_ctx = pod_context or {}
    ctx.setdefault("allowPrivilegeEscalation", False)
    caps = ctx.setdefault("capabilities", {})
    caps.setdefault("drop", ["ALL"])
    uid = ctx.get("runAsUser", pod_ctx.get("runAsUser"))
    if "runAsNonRoot" not in ctx and "runAsNonRoot" not in pod_ctx and uid != 0:
        ctx["runAsNonRoot"] = True
    if "seccompProfile" not in ctx and "seccompProfile" not in pod_ctx:
        ctx["seccompProfile"] = {"type": "RuntimeDefault"}
    return ctx


def sidecar_context(business: dict[str, Any], pod_context: dict[str, Any] | None
                    ) -> dict[str, Any]:
    """``restricted``, as the business container's uid and gid when the template names them
    (the slots' control socket admits only their uid), else the image's (65532, as every
    podkit image)."""
    business_ctx = business.get("securityContext") or {}
    pod_ctx = pod_context or {}
    ctx: dict[str, Any] = {}
    for key in ("runAsUser", "runAsGroup"):
        value = business_ctx.get(key, pod_ctx.get(key))
        if value is not None:
            ctx[key] = value
    if ctx.get("runAsUser") == 0:
        ctx["runAsNonRoot"] = False
    return restricted_context(ctx, None)


def build_slot(business: dict[str, Any], slot: str, image: str, version: str | None,
               patched: bool, ports: bool, resources: dict[str, Any],
               pod_context: dict[str, Any] | None = None) -> dict[str, Any]:
    """One slot container from the business container, with ``resources``."""
    c = copy.deepcopy(business)
    if resources:
        c["resources"] = resources
    c["securityContext"] = restricted_context(business.get("securityContext"), pod_context)
    c["name"] = f"{business['name']}-{slot}"
    c["image"] = image
    c["env"] = slot_env(business.get("env"), slot, version, patched)
    mounts = [m for m in c.get("volumeMounts") or []
              if m.get("mountPath") not in (PODKIT_DIR, "/dev/shm")]
    mounts += [{"name": "podkit", "mountPath": PODKIT_DIR},
               {"name": "podkit-shm", "mountPath": "/dev/shm"}]
    c["volumeMounts"] = mounts
    c["readinessProbe"] = {"httpGet": {"path": f"/readyz/slot/{slot}", "port": SIDECAR_PORT},
                           **_probe_timing()}
    c.pop("livenessProbe", None)
    c.pop("startupProbe", None)
    if not ports:
        c.pop("ports", None)
    return c


PROBE_KINDS = {"readinessProbe": "readiness", "livenessProbe": "liveness",
               "startupProbe": "startup"}


def business_probes(business: dict[str, Any]) -> str | None:
    """The business container's probes as the sidecar runs them (``PODKIT_PROBES``, JSON),
    named ports resolved against its ports; None when it has none."""
    ports = {p.get("name"): p.get("containerPort") for p in business.get("ports") or []}
    probes = {}
    for field, kind in PROBE_KINDS.items():
        probe = copy.deepcopy(business.get(field))
        if not probe:
            continue
        for action in ("httpGet", "tcpSocket"):
            if isinstance((probe.get(action) or {}).get("port"), str):
                name = probe[action]["port"]
                probe[action]["port"] = ports.get(name, int(name) if name.isdigit() else name)
        probes[kind] = probe
    return json.dumps(probes, sort_keys=True, separators=(",", ":")) if probes else None


def build_sidecar(spec: StsPlusSpec, business: dict[str, Any],
                  pod_context: dict[str, Any] | None = None) -> dict[str, Any]:
    """The referee: reports the slots, serves /readyz (the pod's readiness) and /metrics; it
    watches the released ConfigMaps' volumes (read-only, at /podkit-config/<volume>) and runs
    the config hook when their content changes; it runs ``business``'s probes against the
    active slot. Its bearer token is the pod's own (:func:`build_pod` adds it), never part of
    what a revision runs."""
    env = [{"name": "PODKIT_DIR", "value": PODKIT_DIR}]
    if probes := business_probes(business):
        env.append({"name": "PODKIT_PROBES", "value": probes})
    mounts: list[dict[str, Any]] = [{"name": "podkit", "mountPath": PODKIT_DIR}]
    if spec.config_volumes:
        dirs = [sidecar_dir(v) for v in spec.config_volumes]
        env += [{"name": "PODKIT_CONFIG_DIRS", "value": ":".join(dirs)},
                {"name": "PODKIT_CONFIG_HOOK", "value": spec.config_hook}]
        mounts += [{"name": v, "mountPath": d, "readOnly": True}
                   for v, d in zip(spec.config_volumes, dirs, strict=True)]
    return {
        "name": SIDECAR_NAME,
        "image": spec.sidecar_image,
        "env": env,
        "ports": [{"name": "podkit-sidecar", "containerPort": SIDECAR_PORT, "protocol": "TCP"}],
        "volumeMounts": mounts,
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": SIDECAR_PORT},
                           **_probe_timing()},
        "resources": copy.deepcopy(SIDECAR_RESOURCES),
        "securityContext": sidecar_context(business or {}, pod_context),
    }


def sidecar_token(pod: dict[str, Any]) -> str | None:
    """The bearer token of the pod's sidecar (its ``PODKIT_SIDECAR_TOKEN``), if it has one."""
    for container in (pod.get("spec") or {}).get("containers") or []:
        if container.get("name") == SIDECAR_NAME:
            for env in container.get("env") or []:
                if env.get("name") == SIDECAR_TOKEN_ENV:
                    return str(env.get("value") or "") or None
    return None


def _base_pod(stsp_obj: dict[str, Any], spec: StsPlusSpec, ordinal: int, revision: str,
              template: dict[str, Any]) -> dict[str, Any]:
    meta = stsp_obj["metadata"]
    tmeta = template.get("metadata") or {}
    name = pod_name(meta["name"], ordinal)
    pod_spec = copy.deepcopy(template["spec"])
    pod_spec["hostname"] = name
    if spec.claim_templates:
        pod_spec["volumes"] = with_claims(pod_spec.get("volumes") or [], spec, name)
    if spec.service_name:
        pod_spec["subdomain"] = spec.service_name
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": meta.get("namespace"),
            "labels": {**(tmeta.get("labels") or {}), LABEL_STSP: meta["name"]},
            "annotations": {**(tmeta.get("annotations") or {}), ANN_REVISION: revision},
            "ownerReferences": [owner_reference(stsp_obj)],
        },
        "spec": pod_spec,
    }


@dataclass(frozen=True)
class SwapLayout:
    """What every swap pod of one revision runs, built once per pass and shared by its pods
    (read-only): the containers (slot a active, slot b idle, the others, the sidecar) and the
    volumes before each pod's own claims. At 2,000 pods, building them again per pod was a
    third of a planner pass."""

    containers: list[dict[str, Any]]
    volumes: list[dict[str, Any]]

    def of_pod(self, spec: StsPlusSpec, pod: str, serving: str | None = None
               ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The containers and the volumes (with its claims') of swap pod ``pod``, whose slot
        ``serving`` (slot a when None) carries the business's requests."""
        containers = self.containers
        slot_a, slot_b = containers[:2]  # the layout's slot a serves
        if serving == slot_b["name"] and slot_a.get("resources") != slot_b.get("resources"):
            containers = [{**slot_a, "resources": slot_b["resources"]},
                          {**slot_b, "resources": slot_a["resources"]}, *containers[2:]]
        return containers, with_claims(self.volumes, spec, pod)


def swap_layout(spec: StsPlusSpec, template: dict[str, Any], patched: bool) -> SwapLayout:
    """The swap pods' layout at the revision whose template is ``template``."""
    containers = template["spec"]["containers"]
    business = next(c for c in containers if c["name"] == spec.business)
    version = version_of(template, spec.business)
    pod_context = template["spec"].get("securityContext")
    serving, idle = slot_resources(business)
    slot_a = build_slot(business, "a", business["image"], version, patched, ports=True,
                        resources=serving, pod_context=pod_context)
    slot_b = build_slot(business, "b", spec.pause_image, version, patched, ports=False,
                        resources=idle, pod_context=pod_context)
    others = [copy.deepcopy(c) for c in containers if c["name"] != spec.business]
    volumes = [copy.deepcopy(v) for v in template["spec"].get("volumes") or []
               if v.get("name") not in RESERVED_VOLUMES]
    volumes += [{"name": "podkit", "emptyDir": {}},
                {"name": "podkit-shm", "emptyDir": {"medium": "Memory"}}]
    return SwapLayout([slot_a, slot_b, *others, build_sidecar(spec, business, pod_context)],
                      volumes)


def build_pod(stsp_obj: dict[str, Any], spec: StsPlusSpec, ordinal: int, revision: str,
              template: dict[str, Any], patched: bool) -> dict[str, Any]:
    """A swap pod at ``revision`` (whose template is ``template``): slot a active."""
    pod = _base_pod(stsp_obj, spec, ordinal, revision, template)
    pod["spec"]["containers"], pod["spec"]["volumes"] = swap_layout(
        spec, template, patched).of_pod(spec, pod["metadata"]["name"])
    pod["spec"]["containers"][-1]["env"].append(
        {"name": SIDECAR_TOKEN_ENV, "value": secrets.token_urlsafe(32)})
    ann = pod["metadata"]["annotations"]
    ann[ANN_ACTIVE_SLOT] = "a"
    if patched:
        ann[ANN_MUTABLE] = "true"
    if spec.config_volumes:  # the sidecar starts with this content: applied from the start
        ann[ANN_CONFIG_APPLIED] = config_key(pod["spec"], spec.config_volumes)
    return pod


def build_plain_pod(stsp_obj: dict[str, Any], spec: StsPlusSpec, ordinal: int, revision: str,
                    template: dict[str, Any]) -> dict[str, Any]:
    """A pod for the InPlace and Recreate strategies: the template as is, no slots."""
    return _base_pod(stsp_obj, spec, ordinal, revision, template)
