"""The StatefulSetPlus spec as a typed value, with defaults and the checks CEL cannot make.

The CRD's schema and CEL rules reject most bad input at admission; what remains here is what
depends on several fields at once in ways CEL expresses badly (container names that would clash
with the expansion into slots) or what must hold for the operator to work at all. Every
:class:`SpecError` message says what to change.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from ..images import same_image
from .keys import API_VERSION, KIND
from .reasons import BatchAction, ConditionType, GeneralStatus

DEFAULT_PAUSE_IMAGE = "podkit.local/podkit-pause:dev"
DEFAULT_SIDECAR_IMAGE = "podkit.local/podkit-sidecar:dev"
DEFAULT_DEADLINE_S = 600
DEFAULT_HISTORY = 10
DEFAULT_CONFIG_HISTORY = 10
DEFAULT_CONFIG_HOOK = "none"
# minReadySeconds: a pod's new version must serve this long, unrestarted and ready, before the
# pod counts as updated; the default catches a version that crashes within 10 s of taking over
DEFAULT_MIN_READY_S = 10
SIDECAR_NAME = "podkit-sidecar"
RESERVED_VOLUMES = ("podkit", "podkit-shm")
_PERCENT_RE = re.compile(r"^\s*(\d{1,3})\s*%\s*$")
_COUNT_RE = re.compile(r"^\s*(\d+)\s*$")


class Strategy(StrEnum):
    """``spec.updateStrategy.type``: how one pod is updated."""

    AB_SWAP = "ABSwap"
    IN_PLACE = "InPlace"
    RECREATE = "Recreate"
    ROLLING_UPDATE = "RollingUpdate"  # as a StatefulSet: pods recreated, highest ordinal first


class PodManagement(StrEnum):
    """``spec.podManagementPolicy``: how pods are created and scaled down (as a StatefulSet)."""

    ORDERED_READY = "OrderedReady"
    PARALLEL = "Parallel"


class ClaimRetention(StrEnum):
    """``spec.persistentVolumeClaimRetentionPolicy.whenDeleted`` / ``whenScaled``."""

    RETAIN = "Retain"
    DELETE = "Delete"


class SpecError(ValueError):
    """A spec the operator cannot act on; the message says what to fix."""


@dataclass(frozen=True)
class StsPlusSpec:
    """What the operator reads from ``spec`` (defaults applied)."""

    replicas: int
    selector: dict[str, Any]
    service_name: str | None
    template: dict[str, Any]
    business: str
    strategy: Strategy = Strategy.AB_SWAP
    batch_num: int = 1
    batch_auto: bool = True
    batch_interval_s: int = 0
    pods_num_to_update: list[int | str] | None = None
    batch_deadline_s: int = DEFAULT_DEADLINE_S
    max_failed_percent: int = 0
    revision_history_limit: int = DEFAULT_HISTORY
    pause_image: str = DEFAULT_PAUSE_IMAGE
    sidecar_image: str = DEFAULT_SIDECAR_IMAGE
    config_maps: tuple[str, ...] = ()
    config_history_limit: int = DEFAULT_CONFIG_HISTORY
    config_hook: str = DEFAULT_CONFIG_HOOK
    min_ready_s: int = DEFAULT_MIN_READY_S
    # spec.volumeClaimTemplates (each a PersistentVolumeClaim body) and the retention policy
    # (podkit_operator.inplace.claims)
    claim_templates: tuple[dict[str, Any], ...] = ()
    claims_when_deleted: ClaimRetention = ClaimRetention.RETAIN
    claims_when_scaled: ClaimRetention = ClaimRetention.RETAIN
    pod_management: PodManagement = PodManagement.ORDERED_READY
    ordinals_start: int = 0
    partition: int = 0  # RollingUpdate: ordinals below start + partition keep the current revision
    # pods of a release that may be under way at once (None: no bound but the per-pass one)
    max_in_flight: int | None = None
    # pods that may be unavailable (not Ready, or being updated) before another update starts;
    # a count or "N%" of replicas (None: no bound)
    max_unavailable: int | str | None = None

    @property
    def paced(self) -> bool:
        """Updates start as pods allow (maxInFlight, maxUnavailable), not all at a batch's
        start: a batch's deadline then bounds each pod's update, not the batch."""
        return self.max_in_flight is not None or self.max_unavailable is not None

    @property
    def ordinals(self) -> range:
        """The ordinals the pods have: ``ordinals.start`` .. ``start + replicas - 1``."""
        return range(self.ordinals_start, self.ordinals_start + self.replicas)

    @property
    def config_volumes(self) -> tuple[str, ...]:
        """The template's volumes that mount a released ConfigMap (``spec.configMaps``)."""
        return config_volumes(self.template, self.config_maps)


