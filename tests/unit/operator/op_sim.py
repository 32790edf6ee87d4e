"""Test scaffolding for the operator's pure logic: a strategic-merge-like patch, a fake kubelet
and a controller loop that applies plans to plain dicts. No mocks, no API."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import re
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from podkit_operator.api.keys import ANN_TARGET
from podkit_operator.api.statefulsetplus import DEFAULT_PAUSE_IMAGE, parse_spec
from podkit_operator.images import normalize_image, same_image
from podkit_operator.inplace.specdiff import DiffMemo
from podkit_operator.kube.objects import parse_time, rfc3339
from podkit_operator.releases.actions import Plan
from podkit_operator.releases.plan import choose_revisions, plan_release
from podkit_operator.revisions.revision import CurrentAndUpdate, RevisionInfo, with_podkit

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
V1 = "podkit.local/podkit-demo:v1"
V2 = "podkit.local/podkit-demo:v2"
V3 = "podkit.local/podkit-demo:v3"
PAUSE = DEFAULT_PAUSE_IMAGE


def template(image: str = V1, env: list[dict] | None = None) -> dict[str, Any]:
    c: dict[str, Any] = {"name": "web", "image": image,
                         "ports": [{"name": "http", "containerPort": 8080}]}
    if env:
        c["env"] = env
    return {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [c]}}


def make_stsp(replicas: int = 6, image: str = V1, batch_num: int = 3, auto: bool = True,
              pods_num: list | None = None, interval: int = 0, deadline: int = 600,
              max_failed: int = 0, strategy: str = "ABSwap",
              annotations: dict | None = None,
              pod_management: str = "Parallel") -> dict[str, Any]:
    """A StatefulSetPlus; pods are created at once (``Parallel``) unless a test is about
    their order (``pod_management="OrderedReady"``, the API's default)."""
    cfg: dict[str, Any] = {"batchNum": batch_num, "batchAuto": auto,
                           "batchIntervalSeconds": interval, "batchDeadlineSeconds": deadline,
                           "maxFailedPercent": max_failed}
    if pods_num is not None:
        cfg["podsNumToUpdate"] = pods_num
    return {
        "apiVersion": "podkit.io/v1alpha1", "kind": "StatefulSetPlus",
        "metadata": {"name": "web", "namespace": "default", "uid": "uid-1", "generation": 1,
                     "annotations": dict(annotations or {})},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                 "serviceName": "web", "template": template(image),
                 "podManagementPolicy": pod_management,
                 "updateStrategy": {"type": strategy, "batchDeployConfig": cfg}},
    }


def apply_patch(pod: dict[str, Any], patch: dict[str, Any]) -> None:
    """Strategic merge for what the operator sends: annotations (None deletes), containers
    merged by name, env merged by name."""
    ann = pod["metadata"].setdefault("annotations", {})
    for k, v in ((patch.get("metadata") or {}).get("annotations") or {}).items():
        if v is None:
            ann.pop(k, None)
        else:
            ann[k] = v
    for cp in (patch.get("spec") or {}).get("containers") or []:
        c = next(c for c in pod["spec"]["containers"] if c["name"] == cp["name"])
        for key, value in cp.items():
            if isinstance(value, list) and {"$patch": "replace"} in value:  # list directive
                c[key] = [dict(x) for x in value if x != {"$patch": "replace"}]
            elif key == "env":
                env = c.setdefault("env", [])
                for e in value:
                    old = next((x for x in env if x["name"] == e["name"]), None)
                    if old is None:
                        env.append(dict(e))
                    else:
                        old.update(e)
            else:
                c[key] = value
    if volumes := (patch.get("spec") or {}).get("volumes"):
        _merge_volumes(pod, volumes)


def _merge_volumes(pod: dict[str, Any], volumes: list[dict[str, Any]]) -> None:
    """Pod volumes merge by name (a volume patched replaces its source)."""
    have = pod["spec"].setdefault("volumes", [])
    for v in volumes:
        old = next((x for x in have if x["name"] == v["name"]), None)
        if old is None:
            have.append(copy.deepcopy(v))
        else:
            old.clear()
            old.update(copy.deepcopy(v))


# --- the fake kubelet's images: content IDs and repo tags, as containerd keeps them -----------

