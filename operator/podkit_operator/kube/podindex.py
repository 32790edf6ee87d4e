"""The operator's view of its pods, kept from a LIST, a WATCH and its own writes (pure).

Each pod is held as a trimmed record (without ``managedFields``, which the operator never
reads), under its namespace and the StatefulSetPlus its ``podkit.io/stsp`` label names. A
record is only ever replaced by a newer version of the pod: the answer to the operator's own
write may come before or after the watch's event for it, and the older of the two is dropped.
Every change, a watch event's or an own write's, is passed to ``on_change`` with the
StatefulSetPlus whose pods changed, so only its loop is woken, once: a write's answer wakes it
(the pass after a write may have the next step to take, as when the echo of each write woke
it), and the watch's echo of that write, no newer, does not. A pod seen deleted is
remembered by UID, so the answer to a write that raced with its deletion (the pod with a
``deletionTimestamp``, answered after the watch said it was gone) brings back no ghost.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from ..api.keys import LABEL_STSP

Key = tuple[str, str]  # (namespace, StatefulSetPlus name)
GONE_KEPT = 100_000  # UIDs of deleted pods remembered (the oldest forgotten first)


def trimmed(pod: dict[str, Any]) -> dict[str, Any]:
    """The pod without what the operator never reads (``metadata.managedFields``)."""
    meta = {k: v for k, v in (pod.get("metadata") or {}).items() if k != "managedFields"}
    return {**pod, "metadata": meta}


def owner_key(pod: dict[str, Any]) -> Key | None:
    """(namespace, StatefulSetPlus) of a pod carrying the ``podkit.io/stsp`` label."""
    meta = pod.get("metadata") or {}
    owner = (meta.get("labels") or {}).get(LABEL_STSP)
    return (meta.get("namespace") or "", owner) if owner else None


def newer(candidate: dict[str, Any], held: dict[str, Any] | None) -> bool:
    """Whether ``candidate`` is a later version of the pod than ``held``. The API calls a
    resourceVersion opaque; the apiserver's are etcd revisions, compared as numbers, and one
    that is not a number counts as newer (the pod is taken as given)."""
    if held is None:
        return True
    new, old = (o["metadata"].get("resourceVersion", "") for o in (candidate, held))
    if new.isdigit() and old.isdigit():
        return int(new) > int(old)
    return new != old


class PodIndex:
    """Pods by (namespace, StatefulSetPlus) and name; safe to use from several threads."""

    def __init__(self, on_change: Callable[[Key], object] = lambda key: None) -> None:
        """``on_change`` is called with each changed key, from the thread that applied the
        change, outside the index's lock."""
        self.on_change = on_change
        self._lock = threading.Lock()
        self._pods: dict[Key, dict[str, dict[str, Any]]] = {}
        self._where: dict[tuple[str, str], Key] = {}  # (namespace, pod) -> its key
        self._gone: OrderedDict[str, None] = OrderedDict()  # UIDs seen deleted

    def pods(self, namespace: str, name: str) -> list[dict[str, Any]]:
        """The pods of StatefulSetPlus ``namespace/name`` (records shared, not copied: the
        operator reads them and writes through the API only)."""
        with self._lock:
            return list(self._pods.get((namespace, name), {}).values())

    def apply(self, kind: str, pod: dict[str, Any]) -> Key | None:
        """A watch event (``ADDED``, ``MODIFIED``, ``DELETED``) or an own write's answer
        (as ``MODIFIED``); returns the key whose pods changed, None when nothing did."""
        if (key := self._apply(kind, pod)) is not None:
            self.on_change(key)
        return key

    def _apply(self, kind: str, pod: dict[str, Any]) -> Key | None:
        meta = pod["metadata"]
        at = (meta.get("namespace") or "", meta["name"])
        with self._lock:
            if meta.get("uid") in self._gone:
                return None
            held_key = self._where.get(at)
            held = self._pods[held_key][at[1]] if held_key is not None else None
            if kind == "DELETED":
                self._forget(meta.get("uid") or "")
                if held is None or held["metadata"].get("uid") != meta.get("uid"):
                    return None
                return self._drop(at)
            if held is not None and not newer(pod, held):
                return None
            key = owner_key(pod)
            if key is None:  # the label was taken off: no longer the operator's pod
                return self._drop(at) if held is not None else None
            if held_key is not None and held_key != key:
                self._drop(at)
            self._pods.setdefault(key, {})[at[1]] = trimmed(pod)
            self._where[at] = key
            return key

    def replace(self, namespace: str, listed: Iterable[dict[str, Any]],
                list_version: str) -> set[Key]:
        """A fresh LIST (at resourceVersion ``list_version``) of the namespace's labelled pods;
        returns the keys whose pods differ from what was held. A held pod the LIST lacks is
        dropped unless it is newer than the LIST (an own write's answer that came after it)."""
        fresh = {p["metadata"]["name"]: p for p in listed if owner_key(p) is not None}
        snapshot = {"metadata": {"resourceVersion": list_version}}
        changed: set[Key] = set()
        with self._lock:
            for at in [at for at in self._where if at[0] == namespace]:
                held = self._pods[self._where[at]][at[1]]
                pod = fresh.get(at[1])
                if pod is None and newer(held, snapshot):
                    continue
                if pod is None or pod["metadata"].get("uid") != held["metadata"].get("uid"):
                    changed.add(self._drop(at))
        for pod in fresh.values():
            if (key := self._apply("ADDED", pod)) is not None:
                changed.add(key)
        for key in changed:
            self.on_change(key)
        return changed

    def _forget(self, uid: str) -> None:
        self._gone[uid] = None
        while len(self._gone) > GONE_KEPT:
            self._gone.popitem(last=False)

    def _drop(self, at: tuple[str, str]) -> Key:
        key = self._where.pop(at)
        del self._pods[key][at[1]]
        if not self._pods[key]:
            del self._pods[key]
        return key
