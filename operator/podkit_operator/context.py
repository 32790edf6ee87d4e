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

from .api.statefulsetplus import StsPlusSpec
from .kube.client import KubeIO
from .settings import Settings

Key = tuple[str, str]  # (namespace, name)


@dataclass
class OperatorContext:
    """Shared by all handlers for the operator's lifetime."""

    settings: Settings
    io: KubeIO
    patched: bool  # the apiserver lets opted-in pods change env and volumes in place
    writers: ThreadPoolExecutor  # the pod writes of a reconcile pass
    # the release loops: (namespace, StatefulSetPlus) -> the event that wakes its loop
    wakers: dict[Key, asyncio.Event] = field(default_factory=dict)
    # (namespace, ConfigMap) -> names of the StatefulSetPlus that release it
    config_users: dict[Key, set[str]] = field(default_factory=dict)
    # endpoints: one writer per (namespace, StatefulSetPlus), and the slices last written
    endpoint_locks: dict[Key, asyncio.Lock] = field(default_factory=dict)
    slices_written: dict[Key, dict[str, Any]] = field(default_factory=dict)

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