_RETAGS: dict[str, str] = {}  # normalised reference -> the reference whose content it has
_CRASH_RE = re.compile(r"crash-after-(\d+)s")
CRASH_BACKOFF_S = 10  # the kubelet's first back-off before restarting a crashed container


def retag(ref: str, same_as: str) -> None:
    """Make ``ref`` another tag of the image ``same_as`` names (``ctr images tag``)."""
    _RETAGS[normalize_image(ref)] = normalize_image(same_as)


def _content(ref: str) -> str:
    """The image's content digest (a pinned reference's digest, else one per distinct image)."""
    norm = normalize_image(ref)
    norm = _RETAGS.get(norm, norm)
    if "@" in norm:
        return norm.rpartition("@")[2]
    return "sha256:" + hashlib.sha256(norm.encode()).hexdigest()


def reported_image(ref: str) -> tuple[str, str]:
    """(image, imageID) as containerd reports them: the image's FIRST repo tag (sorted, not
    the spec's string) and its ID (``repo@digest`` for a pinned pull, else ``sha256:...``)."""
    content = _content(ref)
    tags = sorted({normalize_image(r) for r in (*_RETAGS, *_RETAGS.values(), ref)
                   if "@" not in normalize_image(r) and _content(r) == content})
    image_id = (normalize_image(ref).partition("@")[0].rsplit(":", 1)[0] + "@" + content
                if "@" in normalize_image(ref) else content)
    return (tags[0] if tags else normalize_image(ref)), image_id


def crash_after(ref: str) -> int | None:
    """Seconds after its start at which a container of ``ref`` crashes (``crash-after-8s``)."""
    m = _CRASH_RE.search(ref)
    return int(m.group(1)) if m else None


def _container_status(prev: dict[str, Any] | None, spec_image: str, run_of: str | None,
                      pod_name: str, name: str, now: datetime, bad: bool,
                      stuck: bool) -> tuple[dict[str, Any], str]:
    """One container's status after a look of the kubelet; also the spec image it runs."""
    image, image_id = reported_image(spec_image)
    restarts = (prev or {}).get("restartCount", 0)
    running = ((prev or {}).get("state") or {}).get("running")
    started = parse_time((running or {}).get("startedAt"))
    new_spec = run_of is not None and run_of != spec_image  # the kubelet restarts it

    def run(restarts: int) -> dict[str, Any]:
        return {"name": name, "image": image, "imageID": image_id,
                "containerID": f"containerd://{pod_name}-{name}-{restarts}-{uuid.uuid4().hex[:8]}",
                "ready": not stuck, "started": True, "restartCount": restarts,
                "state": {"running": {"startedAt": rfc3339(now)}}}

    if bad:
        status = {"name": name, "image": image, "imageID": image_id, "ready": False,
                  "started": False, "restartCount": restarts + (1 if new_spec else 0),
                  "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off"}}}
        return status, spec_image
    if prev is None or new_spec or (not running and not bad and not _backing_off(prev, now)):
        return run(restarts + (1 if prev is not None else 0)), spec_image
    if running:
        after = crash_after(spec_image)
        if after is not None and started is not None and now >= started + timedelta(seconds=after):
            return {"name": name, "image": image, "imageID": image_id, "ready": False,
                    "started": False, "restartCount": restarts,
                    "containerID": prev.get("containerID"),
                    "lastState": {"terminated": {"exitCode": 1, "reason": "Error",
                                                 "containerID": prev.get("containerID"),
                                                 "finishedAt": rfc3339(now)}},
                    "state": {"waiting": {"reason": "CrashLoopBackOff",
                                          "message": "back-off 10s restarting failed container"}}
                    }, spec_image
        return {**prev, "ready": not stuck}, spec_image
    return prev, spec_image


def _backing_off(prev: dict[str, Any], now: datetime) -> bool:
    finished = parse_time(((prev.get("lastState") or {}).get("terminated") or {})
                          .get("finishedAt"))
    return finished is not None and now < finished + timedelta(seconds=CRASH_BACKOFF_S)


