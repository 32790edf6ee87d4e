"""The typed operator context: what the handlers of every feature share.

kopf hands each handler a ``memo``, an untyped bag that kopf shallow-copies per watched object.
State put into it lazily (``memo.setdefault(...)``) is therefore per object, not shared: the
operator builds one :class:`OperatorContext` at startup, holding every shared container, and
puts only that into the memo; handlers take it back with :func:`context_of`.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import kopf
from aiohttp import web

from .api.statefulsetplus import StsPlusSpec
from .kube.client import KubeIO
from .kube.podcache import PodCache
from .leader import LeaderElector
from .settings import Settings

Key = tuple[str, str]  # (namespace, name)


@dataclass
class SliceWriter:
    """The one writer of one Service's EndpointSlices (podkit_operator.endpoints): events set
    ``wake``; ``task`` then derives the slices from the newest state and writes the changed
    ones, so writes never overlap and an older snapshot never lands after a newer one."""

    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    # slice name -> its body as last written or, at the writer's start, as listed; None
    # until listed (a restarted operator adopts the slices a previous one wrote)
    slices: dict[str, dict[str, Any]] | None = None


@dataclass
class OperatorContext:
    """Shared by all handlers for the operator's lifetime."""

    settings: Settings
    io: KubeIO
    patched: bool  # the apiserver lets opted-in pods change env and volumes in place
    writers: ThreadPoolExecutor  # the pod writes of a reconcile pass
    pods: PodCache  # every StatefulSetPlus's pods, watch-fed
    # the release loops: (namespace, StatefulSetPlus) -> the event that wakes its loop
    wakers: dict[Key, asyncio.Event] = field(default_factory=dict)
    # (namespace, ConfigMap) -> names of the StatefulSetPlus that release it
    config_users: dict[Key, set[str]] = field(default_factory=dict)
    # the Lease this process holds while it runs handlers, and its /healthz server
    leader: LeaderElector | None = None
    health: web.AppRunner | None = None
    # endpoints: (namespace, Service) -> its one slice writer
    slice_writers: dict[Key, SliceWriter] = field(default_factory=dict)

    def stop_slice_writers(self) -> None:
        for writer in self.slice_writers.values():
            if writer.task is not None:
                writer.task.cancel()

    # the last spec of each StatefulSetPlus that parsed: a spec error holds the release on it
    last_good_specs: dict[Key, StsPlusSpec] = field(default_factory=dict)

    def wake(self, namespace: str, name: str) -> None:
        """Wake the release loop of StatefulSetPlus ``namespace/name``, if it runs."""
        waker = self.wakers.get((namespace, name))
        if waker is not None:
            waker.set()


def namespace_of(namespace: str | None) -> str:
    """The namespace kopf passes for a namespaced object (typed optional for cluster-scoped
    ones; every object podkit watches is namespaced)."""
    if namespace is None:
        raise ValueError("podkit watches namespaced objects only")
    return namespace


def context_of(memo: kopf.Memo) -> OperatorContext:
    """The context the startup handler put into kopf's memo."""
    context = memo.get("context")
    if not isinstance(context, OperatorContext):
        raise RuntimeError("the operator context is missing: the startup handler did not run")
    return context
