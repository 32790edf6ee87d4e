"""The pods of every StatefulSetPlus, fed by one watch per namespace (an informer's job).

A release pass used to LIST its pods, and every pod event woke it for another LIST: at
thousands of pods that is megabytes of JSON per pass, and a pass per event. Here a thread per
namespace LISTs the labelled pods once and then WATCHes them (bookmarks on), resuming from the
last resourceVersion it saw when a watch ends and LISTing again only when the apiserver
answers 410 Gone (that version is too old) or the watch broke (a lost connection, the
apiserver restarting); the index may then be stale, and passes wait until that LIST is in
(:meth:`PodCache.wait_synced`); the records go to a :class:`PodIndex`, whose
``on_change`` wakes the loop of the StatefulSetPlus a change concerns. The operator's own
writes are put into the index from the apiserver's answers
(:class:`~podkit_operator.kube.client.KubeIO`), so a pass never waits for their echo.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from kubernetes.client.rest import ApiException

from .client import API_ERRORS, KubeIO, describe
from .podindex import PodIndex

RETRY_S = 1.0  # after a watch or a list the apiserver refused, or a lost connection
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Relist:
    """The watch cannot resume (410 Gone: at once; another error the watch reported: after
    ``wait_s``): LIST again."""

    reason: str
    wait_s: float = 0.0


@dataclass(frozen=True)
class Resume:
    """The server ended the watch (its timeout): watch again from here."""

    resource_version: str


def follow(io: KubeIO, index: PodIndex, namespace: str,
           resource_version: str) -> Relist | Resume:
    """One watch of ``namespace``'s labelled pods from ``resource_version``, applied to the
    index until it ends; says how to go on."""
    try:
        for event in io.watch_labelled_pods(namespace, resource_version):
            kind, obj = event.get("type"), event.get("object") or {}
            if kind == "ERROR":
                gone = obj.get("code") == 410
                return Relist(obj.get("message") or f"watch error {obj.get('code')}",
                              0.0 if gone else RETRY_S)
            resource_version = (obj.get("metadata") or {}).get("resourceVersion",
                                                               resource_version)
            if kind in ("ADDED", "MODIFIED", "DELETED"):
                index.apply(kind, obj)
    except ApiException as exc:
        if exc.status == 410:
            return Relist("410 Gone")
        raise
    return Resume(resource_version)


class PodCache:
    """The index and its watch threads: :meth:`follow` a namespace, then read its pods."""

    def __init__(self, io: KubeIO, index: PodIndex) -> None:
        self.io, self.index = io, index
        self._synced: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def follow(self, namespace: str) -> None:
        """Watch ``namespace`` from now on; once: later calls do nothing."""
        with self._lock:
            if namespace in self._synced:
                return
            self._synced[namespace] = threading.Event()
        threading.Thread(target=self._run, args=(namespace,), daemon=True,
                         name=f"pods-{namespace}").start()

    def wait_synced(self, namespace: str, timeout: float) -> bool:
        """Whether the namespace's latest LIST is in the index (waiting up to ``timeout``):
        false from a broken watch or a 410 until the LIST after it."""
        synced = self._synced.get(namespace)
        return synced is not None and synced.wait(timeout)

    def pods(self, namespace: str, name: str) -> list[dict[str, Any]]:
        return self.index.pods(namespace, name)

    def stop(self) -> None:
        """The threads end after their current watch (they are daemons: an exit ends them)."""
        self._stop.set()

    def _run(self, namespace: str) -> None:
        resume: str | None = None
        while not self._stop.is_set():
            try:
                if resume is None:
                    # what the index holds may be seconds old (a broken watch, 410 Gone): a
                    # pass judging a soak on it would count a pod that crashed meanwhile (make
                    # chaos seed 52), so passes wait for this LIST
                    self._synced[namespace].clear()
                    listed, resume = self.io.list_labelled_pods(namespace)
                    self.index.replace(namespace, listed, resume)
                    self._synced[namespace].set()
                went = follow(self.io, self.index, namespace, resume)
            except API_ERRORS as exc:  # the apiserver restarting, a partition
                log.warning("watch of pods in %s failed: %s; listing again in %.0f s",
                            namespace, describe(exc), RETRY_S)
                self._stop.wait(RETRY_S)
                resume = None
                continue
            if isinstance(went, Relist):
                log.info("pods in %s: %s; listing again", namespace, went.reason)
                self._stop.wait(went.wait_s)
                resume = None
            else:
                resume = went.resource_version