def kubelet(pod: dict[str, Any], bad: set[str] = frozenset(), slots: bool = True,
            stuck: set[str] = frozenset(), now: datetime = T0) -> None:
    """Update container statuses and the Ready condition as a kubelet and the sidecar would.

    ``bad`` images crash (CrashLoopBackOff); ``stuck`` images run but never become ready; an
    image whose reference contains ``crash-after-<N>s`` crashes N s after each start (restart
    count up, back-off, then a new container). Images are reported as containerd does (first
    repo tag, image ID), and the status is merged as the API merges the kubelet's patch:
    containers by name, conditions by type (a transition time kept while unchanged), other
    fields kept. ``pod["_sim"]`` is the kubelet's memory (the spec image each container runs),
    which no real pod has; the planner never reads it. In a swap pod the sidecar is ready only
    with one pause slot and one ready business slot."""
    memory = pod.setdefault("_sim", {})
    status = pod.setdefault("status", {})
    old = {s["name"]: s for s in status.get("containerStatuses") or []}
    statuses = []
    for c in pod["spec"]["containers"]:
        st, memory[c["name"]] = _container_status(
            old.get(c["name"]), c["image"], memory.get(c["name"]),
            pod["metadata"]["name"], c["name"], now, c["image"] in bad, c["image"] in stuck)
        statuses.append(st)
    if slots:
        by_name = {s["name"]: s for s in statuses}
        slot_specs = pod["spec"]["containers"][:2]
        healthy = (sorted(same_image(c["image"], PAUSE) or "pause" in c["image"]
                          for c in slot_specs) == [False, True]
                   and all(by_name[c["name"]]["ready"] for c in slot_specs))
        for s in statuses:
            if s["name"] == "podkit-sidecar":
                s["ready"] = healthy
    all_ready = all(s["ready"] for s in statuses)
    ready = "True" if all_ready else "False"
    conditions = {c["type"]: c for c in status.get("conditions") or []}
    before = conditions.get("Ready") or {}
    conditions["Ready"] = {"type": "Ready", "status": ready,
                           "lastTransitionTime": (before.get("lastTransitionTime")
                                                  if before.get("status") == ready
                                                  else rfc3339(now))}
    status.update({"phase": "Running", "containerStatuses": statuses,
                   "conditions": list(conditions.values())})
    status.setdefault("podIP", f"10.200.0.{sum(map(ord, pod['metadata']['name'])) % 250}")


def _stamp(pod: dict[str, Any], uid: str) -> None:
    """A uid and a resourceVersion as the API gives them: the version changes with any
    change of the pod (here: a digest of its content), so the planner's memo of comparisons
    is exercised as against the API."""
    meta = pod["metadata"]
    meta["uid"] = uid
    meta.pop("resourceVersion", None)
    content = json.dumps(pod, sort_keys=True, default=str).encode()
    meta["resourceVersion"] = hashlib.sha256(content).hexdigest()[:16]


