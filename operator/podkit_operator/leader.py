"""Leader election on a ``coordination.k8s.io`` Lease, the way client-go's leaderelection does it.

Two operator replicas run; one holds the Lease ``podkit-operator`` in the operator's namespace
and runs every handler, the other waits in :meth:`LeaderElector.acquire` (called from kopf's
startup handler, so kopf watches and handles nothing before it returns). kopf's own peering is
no substitute: it pauses the lower-priority operator but elects nobody and holds nothing when
the peer dies mid-write.

- **acquire**: every ``retry_s`` read the Lease; take it when it is free, ours (a restarted
  container of the same pod), or expired. Expiry is judged, as in client-go, by *our* clock:
  the holder's record must stay unchanged for its ``leaseDurationSeconds`` since we first saw
  it, so the two machines' clocks never need to agree. Writes carry the resourceVersion read,
  so of two candidates only one wins.
- **renew**: a thread (not the event loop, which a busy handler may hold) renews every
  ``retry_s``; when no renewal has succeeded for ``renew_deadline_s``, or the Lease names
  another holder, the process exits at once (``os._exit``): the Deployment restarts it as a
  standby. ``renew_deadline_s < duration_s`` is what makes that safe: the old leader is gone
  before a standby may take over.
- **release**: a graceful stop (SIGTERM, a rollout) hands the Lease back (no holder), so the
  standby takes over within ``retry_s`` rather than after ``duration_s``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Gauge

from .kube.client import API_ERRORS, KubeIO, describe

LEADER = Gauge("podkit_operator_leader", "1 while this operator holds the Lease, else 0")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LeaseTimes:
    """client-go's defaults: a standby takes over at most ``duration_s`` (+ ``retry_s``) after
    the leader's last renewal; the leader gives up after ``renew_deadline_s`` without one."""

    duration_s: int = 15
    renew_deadline_s: float = 10.0
    retry_s: float = 2.0

    def __post_init__(self) -> None:
        if not self.retry_s < self.renew_deadline_s < self.duration_s:
            raise ValueError("lease times need retry < renew deadline < duration")


def micro_time(at: datetime) -> str:
    """A ``MicroTime`` as the API writes it."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def claim(spec: dict[str, Any], identity: str, duration_s: int, now: datetime) -> dict[str, Any]:
    """The Lease spec that makes ``identity`` the holder, from the spec read: a renewal moves
    only ``renewTime``; a change of holder also ``acquireTime`` and ``leaseTransitions``."""
    renewal = spec.get("holderIdentity") == identity
    transitions = spec.get("leaseTransitions") or 0
    return {"holderIdentity": identity, "leaseDurationSeconds": duration_s,
            "acquireTime": spec.get("acquireTime") if renewal else micro_time(now),
            "renewTime": micro_time(now),
            "leaseTransitions": transitions if renewal or not spec else transitions + 1}


class Observed:
    """When the Lease's record last changed, by our monotonic clock (client-go's
    ``observedTime``): the basis of expiry, immune to skew between machines."""

    def __init__(self) -> None:
        self.spec: dict[str, Any] | None = None
        self.at = 0.0

    def see(self, spec: dict[str, Any], now: float) -> None:
        if spec != self.spec:
            self.spec, self.at = spec, now

    def held_by_other(self, identity: str, now: float) -> bool:
        """Whether someone else holds the Lease and may still be renewing it."""
        spec = self.spec or {}
        holder = spec.get("holderIdentity")
        return bool(holder) and holder != identity and (
            now < self.at + (spec.get("leaseDurationSeconds") or 0))


class LeaderElector:
    """One candidate for Lease ``namespace/name``; see the module docstring."""

    def __init__(self, io: KubeIO, namespace: str, name: str, identity: str,
                 times: LeaseTimes = LeaseTimes(),
                 on_lost: Callable[[str], None] | None = None) -> None:
        self.io, self.namespace, self.name, self.identity = io, namespace, name, identity
        self.times = times
        self.on_lost = on_lost or _exit
        self.observed = Observed()
        self.leading = False
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def try_acquire_or_renew(self) -> bool:
        """One attempt: read the Lease, and write ourselves in unless another holds it."""
        now = time.monotonic()
        lease = self.io.get_lease(self.namespace, self.name)
        if lease is None:
            lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                     "metadata": {"name": self.name, "namespace": self.namespace}, "spec": {}}
        spec: dict[str, Any] = dict(lease.get("spec") or {})
        self.observed.see(spec, now)
        if self.observed.held_by_other(self.identity, now):
            return False
        mine = claim(spec, self.identity, self.times.duration_s, datetime.now(UTC))
        if not self.io.write_lease({
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {k: v for k, v in lease["metadata"].items()
                             if k in ("name", "namespace", "resourceVersion")},
                "spec": mine}):
            return False
        self.observed.see(mine, now)
        return True

    def _attempt(self) -> bool:
        try:
            return self.try_acquire_or_renew()
        except API_ERRORS as exc:
            log.warning("lease %s/%s: %s", self.namespace, self.name, describe(exc))
            return False

    async def acquire(self) -> None:
        """Return once this candidate leads (a standby waits here), then keep renewing."""
        if self.leading:
            return
        log.info("lease %s/%s: %s is a candidate", self.namespace, self.name, self.identity)
        while not await asyncio.to_thread(self._attempt):
            await asyncio.sleep(self.times.retry_s * random.uniform(1.0, 1.2))
        self.leading = True
        LEADER.set(1)
        log.info("lease %s/%s: %s leads", self.namespace, self.name, self.identity)
        self._renewer = threading.Thread(target=self._renew, name="lease-renewer", daemon=True)
        self._renewer.start()

    def _renew(self) -> None:
        try:
            self._renew_until_lost()
        except Exception as exc:  # a renewer that died silently would leave two leaders
            self._lose(f"the renewer failed: {exc!r}")

    def _renew_until_lost(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(self.times.retry_s):
            if self._attempt():
                last = time.monotonic()
                continue
            now = time.monotonic()
            if self.observed.held_by_other(self.identity, now):
                holder = (self.observed.spec or {}).get("holderIdentity")
                return self._lose(f"{holder} holds the lease now")
            if now - last > self.times.renew_deadline_s:
                return self._lose(f"no renewal for {self.times.renew_deadline_s:g} s")

    def _lose(self, why: str) -> None:
        self.leading = False
        LEADER.set(0)
        self.on_lost(f"lease {self.namespace}/{self.name}: {self.identity} lost it ({why})")

    def release(self) -> None:
        """Stop renewing and hand the Lease back (a graceful stop), if we still hold it."""
        self._stop.set()
        if self._renewer is None:
            return
        self._renewer.join()
        if not self.leading:
            return
        self.leading = False
        LEADER.set(0)
        try:
            lease = self.io.get_lease(self.namespace, self.name)
            if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                return
            lease["spec"] = {**lease["spec"], "holderIdentity": None,
                             "renewTime": micro_time(datetime.now(UTC))}
            self.io.write_lease(lease)
        except API_ERRORS as exc:
            log.warning("lease %s/%s not released (the standby waits it out): %s",
                        self.namespace, self.name, describe(exc))


def _exit(message: str) -> None:
    """Stop the process now: a leader that lost its Lease must not write one more object.
    Every step of the operator's work lives in the API, so nothing is lost; the Deployment
    restarts the container as a standby."""
    log.critical("%s: exiting", message)
    logging.shutdown()
    os._exit(1)
