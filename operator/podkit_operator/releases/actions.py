"""What the planner decides: pods to create, delete and patch, the status, events."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..api.reasons import EventReason


@dataclass(frozen=True)
class PodCreate:
    ordinal: int
    revision: str
    body: dict[str, Any]


@dataclass(frozen=True)
class PodDelete:
    name: str
    ordinal: int
    reason: str


@dataclass(frozen=True)
class PodPatch:
    """A strategic merge patch of a pod (content type application/strategic-merge-patch+json)."""

    name: str
    ordinal: int
    patch: dict[str, Any]
    reason: str


@dataclass(frozen=True)
class Event:
    reason: EventReason
    message: str
    type: str = "Normal"
    pod: str | None = None  # the pod it is about (None: the StatefulSetPlus)


@dataclass
class Plan:
    """What the controller writes: pods to create, delete and patch, the status, events."""

    create: list[PodCreate] = field(default_factory=list)
    delete: list[PodDelete] = field(default_factory=list)
    patches: list[PodPatch] = field(default_factory=list)
    resizes: list[PodPatch] = field(default_factory=list)  # of the pods' resize subresource
    status: dict[str, Any] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    requeue_after: float | None = None
    stsp_annotations: dict[str, str | None] = field(default_factory=dict)
