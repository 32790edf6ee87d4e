"""What the observer sees: the StatefulSetPlus and its pods, read together, again and again.

Only documented fields are read (docs/operator.md): the pod annotations
``podkit.io/active-slot`` and ``podkit.io/target-revision``, the slot containers
``<business>-a`` / ``<business>-b``, and the status fields of a StatefulSetPlus.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from testbed.rest import ApiReader, ApiReadError

NAME = "web"  # the StatefulSetPlus of every run, and its business container
ACTIVE_SLOT = "podkit.io/active-slot"
TARGET = "podkit.io/target-revision"
# what a read meets while the apiserver or etcd restarts
READ_ERRORS = (ApiReadError, ValueError, KeyError)


@dataclass(frozen=True)
class PodSeen:
    name: str
    uid: str
    ordinal: int
    images: dict[str, str]  # container name -> image in the spec
    env: dict[str, str]  # the active slot's env
    active: str | None  # the active slot's container name
    in_flight: bool  # an update under way (target-revision set)
    reported: dict[str, str]  # container name -> image the node reports running
    ready: bool
    terminating: bool
    ip: str | None = None
    envs: dict[str, dict[str, str]] = field(default_factory=dict)  # container name -> env
    container_ids: dict[str, str] = field(default_factory=dict)  # name -> ID on the node
    started: dict[str, str] = field(default_factory=dict)  # name -> (restarts, startedAt), for
    # the record of a failed run
    image_ids: dict[str, str] = field(default_factory=dict)  # name -> the image's digest the
    # node runs, for the record: which build of a tag a container runs

    @property
    def serving(self) -> str | None:
        """The image the active slot runs, as the node reports it (None while in flight)."""
        if self.in_flight or self.active is None:
            return None
        return self.reported.get(self.active)


@dataclass(frozen=True)
class Seen:
    at_s: float  # seconds after the release started
    status: dict[str, Any]
    pods: tuple[PodSeen, ...]
    generation: int = 0  # the StatefulSetPlus's metadata.generation: which spec the status
    # may describe (its observedGeneration says which one it does)


def pod_seen(pod: dict[str, Any]) -> PodSeen:
    meta, spec = pod["metadata"], pod["spec"]
    annotations = meta.get("annotations") or {}
    slot = annotations.get(ACTIVE_SLOT)
    active = f"{NAME}-{slot}" if slot else None
    containers = {c["name"]: c for c in spec["containers"]}
    envs = {name: {e["name"]: e.get("value", "") for e in c.get("env") or []}
            for name, c in containers.items()}
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    conditions = (pod.get("status") or {}).get("conditions") or []
    return PodSeen(
        name=meta["name"], uid=meta["uid"], ordinal=int(meta["name"].rsplit("-", 1)[1]),
        images={n: c["image"] for n, c in containers.items()}, env=envs.get(active or "", {}),
        active=active,
        in_flight=TARGET in annotations,
        reported={s["name"]: s.get("image", "") for s in statuses
                  if (s.get("state") or {}).get("running")},
        ready=any(c["type"] == "Ready" and c["status"] == "True" for c in conditions),
        terminating=bool(meta.get("deletionTimestamp")),
        ip=(pod.get("status") or {}).get("podIP"), envs=envs,
        container_ids={s["name"]: s["containerID"] for s in statuses if s.get("containerID")},
        started={s["name"]: f"{s.get('restartCount', 0)} "
                 f"{((s.get('state') or {}).get('running') or {}).get('startedAt')}"
                 for s in statuses},
        image_ids={s["name"]: s["imageID"] for s in statuses if s.get("imageID")})


def look(api: ApiReader, namespace: str, at_s: float) -> Seen:
    """The status first, then the pods: a status never describes pods read before it."""
    stsp = api.get(f"/apis/podkit.io/v1alpha1/namespaces/{namespace}/statefulsetplus/{NAME}")
    listed = api.get(f"/api/v1/namespaces/{namespace}/pods", timeout=20,
                     labelSelector=f"podkit.io/stsp={NAME}")["items"]
    return Seen(at_s, stsp.get("status") or {}, tuple(pod_seen(p) for p in listed),
                stsp["metadata"].get("generation") or 0)


@dataclass
class Observer:
    """Looks every ``interval`` seconds in a thread until stopped; reads that fail (an
    apiserver restarting) are counted, not seen."""

    api: ApiReader
    namespace: str
    started: float
    interval: float = 0.3
    on_look: Callable[[Seen], None] | None = None  # kubelet mode: the probes follow the looks
    seen: list[Seen] = field(default_factory=list)
    failed_reads: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Observer:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                seen = look(self.api, self.namespace, time.monotonic() - self.started)
            except READ_ERRORS:
                self.failed_reads += 1
            else:
                self.seen.append(seen)
                if self.on_look is not None:
                    self.on_look(seen)
            self._stop.wait(self.interval)

    def stop(self) -> list[Seen]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
        return self.seen