class Sim:
    """A controller loop over plain dicts: resolves revisions like the controller, applies plans
    (creates, deletes, patches, status, annotations) and runs the fake kubelet."""

    def __init__(self, stsp: dict[str, Any], patched: bool = False, max_concurrent: int = 50):
        self.stsp = stsp
        self.pods: dict[str, dict[str, Any]] = {}
        self.history: list[RevisionInfo] = []
        self.now = T0
        self.patched = patched
        self.max_concurrent = max_concurrent
        self.bad: set[str] = set()
        self.stuck: set[str] = set()
        self.bad_on: dict[str, set[str]] = {}  # pod name -> images that crash only there
        self.stuck_on: dict[str, set[str]] = {}  # pod name -> images never ready there
        self.unscheduled: set[str] = set()  # pods no scheduler has bound: nothing runs them
        self.starts: Counter[str] = Counter()  # pod -> swaps started (target annotation set)
        self.plans: list[Plan] = []
        self.started_to: list[tuple[str, str]] = []  # (pod, target) per swap started
        self.uids: Counter[str] = Counter()  # pod name -> pods created under that name
        self.started_uid: list[tuple[str, str]] = []  # ("<pod>#<n>", target)
        self.diffs = DiffMemo()  # as a release loop keeps one

    @property
    def slots(self) -> bool:
        return self.stsp["spec"]["updateStrategy"]["type"] == "ABSwap"

    def revisions(self) -> CurrentAndUpdate:
        tmpl = self.stsp["spec"]["template"]
        if podkit := self.stsp["spec"].get("podkit"):  # spec.podkit is part of the revision
            base = parse_spec(make_stsp()["spec"])
            tmpl = with_podkit(tmpl, dataclasses.replace(
                base, pause_image=podkit.get("pauseImage", base.pause_image),
                sidecar_image=podkit.get("sidecarImage", base.sidecar_image),
                config_hook=podkit.get("configHook", base.config_hook)))
        upd = RevisionInfo.from_template("web", tmpl)
        if upd.name not in [r.name for r in self.history]:
            self.history.append(upd)
        by_name = {r.name: r for r in self.history}
        cur, prev = choose_revisions(self.stsp.get("status") or {}, self.pods.values(),
                                     upd.name, by_name)  # as the controller chooses
        return CurrentAndUpdate(current=by_name[cur], update=upd,
                                previous=by_name[prev] if prev else None)

    def plan(self) -> Plan:
        for name, pod in self.pods.items():
            _stamp(pod, f"{name}#{self.uids[name]}")
        return plan_release(copy.deepcopy(self.stsp), copy.deepcopy(list(self.pods.values())),
                            self.revisions(), self.now, self.patched, self.max_concurrent,
                            diffs=self.diffs)

    def tick(self, seconds: float = 1.0) -> Plan:
        self.now += timedelta(seconds=seconds)
        plan = self.plan()
        self.apply(plan)
        return plan

    def apply(self, plan: Plan, keep=lambda action: True, write_status: bool = True) -> None:
        """Apply ``plan``; ``keep`` drops actions (an operator killed half way through),
        ``write_status=False`` loses the status write."""
        self.plans.append(plan)
        for c in plan.create:
            if not keep(c):
                continue
            body = copy.deepcopy(c.body)
            assert body["metadata"]["name"] not in self.pods
            self.uids[body["metadata"]["name"]] += 1
            self.pods[body["metadata"]["name"]] = body
        for d in plan.delete:
            if keep(d):
                self.pods.pop(d.name)
        for p in plan.patches:
            if not keep(p):
                continue
            pod = self.pods[p.name]
            before = pod["metadata"].get("annotations", {}).get(ANN_TARGET)
            apply_patch(pod, p.patch)
            after = pod["metadata"]["annotations"].get(ANN_TARGET)
            if after and after != before:
                self.starts[p.name] += 1
                self.started_to.append((p.name, after))
                self.started_uid.append((f"{p.name}#{self.uids[p.name]}", after))
        for r in plan.resizes:  # the resize subresource: applied at once, not reported
            if keep(r):
                apply_patch(self.pods[r.name], r.patch)
        for name, pod in self.pods.items():
            if name in self.unscheduled:
                pod["status"] = {"phase": "Pending", "conditions": [
                    {"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]}
                continue
            pod["spec"].setdefault("nodeName", "sim-node")
            kubelet(pod, self.bad | self.bad_on.get(name, set()), self.slots,
                    self.stuck | self.stuck_on.get(name, set()), self.now)
        if not write_status:
            return
        self.stsp["status"] = copy.deepcopy(plan.status)
        ann = self.stsp["metadata"].setdefault("annotations", {})
        for k, v in plan.stsp_annotations.items():
            if v is None:
                ann.pop(k, None)
            else:
                ann[k] = v

    def run(self, until=None, ticks: int = 60, seconds: float = 1.0) -> Plan:
        """Tick until ``until(sim)`` holds (or the plan is quiet when not given)."""
        plan = None
        for _ in range(ticks):
            plan = self.tick(seconds)
            if until is not None and until(self):
                return plan
            if until is None and not (plan.create or plan.delete or plan.patches):
                return plan
        raise AssertionError(f"not reached after {ticks} ticks: {self.bds}")

    @property
    def bds(self) -> dict[str, Any]:
        return (self.stsp.get("status") or {}).get("batchDeployStatus") or {}

    def revision_of(self, ordinal: int) -> str | None:
        return self.pods[f"web-{ordinal}"]["metadata"]["annotations"].get("podkit.io/revision")

    def images(self, ordinal: int) -> list[str]:
        return [c["image"] for c in self.pods[f"web-{ordinal}"]["spec"]["containers"]]

    def set_image(self, image: str) -> None:
        self.stsp["spec"]["template"]["spec"]["containers"][0]["image"] = image
        self.stsp["metadata"]["generation"] += 1

    def annotate(self, key: str, value: str | None) -> None:
        ann = self.stsp["metadata"].setdefault("annotations", {})
        if value is None:
            ann.pop(key, None)
        else:
            ann[key] = value