def config_volumes(template: dict[str, Any], config_maps: tuple[str, ...]) -> tuple[str, ...]:
    """The volumes of ``template`` that mount one of ``config_maps``."""
    vols = template["spec"].get("volumes") or []
    return tuple(v["name"] for v in vols if (v.get("configMap") or {}).get("name") in config_maps)


def _int(value: Any, name: str, minimum: int = 0, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(f"{name} must be an integer, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise SpecError(f"{name} is {value}; set it {bound}")
    return value


def parse_pods_num(entry: int | str) -> tuple[str, int]:
    """``3`` -> ("count", 3); ``"50%"`` -> ("percent", 50); anything else is a SpecError."""
    if isinstance(entry, bool):
        raise SpecError(f"podsNumToUpdate entry {entry!r} is neither a count nor a percentage")
    if isinstance(entry, int):
        if entry < 0:
            raise SpecError(f"podsNumToUpdate entry {entry} is negative; use a count >= 0")
        return "count", entry
    if isinstance(entry, str):
        if m := _PERCENT_RE.match(entry):
            pct = int(m.group(1))
            if pct > 100:
                raise SpecError(f"podsNumToUpdate entry {entry!r} is above 100%")
            return "percent", pct
        if m := _COUNT_RE.match(entry):
            return "count", int(m.group(1))
    raise SpecError(f"podsNumToUpdate entry {entry!r} is neither a count (3) nor a "
                    "percentage (\"50%\")")


def scaled_count(value: int | str, total: int) -> int:
    """A count or ``"N%"`` of ``total`` (rounded up, as a StatefulSet's maxUnavailable), at
    least 1."""
    kind, n = parse_pods_num(value)
    return max(1, math.ceil(total * n / 100) if kind == "percent" else n)


def _max_unavailable(value: Any, name: str) -> int | str:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    if isinstance(value, str) and (m := _PERCENT_RE.match(value)) and 1 <= int(m.group(1)) <= 100:
        return value
    raise SpecError(f"{name} is {value!r}; give a count >= 1 or a percentage \"N%\" with N "
                    "from 1 to 100")


def _rolling(spec: dict[str, Any], strategy: Strategy, cfg: dict[str, Any]
             ) -> tuple[int, int | None, int | str | None]:
    """(partition, maxInFlight, maxUnavailable): RollingUpdate's from ``rollingUpdate`` (one
    pod at a time by default), the others' from ``batchDeployConfig`` (unbounded by default)."""
    strategy_obj = spec.get("updateStrategy") or {}
    if strategy is not Strategy.ROLLING_UPDATE:
        in_flight = cfg.get("maxInFlight")
        unavailable = cfg.get("maxUnavailable")
        return (0,
                None if in_flight is None else _int(in_flight, "batchDeployConfig.maxInFlight",
                                                    minimum=1),
                None if unavailable is None
                else _max_unavailable(unavailable, "batchDeployConfig.maxUnavailable"))
    if int(cfg.get("batchNum", 1)) != 1 or cfg.get("podsNumToUpdate") is not None:
        raise SpecError("updateStrategy.type RollingUpdate releases in one batch from the "
                        "highest ordinal down; remove batchNum/podsNumToUpdate and use "
                        "rollingUpdate.partition to hold pods back")
    rolling = strategy_obj.get("rollingUpdate") or {}
    unavailable = _max_unavailable(rolling.get("maxUnavailable", 1),
                                   "rollingUpdate.maxUnavailable")
    return (_int(rolling.get("partition", 0), "rollingUpdate.partition"), None, unavailable)


def _check_template(template: Any, strategy: Strategy, pause_image: str) -> str:
    """Check the template can be expanded; return the business container's name."""
    if not isinstance(template, dict) or not isinstance(template.get("spec"), dict):
        raise SpecError("spec.template.spec is missing; give a pod template with one container")
    containers = template["spec"].get("containers") or []
    if not containers or not containers[0].get("name") or not containers[0].get("image"):
        raise SpecError("spec.template.spec.containers[0] needs a name and an image "
                        "(the business container)")
    business = containers[0]
    name = business["name"]
    if strategy is not Strategy.AB_SWAP:
        return name
    if business.get("command") or business.get("args"):
        raise SpecError(f"container {name!r} sets command/args; remove them and let the "
                        "image's entrypoint (podkit run -- ...) decide, because the idle slot "
                        "runs the same container spec with the pause image")
    if same_image(business["image"], pause_image):
        raise SpecError(f"container {name!r} uses the pause image {pause_image}; give the "
                        "business image")
    taken = {f"{name}-a", f"{name}-b", SIDECAR_NAME}
    for other in containers[1:]:
        if other.get("name") in taken:
            raise SpecError(f"container name {other.get('name')!r} clashes with the slots or "
                            "the sidecar podkit adds; rename it")
    if len(f"{name}-a") > 63:
        raise SpecError(f"container name {name!r} is too long for the slot suffix; use at "
                        "most 61 characters")
    for vol in template["spec"].get("volumes") or []:
        if vol.get("name") in RESERVED_VOLUMES:
            raise SpecError(f"volume name {vol['name']!r} is reserved by podkit; rename it")
    return name


def _check_selector(selector: Any, template: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(selector, dict) or not (selector.get("matchLabels")
                                              or selector.get("matchExpressions")):
        raise SpecError("spec.selector is missing; set matchLabels matching the template's labels")
    labels = (template.get("metadata") or {}).get("labels") or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            raise SpecError(f"spec.selector.matchLabels {key}={value} is not among the "
                            "template's labels; add it to spec.template.metadata.labels")
    return selector


def _check_config_maps(spec: dict[str, Any], strategy: Strategy,
                       template: dict[str, Any]) -> tuple[tuple[str, ...], str]:
    """``spec.configMaps`` and the hook: each released ConfigMap is mounted whole by a
    configMap volume of the template, and only swap pods (with a sidecar) can report a
    config applied."""
    names = spec.get("configMaps") or []
    hook = (spec.get("podkit") or {}).get("configHook") or DEFAULT_CONFIG_HOOK
    if not names:
        return (), hook
    if strategy is not Strategy.AB_SWAP:
        raise SpecError("spec.configMaps needs updateStrategy.type ABSwap: the pod's sidecar "
                        "reports the config applied; remove spec.configMaps or use ABSwap")
    volumes = template["spec"].get("volumes") or []
    for name in names:
        mounts = [v for v in volumes if (v.get("configMap") or {}).get("name") == name]
        if not mounts:
            raise SpecError(f"spec.configMaps names {name!r} but no configMap volume of the "
                            "template mounts it; add a volume with configMap.name "
                            f"{name!r}")
        if any(v["configMap"].get("items") for v in mounts):
            raise SpecError(f"the volume of ConfigMap {name!r} lists items; a released "
                            "ConfigMap is mounted whole (remove items)")
    from podkit.errors import PodkitError
    from podkit.reload import Hook
    try:
        Hook.parse(hook)
    except PodkitError as exc:
        raise SpecError(f"podkit.configHook: {exc}") from None
    return tuple(names), hook


_DNS_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _check_claims(spec: dict[str, Any], config_volumes: tuple[str, ...]
                  ) -> tuple[tuple[dict[str, Any], ...], ClaimRetention, ClaimRetention]:
    """``spec.volumeClaimTemplates`` and ``spec.persistentVolumeClaimRetentionPolicy``. As a
    StatefulSet's, a claim template's volume replaces a template volume of the same name; a
    name podkit needs itself (its reserved volumes, a released ConfigMap's volume) is an
    error instead."""
    templates = spec.get("volumeClaimTemplates") or []
    if not isinstance(templates, list):
        raise SpecError("spec.volumeClaimTemplates must be a list of PersistentVolumeClaims")
    seen: set[str] = set()
    for claim in templates:
        name = ((claim or {}).get("metadata") or {}).get("name") if isinstance(claim, dict) \
            else None
        if not isinstance(name, str) or not _DNS_LABEL_RE.match(name):
            raise SpecError(f"spec.volumeClaimTemplates: metadata.name {name!r} must be a DNS "
                            "label (lower case letters, digits, '-'): it names the pods' volume")
        if name in seen:
            raise SpecError(f"spec.volumeClaimTemplates: {name!r} is given twice; one template "
                            "per volume name")
        if name in RESERVED_VOLUMES or name in config_volumes:
            raise SpecError(f"spec.volumeClaimTemplates: {name!r} is the name of a volume podkit "
                            "needs (its own, or a released ConfigMap's); rename the template")
        seen.add(name)
    policy = spec.get("persistentVolumeClaimRetentionPolicy") or {}
    out = []
    for key in ("whenDeleted", "whenScaled"):
        try:
            out.append(ClaimRetention(policy.get(key) or ClaimRetention.RETAIN))
        except ValueError:
            raise SpecError(f"persistentVolumeClaimRetentionPolicy.{key} {policy.get(key)!r} "
                            f"is unknown; use Retain or Delete") from None
    return tuple(templates), out[0], out[1]


def parse_spec(spec: dict[str, Any]) -> StsPlusSpec:
    """Parse and check ``spec`` of a StatefulSetPlus; raise :class:`SpecError` when unusable."""
    strategy_obj = spec.get("updateStrategy") or {}
    try:
        strategy = Strategy(strategy_obj.get("type") or Strategy.AB_SWAP)
    except ValueError:
        raise SpecError(f"updateStrategy.type {strategy_obj.get('type')!r} is unknown; use one "
                        f"of {', '.join(Strategy)}") from None
    podkit = spec.get("podkit") or {}
    pause_image = podkit.get("pauseImage") or DEFAULT_PAUSE_IMAGE
    sidecar_image = podkit.get("sidecarImage") or DEFAULT_SIDECAR_IMAGE
    template = spec.get("template") or {}
    business = _check_template(template, strategy, pause_image)
    selector = _check_selector(spec.get("selector"), template)
    config_maps, config_hook = _check_config_maps(spec, strategy, template)
    replicas = _int(spec.get("replicas", 1), "spec.replicas")
    claim_templates, when_deleted, when_scaled = _check_claims(
        spec, config_volumes(template, config_maps))
    cfg = strategy_obj.get("batchDeployConfig") or {}
    batch_num = _int(cfg.get("batchNum", 1), "batchDeployConfig.batchNum", minimum=1)
    pods_num = cfg.get("podsNumToUpdate")
    if pods_num is not None:
        if not isinstance(pods_num, list) or len(pods_num) != batch_num:
            raise SpecError(f"batchDeployConfig.podsNumToUpdate needs batchNum ({batch_num}) "
                            "entries, one cumulative target per batch, or leave it out for "
                            "an even split")
        for entry in pods_num:
            parse_pods_num(entry)
        pods_num = list(pods_num)
    partition, max_in_flight, max_unavailable = _rolling(spec, strategy, cfg)
    try:
        pod_management = PodManagement(spec.get("podManagementPolicy")
                                       or PodManagement.ORDERED_READY)
    except ValueError:
        raise SpecError(f"podManagementPolicy {spec.get('podManagementPolicy')!r} is unknown; "
                        f"use one of {', '.join(PodManagement)}") from None
    return StsPlusSpec(
        replicas=replicas,
        selector=selector,
        service_name=spec.get("serviceName") or None,
        template=template,
        business=business,
        strategy=strategy,
        batch_num=batch_num,
        batch_auto=bool(cfg.get("batchAuto", True)),
        batch_interval_s=_int(cfg.get("batchIntervalSeconds", 0),
                              "batchDeployConfig.batchIntervalSeconds"),
        pods_num_to_update=pods_num,
        batch_deadline_s=_int(cfg.get("batchDeadlineSeconds", DEFAULT_DEADLINE_S),
                              "batchDeployConfig.batchDeadlineSeconds", minimum=1),
        max_failed_percent=_int(cfg.get("maxFailedPercent", 0),
                                "batchDeployConfig.maxFailedPercent", maximum=100),
        revision_history_limit=_int(spec.get("revisionHistoryLimit", DEFAULT_HISTORY),
                                    "spec.revisionHistoryLimit"),
        pause_image=pause_image,
        sidecar_image=sidecar_image,
        config_maps=config_maps,
        config_history_limit=_int(spec.get("configHistoryLimit", DEFAULT_CONFIG_HISTORY),
                                  "spec.configHistoryLimit", minimum=1),
        config_hook=config_hook,
        min_ready_s=_int(spec.get("minReadySeconds", DEFAULT_MIN_READY_S),
                         "spec.minReadySeconds", maximum=3600),
        claim_templates=claim_templates,
        claims_when_deleted=when_deleted,
        claims_when_scaled=when_scaled,
        pod_management=pod_management,
        ordinals_start=_int((spec.get("ordinals") or {}).get("start", 0), "ordinals.start"),
        partition=partition,
        max_in_flight=max_in_flight,
        max_unavailable=max_unavailable,
    )


def selector_string(selector: dict[str, Any]) -> str:
    """A label selector as the string form the scale subresource reports (``a=b,c in (d)``)."""
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), sorted(expr.get("values") or [])
        if op == "In":
            parts.append(f"{key} in ({','.join(values)})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(values)})")
        elif op == "Exists":
            parts.append(str(key))
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts)


def owner_reference(stsp: dict[str, Any]) -> dict[str, Any]:
    """The controller owner reference to a StatefulSetPlus (garbage collection, ownership)."""
    meta = stsp["metadata"]
    return {"apiVersion": API_VERSION, "kind": KIND, "name": meta["name"],
            "uid": meta["uid"], "controller": True, "blockOwnerDeletion": True}


@dataclass(frozen=True)
class BatchDeployStatus:
    """``status.batchDeployStatus``: where the release stands, as the planner writes it."""

    action: BatchAction
    batch_order: int  # the current batch, 1-based
    batch_ordinal: int  # the lowest ordinal the batches so far reach
    batch_replicas: int  # the pods of the current batch
    deadline_time: str | None  # RFC 3339; None: no deadline (a one-key rollback)
    complete: bool  # the current batch (or rollback) converged
    success_percent: int
    progress: str  # "updated/total" of the current batch
    rollback_progress: str
    general: GeneralStatus

    def to_status(self) -> dict[str, Any]:
        """The object's form (a field without a value is left out)."""
        out: dict[str, Any] = {
            "action": self.action,
            "batchOrder": self.batch_order,
            "batchOrdinal": self.batch_ordinal,
            "batchReplicas": self.batch_replicas,
            "batchDeadlineTime": self.deadline_time,
            "currentDeployComplete": self.complete,
            "currentOrderSuccessPer": self.success_percent,
            "currentOrderProgress": self.progress,
            "currentRollbackProgress": self.rollback_progress,
            "generalStatus": self.general,
        }
        return {k: v for k, v in out.items() if v is not None}


@dataclass(frozen=True)
class Condition:
    """One status condition, without its transition time."""

    type: ConditionType
    status: str  # "True" | "False"
    reason: str
    message: str


def condition_status(status: dict[str, Any], ctype: ConditionType) -> str | None:
    """The ``status`` of the object's condition ``ctype`` (None when it has none)."""
    for c in status.get("conditions") or []:
        if c.get("type") == ctype:
            found: str | None = c.get("status")
            return found
    return None
